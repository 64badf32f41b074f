//! PLACEHOLDER: being written (the simulator carrier).

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::carriers::{Carrier, CarrierAccepted, CarrierError, CarrierReport, OutboundSms};
use crate::config::SimulatorConfig;
use crate::store::InventoryNumber;

#[derive(Debug)]
pub struct Simulator {
    _config: SimulatorConfig,
    _reports: mpsc::Sender<CarrierReport>,
}

impl Simulator {
    pub fn new(config: SimulatorConfig, reports: mpsc::Sender<CarrierReport>) -> Self {
        Simulator {
            _config: config,
            _reports: reports,
        }
    }
}

#[async_trait]
impl Carrier for Simulator {
    fn name(&self) -> &str {
        "simulator"
    }

    fn inventory(&self) -> Vec<InventoryNumber> {
        Vec::new()
    }

    async fn send(&self, _sms: OutboundSms) -> Result<CarrierAccepted, CarrierError> {
        Err(CarrierError::Retryable("not written yet".into()))
    }
}
