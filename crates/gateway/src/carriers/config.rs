//! Carrier configuration: the `[[carriers]]` tables of the gateway's TOML file.
//!
//! ```toml
//! [[carriers]]
//! name = "smsc1"          # webhooks: POST /v1/carriers/{name}/inbound and …/status
//! kind = "smpp"           # "simulator" | "smpp" | "twilio"
//! host = "127.0.0.1"
//! port = 2775
//! system_id = "airtext"
//! password = "secret"
//! window = 32
//! max_per_second = 500
//! any_sender = false
//! numbers = ["+14155550100"]
//! rates = [ { prefix = "+1", cost_per_segment = 0.004 } ]
//! ```
//!
//! A Twilio carrier with `provision = true` also sells numbers: searches include what its
//! account could buy, claiming one buys it (see `carriers::twilio::numbers`).
//!
//! Each kind has its own keys and refuses unknown ones, so a misspelt key stops start-up with
//! its name instead of silently taking a default. Secrets may come from the environment:
//! `AIRTEXT_CARRIER_<NAME>_PASSWORD` (SMPP) and `AIRTEXT_CARRIER_<NAME>_AUTH_TOKEN` (Twilio),
//! with `<NAME>` upper-cased and `-` turned into `_`.

use serde::Deserialize;

/// One price: messages to numbers starting with `prefix` cost `cost_per_segment` per segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateEntry {
    /// An E.164 prefix, `+` alone for "anywhere".
    pub prefix: String,
    pub cost_per_segment: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CarrierConfig {
    Simulator(SimulatorCarrierConfig),
    Smpp(SmppCarrierConfig),
    Twilio(TwilioCarrierConfig),
}

/// The simulator as a named carrier with its own rates (for routing demos and tests).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorCarrierConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub any_sender: bool,
    #[serde(default)]
    pub numbers: Vec<String>,
    #[serde(default = "anywhere_free")]
    pub rates: Vec<RateEntry>,
    #[serde(default)]
    pub max_per_second: Option<u32>,
}

/// An SMPP 3.4 SMSC this gateway binds to as an ESME (transceiver).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppCarrierConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    /// Or `AIRTEXT_CARRIER_<NAME>_PASSWORD`.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub system_type: Option<String>,
    /// Outstanding `submit_sm` without a response.
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(default)]
    pub max_per_second: Option<u32>,
    /// May send from any of our DIDs, not only its own numbers.
    #[serde(default)]
    pub any_sender: bool,
    #[serde(default)]
    pub numbers: Vec<String>,
    #[serde(default)]
    pub rates: Vec<RateEntry>,
    /// Send long texts whole in the `message_payload` TLV instead of UDH-concatenated parts.
    #[serde(default)]
    pub use_message_payload: bool,
    /// Ask for delivery receipts (`registered_delivery` = 1).
    #[serde(default = "yes")]
    pub delivery_receipts: bool,
    /// Seconds between `enquire_link` keep-alives.
    #[serde(default = "default_enquire_link_secs")]
    pub enquire_link_secs: u64,
    /// Binds the carrier allows at once, across every gateway node.
    #[serde(default = "one")]
    pub max_binds: u32,
}

/// A Twilio account (or anything that speaks its Messaging REST API).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioCarrierConfig {
    pub name: String,
    #[serde(default = "default_twilio_url")]
    pub base_url: String,
    pub account_sid: String,
    /// Or `AIRTEXT_CARRIER_<NAME>_AUTH_TOKEN`.
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    #[serde(default)]
    pub max_per_second: Option<u32>,
    #[serde(default)]
    pub any_sender: bool,
    #[serde(default)]
    pub numbers: Vec<String>,
    #[serde(default)]
    pub rates: Vec<RateEntry>,
    /// Offer numbers Twilio has for sale in number searches, buy one when a user claims it
    /// and give it back when its quarantine ends (needs the gateway's `public_url`).
    #[serde(default)]
    pub provision: bool,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn default_window() -> u32 {
    32
}

fn default_enquire_link_secs() -> u64 {
    30
}

fn default_twilio_url() -> String {
    "https://api.twilio.com".to_owned()
}

fn anywhere_free() -> Vec<RateEntry> {
    vec![RateEntry {
        prefix: "+".to_owned(),
        cost_per_segment: 0.0,
    }]
}

impl CarrierConfig {
    pub fn name(&self) -> &str {
        match self {
            CarrierConfig::Simulator(c) => &c.name,
            CarrierConfig::Smpp(c) => &c.name,
            CarrierConfig::Twilio(c) => &c.name,
        }
    }

    pub fn numbers(&self) -> &[String] {
        match self {
            CarrierConfig::Simulator(c) => &c.numbers,
            CarrierConfig::Smpp(c) => &c.numbers,
            CarrierConfig::Twilio(c) => &c.numbers,
        }
    }

    pub fn rates(&self) -> &[RateEntry] {
        match self {
            CarrierConfig::Simulator(c) => &c.rates,
            CarrierConfig::Smpp(c) => &c.rates,
            CarrierConfig::Twilio(c) => &c.rates,
        }
    }

    pub fn any_sender(&self) -> bool {
        match self {
            CarrierConfig::Simulator(c) => c.any_sender,
            CarrierConfig::Smpp(c) => c.any_sender,
            CarrierConfig::Twilio(c) => c.any_sender,
        }
    }

    pub fn max_per_second(&self) -> Option<u32> {
        match self {
            CarrierConfig::Simulator(c) => c.max_per_second,
            CarrierConfig::Smpp(c) => c.max_per_second,
            CarrierConfig::Twilio(c) => c.max_per_second,
        }
    }

    /// The environment variable that may hold this carrier's secret.
    pub fn secret_env(&self, what: &str) -> String {
        format!(
            "AIRTEXT_CARRIER_{}_{}",
            self.name().to_ascii_uppercase().replace('-', "_"),
            what
        )
    }

    /// Checks what serde cannot; each error names `carriers[i].key`.
    pub fn validate(&self, index: usize) -> anyhow::Result<()> {
        let at = |key: &str| format!("carriers[{index}].{key} (carrier {:?})", self.name());
        let name = self.name();
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            anyhow::bail!(
                "{}: use 1–32 letters, digits, '-' or '_' (it appears in webhook URLs)",
                at("name")
            );
        }
        for (i, number) in self.numbers().iter().enumerate() {
            match airtext_sms::Address::parse(number, None) {
                Ok(airtext_sms::Address::Phone(e164)) if &e164 == number => {}
                _ => anyhow::bail!(
                    "{}: {number:?} is not an E.164 number such as +14155550100",
                    at(&format!("numbers[{i}]"))
                ),
            }
        }
        for (i, rate) in self.rates().iter().enumerate() {
            let digits = rate.prefix.strip_prefix('+');
            if !digits.is_some_and(|d| d.chars().all(|c| c.is_ascii_digit())) {
                anyhow::bail!(
                    "{}: {:?} must be + followed by digits (\"+\" alone matches every number)",
                    at(&format!("rates[{i}].prefix")),
                    rate.prefix
                );
            }
            if !rate.cost_per_segment.is_finite() || rate.cost_per_segment < 0.0 {
                anyhow::bail!(
                    "{}: must be a number ≥ 0",
                    at(&format!("rates[{i}].cost_per_segment"))
                );
            }
        }
        if self.max_per_second() == Some(0) {
            anyhow::bail!(
                "{}: must be at least 1 (or leave it out)",
                at("max_per_second")
            );
        }
        match self {
            CarrierConfig::Simulator(_) => {}
            CarrierConfig::Smpp(c) => {
                if c.host.is_empty() {
                    anyhow::bail!("{}: give the SMSC's host name or address", at("host"));
                }
                if c.port == 0 {
                    anyhow::bail!("{}: give the SMSC's port (often 2775)", at("port"));
                }
                if c.system_id.is_empty() || c.system_id.len() > 15 {
                    anyhow::bail!("{}: SMPP allows 1–15 characters", at("system_id"));
                }
                if c.window == 0 || c.window > 1024 {
                    anyhow::bail!("{}: must be 1–1024", at("window"));
                }
                if c.enquire_link_secs == 0 {
                    anyhow::bail!("{}: must be at least 1", at("enquire_link_secs"));
                }
                if c.max_binds == 0 {
                    anyhow::bail!("{}: must be at least 1", at("max_binds"));
                }
            }
            CarrierConfig::Twilio(c) => {
                if !(c.base_url.starts_with("http://") || c.base_url.starts_with("https://")) {
                    anyhow::bail!("{}: use an http:// or https:// URL", at("base_url"));
                }
                if !c.account_sid.starts_with("AC") {
                    anyhow::bail!("{}: a Twilio account SID starts with AC", at("account_sid"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        carriers: Vec<CarrierConfig>,
    }

    fn parse(text: &str) -> Result<File, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn the_documented_example_parses() {
        let file = parse(
            r#"
            [[carriers]]
            name = "smsc1"
            kind = "smpp"
            host = "127.0.0.1"
            port = 2775
            system_id = "airtext"
            password = "secret"
            window = 32
            max_per_second = 500
            any_sender = false
            numbers = ["+14155550100"]
            rates = [ { prefix = "+1", cost_per_segment = 0.004 } ]
            [[carriers]]
            name = "tw"
            kind = "twilio"
            base_url = "https://api.twilio.com"
            account_sid = "ACxxxxxxxx"
            auth_token = "token"
            numbers = ["+12125550100"]
            rates = [ { prefix = "+", cost_per_segment = 0.0079 } ]
            provision = true
            "#,
        );
        let file = file.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.carriers.len(), 2);
        for (i, carrier) in file.carriers.iter().enumerate() {
            assert!(carrier.validate(i).is_ok(), "{:?}", carrier.validate(i));
        }
        assert_eq!(
            file.carriers.first().map(CarrierConfig::name),
            Some("smsc1")
        );
        assert!(matches!(
            file.carriers.get(1),
            Some(CarrierConfig::Twilio(TwilioCarrierConfig {
                provision: true,
                ..
            }))
        ));
    }

    #[test]
    fn unknown_keys_and_kinds_are_named() {
        let error = parse("[[carriers]]\nname = \"a\"\nkind = \"smpp\"\nhost = \"h\"\nport = 1\nsystem_id = \"x\"\nwindw = 3\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("windw"), "{error}");
        let error = parse("[[carriers]]\nname = \"a\"\nkind = \"carrier-pigeon\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("carrier-pigeon"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let file = parse(
            "[[carriers]]\nname = \"a\"\nkind = \"twilio\"\naccount_sid = \"AC1\"\nrates = [{prefix = \"1\", cost_per_segment = 0.1}]\n",
        );
        let file = file.unwrap_or_else(|e| panic!("{e}"));
        let error = file
            .carriers
            .first()
            .and_then(|c| c.validate(0).err())
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("carriers[0].rates[0].prefix"), "{error}");
    }
}
