//! ModemManager's D-Bus API, as far as this backend uses it: names, and what its numbers mean.
//!
//! From ModemManager's API reference ("ModemManager1 D-Bus interfaces" and "Flags and
//! Enumerations"): `MMModemState`, `MMModemLock`, `MMModemStateFailedReason`,
//! `MMModem3gppRegistrationState`, `MMSmsState`, `MMSmsPduType` and `MMSmsDeliveryState`.
//! Everything here is pure: properties in, facts out, and nothing panics on values a newer
//! ModemManager (or a broken one) may send.

use std::collections::HashMap;

use airtext_sms::tpdu::StatusClass;
use chrono::{DateTime, NaiveDateTime, Utc};
use zbus::zvariant::{OwnedValue, Value};

use crate::cellular::delivery::status_text;

pub const SERVICE: &str = "org.freedesktop.ModemManager1";
/// The object that is the ObjectManager of every modem.
pub const ROOT: &str = "/org/freedesktop/ModemManager1";
pub const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
pub const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
pub const MESSAGING: &str = "org.freedesktop.ModemManager1.Modem.Messaging";
pub const SMS: &str = "org.freedesktop.ModemManager1.Sms";
pub const SIM: &str = "org.freedesktop.ModemManager1.Sim";
pub const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
pub const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// A D-Bus property map (`a{sv}`).
pub type Properties = HashMap<String, OwnedValue>;

fn value<'a>(props: &'a Properties, name: &str) -> Option<&'a Value<'static>> {
    props.get(name).map(|v| &**v)
}

pub fn u32_of(props: &Properties, name: &str) -> Option<u32> {
    value(props, name).and_then(|v| u32::try_from(v).ok())
}

pub fn i32_of(props: &Properties, name: &str) -> Option<i32> {
    value(props, name).and_then(|v| i32::try_from(v).ok())
}

pub fn string_of(props: &Properties, name: &str) -> Option<String> {
    value(props, name).and_then(|v| String::try_from(v).ok())
}

pub fn path_of(props: &Properties, name: &str) -> Option<String> {
    value(props, name)
        .and_then(|v| zbus::zvariant::ObjectPath::try_from(v).ok())
        .map(|p| p.as_str().to_owned())
}

pub fn strings_of(props: &Properties, name: &str) -> Vec<String> {
    value(props, name)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| Vec::<String>::try_from(v).ok())
        .unwrap_or_default()
}

/// What the path policy and Settings need to know about one modem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModemFacts {
    /// `MMModemState`.
    pub state: i32,
    /// `MMModemStateFailedReason`, when `state` is failed.
    pub failed_reason: u32,
    /// `MMModemLock`.
    pub lock: u32,
    /// `MMModem3gppRegistrationState`, when the modem has the 3GPP interface.
    pub registration: Option<u32>,
    pub operator: Option<String>,
    pub manufacturer: String,
    pub model: String,
    pub equipment_id: String,
    pub device_id: String,
    pub own_numbers: Vec<String>,
    /// The SIM's object path (`Modem.Sim`), for unlocking.
    pub sim: Option<String>,
}

impl ModemFacts {
    /// Reads the `Modem` and (when present) `Modem3gpp` property maps.
    pub fn read(modem: &Properties, modem_3gpp: Option<&Properties>) -> Self {
        let operator = modem_3gpp
            .and_then(|p| string_of(p, "OperatorName"))
            .filter(|o| !o.is_empty());
        ModemFacts {
            state: i32_of(modem, "State").unwrap_or(0),
            failed_reason: u32_of(modem, "StateFailedReason").unwrap_or(0),
            lock: u32_of(modem, "UnlockRequired").unwrap_or(0),
            registration: modem_3gpp.and_then(|p| u32_of(p, "RegistrationState")),
            operator,
            manufacturer: string_of(modem, "Manufacturer").unwrap_or_default(),
            model: string_of(modem, "Model").unwrap_or_default(),
            equipment_id: string_of(modem, "EquipmentIdentifier").unwrap_or_default(),
            device_id: string_of(modem, "DeviceIdentifier").unwrap_or_default(),
            own_numbers: strings_of(modem, "OwnNumbers"),
            sim: path_of(modem, "Sim").filter(|p| p != "/"),
        }
    }

    /// The SIM asks for something before it works (`MMModemLock` above `none`).
    pub fn locked(&self) -> bool {
        self.lock > LOCK_NONE || self.state == STATE_LOCKED
    }

    /// Registered on a network with the SIM unlocked: a text can go now.
    pub fn available(&self) -> bool {
        !self.locked() && self.state >= STATE_REGISTERED
    }

    /// Registered on a visited network (`roaming`, `roaming-sms-only`,
    /// `roaming-csfb-not-preferred`).
    pub fn roaming(&self) -> bool {
        matches!(self.registration, Some(5 | 7 | 10))
    }

    /// "Manufacturer Model", or what there is of it.
    pub fn label(&self) -> String {
        let label = format!("{} {}", self.manufacturer.trim(), self.model.trim());
        match label.trim() {
            "" => "modem".to_owned(),
            l => l.to_owned(),
        }
    }

    /// The modem's state in words, for Settings.
    pub fn state_text(&self) -> &'static str {
        match self.state {
            -1 => "failed",
            1 => "initializing",
            2 => "locked",
            3 => "disabled",
            4 => "disabling",
            5 => "enabling",
            6 => "enabled, not registered",
            7 => "searching for a network",
            8 => "registered",
            9 => "disconnecting",
            10 => "connecting",
            11 => "connected",
            _ => "unknown",
        }
    }

    /// What the SIM asks for, in words (`None` when nothing).
    pub fn lock_text(&self) -> Option<&'static str> {
        Some(match self.lock {
            0 | 1 => return None,
            2 => "SIM PIN",
            3 => "SIM PIN2",
            4 => "SIM PUK",
            5 => "SIM PUK2",
            6 => "service provider PIN",
            7 => "service provider PUK",
            8 => "network PIN",
            9 => "network PUK",
            10 => "phone-to-SIM PIN",
            11 => "corporate PIN",
            12 => "corporate PUK",
            13 => "phone-to-first-SIM PIN",
            14 => "phone-to-first-SIM PUK",
            15 => "network subset PIN",
            16 => "network subset PUK",
            _ => "an unlock code",
        })
    }

    /// Why a text cannot go now, for the error a send gets; `None` when it can.
    pub fn unavailable_reason(&self) -> Option<String> {
        if let Some(lock) = self.lock_text() {
            return Some(match self.lock {
                2 => "the SIM needs its PIN: unlock it in the system's mobile broadband settings, or set the SIM PIN".to_owned(),
                4 => "the SIM is blocked and needs its PUK: unlock it in a phone".to_owned(),
                _ => format!("the modem asks for the {lock}"),
            });
        }
        if self.available() {
            return None;
        }
        Some(match self.state {
            -1 => match self.failed_reason {
                2 => "the modem has no SIM".to_owned(),
                3 => "the modem cannot use its SIM".to_owned(),
                _ => "the modem failed".to_owned(),
            },
            2 => "the SIM is locked".to_owned(),
            3 | 4 => "the modem is turned off: enable mobile broadband in the system's settings"
                .to_owned(),
            _ if self.registration == Some(3) => "the network refused the modem".to_owned(),
            _ => format!(
                "the modem is not registered on a network ({})",
                self.state_text()
            ),
        })
    }

    /// Whether this modem is the one `id` names: its IMEI (`EquipmentIdentifier`),
    /// ModemManager's `DeviceIdentifier`, or its object path.
    pub fn is(&self, path: &str, id: &str) -> bool {
        !id.is_empty() && (self.equipment_id == id || self.device_id == id || path == id)
    }

    /// The id the modem setting uses for this modem: the IMEI where the modem gives one (it
    /// survives replugging, unlike the object path), else ModemManager's device id.
    pub fn setting_id(&self, path: &str) -> String {
        [&self.equipment_id, &self.device_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| path.to_owned())
    }
}

pub const STATE_LOCKED: i32 = 2;
pub const STATE_REGISTERED: i32 = 8;
pub const LOCK_NONE: u32 = 1;
pub const LOCK_SIM_PIN: u32 = 2;

/// `MMSmsPduType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduType {
    /// An SMS-DELIVER (3GPP) or a CDMA deliver: a text that arrived.
    Deliver,
    /// An SMS-SUBMIT or CDMA submit: a text to send, or sent.
    Submit,
    /// An SMS-STATUS-REPORT: the network's word on a sent text.
    StatusReport,
    Other,
}

impl PduType {
    pub fn of(n: u32) -> Self {
        match n {
            1 | 4 => PduType::Deliver,
            2 | 5 => PduType::Submit,
            3 => PduType::StatusReport,
            _ => PduType::Other,
        }
    }
}

/// `MMSmsState`.
pub const SMS_RECEIVING: u32 = 2;
pub const SMS_RECEIVED: u32 = 3;

/// What an `MMSmsDeliveryState` says about delivery: the class, and its meaning in words.
/// `None` for "unknown" (`0x100`: no report yet) and values this backend cannot read.
///
/// The 3GPP values are TP-ST itself (0x00–0xFF); the CDMA ones are 0x200–0x2FF (network
/// problems, permanent), 0x300–0x3FF (temporary) and 0x400– (other permanent errors).
pub fn delivery_state(state: u32) -> Option<(StatusClass, String)> {
    match state {
        0..=0xFF => {
            let status = u8::try_from(state).ok()?;
            Some((StatusClass::of(status), status_text(status)))
        }
        0x200..=0x2FF | 0x400..=0x4FF => Some((
            StatusClass::Failed,
            format!("not delivered (CDMA delivery state 0x{state:X})"),
        )),
        0x300..=0x3FF => Some((
            StatusClass::Pending,
            format!("temporary error, still trying (CDMA delivery state 0x{state:X})"),
        )),
        _ => None,
    }
}

/// ModemManager's `Timestamp` (ISO 8601, e.g. `2025-03-05T14:30:00+01:00`; older versions
/// give the offset as `+01`), in UTC.
pub fn timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // `+HH` without minutes.
    let padded = format!("{text}:00");
    if let Ok(t) = DateTime::parse_from_rfc3339(&padded) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(entries: &[(&str, Value<'static>)]) -> Properties {
        entries
            .iter()
            .map(|(k, v)| {
                let owned = OwnedValue::try_from(v.try_clone().unwrap_or(Value::U8(0)));
                (
                    (*k).to_owned(),
                    owned.unwrap_or_else(|_| OwnedValue::from(0u8)),
                )
            })
            .collect()
    }

    #[test]
    fn a_registered_unlocked_modem_is_available_and_roaming_follows_3gpp() {
        let modem = props(&[
            ("State", Value::I32(8)),
            ("UnlockRequired", Value::U32(1)),
            ("Manufacturer", Value::from("Quectel")),
            ("Model", Value::from("EG25")),
            ("OwnNumbers", Value::from(vec!["+14155550100".to_owned()])),
        ]);
        let home = props(&[
            ("RegistrationState", Value::U32(1)),
            ("OperatorName", Value::from("Test Mobile")),
        ]);
        let facts = ModemFacts::read(&modem, Some(&home));
        assert!(facts.available() && !facts.roaming());
        assert_eq!(facts.unavailable_reason(), None);
        assert_eq!(facts.label(), "Quectel EG25");
        assert_eq!(facts.own_numbers, ["+14155550100"]);
        assert_eq!(facts.operator.as_deref(), Some("Test Mobile"));
        for roaming in [5u32, 7, 10] {
            let visited = props(&[("RegistrationState", Value::U32(roaming))]);
            assert!(ModemFacts::read(&modem, Some(&visited)).roaming());
        }
        // A modem without the 3GPP interface (CDMA) is never taken for roaming.
        assert!(!ModemFacts::read(&modem, None).roaming());
    }

    #[test]
    fn locks_and_states_say_why_nothing_can_be_sent() {
        let facts = |state: i32, lock: u32| ModemFacts {
            state,
            lock,
            ..ModemFacts::default()
        };
        let pin = facts(2, 2);
        assert!(pin.locked() && !pin.available());
        assert!(pin.unavailable_reason().is_some_and(|r| r.contains("PIN")));
        assert!(facts(8, 4)
            .unavailable_reason()
            .is_some_and(|r| r.contains("PUK")));
        assert!(facts(3, 1)
            .unavailable_reason()
            .is_some_and(|r| r.contains("turned off")));
        assert!(facts(7, 1)
            .unavailable_reason()
            .is_some_and(|r| r.contains("searching")));
        let no_sim = ModemFacts {
            state: -1,
            failed_reason: 2,
            ..ModemFacts::default()
        };
        assert_eq!(
            no_sim.unavailable_reason().as_deref(),
            Some("the modem has no SIM")
        );
        // "Unknown" lock (0), as some drivers report before they know, locks nothing.
        assert!(facts(11, 0).available());
    }

    #[test]
    fn a_modem_is_named_by_imei_then_device_id_then_path() {
        let mut facts = ModemFacts {
            equipment_id: "490154203237518".into(),
            device_id: "abc123".into(),
            ..ModemFacts::default()
        };
        let path = "/org/freedesktop/ModemManager1/Modem/0";
        assert_eq!(facts.setting_id(path), "490154203237518");
        assert!(facts.is(path, "abc123") && facts.is(path, path));
        assert!(!facts.is(path, "") && !facts.is(path, "other"));
        facts.equipment_id.clear();
        assert_eq!(facts.setting_id(path), "abc123");
        facts.device_id.clear();
        assert_eq!(facts.setting_id(path), path);
    }

    #[test]
    fn delivery_states_are_tp_st_or_cdma() {
        assert_eq!(
            delivery_state(0x00).map(|d| d.0),
            Some(StatusClass::Delivered)
        );
        assert_eq!(
            delivery_state(0x21).map(|d| d.0),
            Some(StatusClass::Pending)
        );
        let failed = delivery_state(0x46);
        assert_eq!(failed.as_ref().map(|d| d.0), Some(StatusClass::Failed));
        assert!(failed.is_some_and(|d| d.1.contains("expired")));
        assert_eq!(delivery_state(0x100), None, "unknown: no report yet");
        assert_eq!(
            delivery_state(0x201).map(|d| d.0),
            Some(StatusClass::Failed)
        );
        assert_eq!(
            delivery_state(0x302).map(|d| d.0),
            Some(StatusClass::Pending)
        );
        assert_eq!(delivery_state(u32::MAX), None);
    }

    #[test]
    fn timestamps_in_every_form_modem_manager_writes() {
        let want = DateTime::parse_from_rfc3339("2025-03-05T13:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        assert_eq!(timestamp("2025-03-05T14:30:00+01:00"), want);
        assert_eq!(timestamp("2025-03-05T14:30:00+01"), want);
        assert_eq!(timestamp("2025-03-05T14:30:00+0100"), want);
        assert_eq!(timestamp("2025-03-05T13:30:00"), want);
        assert_eq!(timestamp("not a time"), None);
        assert_eq!(timestamp(""), None);
    }

    #[test]
    fn pdu_types() {
        assert_eq!(PduType::of(1), PduType::Deliver);
        assert_eq!(PduType::of(4), PduType::Deliver);
        assert_eq!(PduType::of(2), PduType::Submit);
        assert_eq!(PduType::of(3), PduType::StatusReport);
        assert_eq!(PduType::of(0), PduType::Other);
        assert_eq!(PduType::of(99), PduType::Other);
    }
}
