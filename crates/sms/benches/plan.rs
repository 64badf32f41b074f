//! `plan()` on typical messages: one, two and three segments, GSM-7 and UCS-2.
//! Run: `cargo bench -p airtext-sms --bench plan`.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn messages() -> Vec<(&'static str, String)> {
    let sentence = "Running 10 min late, sorry! Grab a table & order me the usual? ";
    let gsm = |n: usize| sentence.repeat(n / sentence.len() + 1)[..n].to_owned();
    let ru = "Опаздываю на 10 минут, извини! Закажи мне как обычно? ";
    let ucs2 = |n: usize| ru.chars().cycle().take(n).collect::<String>();
    vec![
        ("gsm7_1seg_60", gsm(60)),
        ("gsm7_1seg_160", gsm(160)),
        ("gsm7_2seg_300", gsm(300)),
        ("gsm7_3seg_450_euro", format!("{}€{}", gsm(200), gsm(240))),
        ("ucs2_1seg_50_emoji", format!("{}😀", ucs2(48))),
        ("ucs2_2seg_120", ucs2(120)),
        ("ucs2_3seg_200", ucs2(200)),
    ]
}

fn bench_plan(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(1));
    for (name, text) in messages() {
        g.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, t| {
            b.iter(|| airtext_sms::plan(black_box(t)))
        });
    }
    g.finish();
}

fn bench_plan_and_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan+encode");
    g.throughput(Throughput::Elements(1));
    for (name, text) in messages() {
        g.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, t| {
            b.iter(|| airtext_sms::plan(black_box(t)).encode(1).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_plan, bench_plan_and_encode);
criterion_main!(benches);
