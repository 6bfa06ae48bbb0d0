//! Single-flight: concurrent identical misses make one upstream call.
//!
//! The first request for a key becomes the leader; later ones follow and
//! wait (bounded) for its outcome. A leader that got a shareable response
//! (complete 2xx) hands it to every follower. A leader that failed (error
//! status, timeout, cancelled) does not pass its error on: followers re-join,
//! so exactly one of them becomes the next leader and retries, and the rest
//! follow that attempt. A follower that waited `wait_timeout` in vain goes
//! upstream itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::entry::Entry;
use super::key::CacheKey;
use super::live::LiveStream;

/// What a finished flight left for its followers.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A complete 2xx response: followers answer with it (`coalesced`).
    Shared(Arc<Entry>),
    /// The leader failed. Followers re-join once (one of them retries); a
    /// follower whose retry flight failed too answers with that error, when
    /// there is one to give.
    Failed(Option<Arc<FailedReply>>),
}

/// An error answer, kept so a confirmed failure can answer the followers.
#[derive(Debug)]
pub struct FailedReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// A follower's view of a flight: its outcome and, when the leader is a
/// stream, the live bytes (followers read them as they arrive).
#[derive(Clone)]
pub struct Slot {
    outcome: watch::Receiver<Option<Outcome>>,
    pub live: Option<Arc<LiveStream>>,
}

#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<CacheKey, Slot>>,
}

/// The caller's part in a flight.
pub enum Role {
    Leader(LeaderGuard),
    Follower(Slot),
}

impl Flights {
    pub fn new() -> Arc<Self> {
        Arc::new(Flights::default())
    }

    /// Leads a new flight for `key` (publishing `live` when the leader
    /// streams), or follows the one in progress.
    pub fn join(self: &Arc<Self>, key: CacheKey, live: Option<Arc<LiveStream>>) -> Role {
        let Ok(mut map) = self.map.lock() else {
            // A poisoned map only costs coalescing: lead alone.
            let (tx, _) = watch::channel(None);
            return Role::Leader(LeaderGuard {
                key,
                flights: None,
                tx: Some(tx),
            });
        };
        if let Some(slot) = map.get(&key) {
            if slot.outcome.borrow().is_none() {
                return Role::Follower(slot.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, Slot { outcome: rx, live });
        Role::Leader(LeaderGuard {
            key,
            flights: Some(self.clone()),
            tx: Some(tx),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn finish(&self, key: &CacheKey) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }
}

/// Waits for the leader's outcome; None when `timeout` passed first.
pub async fn wait(slot: Slot, timeout: Duration) -> Option<Outcome> {
    let mut rx = slot.outcome;
    let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
    match waited {
        Ok(Ok(outcome)) => outcome.clone(),
        // The leader vanished without completing: same as a failure.
        Ok(Err(_)) => Some(Outcome::Failed(None)),
        Err(_) => None,
    }
}

/// Held by the leader. Dropping it without `complete` (an error path, a
/// cancelled request) tells the followers the flight failed.
pub struct LeaderGuard {
    key: CacheKey,
    flights: Option<Arc<Flights>>,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl LeaderGuard {
    pub fn complete(mut self, outcome: Outcome) {
        self.publish(outcome);
    }

    fn publish(&mut self, outcome: Outcome) {
        if let Some(flights) = self.flights.take() {
            flights.finish(&self.key);
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(outcome));
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.publish(Outcome::Failed(None));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::ttl::Ttl;
    use super::*;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry::new(
            Bytes::from_static(b"{}"),
            "application/json".into(),
            Ttl::Forever,
            None,
        ))
    }

    #[tokio::test]
    async fn followers_receive_the_leaders_entry() {
        let flights = Flights::new();
        let k = CacheKey([7; 32]);
        let Role::Leader(leader) = flights.join(k, None) else {
            panic!("first is leader")
        };
        let Role::Follower(a) = flights.join(k, None) else {
            panic!("second follows")
        };
        let Role::Follower(b) = flights.join(k, None) else {
            panic!("third follows")
        };
        leader.complete(Outcome::Shared(entry()));
        for slot in [a, b] {
            assert!(matches!(
                wait(slot, Duration::from_secs(1)).await,
                Some(Outcome::Shared(_))
            ));
        }
        assert_eq!(flights.in_flight(), 0);
        assert!(
            matches!(flights.join(k, None), Role::Leader(_)),
            "a finished flight is gone"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_fails_the_flight_and_a_follower_takes_over() {
        let flights = Flights::new();
        let k = CacheKey([8; 32]);
        let leader = flights.join(k, None);
        let Role::Follower(slot) = flights.join(k, None) else {
            panic!()
        };
        drop(leader);
        assert!(matches!(
            wait(slot, Duration::from_secs(1)).await,
            Some(Outcome::Failed(None))
        ));
        assert!(matches!(flights.join(k, None), Role::Leader(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded() {
        let flights = Flights::new();
        let k = CacheKey([9; 32]);
        let _leader = flights.join(k, None);
        let Role::Follower(slot) = flights.join(k, None) else {
            panic!()
        };
        assert!(wait(slot, Duration::from_secs(5)).await.is_none());
    }
}
