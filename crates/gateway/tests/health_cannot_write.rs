//! `/healthz` reports a store that cannot write (503 with the reason), and recovers when the
//! store writes again.
//!
//! The writes fail for real: the process's file-size limit (`RLIMIT_FSIZE`) is lowered below
//! what SQLite must write, so the kernel refuses every write to the database's files with
//! `EFBIG`, as a full disk refuses them with `ENOSPC` (`SIGXFSZ`, which would end the
//! process, is caught). The limit is the whole process's, so this binary holds this one test.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::TestGateway;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit, Signal};
use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};

async fn health(gw: &TestGateway) -> (u16, Value) {
    let response = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn sign_up(gw: &TestGateway, username: &str) -> (u16, Value) {
    gw.post(
        "/v1/accounts",
        None,
        json!({"username": username, "password": "correct horse battery"}),
    )
    .await
}

/// Restores the file-size limit however the test ends.
struct Restore(Rlimit);

impl Drop for Restore {
    fn drop(&mut self) {
        setrlimit(Resource::Fsize, self.0).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_store_that_cannot_write_until_it_writes_again() {
    // Caught, the signal leaves the write to fail with EFBIG instead of ending the process.
    let _xfsz = signal(SignalKind::from_raw(Signal::XFSZ.as_raw())).unwrap();
    let gw = TestGateway::start().await;
    gw.sign_up("alice").await;
    assert_eq!(health(&gw).await, (200, json!({"status": "ok"})));

    let before = getrlimit(Resource::Fsize);
    let restore = Restore(before);
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(0),
            maximum: before.maximum,
        },
    )
    .unwrap();
    // Reads still answer; writes cannot commit.
    let (status, body) = sign_up(&gw, "bob").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let (status, body) = health(&gw).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("cannot write"), "{message}");
    // It stays so while nothing else writes: the check's own probe fails.
    assert_eq!(health(&gw).await.0, 503);

    // Room again: the health check's probe succeeds, and so do writes.
    drop(restore);
    assert_eq!(health(&gw).await, (200, json!({"status": "ok"})));
    assert_eq!(sign_up(&gw, "bob").await.0, 201);
    gw.gateway.as_ref().unwrap().state.store.close().await;
}

/// A node on a PostgreSQL database it can read but not write (a read replica, a role without
/// the rights) is unhealthy: the health check's write is refused by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_postgres_database_the_node_cannot_write() {
    let Some(pg) =
        common::postgres_schema("health_cannot_write::a_postgres_database_it_cannot_write").await
    else {
        return;
    };
    let url = pg.url.clone();
    let writer = TestGateway::start_with(move |c| {
        c.database_url = url;
        c.simulator.enabled = false;
    })
    .await;
    assert_eq!(health(&writer).await, (200, json!({"status": "ok"})));

    // The same schema through a role that may read every table and write none.
    let role = format!("reader_{}", pg.schema);
    let schema = &pg.schema;
    pg.exec_base(&format!("CREATE ROLE {role} NOLOGIN")).await;
    pg.exec_base(&format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"))
        .await;
    pg.exec_base(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"
    ))
    .await;
    let sep = if pg.base.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}options=-c%20search_path%3D{schema}%20-c%20role%3D{role}",
        pg.base
    );
    let reader = TestGateway::start_with(move |c| {
        c.database_url = url;
        c.simulator.enabled = false;
    })
    .await;
    let (status, body) = health(&reader).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("cannot write"), "{message}");
    assert_eq!(health(&writer).await.0, 200, "the other node still writes");

    reader.stop().await;
    writer.stop().await;
    pg.exec_base(&format!("DROP SCHEMA {schema} CASCADE")).await;
    pg.exec_base(&format!("DROP OWNED BY {role}")).await;
    pg.exec_base(&format!("DROP ROLE {role}")).await;
}
