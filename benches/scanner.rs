//! Throughput of the list scanner over a large JSON array of typical API objects, next to
//! what a proxy minimally does with the same chunks (copy them) and a full `serde_json` parse.
//!
//! `cargo bench --bench scanner`; the figures are MB/s of body.

use std::fmt::Write as _;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pagegate::{Event, ItemsPath, Scanner};
use serde_json::value::RawValue;

/// Body size to build.
const BODY_BYTES: usize = 64 << 20;
/// Chunk size the proxy typically sees.
const CHUNK: usize = 64 << 10;

/// A ~64 MiB JSON array of objects shaped like a typical list API's.
fn body() -> Vec<u8> {
    let statuses = ["active", "pending", "suspended"];
    let mut body = String::with_capacity(BODY_BYTES + 1024);
    body.push('[');
    let mut i: u64 = 0;
    while body.len() < BODY_BYTES {
        if i > 0 {
            body.push(',');
        }
        let digest = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x8f14_e45f_ceea_167a;
        let _ = write!(
            body,
            r#"{{"id":{},"status":"{}","created_at":"2026-01-{:02}T{:02}:{:02}:{:02}Z","user_id":{},"message":"event number {} {:016x}{:016x}"}}"#,
            i + 1,
            statuses[(i % 3) as usize],
            i / 86_400 % 28 + 1,
            i / 3600 % 24,
            i / 60 % 60,
            i % 60,
            (i * 7919) % 100_000,
            i + 1,
            digest,
            digest.rotate_left(17),
        );
        i += 1;
    }
    body.push(']');
    body.into_bytes()
}

/// Scans `body` in proxy-sized chunks; the number of items.
fn scan(body: &[u8]) -> usize {
    let mut scanner = Scanner::new(ItemsPath(Vec::new()), 128);
    let mut items = 0;
    for chunk in body.chunks(CHUNK) {
        let flow = scanner.feed(chunk, |event| {
            if let Event::Item { .. } = event {
                items += 1;
            }
            ControlFlow::Continue(())
        });
        assert_eq!(flow, Ok(ControlFlow::Continue(())));
    }
    assert_eq!(scanner.finish(), Ok(()));
    items
}

fn scanner(c: &mut Criterion) {
    let body = body();
    let expected = serde_json::from_slice::<Vec<&RawValue>>(&body)
        .map(|items| items.len())
        .ok();
    assert_eq!(
        Some(scan(&body)),
        expected,
        "the scanner disagrees with serde_json"
    );

    let mut group = c.benchmark_group("list_body");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scanner", |b| b.iter(|| scan(black_box(&body))));
    let mut copy = Vec::with_capacity(CHUNK);
    group.bench_function("memcpy_chunks", |b| {
        b.iter(|| {
            let mut total = 0;
            for chunk in black_box(&body).chunks(CHUNK) {
                copy.clear();
                copy.extend_from_slice(chunk);
                total += black_box(&copy).len();
            }
            total
        });
    });
    group.bench_function("serde_json_raw_values", |b| {
        b.iter(|| {
            serde_json::from_slice::<Vec<&RawValue>>(black_box(&body)).map(|items| items.len())
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = scanner
}
criterion_main!(benches);
