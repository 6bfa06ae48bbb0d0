//! Fleet statistics and time series.
//!
//! Every finished request adds to a pending tally (per worker thread, see
//! `percpu`: no process-wide lock, no I/O). Once
//! a second (`admin.stats_flush`) a background task moves the pending tally
//! into this instance's per-minute history (24 h, for the instance series)
//! and, with Redis, adds it to three hashes with pipelined `HINCRBY`s:
//! `{prefix}:stats:total` (fleet totals), `{prefix}:stats:m:{minute}`
//! (kept 2 h) and `{prefix}:stats:t:{10-minute}` (kept 25 h). A failed
//! flush drops that second's deltas from the fleet view (counted in
//! `reprise_fleet_stats_dropped_total`): fail-open, never a request error.
//! Hash fields are `{namespace}\t{route}\t{model}\t{counter}`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::tally::{slot, Slots, Tally};
use crate::cache::entry::unix_ms_now;
use crate::cache::redis::RedisTier;
use crate::percpu::PerThread;
use crate::state::AppState;
use crate::stats::Record;

const MINUTE_MS: u64 = 60_000;
const TEN_MINUTES_MS: u64 = 600_000;
const HISTORY_MINUTES: usize = 24 * 60 + 10;

#[derive(Default)]
pub struct Fleet {
    pending: PerThread<Slots>,
    /// (minute since the epoch, what was flushed in it), oldest first.
    history: Mutex<VecDeque<(u64, Slots)>>,
}

/// A series window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Min15,
    Hour1,
    Hour24,
}

impl Window {
    pub fn parse(text: &str) -> Option<Window> {
        match text {
            "15m" => Some(Window::Min15),
            "1h" => Some(Window::Hour1),
            "24h" => Some(Window::Hour24),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Min15 => "15m",
            Window::Hour1 => "1h",
            Window::Hour24 => "24h",
        }
    }

    /// (step in ms, number of steps).
    fn steps(self) -> (u64, u64) {
        match self {
            Window::Min15 => (MINUTE_MS, 15),
            Window::Hour1 => (MINUTE_MS, 60),
            Window::Hour24 => (TEN_MINUTES_MS, 144),
        }
    }
}

fn clean(text: &str) -> String {
    text.replace('\t', " ")
}

fn field(ns: &str, route: &str, model: &str, name: &str) -> String {
    format!("{}\t{route}\t{}\t{name}", clean(ns), clean(model))
}

/// Folds `(field, value)` pairs read from a stats hash into slots.
fn parse_fields(fields: Vec<(String, String)>, visible: &(dyn Fn(&str) -> bool + Sync)) -> Slots {
    let mut slots = Slots::new();
    for (f, v) in fields {
        let mut parts = f.splitn(4, '\t');
        let (Some(ns), Some(route), Some(model), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !visible(ns) {
            continue;
        }
        let Ok(value) = v.parse::<i64>() else {
            continue;
        };
        // Routes read back are not 'static; keep the known ones, bucket the rest.
        let route: &'static str = static_route(route);
        if let Some(t) = slot(&mut slots, ns, route, model) {
            t.set_field(name, value);
        }
    }
    slots
}

fn static_route(route: &str) -> &'static str {
    const KNOWN: [&str; 6] = [
        "chat",
        "embeddings",
        "messages",
        "mcp_list_tools",
        "mcp_call",
        "semantic",
    ];
    KNOWN.into_iter().find(|k| *k == route).unwrap_or("other")
}

fn fold(slots: &Slots, visible: &(dyn Fn(&str) -> bool + Sync), into: &mut Tally) {
    for (_, routes) in slots.iter().filter(|(ns, _)| visible(ns)) {
        for models in routes.values() {
            for t in models.values() {
                into.merge(t);
            }
        }
    }
}

fn merge_slots(into: &mut Slots, from: &Slots) {
    for (ns, routes) in from {
        for (route, models) in routes {
            for (model, t) in models {
                if let Some(into) = slot(into, ns, route, model) {
                    into.merge(t);
                }
            }
        }
    }
}

impl Fleet {
    pub fn record(&self, ns: &str, route: &'static str, model: &str, r: &Record) {
        self.pending.with(|pending| {
            if let Some(t) = slot(pending, ns, route, model) {
                t.add(route, r);
            }
        });
    }

    pub fn add_cost(&self, ns: &str, route: &'static str, model: &str, r: &Record) {
        self.pending.with(|pending| {
            if let Some(t) = slot(pending, ns, route, model) {
                t.add_cost(r);
            }
        });
    }

    /// Moves the pending tally into history (and returns it for Redis).
    fn take(&self, now_ms: u64) -> Option<Slots> {
        let mut pending = Slots::new();
        self.pending
            .drain(|slots: Slots| merge_slots(&mut pending, &slots));
        if pending.is_empty() {
            return None;
        }
        let minute = now_ms / MINUTE_MS;
        if let Ok(mut history) = self.history.lock() {
            match history.back_mut() {
                Some((m, slots)) if *m == minute => merge_slots(slots, &pending),
                _ => {
                    let mut slots = Slots::new();
                    merge_slots(&mut slots, &pending);
                    history.push_back((minute, slots));
                }
            }
            while history.len() > HISTORY_MINUTES {
                history.pop_front();
            }
        }
        Some(pending)
    }

    /// This instance's series over `window` for the visible namespaces.
    pub fn local_series(
        &self,
        window: Window,
        visible: &(dyn Fn(&str) -> bool + Sync),
    ) -> Vec<(u64, Tally)> {
        let (step, count) = window.steps();
        let now = unix_ms_now();
        let first = (now / step).saturating_sub(count - 1);
        let mut points: Vec<(u64, Tally)> = (0..count)
            .map(|i| ((first + i) * step, Tally::default()))
            .collect();
        if let Ok(history) = self.history.lock() {
            for (minute, slots) in history.iter() {
                let at = minute * MINUTE_MS / step;
                if at < first {
                    continue;
                }
                if let Some((_, t)) = points.get_mut((at - first) as usize) {
                    fold(slots, visible, t);
                }
            }
        }
        points
    }
}

fn hash_total(redis: &RedisTier) -> String {
    format!("{}:stats:total", redis.prefix())
}

fn hash_minute(redis: &RedisTier, minute: u64) -> String {
    format!("{}:stats:m:{minute}", redis.prefix())
}

fn hash_ten(redis: &RedisTier, ten: u64) -> String {
    format!("{}:stats:t:{ten}", redis.prefix())
}

/// Adds `slots` to one hash (one pipelined round trip).
async fn add_to(redis: &RedisTier, key: &str, slots: &Slots, expire: Option<Duration>) -> bool {
    let mut pipe = redis::pipe();
    for (ns, routes) in slots {
        for (route, models) in routes {
            for (model, t) in models {
                for (name, value) in t.fields() {
                    pipe.cmd("HINCRBY")
                        .arg(key)
                        .arg(field(ns, route, model, &name))
                        .arg(value)
                        .ignore();
                }
            }
        }
    }
    if let Some(ttl) = expire {
        pipe.cmd("PEXPIRE")
            .arg(key)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .ignore();
    }
    redis.pipeline(&pipe, "HINCRBY stats").await
}

async fn flush(redis: &RedisTier, slots: &Slots, now_ms: u64) {
    let minute = now_ms / MINUTE_MS;
    let ten = now_ms / TEN_MINUTES_MS;
    let ok = add_to(redis, &hash_total(redis), slots, None).await
        & add_to(
            redis,
            &hash_minute(redis, minute),
            slots,
            Some(Duration::from_secs(2 * 3600)),
        )
        .await
        & add_to(
            redis,
            &hash_ten(redis, ten),
            slots,
            Some(Duration::from_secs(25 * 3600)),
        )
        .await;
    if !ok {
        metrics::counter!("reprise_fleet_stats_dropped_total").increment(1);
    }
}

/// Starts the flush loop; it ends when the state is dropped.
pub fn spawn(state: &Arc<AppState>) {
    let weak: Weak<AppState> = Arc::downgrade(state);
    let every = state.config.admin.stats_flush;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else {
                return;
            };
            let now = unix_ms_now();
            let Some(slots) = state.fleet.take(now) else {
                continue;
            };
            if let Some(redis) = &state.tiers.redis {
                flush(redis, &slots, now).await;
            }
        }
    });
}

/// The fleet totals (`/v1/cache/stats?scope=fleet`) in the per-instance
/// shape; None when Redis is unavailable.
pub async fn fleet_report(
    redis: &RedisTier,
    visible: &(dyn Fn(&str) -> bool + Sync),
) -> Option<Value> {
    let fields: Vec<(String, String)> = redis
        .query(
            redis::cmd("HGETALL").arg(hash_total(redis)),
            "HGETALL stats",
        )
        .await?;
    Some(report(&parse_fields(fields, visible)))
}

/// Totals, by route, by model, by namespace and hits by cache type.
pub fn report(slots: &Slots) -> Value {
    let mut total = Tally::default();
    let mut by_route: HashMap<&str, Tally> = HashMap::new();
    let mut by_model: HashMap<&str, Tally> = HashMap::new();
    let mut by_ns: HashMap<&str, Tally> = HashMap::new();
    for (ns, routes) in slots {
        for (route, models) in routes {
            for (model, t) in models {
                total.merge(t);
                by_route.entry(route).or_default().merge(t);
                by_model.entry(model).or_default().merge(t);
                by_ns.entry(ns).or_default().merge(t);
            }
        }
    }
    let view = |m: HashMap<&str, Tally>| -> Map<String, Value> {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
            .map(|(k, t)| (k.to_owned(), fleet_view(&t)))
            .collect()
    };
    let mut out = fleet_view(&total);
    if let Some(o) = out.as_object_mut() {
        o.insert("hits_by_type".into(), hits_by_type(&total));
        o.insert("by_type".into(), view(by_route).into());
        o.insert("by_model".into(), view(by_model).into());
        o.insert("by_namespace".into(), view(by_ns).into());
    }
    out
}

/// A tally's counters as the stats view, without the refresh-ahead
/// outcomes: those are per instance (`/v1/cache/stats`, `/metrics`), and a
/// fleet view of zeros would mislead.
fn fleet_view(t: &Tally) -> Value {
    let mut view = t.counters().view();
    if let Some(o) = view.as_object_mut() {
        o.remove("refresh");
    }
    view
}

pub fn hits_by_type(t: &Tally) -> Value {
    let m: Map<String, Value> = t
        .hits
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({"hits": v[0], "saved_usd": super::tally::usd(v[1])}),
            )
        })
        .collect();
    m.into()
}

/// The fleet series over `window`; None when Redis is unavailable.
pub async fn fleet_series(
    redis: &RedisTier,
    window: Window,
    visible: &(dyn Fn(&str) -> bool + Sync),
) -> Option<Vec<(u64, Tally)>> {
    let (step, count) = window.steps();
    let now = unix_ms_now();
    let first = (now / step).saturating_sub(count - 1);
    let mut points = Vec::with_capacity(count as usize);
    for i in 0..count {
        let bucket = first + i;
        let key = if step == MINUTE_MS {
            hash_minute(redis, bucket)
        } else {
            hash_ten(redis, bucket)
        };
        let fields: Vec<(String, String)> = redis
            .query(redis::cmd("HGETALL").arg(key), "HGETALL stats")
            .await?;
        let mut t = Tally::default();
        fold(&parse_fields(fields, visible), &|_| true, &mut t);
        points.push((bucket * step, t));
    }
    Some(points)
}
