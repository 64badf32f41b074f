//! Gateway configuration: defaults, then the TOML file (`--config`), then environment
//! variables and flags (`AIRTEXT_*` / `--…`), later ones winning.
//!
//! Every flag has a config key and an environment variable of the same name. Unknown keys in
//! the file are refused with the key's name, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

use crate::carriers::config::CarrierConfig;

/// Command line of `airtext-gateway`.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "airtext-gateway", version, about = "The Airtext gateway")]
pub struct Args {
    /// A TOML configuration file.
    #[arg(long, env = "AIRTEXT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve HTTP on [default: 127.0.0.1:8080].
    #[arg(long, env = "AIRTEXT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// `sqlite://PATH` or `postgres://…` [default: sqlite://airtext.db].
    #[arg(long, env = "AIRTEXT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// How carriers and browsers reach this gateway, e.g. https://sms.example.org.
    #[arg(long, env = "AIRTEXT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// SMTP server for e-mail verification codes, e.g. smtp://127.0.0.1:25 or
    /// smtps://user:pass@mail.example.org. Without it, codes go to the simulator's outbox.
    #[arg(long, env = "AIRTEXT_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The From address of e-mail the gateway sends.
    #[arg(long, env = "AIRTEXT_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Run the simulator carrier (virtual outside phones; every signed-in account may text in
    /// as one), for demos and tests only [default: false].
    #[arg(long, env = "AIRTEXT_SIMULATOR")]
    pub simulator: Option<bool>,
    /// Longest message body, in characters [default: 1600].
    #[arg(long, env = "AIRTEXT_MAX_BODY_CHARS")]
    pub max_body_chars: Option<usize>,
    /// Days a released number waits before anyone can claim it again [default: 45].
    #[arg(long, env = "AIRTEXT_NUMBER_QUARANTINE_DAYS")]
    pub number_quarantine_days: Option<u32>,
    /// Region used to read national phone numbers, e.g. US [default: US].
    #[arg(long, env = "AIRTEXT_DEFAULT_REGION")]
    pub default_region: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "AIRTEXT_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds shutdown waits for open requests before closing their connections [default: 30].
    #[arg(long, env = "AIRTEXT_SHUTDOWN_TIMEOUT", value_name = "SECS")]
    pub shutdown_timeout: Option<u64>,
    /// Most connections served at once; more wait until one closes [default: from the
    /// open-file limit].
    #[arg(long, env = "AIRTEXT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Proxies whose forwarding header is believed, comma-separated CIDRs or addresses
    /// [default: none].
    #[arg(long, env = "AIRTEXT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// PEM certificate chain to serve HTTPS with (with --tls-key); re-read on SIGHUP.
    #[arg(long, env = "AIRTEXT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; re-read on SIGHUP.
    #[arg(long, env = "AIRTEXT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address to serve Prometheus `/metrics` on (only there) [default: off].
    #[arg(long, env = "AIRTEXT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the web portal from this folder (a `ui/dist` build) instead of the copy built
    /// into the binary.
    #[arg(long, env = "AIRTEXT_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The resolved configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub default_region: String,
    pub number_quarantine_days: u32,
    pub log_format: LogFormat,
    /// Seconds shutdown waits for open requests; then their connections are closed.
    pub shutdown_timeout_secs: u64,
    /// Proxies (CIDRs or addresses) whose forwarding header names the client.
    pub trusted_proxies: crate::server::client_addr::TrustedProxies,
    /// Which header trusted proxies name the client in.
    pub forwarded_header: crate::server::client_addr::ForwardedHeader,
    /// PEM certificate chain and key: with both, the gateway serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Where Prometheus `/metrics` is served; never on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Connections: how many at once, how long one may idle or take over its headers.
    pub connections: ConnectionLimits,
    pub limits: Limits,
    pub rate_limits: RateLimits,
    pub simulator: SimulatorConfig,
    pub verification: VerificationConfig,
    /// The outbound queue and least-cost routing (`[queue]`).
    pub queue: QueueConfig,
    /// Automatic replies to STOP, START and HELP (`[opt_outs]`).
    pub opt_outs: OptOutConfig,
    /// Carriers in the order they are listed; none means the simulator alone (when
    /// `simulator.enabled`), else no carrier.
    pub carriers: Vec<CarrierConfig>,
    /// The web portal's files from this folder instead of the binary (`--ui-dir`).
    pub ui_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://airtext.db".to_owned(),
            public_url: None,
            smtp_url: None,
            mail_from: "Airtext <no-reply@airtext.invalid>".to_owned(),
            default_region: "US".to_owned(),
            number_quarantine_days: 45,
            log_format: LogFormat::Text,
            shutdown_timeout_secs: 30,
            trusted_proxies: Default::default(),
            forwarded_header: Default::default(),
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
            connections: ConnectionLimits::default(),
            limits: Limits::default(),
            rate_limits: RateLimits::default(),
            simulator: SimulatorConfig::default(),
            verification: VerificationConfig::default(),
            queue: QueueConfig::default(),
            opt_outs: OptOutConfig::default(),
            carriers: Vec::new(),
            ui_dir: None,
        }
    }
}

/// Sizes the API accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest message body, in characters (Unicode scalar values).
    pub max_body_chars: usize,
    /// Largest request body, in bytes.
    pub max_request_bytes: usize,
    /// How long one request may take before the gateway gives up on it, in seconds.
    pub request_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_chars: 1600,
            max_request_bytes: 64 * 1024,
            request_timeout_secs: 30,
        }
    }
}

/// Connections (`[connections]`). A connection holds a file descriptor and memory whatever
/// it sends, so each is bounded in number and in the time it may take doing nothing useful.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Most connections served at once; further ones wait in the listen backlog until one
    /// closes (logged). 0: three quarters of the open-file limit, the rest left for the
    /// database, carriers and logs [default: 0].
    pub max: usize,
    /// Seconds a client has to send a request's headers once its first byte arrives
    /// [default: 10].
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may wait for its next request (after connecting or after a
    /// response) before it is closed [default: 75: longer than nginx keeps idle upstream
    /// connections (60 s), so nginx, not the gateway, closes them].
    pub idle_timeout_secs: u64,
    /// Largest request head (request line and headers), in bytes [default: 16384].
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max: 0,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ConnectionLimits {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.header_read_timeout_secs == 0 {
            anyhow::bail!("connections.header_read_timeout_secs must be at least 1");
        }
        if self.idle_timeout_secs == 0 {
            anyhow::bail!("connections.idle_timeout_secs must be at least 1");
        }
        if !(8192..=1024 * 1024).contains(&self.max_header_bytes) {
            anyhow::bail!("connections.max_header_bytes must be 8192 to 1048576");
        }
        Ok(())
    }
}

/// One rate limit: at most `burst` at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

/// Rate limits; each is per key (account, username, number or client address).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Sign-in attempts per username and per client address.
    pub sign_in: Rate,
    /// Sign-ups per client address.
    pub sign_up: Rate,
    /// Verification codes sent, per account and per phone number or e-mail address.
    pub verification_codes: Rate,
    /// Code checks per account.
    pub verification_checks: Rate,
    /// Messages sent per account.
    pub send: Rate,
    /// Address look-ups per account.
    pub lookup: Rate,
}

impl RateLimits {
    /// The same rate for every kind (tests, and deployments that want one knob).
    pub fn uniform(rate: Rate) -> Self {
        RateLimits {
            sign_in: rate,
            sign_up: rate,
            verification_codes: rate,
            verification_checks: rate,
            send: rate,
            lookup: rate,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            sign_in: Rate {
                per_minute: 10,
                burst: 10,
            },
            sign_up: Rate {
                per_minute: 30,
                burst: 30,
            },
            verification_codes: Rate {
                per_minute: 1,
                burst: 5,
            },
            verification_checks: Rate {
                per_minute: 10,
                burst: 10,
            },
            send: Rate {
                per_minute: 6000,
                burst: 600,
            },
            lookup: Rate {
                per_minute: 120,
                burst: 60,
            },
        }
    }
}

/// The simulator carrier: virtual outside phones for demos and tests (`./scripts/run.sh` turns
/// it on). Off unless asked for: any signed-in account can fake an inbound text with it. In
/// the file, `simulator = true` turns it on as it is; a `[simulator]` table sets it up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[serde(remote = "Self")]
pub struct SimulatorConfig {
    pub enabled: bool,
    /// Delay before a virtual phone's delivery receipt, in milliseconds.
    pub receipt_delay_ms: u64,
    /// When set, every virtual phone answers each text with this body.
    pub auto_reply: Option<String>,
}

/// `simulator = true | false`, or a `[simulator]` table (whose errors keep naming the key).
impl<'de> Deserialize<'de> for SimulatorConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Setting;

        impl<'de> serde::de::Visitor<'de> for Setting {
            type Value = SimulatorConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, or a [simulator] table")
            }

            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<Self::Value, E> {
                Ok(SimulatorConfig {
                    enabled,
                    ..SimulatorConfig::default()
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                SimulatorConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_any(Setting)
    }
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            enabled: false,
            receipt_delay_ms: 200,
            auto_reply: None,
        }
    }
}

/// Verification codes for phone numbers and e-mail addresses (`[verification]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    /// How long a code works, in seconds [default: 600].
    pub code_ttl_secs: u64,
    /// Wrong codes allowed before a code stops working [default: 5].
    pub max_attempts: u32,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig {
            code_ttl_secs: 600,
            max_attempts: 5,
        }
    }
}

/// The outbound queue (`[queue]`): how long a text may wait for a carrier, how retries back
/// off, and when a failing carrier is left alone for a while (its circuit breaker).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// A text no carrier took within this many seconds of being accepted fails [default:
    /// 14400, 4 h].
    pub validity_secs: u64,
    /// The first retry waits this long; each next one twice as long [default: 1].
    pub first_backoff_secs: u64,
    /// The longest wait between retries [default: 300].
    pub max_backoff_secs: u64,
    /// How long one carrier may take to answer a send [default: 30].
    pub send_timeout_secs: u64,
    /// How long a claimed job is one worker's; must exceed `send_timeout_secs` so a slow
    /// carrier never has two workers send one text [default: 60].
    pub lease_secs: u64,
    /// Retryable failures in a row that open a carrier's circuit breaker [default: 5].
    pub breaker_failures: u32,
    /// How long an open breaker keeps its carrier out of routing before one trial send
    /// [default: 30].
    pub breaker_cooldown_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            validity_secs: 4 * 60 * 60,
            first_backoff_secs: 1,
            max_backoff_secs: 300,
            send_timeout_secs: 30,
            lease_secs: 60,
            breaker_failures: 5,
            breaker_cooldown_secs: 30,
        }
    }
}

impl QueueConfig {
    pub fn validity(&self) -> Duration {
        Duration::from_secs(self.validity_secs)
    }

    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn breaker_cooldown(&self) -> Duration {
        Duration::from_secs(self.breaker_cooldown_secs)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.validity_secs == 0 {
            anyhow::bail!("queue.validity_secs must be at least 1");
        }
        if self.first_backoff_secs == 0 {
            anyhow::bail!("queue.first_backoff_secs must be at least 1");
        }
        if self.max_backoff_secs < self.first_backoff_secs {
            anyhow::bail!("queue.max_backoff_secs must be at least queue.first_backoff_secs");
        }
        if self.send_timeout_secs == 0 {
            anyhow::bail!("queue.send_timeout_secs must be at least 1");
        }
        if self.lease_secs <= self.send_timeout_secs {
            anyhow::bail!(
                "queue.lease_secs must be longer than queue.send_timeout_secs ({}), or a slow carrier could see one text from two workers",
                self.send_timeout_secs
            );
        }
        if self.breaker_failures == 0 {
            anyhow::bail!("queue.breaker_failures must be at least 1");
        }
        if self.breaker_cooldown_secs == 0 {
            anyhow::bail!("queue.breaker_cooldown_secs must be at least 1");
        }
        Ok(())
    }
}

/// Automatic replies to the keywords carriers require us to honour (`[opt_outs]`). They go
/// back from the DID that was texted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptOutConfig {
    /// The answer to HELP.
    pub help_reply: String,
    /// The confirmation of STOP.
    pub stop_reply: String,
    /// The confirmation of START.
    pub start_reply: String,
}

impl Default for OptOutConfig {
    fn default() -> Self {
        OptOutConfig {
            help_reply: "Airtext: texts from an Airtext user. Reply STOP to opt out, START to opt back in.".to_owned(),
            stop_reply: "You have been unsubscribed and will get no more texts from this number. Reply START to resubscribe.".to_owned(),
            start_reply: "You have been resubscribed and can get texts from this number again. Reply STOP to opt out.".to_owned(),
        }
    }
}

impl Config {
    /// Defaults, then the file named by `--config`, then flags and environment.
    pub fn load(args: &Args) -> anyhow::Result<Config> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply(args)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Config::from_toml(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        // toml's error names the key and the line, e.g. "unknown field `lisen`, expected one of …".
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
    }

    fn apply(&mut self, args: &Args) -> anyhow::Result<()> {
        if let Some(v) = args.listen {
            self.listen = v;
        }
        if let Some(v) = &args.database_url {
            self.database_url = v.clone();
        }
        if let Some(v) = &args.public_url {
            self.public_url = Some(v.clone());
        }
        if let Some(v) = &args.smtp_url {
            self.smtp_url = Some(v.clone());
        }
        if let Some(v) = &args.mail_from {
            self.mail_from = v.clone();
        }
        if let Some(v) = args.simulator {
            self.simulator.enabled = v;
        }
        if let Some(v) = args.max_body_chars {
            self.limits.max_body_chars = v;
        }
        if let Some(v) = args.number_quarantine_days {
            self.number_quarantine_days = v;
        }
        if let Some(v) = &args.default_region {
            self.default_region = v.clone();
        }
        if let Some(v) = args.log_format {
            self.log_format = v;
        }
        if let Some(v) = &args.ui_dir {
            self.ui_dir = Some(v.clone());
        }
        if let Some(v) = args.shutdown_timeout {
            self.shutdown_timeout_secs = v;
        }
        if let Some(v) = args.max_connections {
            self.connections.max = v;
        }
        if let Some(v) = &args.trusted_proxies {
            self.trusted_proxies = crate::server::client_addr::TrustedProxies::parse(v.as_slice())?;
        }
        if let Some(v) = &args.tls_cert {
            self.tls_cert = Some(v.clone());
        }
        if let Some(v) = &args.tls_key {
            self.tls_key = Some(v.clone());
        }
        if let Some(v) = args.metrics_listen {
            self.metrics_listen = Some(v);
        }
        Ok(())
    }

    /// Checks what serde cannot; each error names the key to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.limits.max_body_chars == 0 {
            anyhow::bail!("limits.max_body_chars must be at least 1");
        }
        if self.limits.max_request_bytes < 1024 {
            anyhow::bail!("limits.max_request_bytes must be at least 1024");
        }
        if self.limits.request_timeout_secs == 0 {
            anyhow::bail!("limits.request_timeout_secs must be at least 1");
        }
        self.default_region
            .parse::<airtext_sms::Region>()
            .map_err(|e| anyhow::anyhow!("default_region: {e}"))?;
        for (name, rate) in [
            ("sign_in", self.rate_limits.sign_in),
            ("sign_up", self.rate_limits.sign_up),
            ("verification_codes", self.rate_limits.verification_codes),
            ("verification_checks", self.rate_limits.verification_checks),
            ("send", self.rate_limits.send),
            ("lookup", self.rate_limits.lookup),
        ] {
            if rate.per_minute == 0 || rate.burst == 0 {
                anyhow::bail!("rate_limits.{name}: per_minute and burst must be at least 1");
            }
        }
        if !(self.database_url.starts_with("sqlite:")
            || crate::store::is_postgres(&self.database_url))
        {
            anyhow::bail!(
                "database_url {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                self.database_url
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, carrier) in self.carriers.iter().enumerate() {
            carrier.validate(i)?;
            if !names.insert(carrier.name()) {
                anyhow::bail!(
                    "carriers[{i}].name: {:?} is used twice; every carrier needs its own name",
                    carrier.name()
                );
            }
        }
        if !(1..=86_400).contains(&self.verification.code_ttl_secs) {
            anyhow::bail!("verification.code_ttl_secs must be 1 to 86400 (a day)");
        }
        if !(1..=20).contains(&self.verification.max_attempts) {
            anyhow::bail!("verification.max_attempts must be 1 to 20");
        }
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                anyhow::bail!("smtp_url {url:?}: use smtp://HOST:PORT or smtps://USER:PASS@HOST");
            }
        }
        self.queue.validate()?;
        self.connections.validate()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together: set both to serve HTTPS, or neither");
        }
        if self
            .metrics_listen
            .is_some_and(|m| m == self.listen && m.port() != 0)
        {
            anyhow::bail!(
                "metrics_listen must differ from listen: /metrics is never served to the public"
            );
        }
        if let Some(dir) = &self.ui_dir {
            if !dir.join("index.html").is_file() {
                anyhow::bail!(
                    "ui_dir {}: no index.html there; point it at a built UI (cd ui && npm run build makes ui/dist)",
                    dir.display()
                );
            }
        }
        for (key, text) in [
            ("help_reply", &self.opt_outs.help_reply),
            ("stop_reply", &self.opt_outs.stop_reply),
            ("start_reply", &self.opt_outs.start_reply),
        ] {
            if text.trim().is_empty() || text.contains('\0') {
                anyhow::bail!("opt_outs.{key} must be a non-empty text without NUL");
            }
        }
        Ok(())
    }

    pub fn quarantine(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.number_quarantine_days))
    }

    /// How long a verification code works.
    pub fn code_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.verification.code_ttl_secs).unwrap_or(600))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.request_timeout_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_setup() {
        let config = Config::load(&Args::default()).unwrap_or_default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://airtext.db");
        assert!(
            !config.simulator.enabled,
            "the simulator runs only when asked for"
        );
        assert_eq!(config.limits.max_body_chars, 1600);
        assert_eq!(config.number_quarantine_days, 45);
    }

    #[test]
    fn the_simulator_is_asked_for_by_a_switch_or_a_table() {
        let on = Config::from_toml("simulator = true\n").unwrap_or_default();
        assert!(on.simulator.enabled);
        assert_eq!(on.simulator.receipt_delay_ms, 200);
        let off = Config::from_toml("simulator = false\n").unwrap_or_default();
        assert!(!off.simulator.enabled);
        let table = Config::from_toml("[simulator]\nenabled = true\nreceipt_delay_ms = 5\n")
            .unwrap_or_default();
        assert!(table.simulator.enabled);
        assert_eq!(table.simulator.receipt_delay_ms, 5);
        let typo = Config::from_toml("[simulator]\nenabeld = true\n").err();
        let typo = typo.map(|e| e.to_string()).unwrap_or_default();
        assert!(typo.contains("enabeld"), "{typo}");
        let wrong = Config::from_toml("simulator = 3\n").err();
        let wrong = wrong.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            wrong.contains("true, false, or a [simulator] table"),
            "{wrong}"
        );
    }

    #[test]
    fn the_file_is_read_and_flags_win() {
        let file = Config::from_toml(
            "listen = \"127.0.0.1:9000\"\nnumber_quarantine_days = 10\n[limits]\nmax_body_chars = 500\n",
        );
        let mut config = file.unwrap_or_default();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.limits.max_body_chars, 500);
        let applied = config.apply(&Args {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9001))),
            ..Args::default()
        });
        assert!(applied.is_ok());
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.number_quarantine_days, 10);
    }

    #[test]
    fn edge_settings_come_from_the_file_and_flags() {
        let file = Config::from_toml(
            "shutdown_timeout_secs = 5\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\nforwarded_header = \"forwarded\"\n[connections]\nmax = 50\nidle_timeout_secs = 7\n",
        );
        let mut config = file.unwrap_or_default();
        assert_eq!(config.shutdown_timeout(), Duration::from_secs(5));
        assert!(config
            .trusted_proxies
            .contains(std::net::IpAddr::from([10, 1, 2, 3])));
        assert_eq!(
            config.forwarded_header,
            crate::server::client_addr::ForwardedHeader::Forwarded
        );
        assert_eq!(config.connections.max, 50);
        assert_eq!(config.connections.idle_timeout(), Duration::from_secs(7));
        assert_eq!(config.connections.header_read_timeout_secs, 10);
        let applied = config.apply(&Args {
            shutdown_timeout: Some(9),
            max_connections: Some(3),
            trusted_proxies: Some(vec!["192.0.2.0/24".into()]),
            ..Args::default()
        });
        assert!(applied.is_ok());
        assert_eq!(config.shutdown_timeout_secs, 9);
        assert_eq!(config.connections.max, 3);
        assert!(!config
            .trusted_proxies
            .contains(std::net::IpAddr::from([10, 1, 2, 3])));
        let bad = config.apply(&Args {
            trusted_proxies: Some(vec!["localhost".into()]),
            ..Args::default()
        });
        assert!(bad.is_err_and(|e| e.to_string().contains("localhost")));
        let error = Config::from_toml("trusted_proxies = [\"nope\"]\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("nope"), "{error}");
        let lone = Config {
            tls_cert: Some("cert.pem".into()),
            ..Config::default()
        };
        assert!(lone.validate().is_err());
        let mut slow = Config::default();
        slow.connections.idle_timeout_secs = 0;
        assert!(slow.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let error = Config::from_toml("lisen = \"127.0.0.1:1\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let config = Config {
            default_region: "XX".into(),
            ..Config::default()
        };
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("default_region"), "{error}");
        let config = Config {
            database_url: "mysql://x".into(),
            ..Config::default()
        };
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("database_url"), "{error}");
    }
}
