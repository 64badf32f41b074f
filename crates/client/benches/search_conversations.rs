//! The search box's conversation match (any part of a peer or of a contact's name) over 10,000
//! conversations with one message each and 2,000 named contacts, measured on the cache thread
//! as `Client::search_hits` runs it: a scan (every conversation read with its last message,
//! then filtered) against the trigram index (`conversations::matching`).
//! Run: `cargo bench -p airtext-client --bench search_conversations`
//! (AIRTEXT_BENCH_CONVERSATIONS=N for another size).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Instant;

use airtext_client::cache::{conversations, Cache};

const LIMIT: u32 = 50;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let n: i64 = std::env::var("AIRTEXT_BENCH_CONVERSATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("bench.sqlite3"))
        .await
        .unwrap();
    cache
        .call(move |c| {
            let tx = c.transaction()?;
            for i in 0..n {
                let peer = format!("+1206555{i:04}");
                tx.execute(
                    "INSERT INTO conversations (peer, unread, updated_at) VALUES (?1, 0, ?2)",
                    rusqlite::params![peer, i],
                )?;
                let conversation = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO messages (conversation, peer, direction, from_addr, to_addr,
                        body, status, encoding, segments, created_at, updated_at)
                     VALUES (?1, ?2, 'inbound', ?2, '+14155550100', 'see you at the station',
                        'delivered', 'gsm7', 1, ?3, ?3)",
                    rusqlite::params![conversation, peer, i],
                )?;
                if i % 5 == 0 {
                    tx.execute(
                        "INSERT INTO contacts (address, path, fallback, name, updated_at)
                         VALUES (?1, 'auto', 0, ?2, 0)",
                        rusqlite::params![peer, format!("Contact Number{i}")],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();

    // A whole number (one hit), its local part (one hit), a prefix shared by all, a name,
    // a word no one has, and a two-character needle (read in order, no trigram).
    let queries = ["+12065550042", "5550042", "20655", "number12", "zzz", "42"];
    println!("{n} conversations, limit {LIMIT}; ms per query (median of 21 runs)");
    println!(
        "{:>14} {:>6} {:>10} {:>10}",
        "query", "hits", "scan", "index"
    );
    for q in queries {
        let mut scan = Vec::new();
        let mut index = Vec::new();
        let mut hits = (0, 0);
        for _ in 0..21 {
            let needle = q.to_owned();
            let (ms, found) = cache
                .call(move |c| {
                    let t = Instant::now();
                    // What `search_hits` did before the index.
                    let lower = needle.to_lowercase();
                    let found = conversations::list(c, u32::MAX)?
                        .into_iter()
                        .filter(|conv| {
                            conv.peer.to_lowercase().contains(&lower)
                                || conv
                                    .name
                                    .as_deref()
                                    .is_some_and(|n| n.to_lowercase().contains(&lower))
                        })
                        .take(LIMIT as usize)
                        .count();
                    Ok((t.elapsed().as_secs_f64() * 1e3, found))
                })
                .await
                .unwrap();
            scan.push(ms);
            hits.0 = found;
            let needle = q.to_owned();
            let (ms, found) = cache
                .call(move |c| {
                    let t = Instant::now();
                    let found = conversations::matching(c, &needle, LIMIT)?.len();
                    Ok((t.elapsed().as_secs_f64() * 1e3, found))
                })
                .await
                .unwrap();
            index.push(ms);
            hits.1 = found;
        }
        assert_eq!(hits.0, hits.1, "{q}: the index and the scan disagree");
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{q:>14} {:>6} {:>10.2} {:>10.2}",
            hits.1,
            median(&mut scan),
            median(&mut index)
        );
    }
}
