//! ModemManager as python-dbusmock plays it, on a private bus this process starts.
//!
//! `dbus-daemon --session --print-address --nofork` gives a bus of its own; python-dbusmock's
//! `modemmanager` template runs on it, extended by `modemmanager_messaging.py` (loaded with
//! dbusmock's own `AddTemplate`) with the `Modem.Messaging` and `Sms` interfaces. Both
//! processes are killed when the [`MockModemManager`] is dropped.
//!
//! When `dbus-daemon` or python-dbusmock is missing, [`MockModemManager::start`] returns
//! `None` after printing SKIPPED, or panics when `AIRTEXT_TEST_REQUIRE_DBUSMOCK=1` (as
//! `scripts/test.sh` sets, after installing both).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use zbus::zvariant::{OwnedObjectPath, Value};

pub const SERVICE: &str = "org.freedesktop.ModemManager1";
pub const ROOT: &str = "/org/freedesktop/ModemManager1";
pub const MOCK: &str = "org.freedesktop.DBus.Mock";
pub const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
pub const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
pub const SMS: &str = "org.freedesktop.ModemManager1.Sms";
/// The number `AddMessaging` gives the SIM.
pub const OWN_NUMBER: &str = "+14155550100";
/// The IMEI `AddMessaging` gives the modem.
pub const IMEI: &str = "490154203237518";

const EXTENSION: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/modemmanager_messaging.py"
);

/// A private bus with ModemManager mocked on it, and one modem: registered at home, SIM
/// unlocked.
pub struct MockModemManager {
    pub address: String,
    pub conn: zbus::Connection,
    pub modem: String,
    pub sim: String,
    _log: tempfile::TempDir,
    mock: Child,
    daemon: Child,
}

fn required() -> bool {
    std::env::var("AIRTEXT_TEST_REQUIRE_DBUSMOCK").is_ok_and(|v| v == "1")
}

/// SKIPPED (or a failure when required) for a missing tool.
fn missing(what: &str) -> Option<MockModemManager> {
    if required() {
        panic!("{what}, and AIRTEXT_TEST_REQUIRE_DBUSMOCK=1: install it (scripts/test.sh does)");
    }
    eprintln!("SKIPPED: {what} (install dbus and python-dbusmock to run this test)");
    None
}

impl MockModemManager {
    pub async fn start() -> Option<MockModemManager> {
        let dbusmock = Command::new("python3")
            .args(["-c", "import dbusmock"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if !dbusmock.is_ok_and(|s| s.success()) {
            return missing("python3 cannot import dbusmock (the Python package python-dbusmock)");
        }
        let Ok(mut daemon) = Command::new("dbus-daemon")
            .args(["--session", "--print-address", "--nofork"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        else {
            return missing("dbus-daemon is not installed (Debian package dbus)");
        };
        let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("dbus-daemon prints its address")
            .unwrap()
            .expect("an address line");
        let address = address.trim().to_owned();
        let log = tempfile::tempdir().unwrap();
        let log_file = std::fs::File::create(log.path().join("dbusmock.log")).unwrap();
        let mock = Command::new("python3")
            .args(["-m", "dbusmock", "--session", "--template", "modemmanager"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m dbusmock starts");
        let conn = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let mut this = MockModemManager {
            address,
            conn,
            modem: String::new(),
            sim: String::new(),
            _log: log,
            mock,
            daemon,
        };
        this.wait_for_service().await;
        this.call::<_, ()>(
            ROOT,
            MOCK,
            "AddTemplate",
            &(EXTENSION, HashMap::<&str, Value<'_>>::new()),
        )
        .await;
        let (modem, sim): (String, String) = this.call(ROOT, MOCK, "AddSimpleModem", &()).await;
        this.call::<_, ()>(ROOT, MOCK, "AddMessaging", &(modem.as_str(), OWN_NUMBER))
            .await;
        this.modem = modem;
        this.sim = sim;
        this.update(MODEM, &[("State", Value::I32(8))]).await;
        this.update(MODEM_3GPP, &[("RegistrationState", Value::U32(1))])
            .await;
        Some(this)
    }

    /// Polls until dbusmock owns ModemManager's name (it takes a moment to start Python).
    async fn wait_for_service(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let owned: bool = self
                .call_on(
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "NameHasOwner",
                    &(SERVICE,),
                )
                .await;
            if owned {
                return;
            }
            if let Ok(Some(status)) = self.mock.try_wait() {
                panic!("dbusmock exited ({status}): {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dbusmock never took {SERVICE}: {}", self.log());
    }

    /// What dbusmock logged (every call it took).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._log.path().join("dbusmock.log")).unwrap_or_default()
    }

    async fn call_on<B, R>(
        &self,
        destination: &str,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> R
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type,
    {
        let reply = self
            .conn
            .call_method(Some(destination), path, Some(interface), method, body)
            .await
            .unwrap_or_else(|e| panic!("{interface}.{method} on {path}: {e}\n{}", self.log()));
        reply.body().deserialize().unwrap()
    }

    /// Calls a method of the mocked ModemManager.
    pub async fn call<B, R>(&self, path: &str, interface: &str, method: &str, body: &B) -> R
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type,
    {
        self.call_on(SERVICE, path, interface, method, body).await
    }

    /// Changes properties of the modem with dbusmock's `UpdateProperties` (which emits
    /// `PropertiesChanged`, as ModemManager does).
    pub async fn update(&self, interface: &str, properties: &[(&str, Value<'_>)]) {
        self.update_at(&self.modem.clone(), interface, properties)
            .await;
    }

    pub async fn update_at(&self, path: &str, interface: &str, properties: &[(&str, Value<'_>)]) {
        let map: HashMap<&str, &Value<'_>> = properties.iter().map(|(k, v)| (*k, v)).collect();
        self.call::<_, ()>(path, MOCK, "UpdateProperties", &(interface, map))
            .await;
    }

    /// A text arrives whole.
    pub async fn receive_sms(&self, from: &str, text: &str, timestamp: &str) -> String {
        let path: OwnedObjectPath = self
            .call(ROOT, MOCK, "ReceiveSms", &(from, text, timestamp))
            .await;
        path.as_str().to_owned()
    }

    /// The first part of a multi-part text arrives; [`MockModemManager::finish_receiving`]
    /// brings the rest.
    pub async fn receive_sms_in_parts(&self, from: &str, text: &str, timestamp: &str) -> String {
        let path: OwnedObjectPath = self
            .call(ROOT, MOCK, "ReceiveSmsInParts", &(from, text, timestamp))
            .await;
        path.as_str().to_owned()
    }

    pub async fn finish_receiving(&self, sms: &str) {
        let path = zbus::zvariant::ObjectPath::try_from(sms).unwrap();
        self.call::<_, ()>(ROOT, MOCK, "FinishReceiving", &(path,))
            .await;
    }

    /// The network's status report on the text sent with `reference`.
    pub async fn receive_status_report(&self, reference: u32, number: &str, state: u32) {
        let _: OwnedObjectPath = self
            .call(
                ROOT,
                MOCK,
                "ReceiveStatusReport",
                &(reference, number, state),
            )
            .await;
    }

    pub async fn fail_next_send(&self, error: &str, message: &str) {
        self.call::<_, ()>(ROOT, MOCK, "FailNextSend", &(error, message))
            .await;
    }

    pub async fn set_sim_pin(&self, pin: &str) {
        self.call::<_, ()>(ROOT, MOCK, "SetSimPin", &(pin,)).await;
    }

    /// `(number, text, delivery-report-request, MessageReference)` of every text sent.
    pub async fn sent(&self) -> Vec<(String, String, bool, u32)> {
        self.call(ROOT, MOCK, "SentMessages", &()).await
    }

    /// The SMS objects that exist now.
    pub async fn sms_paths(&self) -> Vec<String> {
        let paths: Vec<OwnedObjectPath> = self.call(ROOT, MOCK, "SmsPaths", &()).await;
        paths.into_iter().map(|p| p.as_str().to_owned()).collect()
    }

    /// Polls until the modem holds exactly `want` SMS objects.
    pub async fn wait_for_sms_paths(&self, what: &str, want: &[String]) {
        let mut have = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            have = self.sms_paths().await;
            if have == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{what}: the modem holds {have:?}, not {want:?}\n{}",
            self.log()
        );
    }

    /// The modem is unplugged: removed, and `InterfacesRemoved` emitted as ModemManager does.
    pub async fn unplug(&self) {
        self.call::<_, ()>(ROOT, MOCK, "RemoveObject", &(self.modem.as_str(),))
            .await;
        let path = zbus::zvariant::ObjectPath::try_from(self.modem.as_str()).unwrap();
        let args: Vec<Value<'_>> = vec![
            Value::from(path),
            Value::from(vec![MODEM.to_owned(), MODEM_3GPP.to_owned()]),
        ];
        self.call::<_, ()>(
            ROOT,
            MOCK,
            "EmitSignal",
            &(
                "org.freedesktop.DBus.ObjectManager",
                "InterfacesRemoved",
                "oas",
                args,
            ),
        )
        .await;
    }
}

impl Drop for MockModemManager {
    fn drop(&mut self) {
        let _ = self.mock.start_kill();
        let _ = self.daemon.start_kill();
    }
}
