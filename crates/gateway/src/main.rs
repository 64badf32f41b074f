//! `airtext-gateway`: with no flags, serves 127.0.0.1:8080 on ./airtext.db, with no carrier
//! until one is configured (`--simulator true` runs the virtual one, for demos and tests).
//! SIGTERM or Ctrl-C stops it within `shutdown_timeout_secs`; SIGHUP reloads the TLS certificate.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use airtext_gateway::config::{Args, Config, LogFormat};
use airtext_gateway::Gateway;

// Every request allocates its body, its JSON and its tasks, on two or more threads: glibc's
// malloc was ~8% of the gateway's CPU on the out-of-network benchmark (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args)?;
    let filter = EnvFilter::try_from_env("AIRTEXT_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }

    let deadline = config.shutdown_timeout_secs;
    let gateway = Gateway::start(config).await?;
    let stop = gateway.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests for at most {deadline} s");
        stop.cancel();
    });
    gateway.wait().await.context("shutdown failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the gateway");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
