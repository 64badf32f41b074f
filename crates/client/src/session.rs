//! A signed-in profile: its cache, its gateway connection and its background work. The
//! [`crate::Client`] holds at most one; the sync engine ([`crate::sync`]) and the outbox
//! ([`crate::outbox`]) are methods on it.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use airtext_sms::Region;
use tokio::sync::{broadcast, Mutex, Notify};

use crate::cache::messages::LocalMessageId;
use crate::cache::profile::Profile;
use crate::cache::Cache;
use crate::cellular::{Cellular, SentTextId};
use crate::cloud::Cloud;
use crate::error::{Error, Result};
use crate::events::ClientEvent;

#[derive(Debug)]
pub struct Session {
    pub profile: Profile,
    pub cache: Cache,
    pub cloud: Cloud,
    pub(crate) cellular: Arc<dyn Cellular>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) region: Region,
    /// One sync at a time (a hint while syncing waits, then finds little to do).
    pub(crate) sync_lock: Mutex<()>,
    /// One outbox flush at a time in this process.
    pub(crate) outbox_lock: Mutex<()>,
    /// Wakes the background outbox loop (a text was queued).
    pub(crate) outbox_wake: Notify,
    /// The newest seq the stream announced, for progress ("remaining").
    pub(crate) known_head: AtomicI64,
    /// Texts that left over cellular and wait for their delivery reports, by the modem's id
    /// for them (in memory, as the modem's own bookkeeping is).
    pub(crate) awaiting_delivery: std::sync::Mutex<HashMap<SentTextId, LocalMessageId>>,
}

impl Session {
    pub(crate) fn emit(&self, event: ClientEvent) {
        // No listener is fine: the cache has the data.
        let _ = self.events.send(event);
    }

    /// Normalises an address the way the gateway does (E.164, `@username`, e-mail).
    pub fn normalise(&self, address: &str) -> Result<airtext_sms::Address> {
        airtext_sms::Address::parse(address, Some(self.region)).map_err(|e| {
            Error::invalid(
                airtext_api::ErrorCode::InvalidAddress,
                format!("{address:?} is not a phone number, @username or e-mail address: {e}"),
            )
        })
    }
}
