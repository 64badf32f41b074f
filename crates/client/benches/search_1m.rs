//! Search over 1,000,000 cached messages (FTS5), measured through the cache thread as the app
//! calls it. Target: p95 ≤ 30 ms. Run: `cargo bench -p airtext-client --bench search_1m`
//! (AIRTEXT_BENCH_MESSAGES=N for another size; AIRTEXT_BENCH_DB=FILE keeps the generated cache in
//! FILE and reuses it on the next run, which then skips the setup).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Instant;

use airtext_client::cache::{messages, Cache};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

/// A vocabulary of pronounceable words with a skewed (Zipf-like) use, like real texts.
fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "zo", "ba", "de", "fi", "go", "hu", "ja",
        "pe", "qui", "ro", "su", "tar", "ven", "wil", "xan", "yor", "zen",
    ];
    (0..20_000)
        .map(|_| {
            let n = rng.gen_range(2..=4);
            (0..n)
                .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
                .collect::<String>()
        })
        .collect()
}

fn pick<'a>(rng: &mut StdRng, words: &'a [String]) -> &'a str {
    // Squaring a uniform draw favours the first words (common words are common).
    let x: f64 = rng.gen();
    let i = ((x * x) * words.len() as f64) as usize;
    &words[i.min(words.len() - 1)]
}

async fn bench() {
    let n: i64 = std::env::var("AIRTEXT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var_os("AIRTEXT_BENCH_DB")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("bench.sqlite3"));
    let cache = Cache::open(&path).await.unwrap();
    let cached = cache.call(|c| messages::count(c)).await.unwrap();
    let reuse = cached == n;
    assert!(
        reuse || cached == 0,
        "{} holds {cached} messages, not {n}",
        path.display()
    );
    let mut rng = StdRng::seed_from_u64(7);
    let words = vocabulary(&mut rng);
    let peers: Vec<String> = (0..2_000).map(|i| format!("+1415555{i:04}")).collect();

    let started = Instant::now();
    let batch = 50_000;
    let mut done = 0;
    while done < n {
        let rows: Vec<(String, String)> = (0..batch.min(n - done))
            .map(|_| {
                let len = rng.gen_range(3..20);
                let body = (0..len)
                    .map(|_| pick(&mut rng, &words))
                    .collect::<Vec<_>>()
                    .join(" ");
                let peer = peers[rng.gen_range(0..peers.len())].clone();
                (peer, body)
            })
            .collect();
        let start = done;
        done += batch;
        if reuse {
            // The same rows were stored by an earlier run; the draws above keep the queries
            // below the same.
            continue;
        }
        cache
            .call(move |c| {
                let tx = c.transaction()?;
                let before: i64 =
                    tx.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
                        r.get(0)
                    })?;
                {
                    let mut conversation = tx.prepare_cached(
                        "INSERT INTO conversations (peer, unread, updated_at) VALUES (?1, 0, 0)
                         ON CONFLICT (peer) DO UPDATE SET unread = unread RETURNING id",
                    )?;
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO messages (server_id, conversation, peer, direction, from_addr,
                            to_addr, body, status, route, path, encoding, segments, created_at,
                            updated_at)
                         VALUES (?1, ?2, ?3, 'inbound', ?3, '+14155550000', ?4, 'delivered',
                            'carrier', 'cloud', 'gsm7', 1, ?5, ?5)",
                    )?;
                    for (i, (peer, body)) in rows.iter().enumerate() {
                        let conv: i64 = conversation.query_row([peer], |r| r.get(0))?;
                        let at = start + i as i64;
                        insert.execute(rusqlite::params![
                            uuid::Uuid::now_v7().to_string(),
                            conv,
                            peer,
                            body,
                            at
                        ])?;
                    }
                }
                // Indexed in one statement, as a page of sync does.
                tx.execute(
                    "INSERT INTO messages_fts (rowid, body)
                     SELECT id, body FROM messages WHERE id > ?1",
                    [before],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
    }
    eprintln!(
        "setup: {n} messages cached in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Queries a person types: a common or rare word, a prefix while typing, two words, a peer.
    const KINDS: [&str; 4] = ["word", "3-letter prefix", "two words", "number prefix"];
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut by_kind: Vec<_> = KINDS
        .iter()
        .map(|_| hdrhistogram::Histogram::<u64>::new(3).unwrap())
        .collect();
    let mut hits = 0usize;
    let queries = 2_000;
    for q in 0..queries {
        let query = match q % 4 {
            0 => pick(&mut rng, &words).to_owned(),
            1 => pick(&mut rng, &words).chars().take(3).collect(),
            2 => format!("{} {}", pick(&mut rng, &words), pick(&mut rng, &words)),
            _ => peers[rng.gen_range(0..peers.len())][..9].to_owned(),
        };
        let started = Instant::now();
        let found = cache
            .call(move |c| messages::search(c, &query, 50))
            .await
            .unwrap();
        let micros = started.elapsed().as_micros() as u64;
        histogram.record(micros).unwrap();
        by_kind[q % 4].record(micros).unwrap();
        hits += found.len();
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "search_1m: {queries} searches over {n} cached messages (50 newest hits each, {:.1} hits on average): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms; target p95 ≤ 30 ms: {}",
        hits as f64 / queries as f64,
        ms(0.5),
        ms(0.95),
        ms(0.99),
        histogram.max() as f64 / 1000.0,
        if ms(0.95) <= 30.0 { "met" } else { "MISSED" }
    );
    for (kind, h) in KINDS.iter().zip(&by_kind) {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "search_1m:   {kind}: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            ms(0.5),
            ms(0.95),
            h.max() as f64 / 1000.0
        );
    }
}
