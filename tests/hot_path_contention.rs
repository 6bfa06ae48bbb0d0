//! Contention check over the hit path (issue 15): no process-wide lock and no
//! shared atomic written per request in reprise's own code.
//!
//! On a 64-core host, one mutex or one atomic counter that every request
//! writes is a cache line bouncing between all cores: throughput stops
//! scaling with cores long before the CPU is busy. This lint reads the
//! source files a cache hit runs through and fails on any synchronization
//! primitive or shared-metric write that is not listed below with the reason
//! it is not written per request (or is written only in a per-thread slot).
//!
//! What remains shared per request lives in dependencies and is listed in
//! BENCHMARKS.md ("Many cores"): an L1 shard's read lock, `Arc` reference counts of
//! the state and of a hot entry, tokio's scheduler.
//!
//! Adding a lock or a shared counter to one of these files? Prefer a
//! per-thread slot (`reprise::percpu::PerThread`) or a read-mostly flag; if it
//! really is off the per-request path, add it to `ALLOWED` with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// The files a memory-tier hit runs through (handler to response).
const HOT_PATH: &[&str] = &[
    "src/server/mod.rs",
    "src/server/chat.rs",
    "src/pipeline/mod.rs",
    "src/pipeline/respond.rs",
    "src/pipeline/costing.rs",
    "src/pipeline/traced.rs",
    "src/cache/facts.rs",
    "src/cache/memory.rs",
    "src/cache/tier.rs",
    "src/cache/key/mod.rs",
    "src/cache/key/fields.rs",
    "src/cache/key/canonical.rs",
    "src/cache/policy.rs",
    "src/cache/namespace.rs",
    "src/cache/entry.rs",
    "src/stats.rs",
    "src/telemetry.rs",
    "src/admin/fleet.rs",
    "src/admin/top.rs",
    "src/admin/watermarks.rs",
    "src/render.rs",
    "src/state.rs",
    "src/stream/lazy.rs",
    "src/limits/requests.rs",
    "src/trace/mod.rs",
    "src/trace/live.rs",
    "src/trace/writer.rs",
];

/// What counts as a lock or a shared write.
const PATTERNS: &[&str] = &[
    "Mutex<",
    "RwLock<",
    ".lock()",
    ".read()",
    ".write()",
    "fetch_add",
    "fetch_sub",
    ".swap(",
    "compare_exchange",
    "metrics::counter!",
    "metrics::histogram!",
    "metrics::gauge!",
    "Semaphore",
    "try_acquire",
    "try_send(",
    ".send(",
];

/// (file, text on the line, why it is not a per-request shared write; or,
/// marked KNOWN, a per-request shared write that is there on purpose and is
/// listed in BENCHMARKS.md with what would remove it).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "src/trace/writer.rs",
        "self.tx.try_send(line)",
        "KNOWN, opt-in: with `trace.path` set, each request hands its line to \
         the writer thread's bounded channel (off by default; the live window \
         is per thread)",
    ),
    (
        "src/trace/writer.rs",
        "reprise_trace_dropped_total",
        "a line dropped because the writer fell behind (full channel)",
    ),
    (
        "src/limits/requests.rs",
        "Semaphore",
        "KNOWN: `limits.max_in_flight` is one process-wide budget: each request \
         takes and returns a permit (one CAS each on a shared counter)",
    ),
    (
        "src/limits/requests.rs",
        "try_acquire_owned()",
        "KNOWN: as above",
    ),
    (
        "src/pipeline/costing.rs",
        "metrics::counter!(\"reprise_unpriced_model_total\")",
        "a model missing from the price table: priced once per entry on hits",
    ),
    (
        "src/telemetry.rs",
        "STARTED.swap(",
        "once per process (the upkeep task)",
    ),
    (
        "src/telemetry.rs",
        "metrics::counter!(",
        "in Pending::flush: a thread's buffer, every FLUSH_EVERY requests",
    ),
    (
        "src/telemetry.rs",
        "metrics::histogram!(",
        "in Pending::flush, as above",
    ),
    (
        "src/admin/fleet.rs",
        "history: Mutex<",
        "the once-a-second flush task and series reads only",
    ),
    (
        "src/admin/fleet.rs",
        "self.history.lock()",
        "the once-a-second flush task and series reads only",
    ),
    (
        "src/admin/fleet.rs",
        "reprise_fleet_stats_dropped_total",
        "a failed flush (the background task)",
    ),
    (
        "src/admin/watermarks.rs",
        "update: Mutex<",
        "purges and syncs only (lookups read through ArcSwap)",
    ),
    (
        "src/admin/watermarks.rs",
        "self.update.lock()",
        "purges and syncs only",
    ),
];

/// The part of a file before its unit tests.
fn code_of(path: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    match text.find("#[cfg(test)]") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[test]
fn the_hit_path_takes_no_process_wide_lock_and_writes_no_shared_counter() {
    let mut found = Vec::new();
    for path in HOT_PATH {
        for (n, line) in code_of(path).lines().enumerate() {
            let code = line.trim();
            if code.starts_with("//") {
                continue;
            }
            let Some(pattern) = PATTERNS.iter().find(|p| code.contains(*p)) else {
                continue;
            };
            let allowed = ALLOWED
                .iter()
                .any(|(file, text, _)| file == path && code.contains(text));
            if !allowed {
                found.push(format!("{path}:{}: `{pattern}` in `{code}`", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "locks or shared writes on the hit path (see this file's header):\n{}",
        found.join("\n")
    );
}

/// The per-thread slots the request path writes really are per thread: two
/// threads recording at once write two slots, and a read merges them.
#[test]
fn request_statistics_are_kept_per_thread() {
    use reprise::render::{CacheStatus, Tier};
    use reprise::stats::{Record, Stats};
    use std::sync::{Arc, Barrier};

    let stats = Arc::new(Stats::default());
    let together = Arc::new(Barrier::new(2));
    let hit = Record {
        status: Some(CacheStatus::Hit),
        tier: Some(Tier::Memory),
        ..Record::default()
    };
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stats, together, hit) = (stats.clone(), together.clone(), hit.clone());
            std::thread::spawn(move || {
                together.wait();
                for _ in 0..500 {
                    stats.record("ns", "chat", "m", &hit);
                }
                together.wait();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(stats.threads(), 2);
    let report = stats.report(|_| true);
    assert_eq!(report["requests"], 1000);
    assert_eq!(report["hits"]["memory"], 1000);
}
