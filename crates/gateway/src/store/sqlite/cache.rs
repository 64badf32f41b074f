//! What the store keeps in memory to save reads on every request: devices by token hash
//! (authentication), and accounts as a send looks them up (the sender by id, the addressee
//! by address).
//!
//! Sound because this process's writer thread is the database's only writer, and it evicts
//! what a group may have changed right after the group's COMMIT, before anyone is answered
//! ([`Caches::evict`]). Each cache has a generation, which an eviction bumps under the
//! cache's lock. A read that missed loads the generation before its snapshot and caches its
//! rows only if the generation is unchanged, compared under the same lock. So a row read
//! before a COMMIT is either evicted by that COMMIT's eviction or refused after it: it is
//! never served once the write that changed it has been answered.
//!
//! The evictions are by kind of write, decided in [`Op::changes_accounts`] with no catch-all,
//! so a new kind of write must say whether it changes what is cached here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use airtext_api::{AccountId, DeviceId};
use airtext_sms::Address;

use super::super::{AccountRecord, DeviceRecord, TokenHash};
use super::writer::Op;

/// Past this many entries a cache starts over (it only saves reads).
const CAPACITY: usize = 100_000;

/// The caches the writer keeps true.
#[derive(Debug, Default)]
pub(super) struct Caches {
    pub(super) devices: Cached<[u8; 32], DeviceRecord>,
    pub(super) senders: Cached<AccountId, Option<AccountRecord>>,
    pub(super) addressees: Cached<Address, Option<AccountRecord>>,
}

impl Caches {
    /// Right after the writer's COMMIT of a group that made `changes` (or its failure:
    /// evicting too much is harmless), before the group is answered.
    pub(super) fn evict(&self, changes: &Changes) {
        for device in &changes.revoked {
            self.devices.evict(|cached| cached.id == *device);
        }
        for account in &changes.signed_out {
            self.devices.evict(|cached| cached.account_id == *account);
        }
        if changes.accounts {
            self.senders.evict(|_| true);
            self.addressees.evict(|_| true);
        }
    }

    /// The device a token hash authenticates, if cached.
    pub(super) fn device(&self, token: &TokenHash) -> Option<DeviceRecord> {
        self.devices.get(&token.0)
    }

    /// The sender and addressee of a send, when both are cached.
    pub(super) fn sender_and_addressee(
        &self,
        sender: AccountId,
        to: &Address,
    ) -> Option<(Option<AccountRecord>, Option<AccountRecord>)> {
        Some((self.senders.get(&sender)?, self.addressees.get(to)?))
    }
}

/// What a group of writes may change that is cached.
#[derive(Debug, Default)]
pub(super) struct Changes {
    accounts: bool,
    revoked: Vec<DeviceId>,
    signed_out: Vec<AccountId>,
}

impl Changes {
    pub(super) fn of<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Self {
        let mut changes = Changes::default();
        for op in ops {
            if let Some(device) = op.revoked_device() {
                changes.revoked.push(device);
            }
            if let Some(account) = op.signed_out_account() {
                changes.signed_out.push(account);
            }
            changes.accounts |= op.changes_accounts();
        }
        changes
    }
}

/// One cache: values by key, with the generation that guards what a read may put.
#[derive(Debug)]
pub(super) struct Cached<K, V> {
    generation: AtomicU64,
    entries: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for Cached<K, V> {
    fn default() -> Self {
        Cached {
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Cached<K, V> {
    /// Load before reading the store: what [`Cached::put`] checks.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Caches what a read that began at `generation` found, unless an eviction ran since.
    pub(super) fn put(&self, key: K, value: V, generation: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, value);
    }

    fn evict(&self, stale: impl Fn(&V) -> bool) {
        // The bump happens under the lock: a put that takes the lock after this eviction
        // must see it.
        match self.entries.lock() {
            Ok(mut entries) => {
                entries.retain(|_, cached| !stale(cached));
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            // Never served again (get and put give up on a poisoned lock); emptied anyway.
            Err(poisoned) => {
                poisoned.into_inner().clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_began_before_an_eviction_is_not_cached() {
        let cached: Cached<u32, &str> = Cached::default();
        let began = cached.generation();
        cached.evict(|_| true);
        cached.put(1, "read before the write", began);
        assert_eq!(cached.get(&1), None);
        let began = cached.generation();
        cached.put(1, "read after the write", began);
        assert_eq!(cached.get(&1), Some("read after the write"));
    }

    #[test]
    fn an_eviction_drops_what_was_cached_before_it() {
        let cached: Cached<u32, u32> = Cached::default();
        let began = cached.generation();
        cached.put(1, 10, began);
        cached.put(2, 20, began);
        cached.evict(|value| *value == 10);
        assert_eq!(cached.get(&1), None);
        assert_eq!(cached.get(&2), Some(20));
    }
}
