//! Routing-table lookups per second and memory per mapping, at 10 thousand and 1 million
#![allow(unsafe_code)] // a counting allocator, for the memory figure only
//! mappings. Run: `cargo bench -p mtls-runtime --bench lookup` (release profile).
//!
//! Each size is built once; lookups run in 5 rounds over a mixed stream (hits in normal form,
//! hits that need normalization, misses) and the median round is reported.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mtls_runtime::{Entry, Route, Table};

/// Counts live heap bytes, to measure what the table holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn url(i: usize) -> String {
    format!(
        "https://tenant-{}.example.com/oauth/token?client={i}",
        i % 9973
    )
}

fn key(i: usize) -> (String, String) {
    (
        format!("{}", 10_000_000 + i % 50_000),
        ["IDP", "WEBHOOKS", "FAAS"][i % 3].to_owned(),
    )
}

fn entries(count: usize) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry {
            account: key(i).0,
            service: key(i).1,
            url: url(i),
            route: Route {
                mapping_id: i as i64,
                certificate_id: (i / 3) as i64,
                certificate_version: 1,
                secret_stored: true,
                not_before: 0,
                not_after: i64::MAX,
                upstream_ca: None,
            },
        })
        .collect()
}

fn main() {
    for count in [10_000usize, 1_000_000] {
        let probes: Vec<(String, String, String)> = (0..100_000)
            .map(|k| {
                let i = (k * 7919) % count;
                let (account, service) = key(i);
                let url = match k % 4 {
                    0 | 1 => url(i),
                    2 => url(i)
                        .replace("https://tenant", "HTTPS://Tenant")
                        .replace(".com/", ".com:443/"),
                    _ => format!("{}-miss", url(i)),
                };
                (account, service, url)
            })
            .collect();
        let before = LIVE.load(Ordering::Relaxed);
        let source = entries(count);
        let started = Instant::now();
        let table = Table::new(source, 1);
        let build = started.elapsed();
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);

        let mut rounds = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let mut found = 0usize;
            for (account, service, url) in &probes {
                if table.exists(
                    black_box(account),
                    black_box(service),
                    black_box(url),
                    1_700_000_000,
                ) {
                    found += 1;
                }
            }
            let elapsed = started.elapsed();
            black_box(found);
            rounds.push(probes.len() as f64 / elapsed.as_secs_f64());
        }
        rounds.sort_by(|a, b| a.total_cmp(b));
        let median = rounds[rounds.len() / 2];
        println!(
            "{count:>9} mappings: {:>6.1} M lookups/s (median of 5; 3/4 hits, 1/4 of them normalized), \
             {:>4} bytes per mapping (table + keys), built in {:.0} ms",
            median / 1e6,
            held / count,
            build.as_secs_f64() * 1e3
        );
        drop(table);
    }
}
