//! The live window: the last `trace.live_events` requests in memory, so
//! `GET /v1/cache/profile` can run the profile over real traffic (typically
//! an observe-mode rollout) without a trace file.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::input::Reader;
use super::line::TraceLine;

pub struct LiveWindow {
    /// (namespace in clear, line): the clear name stays in memory only.
    lines: Mutex<VecDeque<(String, TraceLine)>>,
    capacity: usize,
}

impl LiveWindow {
    pub fn new(capacity: usize) -> Self {
        LiveWindow {
            lines: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
        }
    }

    pub fn push(&self, namespace: &str, line: TraceLine) {
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() >= self.capacity {
                lines.pop_front();
            }
            lines.push_back((namespace.to_owned(), line));
        }
    }

    /// Feeds the remembered lines whose namespace `visible` accepts.
    pub fn feed(&self, reader: &mut Reader<'_>, visible: impl Fn(&str) -> bool) {
        if let Ok(lines) = self.lines.lock() {
            for (_, line) in lines.iter().filter(|(ns, _)| visible(ns)) {
                reader.trace(line);
            }
        }
    }
}
