//! The trace file writer: requests hand lines to a bounded channel (never
//! blocking: a full channel drops the line and counts it), a background
//! thread appends them, flushes whenever it has caught up, and rotates the
//! file by size (`path` → `path.1` → … → `path.{keep}`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use super::line::TraceLine;

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE: usize = 16_384;

pub struct TraceWriter {
    tx: SyncSender<TraceLine>,
}

impl TraceWriter {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn start(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        let file = open(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = sync_channel(QUEUE);
        let sink = Sink {
            out: BufWriter::new(file),
            path,
            written,
            max_bytes,
            keep,
        };
        std::thread::Builder::new()
            .name("reprise-trace".into())
            .spawn(move || sink.run(rx))?;
        Ok(TraceWriter { tx })
    }

    /// Queues a line; drops it (and counts the drop) when the writer lags.
    pub fn write(&self, line: TraceLine) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("reprise_trace_dropped_total").increment(1);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

struct Sink {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
    max_bytes: u64,
    keep: u32,
}

impl Sink {
    fn run(mut self, rx: Receiver<TraceLine>) {
        // Block for a line, then drain what is queued, then flush: lines
        // reach the file as soon as the writer has caught up.
        while let Ok(line) = rx.recv() {
            self.append(&line);
            while let Ok(line) = rx.try_recv() {
                self.append(&line);
            }
            if let Err(e) = self.out.flush() {
                tracing::warn!(error = %e, "trace flush failed");
            }
        }
        let _ = self.out.flush();
    }

    fn append(&mut self, line: &TraceLine) {
        let Ok(mut bytes) = serde_json::to_vec(line) else {
            return;
        };
        bytes.push(b'\n');
        if self.written > 0 && self.written + bytes.len() as u64 > self.max_bytes {
            if let Err(e) = self.rotate() {
                tracing::warn!(error = %e, "trace rotation failed");
            }
        }
        match self.out.write_all(&bytes) {
            Ok(()) => self.written += bytes.len() as u64,
            Err(e) => {
                metrics::counter!("reprise_trace_dropped_total").increment(1);
                tracing::debug!(error = %e, "trace write failed");
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.out = BufWriter::new(open(&self.path)?);
        self.written = 0;
        Ok(())
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("reprise-trace-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t.jsonl");
        let mut sink = Sink {
            out: BufWriter::new(open(&path).unwrap()),
            path: path.clone(),
            written: 0,
            max_bytes: 1000,
            keep: 2,
        };
        for i in 0..40 {
            sink.append(&TraceLine {
                model: format!("m{i}"),
                ..TraceLine::default()
            });
        }
        sink.out.flush().unwrap();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 1000);
        assert!(size(&dir.join("t.jsonl.1")) > 0);
        assert!(size(&dir.join("t.jsonl.2")) > 0);
        assert!(!dir.join("t.jsonl.3").exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("\"m39\""), "{last}");
    }
}
