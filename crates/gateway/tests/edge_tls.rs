//! HTTPS: the gateway serves the certificate from `tls_cert` / `tls_key`, and after SIGHUP
//! new connections get the certificate now in those files, on the same listener. The
//! certificates come from a CA made here with `rcgen`, which the client trusts alone.
//!
//! One test in this binary: it sends SIGHUP to its own process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn make_ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Airtext test CA");
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A certificate for `localhost` signed by `ca`, written as PEM to `cert` and `key`; returns
/// its DER, to recognise it on the wire.
fn issue(ca: &Ca, name: &str, cert: &Path, key: &Path) -> Vec<u8> {
    let leaf_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    let leaf = params.signed_by(&leaf_key, &ca.cert, &ca.key).unwrap();
    std::fs::write(cert, leaf.pem()).unwrap();
    std::fs::write(key, leaf_key.serialize_pem()).unwrap();
    leaf.der().to_vec()
}

/// The certificate a new connection to the gateway is served, and the status of `/healthz`.
async fn served_certificate(ca: &Ca, addr: SocketAddr) -> (Vec<u8>, u16) {
    // A new client each time: a pooled connection would show the old handshake.
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .tls_info(true)
        .build()
        .unwrap();
    let response = http
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .expect("an HTTPS answer from a certificate the test CA signed");
    let der = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .expect("the peer's certificate");
    (der, response.status().as_u16())
}

#[tokio::test]
async fn https_with_a_certificate_reloaded_on_sighup() {
    let ca = make_ca();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = issue(&ca, "first", &cert, &key);
    let gw = TestGateway::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    let addr = gw.gateway.as_ref().unwrap().addr;
    assert!(gw.url.starts_with("https://"), "{}", gw.url);

    let (served, status) = served_certificate(&ca, addr).await;
    assert_eq!(status, 200);
    assert_eq!(served, first, "the first certificate is served");

    // Plain HTTP on the TLS port gets no API answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", addr.port())).await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));

    // A broken pair on SIGHUP keeps the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    hangup();
    let second = issue(&ca, "second", &cert, &key);
    // The broken pair may or may not have been read before the good one was written; only a
    // SIGHUP after the good pair is in place must switch.
    hangup();
    let switched = eventually(Duration::from_secs(30), || async {
        let (served, status) = served_certificate(&ca, addr).await;
        assert_eq!(status, 200);
        assert!(served == first || served == second);
        (served == second).then_some(())
    })
    .await;
    let () = switched;
    gw.stop().await;
}

fn hangup() {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
