//! PLACEHOLDER: being written (outbound queue worker).

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::http::AppState;

#[derive(Debug, Clone, Default)]
pub struct QueueWaker(Arc<Notify>);

impl QueueWaker {
    pub fn new() -> Self {
        QueueWaker::default()
    }

    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub async fn run_worker(_state: AppState, shutdown: CancellationToken) {
    shutdown.cancelled().await;
}
