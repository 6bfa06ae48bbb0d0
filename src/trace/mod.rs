//! Traces: one metadata-only JSON line per cached-endpoint request, and the
//! profile simulator that turns traces (or plain request logs) into TTL and
//! memory recommendations.
//!
//! A trace line never holds prompt or answer text: only hashes (namespace,
//! key), names (endpoint, provider, model), counts, prices and timings.
//!
//! - `line.rs`: the line format (written by the server, read by `profile`);
//! - `writer.rs`: the file writer (a background thread, size rotation);
//! - `live.rs`: the bounded in-memory window behind `GET /v1/cache/profile`;
//! - `input.rs`: reading traces and request logs into simulator events;
//! - `simulate.rs`: the simulated cache per TTL and memory budget;
//! - `report.rs`: the report as text, TOML (`[[cache.rules]]`) or JSON.

pub mod input;
pub mod line;
pub mod live;
pub mod report;
pub mod simulate;
pub mod writer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[trace]`: where trace lines go, and the live window's size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// JSONL file receiving one line per request; None = no trace file.
    pub path: Option<PathBuf>,
    /// Past this size the file is rotated (`path.1`, `path.2`, …).
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
    /// Requests remembered in memory for `GET /v1/cache/profile` (0 = off).
    pub live_events: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            path: None,
            max_bytes: 100 * 1024 * 1024,
            keep: 3,
            live_events: 100_000,
        }
    }
}

impl TraceConfig {
    /// What serde cannot check: (field, message).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.max_bytes < 4096 {
            return Some(("trace.max_bytes", "must be at least 4096"));
        }
        if self.keep > 100 {
            return Some(("trace.keep", "must be at most 100"));
        }
        if self.live_events > 10_000_000 {
            return Some(("trace.live_events", "must be at most 10000000"));
        }
        None
    }
}

/// The trace sinks of a running instance.
pub struct Tracer {
    writer: Option<writer::TraceWriter>,
    pub live: Option<live::LiveWindow>,
}

impl Tracer {
    pub fn new(config: &TraceConfig) -> std::io::Result<Self> {
        let writer = match &config.path {
            Some(path) => Some(writer::TraceWriter::start(
                path.clone(),
                config.max_bytes,
                config.keep,
            )?),
            None => None,
        };
        Ok(Tracer {
            writer,
            live: (config.live_events > 0).then(|| live::LiveWindow::new(config.live_events)),
        })
    }

    /// Whether any sink wants lines (building one costs a few allocations).
    pub fn enabled(&self) -> bool {
        self.writer.is_some() || self.live.is_some()
    }

    pub fn record(&self, namespace: &str, line: line::TraceLine) {
        match (&self.writer, &self.live) {
            (Some(w), Some(l)) => {
                w.write(line.clone());
                l.push(namespace, line);
            }
            (Some(w), None) => w.write(line),
            (None, Some(l)) => l.push(namespace, line),
            (None, None) => {}
        }
    }
}
