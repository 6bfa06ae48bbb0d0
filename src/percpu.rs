//! Per-thread state merged on read: the request path's counters without a
//! process-wide lock.
//!
//! Every request adds to statistics (`stats`, fleet tallies, top entries).
//! Behind one `Mutex`, every request on every core would write the same lock
//! word: on a many-core host they serialize on it and its cache line bounces
//! between cores. [`PerThread`] gives each thread (in practice each tokio
//! worker) its own slot, so the request path only ever locks a mutex that no
//! other thread touches except a reader merging the slots (a stats read, a
//! flush: rare). The per-slot mutex is never contended on the request path;
//! it is there because readers must see a consistent slot.

use std::sync::{Mutex, MutexGuard};

use thread_local::ThreadLocal;

/// One `T` per thread that used it, merged (or drained) by readers.
pub struct PerThread<T: Send> {
    slots: ThreadLocal<Mutex<T>>,
}

impl<T: Send + Default> Default for PerThread<T> {
    fn default() -> Self {
        PerThread {
            slots: ThreadLocal::new(),
        }
    }
}

impl<T: Send + Default> PerThread<T> {
    /// Runs `f` on the calling thread's slot (created on first use). Does
    /// nothing if the slot was poisoned by a panic in an earlier `f`.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let slot = self.slots.get_or_default();
        let mut guard = slot.lock().ok()?;
        Some(f(&mut guard))
    }

    /// Every thread's slot, one at a time (each locked while `f` reads it).
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        for slot in self.slots.iter() {
            if let Ok(guard) = slot.lock() {
                f(&guard);
            }
        }
    }

    /// Takes every thread's slot, leaving defaults behind.
    pub fn drain(&self, mut f: impl FnMut(T)) {
        for slot in self.slots.iter() {
            if let Ok(mut guard) = slot.lock() {
                f(std::mem::take(&mut *guard));
            }
        }
    }

    /// How many threads have a slot (tests: the contention check).
    pub fn slots(&self) -> usize {
        self.slots.iter().count()
    }

    /// The calling thread's slot, locked (tests and rare paths).
    pub fn local(&self) -> Option<MutexGuard<'_, T>> {
        self.slots.get_or_default().lock().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_thread_writes_its_own_slot_and_reads_merge_them() {
        let counts: Arc<PerThread<u64>> = Arc::new(PerThread::default());
        // All four alive at once (an exited thread's slot is reused).
        let together = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (counts, together) = (counts.clone(), together.clone());
                std::thread::spawn(move || {
                    together.wait();
                    for _ in 0..1000 {
                        counts.with(|c| *c += 1);
                    }
                    together.wait();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Four concurrent writer threads, four slots: none shared one.
        assert_eq!(counts.slots(), 4);
        let mut total = 0;
        counts.for_each(|c| total += c);
        assert_eq!(total, 4000);
        let mut drained = 0;
        counts.drain(|c| drained += c);
        assert_eq!(drained, 4000);
        let mut after = 0;
        counts.for_each(|c| after += c);
        assert_eq!(after, 0);
    }
}
