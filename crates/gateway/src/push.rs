//! PLACEHOLDER: being written (live fan-out of log hints to WebSocket connections).

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::LogAdvanced;

#[derive(Debug, Clone, Default)]
pub struct PushHub {}

impl PushHub {
    pub fn new() -> Self {
        PushHub {}
    }

    pub async fn run(self, _log: broadcast::Receiver<LogAdvanced>, shutdown: CancellationToken) {
        shutdown.cancelled().await;
    }
}
