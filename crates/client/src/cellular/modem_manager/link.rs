//! The D-Bus calls the backend makes to ModemManager, each typed and with a time limit, and
//! what their errors mean for the cellular path.

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zbus::zvariant::{DynamicType, ObjectPath, OwnedObjectPath, Value};
use zbus::Connection;

use super::api::{self, ModemFacts, Properties};
use super::Bus;
use crate::cellular::CellularError;

/// One SMS object as ModemManager shows it (`org.freedesktop.ModemManager1.Sms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsFacts {
    pub pdu_type: api::PduType,
    /// `MMSmsState`.
    pub state: u32,
    pub number: String,
    pub text: String,
    /// The length of `Data` (binary messages carry it instead of `Text`).
    pub data_len: usize,
    pub timestamp: String,
    pub message_reference: u32,
    /// `MMSmsDeliveryState`.
    pub delivery_state: u32,
}

impl SmsFacts {
    fn read(props: &Properties) -> Self {
        SmsFacts {
            pdu_type: api::PduType::of(api::u32_of(props, "PduType").unwrap_or(0)),
            state: api::u32_of(props, "State").unwrap_or(0),
            number: api::string_of(props, "Number").unwrap_or_default(),
            text: api::string_of(props, "Text").unwrap_or_default(),
            data_len: props
                .get("Data")
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| Vec::<u8>::try_from(v).ok())
                .map_or(0, |d| d.len()),
            timestamp: api::string_of(props, "Timestamp").unwrap_or_default(),
            message_reference: api::u32_of(props, "MessageReference").unwrap_or(0),
            delivery_state: api::u32_of(props, "DeliveryState").unwrap_or(0x100),
        }
    }
}

/// A connection to the bus ModemManager is on.
#[derive(Debug, Clone)]
pub struct Link {
    pub conn: Connection,
    call_timeout: Duration,
}

impl Link {
    pub async fn connect(bus: &Bus, call_timeout: Duration) -> Result<Link, CellularError> {
        let connecting = async {
            match bus {
                Bus::System => Connection::system().await,
                Bus::Address(address) => {
                    zbus::connection::Builder::address(address.as_str())?
                        .build()
                        .await
                }
            }
        };
        let conn = tokio::time::timeout(call_timeout, connecting)
            .await
            .map_err(|_| {
                CellularError::Unavailable(format!(
                    "the {bus} did not answer within {call_timeout:?}"
                ))
            })?
            .map_err(|e| CellularError::Unavailable(format!("cannot reach the {bus}: {e}")))?;
        Ok(Link { conn, call_timeout })
    }

    async fn call<B, R>(
        &self,
        destination: &str,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
        within: Duration,
    ) -> Result<R, CellularError>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + zbus::zvariant::Type,
    {
        let call = self
            .conn
            .call_method(Some(destination), path, Some(interface), method, body);
        let reply = tokio::time::timeout(within, call)
            .await
            .map_err(|_| {
                CellularError::Io(format!(
                    "ModemManager did not answer {interface}.{method} within {within:?}"
                ))
            })?
            .map_err(|e| call_error(&e, method))?;
        reply.body().deserialize::<R>().map_err(|e| {
            CellularError::Io(format!(
                "ModemManager's answer to {method} could not be read: {e}"
            ))
        })
    }

    async fn call_mm<B, R>(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<R, CellularError>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + zbus::zvariant::Type,
    {
        self.call(
            api::SERVICE,
            path,
            interface,
            method,
            body,
            self.call_timeout,
        )
        .await
    }

    /// Whether ModemManager is on the bus now (asked without starting it).
    pub async fn service_running(&self) -> bool {
        self.call::<_, bool>(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            &(api::SERVICE,),
            self.call_timeout,
        )
        .await
        .unwrap_or(false)
    }

    /// Every modem ModemManager lists, by object path, in path order.
    pub async fn modems(&self) -> Result<Vec<(String, ModemFacts)>, CellularError> {
        let objects: HashMap<OwnedObjectPath, HashMap<String, Properties>> = self
            .call_mm(api::ROOT, api::OBJECT_MANAGER, "GetManagedObjects", &())
            .await?;
        let mut modems: Vec<(String, ModemFacts)> = objects
            .into_iter()
            .filter_map(|(path, interfaces)| {
                let modem = interfaces.get(api::MODEM)?;
                let facts = ModemFacts::read(modem, interfaces.get(api::MODEM_3GPP));
                Some((path.as_str().to_owned(), facts))
            })
            .collect();
        modems.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(modems)
    }

    pub async fn properties(
        &self,
        path: &str,
        interface: &str,
    ) -> Result<Properties, CellularError> {
        self.call_mm(path, api::PROPERTIES, "GetAll", &(interface,))
            .await
    }

    /// The modem's facts now (`Modem`, and `Modem3gpp` where it has it).
    pub async fn modem(&self, path: &str) -> Result<ModemFacts, CellularError> {
        let modem = self.properties(path, api::MODEM).await?;
        let modem_3gpp = self.properties(path, api::MODEM_3GPP).await.ok();
        Ok(ModemFacts::read(&modem, modem_3gpp.as_ref()))
    }

    pub async fn sms(&self, path: &str) -> Result<SmsFacts, CellularError> {
        Ok(SmsFacts::read(&self.properties(path, api::SMS).await?))
    }

    /// `Messaging.Create`: a new SMS object to send.
    pub async fn create_sms(
        &self,
        modem: &str,
        to: &str,
        text: &str,
        delivery_report: bool,
    ) -> Result<String, CellularError> {
        let mut properties: HashMap<&str, Value<'_>> = HashMap::new();
        properties.insert("number", Value::from(to));
        properties.insert("text", Value::from(text));
        properties.insert("delivery-report-request", Value::from(delivery_report));
        let path: OwnedObjectPath = self
            .call_mm(modem, api::MESSAGING, "Create", &(properties,))
            .await?;
        Ok(path.as_str().to_owned())
    }

    /// `Sms.Send`: returns once the network took every part (or refused one).
    pub async fn send_sms(&self, sms: &str, within: Duration) -> Result<(), CellularError> {
        self.call::<_, ()>(api::SERVICE, sms, api::SMS, "Send", &(), within)
            .await
    }

    /// `Messaging.Delete`: removes the SMS from ModemManager and from the modem's storage.
    pub async fn delete_sms(&self, modem: &str, sms: &str) -> Result<(), CellularError> {
        let path = ObjectPath::try_from(sms)
            .map_err(|e| CellularError::Io(format!("SMS path {sms:?}: {e}")))?;
        self.call_mm::<_, ()>(modem, api::MESSAGING, "Delete", &(path,))
            .await
    }

    /// `Messaging.List`: the SMS objects the modem holds.
    pub async fn list_sms(&self, modem: &str) -> Result<Vec<String>, CellularError> {
        let paths: Vec<OwnedObjectPath> = self.call_mm(modem, api::MESSAGING, "List", &()).await?;
        Ok(paths.into_iter().map(|p| p.as_str().to_owned()).collect())
    }

    /// `Sim.SendPin`.
    pub async fn send_pin(&self, sim: &str, pin: &str) -> Result<(), CellularError> {
        self.call_mm::<_, ()>(sim, api::SIM, "SendPin", &(pin,))
            .await
    }
}

/// What a failed call means for the cellular path. ModemManager's errors are named
/// `org.freedesktop.ModemManager1.Error.<Domain>.<Error>`; `MessageError` is the network or
/// SIM refusing an SMS (3GPP TS 27.005 `+CMS ERROR`), `MobileEquipment` the SIM or modem
/// (`+CME ERROR`).
pub fn call_error(error: &zbus::Error, method: &str) -> CellularError {
    let (name, detail) = match error {
        zbus::Error::MethodError(name, detail, _) => {
            (name.as_str().to_owned(), detail.clone().unwrap_or_default())
        }
        zbus::Error::FDO(e) => {
            let text = e.to_string();
            let name = text.split(':').next().unwrap_or_default().trim().to_owned();
            (name, text)
        }
        other => return CellularError::Io(format!("ModemManager ({method}): {other}")),
    };
    let short = name
        .strip_prefix("org.freedesktop.ModemManager1.Error.")
        .unwrap_or(&name);
    let message = if detail.is_empty() {
        format!("ModemManager refused {method}: {short}")
    } else {
        format!("ModemManager refused {method}: {detail} ({short})")
    };
    if short.starts_with("MessageError.") {
        CellularError::Rejected {
            code: None,
            message,
        }
    } else if short.starts_with("MobileEquipment.")
        || short.starts_with("Core.WrongState")
        || short.starts_with("Core.Unsupported")
        || name.starts_with("org.freedesktop.DBus.Error.ServiceUnknown")
        || name.starts_with("org.freedesktop.DBus.Error.UnknownObject")
        || name.starts_with("org.freedesktop.DBus.Error.UnknownMethod")
        || name.starts_with("org.freedesktop.DBus.Error.UnknownInterface")
    {
        CellularError::Unavailable(message)
    } else {
        CellularError::Io(message)
    }
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::System => f.write_str("system D-Bus"),
            Bus::Address(address) => write!(f, "D-Bus at {address}"),
        }
    }
}
