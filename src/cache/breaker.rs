//! Circuit breaker for the shared tier: after `threshold` consecutive failures
//! Redis is skipped for `backoff`; then one probe is let through, and its
//! success closes the breaker. State changes are logged once each, never per
//! request, and exported as a gauge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else skips.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    /// `state` is `Closed { failures: 0 }`: the healthy case, in which
    /// `allow` and `success` only read this flag (every Redis operation calls
    /// them; a lock there would be a process-wide write per request).
    healthy: AtomicBool,
    threshold: u32,
    backoff: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, backoff: Duration) -> Self {
        metrics::gauge!("reprise_redis_breaker_open").set(0.0);
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            healthy: AtomicBool::new(true),
            threshold: threshold.max(1),
            backoff,
        }
    }

    /// May this operation try Redis? An open breaker whose back-off has passed
    /// lets exactly one probe through.
    pub fn allow(&self) -> bool {
        if self.healthy.load(Ordering::Acquire) {
            return true;
        }
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        match *state {
            State::Closed { .. } => true,
            State::HalfOpen => false,
            State::Open { until } => {
                if Instant::now() >= until {
                    *state = State::HalfOpen;
                    true
                } else {
                    false
                }
            }
        }
    }

    pub fn success(&self) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if !matches!(*state, State::Closed { .. }) {
            tracing::info!("redis is reachable again; shared cache tier resumed");
            metrics::gauge!("reprise_redis_breaker_open").set(0.0);
        }
        *state = State::Closed { failures: 0 };
        self.healthy.store(true, Ordering::Release);
    }

    pub fn failure(&self, what: &str) {
        metrics::counter!("reprise_redis_errors_total").increment(1);
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        self.healthy.store(false, Ordering::Release);
        let open = match *state {
            State::Closed { failures } if failures + 1 >= self.threshold => {
                tracing::warn!(
                    "redis failing ({what}); skipping the shared tier for {:?} (fail-open)",
                    self.backoff
                );
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            // A failed probe re-opens quietly: the outage was already logged.
            State::HalfOpen | State::Open { .. } => true,
        };
        if open {
            *state = State::Open {
                until: super::ttl::instant_after(Instant::now(), self.backoff),
            };
            metrics::gauge!("reprise_redis_breaker_open").set(1.0);
        }
    }

    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|s| !matches!(*s, State::Closed { .. }))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_probes_after_backoff_and_recovers() {
        let b = Breaker::new(3, Duration::from_secs(2));
        b.failure("x");
        b.failure("x");
        assert!(b.allow() && !b.is_open());
        b.failure("x");
        assert!(b.is_open());
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.allow(), "one probe after the back-off");
        assert!(!b.allow(), "only one");
        b.failure("probe");
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.allow());
        b.success();
        assert!(!b.is_open());
        assert!(b.allow() && b.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(1));
        b.failure("x");
        b.success();
        b.failure("x");
        assert!(!b.is_open());
    }
}
