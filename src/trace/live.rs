//! The live window: the last `trace.live_events` requests in memory, so
//! `GET /v1/cache/profile` can run the profile over real traffic (typically
//! an observe-mode rollout) without a trace file.
//!
//! Every request pushes a line, so the window is per thread (one slot per
//! worker, [`PerThread`]): a push locks only the calling thread's slot, never
//! a lock every core writes. Each slot keeps its thread's latest
//! `live_events / cores` lines; a read merges the slots (the simulator
//! orders events by time itself).

use std::collections::VecDeque;
use std::sync::Arc;

use super::input::Reader;
use super::line::TraceLine;
use crate::percpu::PerThread;

pub struct LiveWindow {
    slots: PerThread<Slot>,
    per_slot: usize,
}

#[derive(Default)]
struct Slot {
    /// (namespace in clear, line): the clear name stays in memory only.
    lines: VecDeque<(Arc<str>, TraceLine)>,
    /// The namespace of the previous push, shared by the lines that follow
    /// (traffic comes from few namespaces: no copy per line).
    last_namespace: Option<Arc<str>>,
}

impl LiveWindow {
    pub fn new(capacity: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        LiveWindow {
            slots: PerThread::default(),
            per_slot: capacity.div_ceil(cores).max(1),
        }
    }

    pub fn push(&self, namespace: &str, line: TraceLine) {
        let per_slot = self.per_slot;
        self.slots.with(|slot| {
            let shared = match &slot.last_namespace {
                Some(last) if **last == *namespace => Arc::clone(last),
                _ => {
                    let fresh: Arc<str> = Arc::from(namespace);
                    slot.last_namespace = Some(Arc::clone(&fresh));
                    fresh
                }
            };
            if slot.lines.len() >= per_slot {
                slot.lines.pop_front();
            }
            slot.lines.push_back((shared, line));
        });
    }

    /// Feeds the remembered lines whose namespace `visible` accepts.
    pub fn feed(&self, reader: &mut Reader<'_>, visible: impl Fn(&str) -> bool) {
        self.slots.for_each(|slot| {
            for (_, line) in slot.lines.iter().filter(|(ns, _)| visible(ns)) {
                reader.trace(line);
            }
        });
    }

    /// Lines held, over every slot.
    pub fn len(&self) -> usize {
        let mut n = 0;
        self.slots.for_each(|slot| n += slot.lines.len());
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: f64) -> TraceLine {
        TraceLine {
            ts,
            ..TraceLine::default()
        }
    }

    #[test]
    fn each_thread_keeps_its_latest_lines_and_reads_merge_them() {
        let window = Arc::new(LiveWindow {
            slots: PerThread::default(),
            per_slot: 3,
        });
        for i in 0..5 {
            window.push("ns", line(f64::from(i)));
        }
        let other = Arc::clone(&window);
        std::thread::spawn(move || other.push("other", line(100.0)))
            .join()
            .unwrap();
        assert_eq!(window.len(), 4, "3 latest here + 1 from the other thread");
        let mut kept = Vec::new();
        window
            .slots
            .for_each(|slot| kept.extend(slot.lines.iter().map(|(_, l)| l.ts)));
        kept.sort_by(f64::total_cmp);
        assert_eq!(kept, vec![2.0, 3.0, 4.0, 100.0]);
    }
}
