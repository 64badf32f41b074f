//! Seeds an app data directory for the benchmarks (docs/benchmarks.md, "The app"): a signed-in
//! profile whose cache holds CONVERSATIONS conversations with MESSAGES messages in all, one of
//! them (peer +12065550000) holding THREAD messages, written straight through airtext-client's
//! cache API (the same `store_server_copy` sync uses). The token goes to the OS keyring under
//! the app's key for that directory, so the app restores the session at start.
//!
//! `cargo run --release -p airtext-app --example seed_cache -- DIR GATEWAY [CONVERSATIONS MESSAGES THREAD]`
//! (defaults 10000 200000 50000). Point GATEWAY at an address nothing listens on to measure the
//! app offline (no sync traffic while idle).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use airtext_api::messages::{Direction, Encoding, Message, Route};
use airtext_api::{AccountId, ClientId, ConversationId, DeviceId, MessageId, SendStatus};
use airtext_client::cache::messages::store_server_copy;
use airtext_client::cache::profile::{self, Profile};
use airtext_client::cache::Cache;
use airtext_client::secrets::{DeviceFile, TokenStore};
use chrono::{Duration, Utc};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("DIR"));
    let gateway = args.get(2).expect("GATEWAY").clone();
    let n = |i: usize, d: usize| args.get(i).map(|s| s.parse().unwrap()).unwrap_or(d);
    let (conversations, total, thread) = (n(3, 10_000), n(4, 200_000), n(5, 50_000));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = Profile {
        gateway_url: gateway.clone(),
        account_id: AccountId::new(),
        username: "bench".into(),
        device_id: DeviceId::new(),
        number: Some("+14155550100".into()),
    };
    let path = dir
        .join("profiles")
        .join(format!("{}.sqlite3", profile.account_id));
    let cache = Cache::open(&path).await.unwrap();
    let stored = profile.clone();
    cache
        .call(move |c| profile::save(c, &stored))
        .await
        .unwrap();
    let me = profile.number.clone().unwrap();
    let start = Utc::now() - Duration::days(400);
    let t0 = std::time::Instant::now();
    // The big thread first, then the rest spread over the other conversations.
    let rest = total.saturating_sub(thread);
    let others = conversations.saturating_sub(1).max(1);
    let mut plan: Vec<(usize, usize)> = vec![(0, thread)];
    for i in 0..others {
        plan.push((i + 1, rest / others + usize::from(i < rest % others)));
    }
    let mut written = 0usize;
    for chunk in plan.chunks(200) {
        let chunk = chunk.to_vec();
        let me = me.clone();
        let base = written;
        let count: usize = chunk.iter().map(|(_, k)| k).sum();
        cache
            .call(move |c| {
                let tx = c.transaction()?;
                let mut seq = base;
                for (conv, k) in chunk {
                    let peer = format!("+1206{:07}", 5_550_000 + conv);
                    let conversation_id = ConversationId::new();
                    for j in 0..k {
                        seq += 1;
                        let at = start + Duration::seconds(seq as i64 * 60);
                        let inbound = j % 3 == 0;
                        let (from, to) = if inbound { (peer.clone(), me.clone()) } else { (me.clone(), peer.clone()) };
                        store_server_copy(
                            &tx,
                            &Message {
                                id: MessageId::new(),
                                conversation_id,
                                direction: if inbound { Direction::Inbound } else { Direction::Outbound },
                                from,
                                to,
                                body: format!("Message {j} in thread {conv}: see you at the usual place around {} o'clock", j % 12 + 1),
                                status: if inbound { SendStatus::Delivered } else { SendStatus::Sent },
                                route: Route::Carrier,
                                client_id: (!inbound).then(ClientId::new),
                                encoding: Encoding::Gsm7,
                                segments: 1,
                                failure_reason: None,
                                created_at: at,
                                updated_at: at,
                            },
                        )?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        written += count;
    }
    let device = DeviceFile {
        gateway_url: Some(gateway),
        account_id: Some(profile.account_id),
        username: Some(profile.username.clone()),
        device_id: Some(profile.device_id),
        token: None,
    };
    device.save(&dir).unwrap();
    let keyring = airtext_app_lib::token_store::platform_store().unwrap();
    airtext_app_lib::token_store::KeyringTokenStore::new(keyring, dir.display().to_string())
        .save("bench-token-not-valid-anywhere")
        .unwrap();
    println!(
        "seeded {} conversations, {written} messages (thread of {thread} with +12065550000) in {:.1} s",
        plan.len(),
        t0.elapsed().as_secs_f64()
    );
}
