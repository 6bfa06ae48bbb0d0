//! Passive health of one replica: consecutive failures eject it for a
//! back-off; when the back-off ends, one probe decides whether it comes back
//! (success) or stays out for twice as long (failure, up to a maximum).
//!
//! Lock-free: a few atomics per replica, read on every pick. Times are
//! milliseconds since the owning replica set was built (`Clock`), from
//! `tokio::time::Instant`, so tests can drive them with paused time.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Milliseconds since a fixed origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Health settings, copied out of `[routing.health]`.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    pub eject_after: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// Where a replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Takes traffic.
    Healthy,
    /// Out until its back-off ends.
    Ejected,
    /// The back-off ended: out until a probe succeeds.
    AwaitingProbe,
}

#[derive(Debug, Default)]
pub struct Health {
    consecutive_failures: AtomicU32,
    /// 0 = not ejected; else the ejection's end (ms on the clock, at least 1).
    ejected_until: AtomicU64,
    /// Length of the current (or last) ejection, for doubling.
    backoff_ms: AtomicU64,
    /// A probe is running (at most one per replica).
    probing: AtomicBool,
}

impl Health {
    pub fn standing(&self, now_ms: u64) -> Standing {
        match self.ejected_until.load(Ordering::Acquire) {
            0 => Standing::Healthy,
            until if now_ms < until => Standing::Ejected,
            _ => Standing::AwaitingProbe,
        }
    }

    pub fn is_healthy(&self, now_ms: u64) -> bool {
        self.standing(now_ms) == Standing::Healthy
    }

    /// An answer arrived: the failure streak ends and the replica is back.
    pub fn record_success(&self) {
        // Read before writing: a healthy replica's success (every request)
        // then writes nothing that other cores share.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.ejected_until.load(Ordering::Acquire) != 0
            && self.ejected_until.swap(0, Ordering::AcqRel) != 0
        {
            self.backoff_ms.store(0, Ordering::Relaxed);
            metrics::counter!("reprise_replica_recoveries_total").increment(1);
        }
    }

    /// A failure: ejects the replica when the streak reaches `eject_after`.
    /// Returns true when this call ejected it.
    pub fn record_failure(&self, now_ms: u64, policy: &HealthPolicy) -> bool {
        let streak = self
            .consecutive_failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if streak < policy.eject_after || self.ejected_until.load(Ordering::Acquire) != 0 {
            return false;
        }
        self.eject(now_ms, policy, false)
    }

    /// Claims the probe of a replica whose back-off ended; true for exactly
    /// one caller until [`Health::probe_done`].
    pub fn claim_probe(&self, now_ms: u64) -> bool {
        self.standing(now_ms) == Standing::AwaitingProbe
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The probe's verdict: back in service, or ejected for twice as long.
    pub fn probe_done(&self, ok: bool, now_ms: u64, policy: &HealthPolicy) {
        if ok {
            self.record_success();
        } else {
            self.eject(now_ms, policy, true);
        }
        self.probing.store(false, Ordering::Release);
    }

    fn eject(&self, now_ms: u64, policy: &HealthPolicy, again: bool) -> bool {
        let base = duration_ms(policy.backoff);
        let max = duration_ms(policy.max_backoff).max(base);
        let previous = self.backoff_ms.load(Ordering::Relaxed);
        let backoff = if again && previous > 0 {
            previous.saturating_mul(2).min(max)
        } else {
            base
        };
        self.backoff_ms.store(backoff, Ordering::Relaxed);
        let until = now_ms.saturating_add(backoff).max(1);
        self.ejected_until.store(until, Ordering::Release);
        metrics::counter!("reprise_replica_ejections_total").increment(1);
        true
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        eject_after: 3,
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(350),
    };

    #[test]
    fn ejects_after_the_streak_and_a_success_resets_it() {
        let h = Health::default();
        assert!(!h.record_failure(0, &POLICY));
        assert!(!h.record_failure(0, &POLICY));
        h.record_success();
        assert!(!h.record_failure(0, &POLICY));
        assert!(!h.record_failure(0, &POLICY));
        assert!(h.is_healthy(0));
        assert!(h.record_failure(10, &POLICY), "third in a row ejects");
        assert_eq!(h.standing(50), Standing::Ejected);
        assert!(!h.claim_probe(50), "no probe before the back-off ends");
        assert_eq!(h.standing(110), Standing::AwaitingProbe);
    }

    #[test]
    fn one_probe_at_a_time_and_failed_probes_double_the_backoff() {
        let h = Health::default();
        for _ in 0..3 {
            h.record_failure(0, &POLICY);
        }
        assert!(h.claim_probe(100));
        assert!(!h.claim_probe(100), "a second caller does not probe too");
        h.probe_done(false, 100, &POLICY);
        assert_eq!(h.standing(299), Standing::Ejected, "200 ms the second time");
        assert!(h.claim_probe(300));
        h.probe_done(false, 300, &POLICY);
        assert_eq!(h.standing(649), Standing::Ejected, "capped at 350 ms");
        assert_eq!(h.standing(650), Standing::AwaitingProbe);
        assert!(h.claim_probe(650));
        h.probe_done(true, 650, &POLICY);
        assert!(h.is_healthy(650));
        // A later ejection starts again from the base back-off.
        for _ in 0..3 {
            h.record_failure(700, &POLICY);
        }
        assert_eq!(h.standing(800), Standing::AwaitingProbe);
    }
}
