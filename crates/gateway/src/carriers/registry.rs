//! Builds the configured carriers, in configuration order. With no `[[carriers]]`, the
//! simulator (when `simulator.enabled` asks for it) is the only carrier. A running simulator
//! is logged as a warning: it is for demos and tests, never for real users.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::carriers::config::CarrierConfig;
use crate::carriers::reports::ReportSink;
use crate::carriers::simulator::Simulator;
use crate::carriers::smpp::bind_slots::BindSlots;
use crate::carriers::smpp::{SmppCarrier, SmppTuning};
use crate::carriers::Carrier;
use crate::config::Config;

/// The carriers a gateway runs.
#[derive(Debug, Default)]
pub struct BuiltCarriers {
    /// Every carrier, in configuration order.
    pub all: Vec<Arc<dyn Carrier>>,
    /// The simulator, when one runs (its demo endpoints need it).
    pub simulator: Option<Arc<Simulator>>,
    /// The Twilio carriers by name (their webhooks check signatures with these).
    pub twilio: std::collections::HashMap<String, Arc<crate::carriers::twilio::TwilioCarrier>>,
}

/// The simulator carrier, announced: its endpoints let any signed-in account fake inbound
/// texts, so an operator must see that it runs.
fn simulator(config: &Config, reports: &ReportSink) -> Arc<Simulator> {
    tracing::warn!(
        "the simulator carrier is on: outside phones are virtual and any signed-in account can \
         text in as one (POST /v1/simulator/inbound); for demos and tests only"
    );
    Arc::new(Simulator::new(config.simulator.clone(), reports.clone()))
}

pub async fn build(
    config: &Config,
    reports: ReportSink,
    shutdown: CancellationToken,
) -> anyhow::Result<BuiltCarriers> {
    let _ = &shutdown;
    let mut built = BuiltCarriers::default();
    if config.carriers.is_empty() {
        if config.simulator.enabled {
            let simulator = simulator(config, &reports);
            built.all.push(simulator.clone());
            built.simulator = Some(simulator);
        }
        return Ok(built);
    }
    for (index, carrier) in config.carriers.iter().enumerate() {
        let context = || format!("carriers[{index}] ({:?})", carrier.name());
        match carrier {
            CarrierConfig::Simulator(_) => {
                if built.simulator.is_some() {
                    anyhow::bail!("{}: only one simulator carrier may run", context());
                }
                let simulator = simulator(config, &reports);
                built.all.push(simulator.clone());
                built.simulator = Some(simulator);
            }
            CarrierConfig::Smpp(smpp) => {
                let slots =
                    BindSlots::for_database(&config.database_url, &smpp.name, smpp.max_binds)
                        .with_context(context)?;
                let carrier = SmppCarrier::start_shared(
                    smpp.clone(),
                    SmppTuning::default(),
                    slots,
                    reports.clone(),
                    shutdown.clone(),
                )
                .with_context(context)?;
                built.all.push(carrier);
            }
            CarrierConfig::Twilio(twilio) => {
                let carrier = Arc::new(
                    crate::carriers::twilio::TwilioCarrier::new(
                        twilio.clone(),
                        config.public_url.as_deref(),
                        reports.clone(),
                    )
                    .with_context(context)?,
                );
                built.twilio.insert(twilio.name.clone(), carrier.clone());
                built.all.push(carrier);
            }
        }
    }
    Ok(built)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the gateway logged, as text.
    #[derive(Clone, Default)]
    struct Logged(Arc<Mutex<Vec<u8>>>);

    impl Write for Logged {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn built_with(enabled: bool) -> (BuiltCarriers, String) {
        let logged = Logged::default();
        let writer = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let mut config = Config::default();
        config.simulator.enabled = enabled;
        let (reports, _source) = crate::carriers::reports::report_channel(1);
        let built = build(&config, reports, CancellationToken::new())
            .await
            .unwrap();
        let text = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
        (built, text)
    }

    #[tokio::test]
    async fn the_simulator_runs_only_when_asked_for_and_says_so() {
        let (built, logged) = built_with(false).await;
        assert!(built.simulator.is_none() && built.all.is_empty());
        assert!(logged.is_empty(), "{logged}");
        let (built, logged) = built_with(true).await;
        assert!(built.simulator.is_some());
        assert!(
            logged.contains("WARN") && logged.contains("the simulator carrier is on"),
            "{logged}"
        );
    }
}
