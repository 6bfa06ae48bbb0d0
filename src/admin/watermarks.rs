//! Purge watermarks: "entries of this scope requested before T are gone".
//!
//! A purge is logical first (like a Varnish ban): each rule gets a watermark,
//! and every lookup treats an entry whose request started before a matching
//! watermark as absent, in L1 and L2 alike. The rules are few (one per
//! purge, kept for `admin.watermark_retention`), shared through Redis
//! (`admin::sync`), and indexed by base namespace so a hit only looks at its
//! own tenant's rules; with no rules at all a lookup costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::cache::key::CacheKey;

/// What one purge matches. Unset fields match everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The namespace and its `x-cache-namespace` segments (`ns.*`); None =
    /// every namespace (admin `scope: "all"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// One entry: the hex `x-cache-key` of a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A glob over custom keys (`user_123:*`); entries without one never match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_key: Option<String>,
}

/// What an entry is, as far as rules care.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub model: &'a str,
    pub endpoint: &'a str,
    pub key: &'a CacheKey,
    pub custom_key: Option<&'a str>,
}

/// A rule's watermark and when it was set (for pruning), ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub watermark_ms: u64,
    pub created_ms: u64,
}

impl Stamp {
    /// The Redis hash value: `watermark:created`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.watermark_ms, self.created_ms)
    }

    pub fn decode(text: &str) -> Option<Stamp> {
        let (w, c) = text.split_once(':')?;
        Some(Stamp {
            watermark_ms: w.parse().ok()?,
            created_ms: c.parse().ok()?,
        })
    }
}

/// Namespace `ns.segment` belongs to base namespace `ns` (the credential
/// hash, `shared` or `anonymous`: never dotted).
fn base(namespace: &str) -> &str {
    namespace.split('.').next().unwrap_or(namespace)
}

/// A rule ready to match: its glob compiled and key decoded.
#[derive(Debug, Clone)]
pub struct Mark {
    pub rule: Rule,
    pub stamp: Stamp,
    glob: Option<WildMatch>,
    key: Option<[u8; 32]>,
}

impl Mark {
    pub fn new(rule: Rule, stamp: Stamp) -> Mark {
        let glob = rule.custom_key.as_deref().map(WildMatch::new);
        let key = rule.key.as_deref().and_then(|k| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(k, &mut out).ok().map(|_| out)
        });
        Mark {
            rule,
            stamp,
            glob,
            key,
        }
    }

    /// Whether the rule covers `scope` (ignoring time).
    pub fn covers(&self, scope: &Scope<'_>) -> bool {
        let r = &self.rule;
        let namespace_ok = r.namespace.as_deref().is_none_or(|ns| {
            scope.namespace == ns
                || scope
                    .namespace
                    .strip_prefix(ns)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        namespace_ok
            && r.model.as_deref().is_none_or(|m| m == scope.model)
            && r.endpoint.as_deref().is_none_or(|e| e == scope.endpoint)
            && (r.key.is_none() || self.key == Some(scope.key.0))
            && self
                .glob
                .as_ref()
                .is_none_or(|g| scope.custom_key.is_some_and(|k| g.matches(k)))
    }

    /// Whether an entry of `scope` requested at `requested_at_ms` is purged.
    pub fn purges(&self, scope: &Scope<'_>, requested_at_ms: u64) -> bool {
        requested_at_ms < self.stamp.watermark_ms && self.covers(scope)
    }
}

/// An immutable set of marks, indexed by base namespace (a lookup borrows
/// the request's namespace: no allocation per hit).
#[derive(Debug, Default)]
struct Marks {
    /// Rules without a namespace (admin `scope: "all"`).
    every_namespace: Vec<Mark>,
    by_base: HashMap<String, Vec<Mark>>,
}

impl Marks {
    fn is_empty(&self) -> bool {
        self.every_namespace.is_empty() && self.by_base.is_empty()
    }

    fn purged(&self, scope: &Scope<'_>, requested_at_ms: u64) -> bool {
        let check = |marks: &[Mark]| marks.iter().any(|m| m.purges(scope, requested_at_ms));
        check(&self.every_namespace)
            || self
                .by_base
                .get(base(scope.namespace))
                .is_some_and(|ms| check(ms))
    }

    fn all(&self) -> impl Iterator<Item = &Mark> {
        self.every_namespace
            .iter()
            .chain(self.by_base.values().flatten())
    }

    fn from_marks(marks: impl IntoIterator<Item = Mark>) -> Marks {
        let mut out = Marks::default();
        for m in marks {
            match m.rule.namespace.as_deref().map(base) {
                Some(b) => out.by_base.entry(b.to_owned()).or_default().push(m),
                None => out.every_namespace.push(m),
            }
        }
        out
    }
}

/// This instance's view of every purge rule. Lookups (every hit) read the
/// current set through `ArcSwap` (no lock, no shared reference count written
/// per lookup); `merge` (a purge, a sync) builds a new set under `update`.
#[derive(Default)]
pub struct Watermarks {
    marks: ArcSwap<Marks>,
    any: AtomicBool,
    /// Serializes writers (a read-modify-write of the whole set).
    update: Mutex<()>,
}

impl Watermarks {
    fn snapshot(&self) -> Arc<Marks> {
        self.marks.load_full()
    }

    /// Whether an entry of `scope` requested at `requested_at_ms` was purged.
    pub fn purged(&self, scope: &Scope<'_>, requested_at_ms: u64) -> bool {
        self.any.load(Ordering::Acquire) && self.marks.load().purged(scope, requested_at_ms)
    }

    /// Adds rules (a rule already known keeps the higher watermark) and drops
    /// those created before `prune_before_ms`. Returns the marks that are
    /// new or raised: what the caller must still sweep from memory.
    pub fn merge(
        &self,
        incoming: impl IntoIterator<Item = (Rule, Stamp)>,
        prune_before_ms: u64,
    ) -> Vec<Mark> {
        let _writer = match self.update.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut current: HashMap<Rule, Stamp> = self
            .marks
            .load()
            .all()
            .map(|m| (m.rule.clone(), m.stamp))
            .collect();
        let mut changed = Vec::new();
        for (rule, stamp) in incoming {
            let raised = current
                .get(&rule)
                .is_none_or(|s| s.watermark_ms < stamp.watermark_ms);
            if raised {
                current.insert(rule.clone(), stamp);
                changed.push(Mark::new(rule, stamp));
            }
        }
        current.retain(|_, s| s.created_ms >= prune_before_ms);
        let marks = Marks::from_marks(current.into_iter().map(|(r, s)| Mark::new(r, s)));
        let any = !marks.is_empty();
        self.marks.store(Arc::new(marks));
        self.any.store(any, Ordering::Release);
        changed
    }

    /// Every rule and stamp (tests, diagnostics).
    pub fn rules(&self) -> Vec<(Rule, Stamp)> {
        self.snapshot()
            .all()
            .map(|m| (m.rule.clone(), m.stamp))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ns: Option<&str>) -> Rule {
        Rule {
            namespace: ns.map(String::from),
            model: None,
            endpoint: None,
            key: None,
            custom_key: None,
        }
    }

    fn scope<'a>(ns: &'a str, key: &'a CacheKey, custom: Option<&'a str>) -> Scope<'a> {
        Scope {
            namespace: ns,
            model: "gpt-4o-mini",
            endpoint: "chat",
            key,
            custom_key: custom,
        }
    }

    const STAMP: Stamp = Stamp {
        watermark_ms: 1000,
        created_ms: 1000,
    };

    #[test]
    fn nothing_is_purged_without_rules() {
        let w = Watermarks::default();
        assert!(!w.purged(&scope("a", &CacheKey([0; 32]), None), 0));
    }

    #[test]
    fn a_namespace_rule_covers_its_segments_and_nothing_else() {
        let w = Watermarks::default();
        w.merge([(rule(Some("a")), STAMP)], 0);
        let k = CacheKey([0; 32]);
        assert!(w.purged(&scope("a", &k, None), 999));
        assert!(w.purged(&scope("a.team", &k, None), 999));
        assert!(!w.purged(&scope("a", &k, None), 1000), "requested after");
        assert!(!w.purged(&scope("ab", &k, None), 0));
        assert!(!w.purged(&scope("b", &k, None), 0));
    }

    #[test]
    fn model_key_and_glob_rules_narrow_the_match() {
        let w = Watermarks::default();
        let k = CacheKey([7; 32]);
        let other = CacheKey([8; 32]);
        let mut by_model = rule(Some("a"));
        by_model.model = Some("gpt-4o".into());
        let mut by_key = rule(Some("a"));
        by_key.key = Some(k.hex());
        let mut by_glob = rule(Some("a"));
        by_glob.custom_key = Some("user_123:*".into());
        w.merge([(by_model, STAMP), (by_key, STAMP), (by_glob, STAMP)], 0);
        assert!(
            !w.purged(&scope("a", &other, None), 0),
            "gpt-4o-mini, other key"
        );
        assert!(w.purged(&scope("a", &k, None), 0));
        assert!(w.purged(&scope("a", &other, Some("user_123:x")), 0));
        assert!(!w.purged(&scope("a", &other, Some("user_1234")), 0));
    }

    #[test]
    fn a_global_rule_covers_every_namespace() {
        let w = Watermarks::default();
        w.merge([(rule(None), STAMP)], 0);
        assert!(w.purged(&scope("zzz.q", &CacheKey([0; 32]), None), 1));
    }

    #[test]
    fn merge_keeps_the_higher_watermark_and_prunes_old_rules() {
        let w = Watermarks::default();
        let later = Stamp {
            watermark_ms: 5000,
            created_ms: 5000,
        };
        assert_eq!(w.merge([(rule(Some("a")), later)], 0).len(), 1);
        assert!(w.merge([(rule(Some("a")), STAMP)], 0).is_empty(), "lower");
        assert_eq!(w.rules(), vec![(rule(Some("a")), later)]);
        w.merge([], 6000);
        assert!(w.rules().is_empty());
        assert!(!w.purged(&scope("a", &CacheKey([0; 32]), None), 0));
    }

    #[test]
    fn stamps_round_trip() {
        assert_eq!(Stamp::decode(&STAMP.encode()), Some(STAMP));
        assert_eq!(Stamp::decode("x:1"), None);
    }
}
