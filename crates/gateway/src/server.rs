//! Wiring: opens the store, starts the carriers, the queue worker and the push hub, serves
//! HTTP, and shuts down in order.
//!
//! Shutdown order matters for "nothing accepted is lost": stop accepting connections and let
//! in-flight requests finish (each already waited for its commit), then stop the queue worker
//! (a job it had leased simply stays in the queue for the next start), then close the store,
//! which flushes the group-commit writer.
//!
//! The network edge (connections, TLS, the client's address behind proxies) is in
//! [`connections`], [`tls`], [`client_addr`] and [`open_files`].

pub mod client_addr;
pub mod connections;
pub mod open_files;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::addresses::AddressReader;
use crate::carriers::ingest;
use crate::carriers::reports::ReportSource;
use crate::config::Config;
use crate::http::{AppState, Services};
use crate::push::PushHub;
use crate::queue::QueueInlet;
use crate::rate_limit::RateLimiter;
use crate::{carriers, http, mail, queue, store};

/// Builds and starts a gateway.
#[derive(Debug)]
pub struct Gateway;

/// A gateway serving on `addr` until [`RunningGateway::shutdown`] or the token is cancelled.
#[derive(Debug)]
pub struct RunningGateway {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether the API is served over TLS.
    pub tls: bool,
    pub state: AppState,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: JoinSet<()>,
}

impl Gateway {
    /// Opens the store (running migrations), binds `config.listen` (port 0 picks a free
    /// port) and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<RunningGateway> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Gateway::start_on(config, listener).await
    }

    pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<RunningGateway> {
        Gateway::start_with_carriers(config, listener, Vec::new()).await
    }

    /// [`Gateway::start_on`] with carriers built elsewhere (tests' fakes) routed after the
    /// configured ones, with the routing facts given.
    pub async fn start_with_carriers(
        config: Config,
        listener: TcpListener,
        extra: Vec<crate::lcr::RoutedCarrier>,
    ) -> anyhow::Result<RunningGateway> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let open_files = open_files::raise_to_hard_limit();
        let edge = connections::EdgeSettings::from_config(&config, open_files);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::TlsAcceptor::load(cert, key)?),
            _ => None,
        };
        #[cfg(unix)]
        let hangups = match &tls {
            // Registered now, so a SIGHUP from the moment start returns is a reload.
            Some(_) => Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .context("cannot watch SIGHUP for certificate reloads")?,
            ),
            None => None,
        };
        let metrics_listener =
            match config.metrics_listen {
                Some(metrics_addr) => {
                    http::metrics::recorder();
                    Some(TcpListener::bind(metrics_addr).await.with_context(|| {
                        format!("cannot listen on {metrics_addr} (metrics_listen)")
                    })?)
                }
                None => None,
            };
        let metrics_addr = match &metrics_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let region = config
            .default_region
            .parse::<airtext_sms::Region>()
            .map_err(|e| anyhow::anyhow!("default_region: {e}"))?;
        let store = store::open(&config.database_url).await.with_context(|| {
            format!("cannot open the database {}", redact(&config.database_url))
        })?;
        let rate_limits = Arc::new(
            RateLimiter::for_database(&config.database_url, config.rate_limits.clone())
                .await
                .context("cannot connect the shared rate limits to the database")?,
        );
        let shutdown = CancellationToken::new();
        let mut background = JoinSet::new();
        background.spawn(sweep_rate_limits(rate_limits.clone(), shutdown.clone()));
        background.spawn(expire_early_receipts(
            store.clone(),
            early_receipt_lifetime(&config),
            shutdown.clone(),
        ));

        let (reports_tx, reports_rx) = carriers::reports::report_channel(10_000);
        let built = carriers::registry::build(&config, reports_tx, shutdown.clone()).await?;
        let mut routes: Vec<crate::lcr::RoutedCarrier> = built
            .all
            .into_iter()
            .map(|carrier| crate::lcr::RoutedCarrier::from_config(carrier, &config.carriers))
            .collect();
        routes.extend(extra);
        let carriers: Vec<_> = routes.iter().map(|route| route.carrier.clone()).collect();
        let lcr = Arc::new(crate::lcr::Lcr::new(routes, &config.queue));
        let simulator = built.simulator;
        let twilio = Arc::new(built.twilio);
        for carrier in &carriers {
            store
                .add_inventory(&carrier.inventory())
                .await
                .with_context(|| {
                    format!("cannot load the numbers of carrier {}", carrier.name())
                })?;
        }

        let push = PushHub::new();
        background.spawn(push.clone().run(store.subscribe(), shutdown.clone()));
        if let Some(resyncs) = store.resyncs() {
            background.spawn(push.clone().follow_resyncs(resyncs, shutdown.clone()));
        }

        let state = AppState::new(Services {
            mailer: mail::mailer_from_config(&config, simulator.clone())?,
            rate_limits,
            store,
            carriers: carriers.into(),
            lcr,
            addresses: Arc::new(AddressReader::new(region)),
            simulator,
            twilio,
            push,
            queue: QueueInlet::new(),
            config: Arc::new(config),
            shutdown: shutdown.clone(),
        });

        background.spawn(queue::run_worker(state.clone(), shutdown.clone()));
        background.spawn(carriers::twilio::numbers::run_give_backs(
            state.twilio.values().cloned().collect(),
            state.store.clone(),
            shutdown.clone(),
        ));
        background.spawn(store_carrier_reports(
            state.clone(),
            reports_rx,
            shutdown.clone(),
        ));

        if let Some(metrics_listener) = metrics_listener {
            background.spawn(http::metrics::serve(
                metrics_listener,
                state.clone(),
                shutdown.clone(),
            ));
        }
        #[cfg(unix)]
        if let (Some(tls), Some(hangups)) = (tls.clone(), hangups) {
            background.spawn(reload_on_hangup(tls, hangups, shutdown.clone()));
        }

        let app = http::router(state.clone())
            .layer(axum::middleware::from_fn(http::metrics::carry_route));
        tracing::info!(
            %addr,
            tls = tls.is_some(),
            max_connections = edge.max_connections,
            open_files = ?open_files,
            "airtext gateway listening"
        );
        let serves_tls = tls.is_some();
        let server = tokio::spawn(connections::serve(
            listener,
            tls,
            app,
            edge,
            shutdown.clone(),
        ));
        Ok(RunningGateway {
            addr,
            metrics_addr,
            tls: serves_tls,
            state,
            shutdown,
            server,
            background,
        })
    }
}

impl RunningGateway {
    /// `http://ADDR`, or `https://ADDR` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A token that stops the gateway when cancelled (e.g. on a signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then shuts down gracefully.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.shutdown().await
    }

    /// Stops accepting, finishes in-flight requests, stops the workers, flushes the store.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = self.server.await;
        // Background tasks watch the same token; give them a bounded time to finish.
        let drain = async { while self.background.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop within 10 s; aborting them");
            self.background.abort_all();
        }
        self.state.rate_limits.close().await;
        self.state.store.close().await;
        served.context("the HTTP server task failed")??;
        Ok(())
    }
}

/// Reads the certificate again on every SIGHUP; a failed reload keeps the one in use.
#[cfg(unix)]
async fn reload_on_hangup(
    tls: tls::TlsAcceptor,
    mut hangups: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
            Err(error) => {
                tracing::error!(%error, "SIGHUP: cannot reload the TLS certificate; keeping the one in use");
            }
        }
    }
}

/// Stores what carriers report, in batches of what is waiting (see
/// [`ingest::store_report_batch`]), answering each carrier once its report is stored or
/// has failed. One batch at a time: texts from one phone keep their order across batches.
async fn store_carrier_reports(
    state: AppState,
    mut reports: ReportSource,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(ingest::REPORT_BATCH);
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = reports.recv_many(&mut batch, ingest::REPORT_BATCH) => received,
        };
        if received == 0 {
            return;
        }
        ingest::store_report_batch(&state, std::mem::take(&mut batch)).await;
    }
    // Carriers are waiting for these (or handed them over without waiting): store them
    // before the store closes. Closing first refuses later reports, and the carrier asks its
    // network to try again (SMPP: ESME_RX_T_APPN).
    reports.close();
    while reports.recv_many(&mut batch, ingest::REPORT_BATCH).await > 0 {
        ingest::store_report_batch(&state, std::mem::take(&mut batch)).await;
    }
}

/// How long a receipt whose send was never recorded is kept: the send could still be
/// recorded until its text's validity ends (a text is tried that long), and the margin
/// covers a send in flight at that moment and clocks of nodes that differ a little.
fn early_receipt_lifetime(config: &Config) -> chrono::Duration {
    chrono::Duration::from_std(config.queue.validity())
        .unwrap_or(chrono::Duration::MAX)
        .checked_add(&EARLY_RECEIPT_MARGIN)
        .unwrap_or(chrono::Duration::MAX)
}

const EARLY_RECEIPT_MARGIN: chrono::Duration = chrono::Duration::hours(1);
const EARLY_RECEIPT_SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// Deletes held receipts older than `lifetime` now and then (receipts for ids no send of
/// ours ever records: another system's texts on a shared account, or sends a crash made
/// twice). Every node sweeps; the deletes are idempotent.
async fn expire_early_receipts(
    store: store::SharedStore,
    lifetime: chrono::Duration,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(EARLY_RECEIPT_SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(before) = chrono::Utc::now().checked_sub_signed(lifetime) else {
            continue;
        };
        match store.expire_early_receipts(before).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired receipts no send claimed"),
            Err(error) => {
                tracing::warn!(%error, "expiring held receipts failed; retrying at the next interval");
            }
        }
    }
}

/// Deletes refilled shared rate-limit buckets now and then (the in-memory ones sweep
/// themselves). Every node sweeps; the deletes are idempotent and cheap.
async fn sweep_rate_limits(limits: Arc<RateLimiter>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(RATE_LIMIT_SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(error) = limits.sweep().await {
            tracing::warn!(%error, "rate-limit sweep failed; retrying at the next interval");
        }
    }
}

const RATE_LIMIT_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = url.get(scheme + 3..at).unwrap_or("");
            match creds.split_once(':') {
                Some((user, _)) => format!(
                    "{}{}:***{}",
                    url.get(..scheme + 3).unwrap_or(""),
                    user,
                    url.get(at..).unwrap_or("")
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://airtext.db"), "sqlite://airtext.db");
    }

    #[test]
    fn held_receipts_outlive_the_validity_of_texts() {
        let mut config = crate::config::Config::default();
        assert_eq!(
            super::early_receipt_lifetime(&config),
            chrono::Duration::hours(5)
        );
        config.queue.validity_secs = u64::MAX;
        assert_eq!(
            super::early_receipt_lifetime(&config),
            chrono::Duration::MAX
        );
    }
}
