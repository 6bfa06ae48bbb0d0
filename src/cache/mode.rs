//! Cache modes per model: which models are cached, how, and for how long.
//!
//! | mode         | reads the cache | serves hits | writes |
//! |--------------|-----------------|-------------|--------|
//! | `cache`      | yes             | yes         | yes    |
//! | `observe`    | yes (records would-be hits and savings) | no | yes |
//! | `read_only`  | yes             | yes         | no     |
//! | `write_only` | no              | no          | yes    |
//! | `off`        | no              | no          | no     |

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::refresh::{RefreshPolicy, RefreshWindow, DEFAULT_MIN_HITS};
use super::ttl::Ttl;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Cache,
    Observe,
    ReadOnly,
    WriteOnly,
    Off,
}

impl Mode {
    pub fn reads(self) -> bool {
        matches!(self, Mode::Cache | Mode::Observe | Mode::ReadOnly)
    }

    pub fn serves(self) -> bool {
        matches!(self, Mode::Cache | Mode::ReadOnly)
    }

    pub fn writes(self) -> bool {
        matches!(self, Mode::Cache | Mode::Observe | Mode::WriteOnly)
    }
}

/// `[[cache.rules]]`: a mode and/or TTL for the models matching `models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    /// Glob patterns of (upstream) model names.
    pub models: Vec<String>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub ttl: Option<Ttl>,
    /// Keep up to this many answers per key and serve one at random once
    /// all are stored (sampled traffic; see `cache::bucket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_size: Option<u32>,
    /// Re-fetch hot entries shortly before they expire (`cache::refresh`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_ahead: bool,
    /// Hits an entry needs before it is refreshed (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_min_hits: Option<u32>,
    /// How close to expiry a refresh starts: "10%" of the TTL (default) or
    /// a duration like "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_window: Option<RefreshWindow>,
}

impl CacheRule {
    /// The refresh-ahead settings, when this rule refreshes.
    pub fn refresh(&self) -> Option<RefreshPolicy> {
        self.refresh_ahead.then(|| RefreshPolicy {
            min_hits: self.refresh_min_hits.unwrap_or(DEFAULT_MIN_HITS),
            window: self.refresh_window.unwrap_or_default(),
        })
    }
}

/// What applies to one request's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPolicy {
    pub mode: Mode,
    /// Rule TTL; None = the global `cache.ttl`.
    pub ttl: Option<Ttl>,
    /// Rule answer-bucket size; None = one answer per key.
    pub bucket_size: Option<u32>,
    /// Refresh-ahead; None = entries simply expire.
    pub refresh: Option<RefreshPolicy>,
}

/// Compiled `cache.mode`, `cache.models` and `cache.rules`.
#[derive(Debug)]
pub struct Policies {
    default: Mode,
    only: Vec<WildMatch>,
    rules: Vec<(Vec<WildMatch>, CacheRule)>,
}

impl Policies {
    pub fn new(default: Mode, models: &[String], rules: &[CacheRule]) -> Self {
        Policies {
            default,
            only: models.iter().map(|m| WildMatch::new(m)).collect(),
            rules: rules
                .iter()
                .map(|r| {
                    (
                        r.models.iter().map(|m| WildMatch::new(m)).collect(),
                        r.clone(),
                    )
                })
                .collect(),
        }
    }

    /// First matching rule wins; models outside `cache.models` are `off`.
    pub fn for_model(&self, model: &str) -> ModelPolicy {
        if !self.only.is_empty() && !self.only.iter().any(|w| w.matches(model)) {
            return ModelPolicy {
                mode: Mode::Off,
                ttl: None,
                bucket_size: None,
                refresh: None,
            };
        }
        for (patterns, rule) in &self.rules {
            if patterns.iter().any(|w| w.matches(model)) {
                return ModelPolicy {
                    mode: rule.mode.unwrap_or(self.default),
                    ttl: rule.ttl,
                    bucket_size: rule.bucket_size,
                    refresh: rule.refresh(),
                };
            }
        }
        ModelPolicy {
            mode: self.default,
            ttl: None,
            bucket_size: None,
            refresh: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rules_models_and_default() {
        let rules = vec![
            CacheRule {
                models: vec!["gpt-4o*".into()],
                mode: Some(Mode::Observe),
                ttl: None,
                bucket_size: None,
                ..CacheRule::default()
            },
            CacheRule {
                models: vec!["text-embedding-*".into()],
                mode: None,
                ttl: Some(Ttl::Forever),
                bucket_size: Some(3),
                refresh_ahead: true,
                refresh_window: Some(RefreshWindow::Span(Duration::from_secs(30))),
                ..CacheRule::default()
            },
        ];
        let p = Policies::new(Mode::Cache, &[], &rules);
        assert_eq!(p.for_model("gpt-4o-mini").mode, Mode::Observe);
        assert_eq!(
            p.for_model("text-embedding-3-small"),
            ModelPolicy {
                mode: Mode::Cache,
                ttl: Some(Ttl::Forever),
                bucket_size: Some(3),
                refresh: Some(RefreshPolicy {
                    min_hits: DEFAULT_MIN_HITS,
                    window: RefreshWindow::Span(Duration::from_secs(30)),
                }),
            }
        );
        assert_eq!(p.for_model("gpt-4o-mini").refresh, None);
        assert_eq!(p.for_model("o3").mode, Mode::Cache);
        let only = Policies::new(Mode::ReadOnly, &["o*".into()], &rules);
        assert_eq!(only.for_model("gpt-4o").mode, Mode::Off);
        assert_eq!(only.for_model("o3").mode, Mode::ReadOnly);
    }

    #[test]
    fn mode_capabilities() {
        assert!(Mode::Observe.reads() && !Mode::Observe.serves() && Mode::Observe.writes());
        assert!(!Mode::WriteOnly.reads() && Mode::WriteOnly.writes());
        assert!(Mode::ReadOnly.serves() && !Mode::ReadOnly.writes());
        assert!(!Mode::Off.reads() && !Mode::Off.writes());
    }
}
