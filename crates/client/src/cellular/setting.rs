//! The modem setting: which backend gives this device its cellular path, and the modems there
//! are to choose from.
//!
//! The setting is one string (the app's Settings and the CLI's `--modem` keep it):
//! - empty or `auto`: on Linux, ModemManager's first modem when ModemManager is on the system
//!   bus and lists one; otherwise no cellular;
//! - `none`: no cellular;
//! - `modemmanager:ID`: the ModemManager modem with that IMEI, device id or object path (as
//!   [`ModemInfo::setting`] gives it), waited for while it is unplugged;
//! - anything else: the serial port of an AT-command modem, for machines without
//!   ModemManager (e.g. `/dev/ttyUSB2`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Cellular, CellularError, NoCellular};

/// The prefix of a setting that names a ModemManager modem.
pub const MODEM_MANAGER_SETTING: &str = "modemmanager:";

/// A modem ModemManager lists, for Settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModemInfo {
    /// The modem setting that selects this modem (`modemmanager:<IMEI>`).
    pub setting: String,
    /// "Manufacturer Model", for people.
    pub label: String,
    /// Its ModemManager object path (changes when it is plugged in again).
    pub path: String,
    pub manufacturer: String,
    pub model: String,
    /// The SIM's own numbers, where the SIM knows them.
    pub own_numbers: Vec<String>,
    /// The network it is registered on.
    pub operator: Option<String>,
    /// ModemManager's state in words ("registered", "disabled", …).
    pub state: String,
    /// What the SIM asks for before it works ("SIM PIN", "SIM PUK"), if anything.
    pub sim_lock: Option<String>,
    /// A text could be sent through it now.
    pub available: bool,
    pub roaming: bool,
    /// Why not, when it is not available.
    pub unavailable_reason: Option<String>,
}

/// What a modem setting asks for (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModemSetting {
    Automatic,
    Off,
    /// A ModemManager modem; an empty id means the first listed.
    ModemManager(String),
    /// An AT-command modem on this serial port.
    Serial(String),
}

impl ModemSetting {
    pub fn parse(setting: &str) -> ModemSetting {
        let setting = setting.trim();
        if let Some(id) = setting.strip_prefix(MODEM_MANAGER_SETTING) {
            return ModemSetting::ModemManager(id.trim().to_owned());
        }
        match setting.to_ascii_lowercase().as_str() {
            "" | "auto" => ModemSetting::Automatic,
            "none" | "off" => ModemSetting::Off,
            _ => ModemSetting::Serial(setting.to_owned()),
        }
    }
}

/// Opens the backend the setting asks for; `pin` is the SIM PIN, sent once if the SIM asks.
/// Fails only when an explicitly chosen modem cannot be used (a serial port that does not
/// open or answer, ModemManager not running); `auto` falls back to no cellular.
pub async fn open(
    setting: &ModemSetting,
    pin: Option<String>,
) -> Result<Arc<dyn Cellular>, CellularError> {
    match setting {
        ModemSetting::Off => Ok(Arc::new(NoCellular)),
        ModemSetting::Automatic => Ok(automatic(pin).await),
        ModemSetting::ModemManager(id) => modem_manager(id, pin).await,
        ModemSetting::Serial(path) => {
            let mut config = super::at_modem::AtModemConfig::new(path.as_str());
            config.pin = pin;
            match super::at_modem::AtModem::open(config).await {
                Ok(modem) => Ok(Arc::new(modem)),
                Err(error) => Err(serial_error(path, error.into()).await),
            }
        }
    }
}

/// The modems ModemManager lists (empty where there is no ModemManager, or it cannot be
/// reached).
pub async fn list_modems() -> Vec<ModemInfo> {
    #[cfg(target_os = "linux")]
    {
        match super::modem_manager::list_modems(&super::modem_manager::Bus::System).await {
            Ok(modems) => modems,
            Err(error) => {
                tracing::debug!(%error, "no ModemManager to list modems from");
                Vec::new()
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
async fn automatic(pin: Option<String>) -> Arc<dyn Cellular> {
    if list_modems().await.is_empty() {
        return Arc::new(NoCellular);
    }
    match modem_manager("", pin).await {
        Ok(modem) => modem,
        Err(error) => {
            tracing::warn!(%error, "ModemManager lists a modem but cannot be used");
            Arc::new(NoCellular)
        }
    }
}

#[cfg(not(target_os = "linux"))]
async fn automatic(_pin: Option<String>) -> Arc<dyn Cellular> {
    Arc::new(NoCellular)
}

#[cfg(target_os = "linux")]
async fn modem_manager(id: &str, pin: Option<String>) -> Result<Arc<dyn Cellular>, CellularError> {
    use super::modem_manager::{ModemManagerConfig, ModemManagerModem};
    let mut config = ModemManagerConfig::new();
    config.modem = Some(id.to_owned()).filter(|id| !id.is_empty());
    config.pin = pin;
    Ok(Arc::new(ModemManagerModem::connect(config).await?))
}

#[cfg(not(target_os = "linux"))]
async fn modem_manager(
    _id: &str,
    _pin: Option<String>,
) -> Result<Arc<dyn Cellular>, CellularError> {
    Err(CellularError::Unavailable(
        "ModemManager exists only on Linux: choose the modem's serial port".to_owned(),
    ))
}

/// A serial port that would not open: on Linux, say so when ModemManager is the likely owner.
async fn serial_error(path: &str, error: CellularError) -> CellularError {
    let modems = list_modems().await;
    if modems.is_empty() {
        return error;
    }
    let names: Vec<String> = modems.iter().map(|m| m.setting.clone()).collect();
    CellularError::Unavailable(format!(
        "{error}. ModemManager drives {} here and may hold {path}: choose {} instead",
        if modems.len() == 1 {
            "a modem"
        } else {
            "modems"
        },
        names.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        assert_eq!(ModemSetting::parse(""), ModemSetting::Automatic);
        assert_eq!(ModemSetting::parse(" Auto "), ModemSetting::Automatic);
        assert_eq!(ModemSetting::parse("none"), ModemSetting::Off);
        assert_eq!(
            ModemSetting::parse("modemmanager:490154203237518"),
            ModemSetting::ModemManager("490154203237518".into())
        );
        assert_eq!(
            ModemSetting::parse("modemmanager:"),
            ModemSetting::ModemManager(String::new())
        );
        assert_eq!(
            ModemSetting::parse("/dev/ttyUSB2"),
            ModemSetting::Serial("/dev/ttyUSB2".into())
        );
    }

    #[tokio::test]
    async fn off_is_no_cellular() {
        let cellular = open(&ModemSetting::Off, None).await;
        assert!(cellular.is_ok_and(|c| !c.status().available));
    }
}
