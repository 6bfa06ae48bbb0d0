//! Refresh-ahead decisions: which hot entries close to expiry are re-fetched
//! (the re-fetch itself is `pipeline::refresh`).
//!
//! A rule with `refresh_ahead = true` keeps the caller's request inside every
//! entry it writes (`Entry::request`). Hits on such entries are counted here,
//! per instance and per entry version (an entry's write time: a refreshed
//! entry starts from zero). The first hit that finds an entry hit at least
//! `min_hits` times and within `window` of its expiry claims the entry's one
//! refresh, when the global budget has room: at most `max_per_minute`
//! refreshes in any 60 seconds (a sliding log of start times, so the bound
//! holds over every window, not only per calendar minute). A claimed entry is
//! never claimed again, whatever the refresh's outcome; an entry refused by
//! the budget can still be claimed by a later hit.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] entries are counted (expired
//! ones are dropped to make room; past that, new entries are not counted and
//! so not refreshed) and the budget log holds at most `max_per_minute` times.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use tokio::time::Instant;

use super::entry::Entry;
use super::key::CacheKey;
use super::ttl;

/// Entries whose hits are counted at once.
pub const MAX_TRACKED: usize = 65_536;
/// Upper bound of `cache.refresh_max_per_minute`.
pub const MAX_PER_MINUTE: u32 = 100_000;
/// `refresh_min_hits` when a rule sets none.
pub const DEFAULT_MIN_HITS: u32 = 2;
/// The span the budget counts over.
const BUDGET_SPAN: Duration = Duration::from_secs(60);
/// How often a full table is scanned for expired entries.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// How close to expiry an entry must be to be refreshed: a share of its TTL
/// (`"10%"`, kept in tenths of a percent) or a fixed span (`"30s"`, capped
/// at the TTL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshWindow {
    Permille(u16),
    Span(Duration),
}

impl Default for RefreshWindow {
    fn default() -> Self {
        RefreshWindow::Permille(100)
    }
}

impl RefreshWindow {
    /// The window for an entry with this TTL.
    pub fn of(self, ttl: Duration) -> Duration {
        match self {
            RefreshWindow::Permille(p) => ttl.mul_f64(f64::from(p) / 1000.0),
            RefreshWindow::Span(d) => d.min(ttl),
        }
    }

    /// `"12.5%"`, whole seconds or a duration like `"30s"`.
    pub fn parse(text: &str) -> Option<RefreshWindow> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let p: f64 = percent.trim().parse().ok()?;
            let permille = (p * 10.0).round();
            return (permille > 0.0 && permille <= 1000.0)
                .then_some(RefreshWindow::Permille(permille as u16));
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let secs = text.parse::<u64>().unwrap_or(u64::MAX);
            return Some(RefreshWindow::Span(ttl::clamp(Duration::from_secs(secs))));
        }
        humantime::parse_duration(text)
            .ok()
            .map(|d| RefreshWindow::Span(ttl::clamp(d)))
    }

    /// What is wrong with it as a setting, if anything.
    pub fn problem(self) -> Option<&'static str> {
        match self {
            RefreshWindow::Permille(p) if p == 0 || p > 1000 => {
                Some("a percentage must be above 0% and at most 100%")
            }
            RefreshWindow::Span(d) if d.is_zero() => Some("must be greater than 0"),
            _ => None,
        }
    }
}

impl fmt::Display for RefreshWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshWindow::Permille(p) if p % 10 == 0 => write!(f, "{}%", p / 10),
            RefreshWindow::Permille(p) => write!(f, "{}.{}%", p / 10, p % 10),
            RefreshWindow::Span(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Serialize for RefreshWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RefreshWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(RefreshWindow::Span(ttl::clamp(Duration::from_secs(s)))),
            Raw::Text(t) => RefreshWindow::parse(&t).ok_or_else(|| {
                de::Error::custom(format!(
                    "invalid refresh_window `{t}`; use a share of the TTL like \"10%\" or a duration like \"30s\""
                ))
            }),
        }
    }
}

/// A rule's refresh-ahead settings (present only when `refresh_ahead = true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    pub min_hits: u32,
    pub window: RefreshWindow,
}

/// What one hit decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do (cold, not yet near expiry, or already claimed).
    Wait,
    /// This hit claimed the entry's refresh and spent a unit of budget.
    Refresh,
    /// Due, but the budget is spent (reported once per entry version).
    OverBudget,
}

/// One counted entry version.
#[derive(Clone, Copy)]
struct Heat {
    written_at_ms: u64,
    hits: u32,
    claimed: bool,
    refused: bool,
    expires: Instant,
}

struct Inner {
    entries: HashMap<CacheKey, Heat>,
    /// Start times of the refreshes of the last [`BUDGET_SPAN`].
    spent: VecDeque<Instant>,
    next_prune: Instant,
}

/// Hit counts and the budget of one instance.
pub struct Refresher {
    max_per_minute: u32,
    inner: Mutex<Inner>,
}

impl Refresher {
    pub fn new(max_per_minute: u32) -> Self {
        let max_per_minute = max_per_minute.min(MAX_PER_MINUTE);
        Refresher {
            max_per_minute,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                spent: VecDeque::with_capacity(max_per_minute.min(1024) as usize),
                next_prune: Instant::now(),
            }),
        }
    }

    /// Counts a hit on `entry` (found under `key`) and decides whether this
    /// hit starts its refresh.
    pub fn on_hit(&self, key: &CacheKey, entry: &Entry, policy: RefreshPolicy) -> Decision {
        // An entry that never expires never needs refreshing.
        let (Some(ttl), Some(remaining)) = (entry.ttl.duration(), entry.remaining()) else {
            return Decision::Wait;
        };
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else {
            return Decision::Wait;
        };
        let inner = &mut *inner;
        let known = inner
            .entries
            .get(key)
            .is_some_and(|h| h.written_at_ms == entry.written_at_ms);
        if !known && !inner.make_room(key, now) {
            return Decision::Wait;
        }
        let version = Heat {
            written_at_ms: entry.written_at_ms,
            hits: 0,
            claimed: false,
            refused: false,
            expires: ttl::instant_after(entry.stored_at, ttl),
        };
        let heat = inner.entries.entry(*key).or_insert(version);
        if !known {
            *heat = version;
        }
        heat.hits = heat.hits.saturating_add(1);
        if heat.claimed || heat.hits < policy.min_hits || remaining > policy.window.of(ttl) {
            return Decision::Wait;
        }
        // The budget: forget starts older than the span, then take a unit.
        while inner
            .spent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= BUDGET_SPAN)
        {
            inner.spent.pop_front();
        }
        if inner.spent.len() >= self.max_per_minute as usize {
            if heat.refused {
                return Decision::Wait;
            }
            heat.refused = true;
            return Decision::OverBudget;
        }
        inner.spent.push_back(now);
        heat.claimed = true;
        Decision::Refresh
    }

    /// Entries currently counted (for tests and the bound).
    pub fn tracked(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.entries.len())
    }
}

impl Inner {
    /// Whether `key` may get a slot: there is room, or there is after
    /// dropping expired entries (scanned at most every [`PRUNE_EVERY`]).
    fn make_room(&mut self, key: &CacheKey, now: Instant) -> bool {
        if self.entries.len() < MAX_TRACKED || self.entries.contains_key(key) {
            return true;
        }
        if now < self.next_prune {
            return false;
        }
        self.next_prune = ttl::instant_after(now, PRUNE_EVERY);
        self.entries.retain(|_, h| h.expires > now);
        self.entries.len() < MAX_TRACKED
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::ttl::Ttl;

    fn entry(ttl_secs: u64) -> Entry {
        Entry::new(
            Bytes::from_static(b"{}"),
            "application/json".into(),
            Ttl::secs(ttl_secs),
            None,
        )
    }

    fn key(i: u8) -> CacheKey {
        CacheKey([i; 32])
    }

    const POLICY: RefreshPolicy = RefreshPolicy {
        min_hits: 2,
        window: RefreshWindow::Permille(100),
    };

    #[test]
    fn windows_parse_and_print() {
        let p = RefreshWindow::parse;
        assert_eq!(p("10%"), Some(RefreshWindow::Permille(100)));
        assert_eq!(p("12.5 %"), Some(RefreshWindow::Permille(125)));
        assert_eq!(p("100%"), Some(RefreshWindow::Permille(1000)));
        assert_eq!(p("0%"), None);
        assert_eq!(p("101%"), None);
        assert_eq!(p("30s"), Some(RefreshWindow::Span(Duration::from_secs(30))));
        assert_eq!(p("90"), Some(RefreshWindow::Span(Duration::from_secs(90))));
        assert_eq!(p("soon"), None);
        for text in ["10%", "12.5%", "30s", "1h 30m"] {
            assert_eq!(
                p(text).unwrap().to_string().replace(' ', ""),
                text.replace(' ', "")
            );
        }
        let ttl = Duration::from_secs(600);
        assert_eq!(RefreshWindow::default().of(ttl), Duration::from_secs(60));
        assert_eq!(
            RefreshWindow::Span(Duration::from_secs(30)).of(ttl),
            Duration::from_secs(30)
        );
        assert_eq!(RefreshWindow::Span(Duration::from_secs(900)).of(ttl), ttl);
        assert!(RefreshWindow::Span(Duration::ZERO).problem().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_entry_is_claimed_once_inside_its_window() {
        let r = Refresher::new(10);
        let e = entry(100);
        // Hot but early: 10% of 100 s = the last 10 s.
        for _ in 0..5 {
            assert_eq!(r.on_hit(&key(1), &e, POLICY), Decision::Wait);
        }
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(r.on_hit(&key(1), &e, POLICY), Decision::Wait);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(r.on_hit(&key(1), &e, POLICY), Decision::Refresh);
        assert_eq!(r.on_hit(&key(1), &e, POLICY), Decision::Wait, "once");
        // A new version of the entry (a refresh wrote it) counts afresh.
        let mut newer = entry(100);
        newer.written_at_ms = e.written_at_ms + 1;
        assert_eq!(r.on_hit(&key(1), &newer, POLICY), Decision::Wait);
    }

    #[tokio::test(start_paused = true)]
    async fn below_min_hits_or_forever_is_never_claimed() {
        let r = Refresher::new(10);
        let e = entry(10);
        tokio::time::advance(Duration::from_secs(9)).await;
        let strict = RefreshPolicy {
            min_hits: 3,
            ..POLICY
        };
        assert_eq!(r.on_hit(&key(2), &e, strict), Decision::Wait);
        assert_eq!(r.on_hit(&key(2), &e, strict), Decision::Wait);
        assert_eq!(r.on_hit(&key(2), &e, strict), Decision::Refresh);
        let forever = Entry::new(Bytes::new(), "application/json".into(), Ttl::Forever, None);
        for _ in 0..10 {
            assert_eq!(r.on_hit(&key(3), &forever, POLICY), Decision::Wait);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_holds_over_any_sixty_seconds() {
        let r = Refresher::new(2);
        let due = RefreshPolicy {
            min_hits: 1,
            window: RefreshWindow::Permille(1000),
        };
        let e = entry(3600);
        let outcomes: Vec<Decision> = (0..5).map(|i| r.on_hit(&key(i), &e, due)).collect();
        assert_eq!(
            outcomes.iter().filter(|d| **d == Decision::Refresh).count(),
            2
        );
        assert_eq!(
            outcomes
                .iter()
                .filter(|d| **d == Decision::OverBudget)
                .count(),
            3
        );
        // Refused entries are reported once, and wait for budget.
        assert_eq!(r.on_hit(&key(4), &e, due), Decision::Wait);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(r.on_hit(&key(4), &e, due), Decision::Wait);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.on_hit(&key(4), &e, due), Decision::Refresh);
        assert_eq!(r.on_hit(&key(3), &e, due), Decision::Refresh);
        assert_eq!(r.on_hit(&key(2), &e, due), Decision::Wait);
        let none = Refresher::new(0);
        assert_eq!(none.on_hit(&key(9), &e, due), Decision::OverBudget);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_drops_expired_entries() {
        let r = Refresher::new(10);
        let short = entry(5);
        for i in 0..MAX_TRACKED as u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            r.on_hit(&CacheKey(k), &short, POLICY);
        }
        assert_eq!(r.tracked(), MAX_TRACKED);
        r.on_hit(&key(255), &short, POLICY);
        assert_eq!(r.tracked(), MAX_TRACKED, "full: not counted");
        tokio::time::advance(Duration::from_secs(6)).await;
        r.on_hit(&key(255), &entry(5), POLICY);
        assert_eq!(r.tracked(), 1, "expired entries made room");
    }
}
