//! An SMSC that counts what it accepted, by text: the `smpp34` crate's server (third-party),
//! started on 127.0.0.1 for the tests that kill a gateway mid-flight and then count how often
//! each text reached the carrier.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use smpp34::server::ESME;
use smpp34::{
    bind_transceiver, bind_transceiver_resp, submit_sm, submit_sm_resp, unbind, unbind_resp,
    SmppConnectionInformation, SmppServer, SmppServerListener,
};

#[derive(Default)]
pub struct CountingSmsc {
    /// submit_sm acknowledged, by text.
    by_text: Mutex<HashMap<String, u32>>,
    pub total: AtomicU64,
    next_id: AtomicU64,
}

impl CountingSmsc {
    /// Starts one on a free port; returns it, its server (stop it at the end) and the port.
    pub async fn start() -> (Arc<CountingSmsc>, SmppServer, u16) {
        let smsc = Arc::new(CountingSmsc::default());
        let port = super::free_port();
        let mut server = SmppServer::new_with_default_timers(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            smsc.clone(),
            5_000,
            60_000,
            300_000,
            30_000,
            64 * 1024,
        );
        server.start().await;
        assert!(server.is_alive());
        (smsc, server, port)
    }

    pub fn counts(&self) -> HashMap<String, u32> {
        self.by_text.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SmppServerListener for CountingSmsc {
    async fn on_bind_transceiver(
        &self,
        req: bind_transceiver,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> bind_transceiver_resp {
        req.accept("SMSC".to_owned(), Some(0x34))
    }

    async fn on_unbind(
        &self,
        req: unbind,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> unbind_resp {
        req.accept()
    }

    async fn on_esme_bound(&self, _esme: ESME, _s: &String) {}

    async fn on_esme_unbound(&self, _s: &String) {
        // smpp34 1.5.1 aborts the session writer right after this hook (see smpp_carrier.rs).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn on_submit_sm(
        &self,
        req: submit_sm,
        _c: &SmppConnectionInformation,
        _s: &String,
    ) -> submit_sm_resp {
        // Keep submits in flight for a moment so a kill finds some mid-way.
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Plain ASCII letters and digits are the same bytes in unpacked GSM-7.
        let text = String::from_utf8_lossy(&req.short_message).into_owned();
        *self.by_text.lock().unwrap().entry(text).or_insert(0) += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        req.accept(format!("S{id}"))
    }
}
