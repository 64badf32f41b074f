//! The channel from carriers to the router: what carriers learn (texts from outside phones,
//! delivery receipts) on its way to the store, with the answer the carrier waits for.
//!
//! A carrier acknowledges a report to its network (SMPP `deliver_sm_resp` with ESME_ROK, a
//! Twilio webhook's 200) only after [`ReportSink::deliver`] says the report is stored. Until
//! then the network still holds it and retries it if we fail or die, so a text from a phone
//! is never lost between "acknowledged" and "on disk". The price is that a carrier may send a
//! report twice (we stored it, then died before acknowledging); the router's handling of
//! receipts is idempotent (status only moves forward), and a repeated text is a duplicate the
//! phone's own network could produce too.
//!
//! Reports the carrier itself makes up and need no acknowledgement (the simulator's) go
//! through [`ReportSink::hand_over`], which does not wait.

use tokio::sync::{mpsc, oneshot};

use super::CarrierReport;

/// Why a report was not stored; the carrier asks its network to try again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStored {
    #[error("the gateway is shutting down")]
    Closed,
    #[error("the report could not be stored: {0}")]
    Failed(String),
}

/// A report on its way to the router, with the carrier waiting (or not) for its fate.
#[derive(Debug)]
pub struct PendingReport {
    pub report: CarrierReport,
    answer: Option<oneshot::Sender<Result<(), NotStored>>>,
}

impl PendingReport {
    /// The report is durable: the carrier may acknowledge it.
    pub fn stored(mut self) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Ok(()));
        }
    }

    /// The report could not be stored: the carrier asks its network to send it again.
    pub fn not_stored(mut self, why: NotStored) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(Err(why));
        }
    }
}

/// The carriers' end. Cloned into every carrier.
#[derive(Debug, Clone)]
pub struct ReportSink {
    tx: mpsc::Sender<PendingReport>,
}

/// The router's end.
#[derive(Debug)]
pub struct ReportSource {
    rx: mpsc::Receiver<PendingReport>,
}

/// A channel holding up to `capacity` reports before carriers wait (back-pressure).
pub fn report_channel(capacity: usize) -> (ReportSink, ReportSource) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ReportSink { tx }, ReportSource { rx })
}

impl ReportSink {
    /// Hands `report` to the router and waits until it is stored (or refused).
    pub async fn deliver(&self, report: CarrierReport) -> Result<(), NotStored> {
        let (answer, stored) = oneshot::channel();
        self.tx
            .send(PendingReport {
                report,
                answer: Some(answer),
            })
            .await
            .map_err(|_| NotStored::Closed)?;
        // A router that drops the report without answering is shutting down.
        stored.await.unwrap_or(Err(NotStored::Closed))
    }

    /// Hands `report` to the router without waiting for it to be stored.
    pub async fn hand_over(&self, report: CarrierReport) -> Result<(), NotStored> {
        self.tx
            .send(PendingReport {
                report,
                answer: None,
            })
            .await
            .map_err(|_| NotStored::Closed)
    }
}

impl ReportSource {
    pub async fn recv(&mut self) -> Option<PendingReport> {
        self.rx.recv().await
    }

    /// Waits for a report, then takes it and whatever else is waiting, `limit` at most, onto
    /// `batch`; 0 once the channel is closed and empty. Cancel-safe (nothing is lost if the
    /// future is dropped), so it can race shutdown in a `select!`.
    pub async fn recv_many(&mut self, batch: &mut Vec<PendingReport>, limit: usize) -> usize {
        self.rx.recv_many(batch, limit.max(1)).await
    }

    /// Refuses new reports; those already sent can still be received.
    pub fn close(&mut self) {
        self.rx.close();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::carriers::ReceiptStatus;

    fn receipt() -> CarrierReport {
        CarrierReport::Receipt {
            carrier: "c".to_owned(),
            carrier_message_id: "1".to_owned(),
            status: ReceiptStatus::Delivered,
            reason: None,
        }
    }

    #[tokio::test]
    async fn deliver_waits_for_the_router_s_answer() {
        let (sink, mut source) = report_channel(4);
        let waiting = tokio::spawn(async move { sink.deliver(receipt()).await });
        let pending = source.recv().await.unwrap();
        assert_eq!(pending.report, receipt());
        assert!(!waiting.is_finished());
        pending.not_stored(NotStored::Failed("disk full".to_owned()));
        assert_eq!(
            waiting.await.unwrap(),
            Err(NotStored::Failed("disk full".to_owned()))
        );
    }

    #[tokio::test]
    async fn a_dropped_or_closed_router_means_not_stored() {
        let (sink, mut source) = report_channel(4);
        let waiting = tokio::spawn({
            let sink = sink.clone();
            async move { sink.deliver(receipt()).await }
        });
        drop(source.recv().await.unwrap());
        assert_eq!(waiting.await.unwrap(), Err(NotStored::Closed));
        source.close();
        assert_eq!(sink.deliver(receipt()).await, Err(NotStored::Closed));
        assert_eq!(sink.hand_over(receipt()).await, Err(NotStored::Closed));
    }

    #[tokio::test]
    async fn recv_many_takes_what_waits_up_to_the_limit() {
        let (sink, mut source) = report_channel(8);
        for _ in 0..5 {
            sink.hand_over(receipt()).await.unwrap();
        }
        let mut batch = Vec::new();
        assert_eq!(source.recv_many(&mut batch, 3).await, 3);
        assert_eq!(source.recv_many(&mut batch, 3).await, 2);
        assert_eq!(batch.len(), 5);
        source.close();
        assert_eq!(source.recv_many(&mut batch, 3).await, 0);
    }

    #[tokio::test]
    async fn stored_reports_are_acknowledged_and_hand_over_does_not_wait() {
        let (sink, mut source) = report_channel(4);
        sink.hand_over(receipt()).await.unwrap();
        source.recv().await.unwrap().stored();
        let waiting = tokio::spawn(async move { sink.deliver(receipt()).await });
        source.recv().await.unwrap().stored();
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }
}
