//! The profile report: built from a simulation, printed as text (people),
//! TOML (a `[[cache.rules]]` block to paste into reprise.toml) or JSON.

use std::fmt::Write;

use serde::Serialize;

use super::input::ReadStats;
use super::simulate::{ratio, Events, Outcome, TOLERANCE, TTLS};

#[derive(Debug, Serialize)]
pub struct Report {
    pub lines: u64,
    pub skipped: u64,
    pub requests: u64,
    pub models: Vec<ModelReport>,
    pub budgets: Vec<BudgetReport>,
    /// The smallest simulated budget within 2 points of unbounded memory.
    pub recommended_max_bytes: Option<u64>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct ModelReport {
    pub model: String,
    pub requests: u64,
    pub distinct_keys: u64,
    pub repeat_rate: f64,
    /// Whether the input carried request times (else TTLs cannot be told apart).
    pub timed: bool,
    /// What these requests cost without reprise's cache.
    pub spend_usd: f64,
    pub ttls: Vec<TtlReport>,
    /// The smallest TTL within 2 points of the best hit rate.
    pub recommended_ttl: Option<String>,
    /// `cache` when some TTL yields hits, else `off`.
    pub mode: &'static str,
    pub expected_hit_rate: f64,
    pub expected_saved_usd: f64,
}

#[derive(Debug, Serialize)]
pub struct TtlReport {
    pub ttl: &'static str,
    pub seconds: u64,
    pub hits: u64,
    pub hit_rate: f64,
    pub saved_usd: f64,
}

#[derive(Debug, Serialize)]
pub struct BudgetReport {
    /// None = unbounded.
    pub max_bytes: Option<u64>,
    pub hits: u64,
    pub hit_rate: f64,
    pub saved_usd: f64,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub hits: u64,
    pub hit_rate: f64,
    pub spend_usd: f64,
    pub saved_usd: f64,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Report {
    pub fn new(events: &Events, outcome: &Outcome, stats: ReadStats) -> Report {
        let mut models: Vec<ModelReport> = outcome
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let timed = events.timed[i];
                let (hit_rate, saved) = match m.recommended {
                    Some(r) => (m.hit_rate(r), m.saved_usd[r]),
                    None => (0.0, 0.0),
                };
                ModelReport {
                    model: events.models[i].clone(),
                    requests: m.requests,
                    distinct_keys: m.distinct_keys,
                    repeat_rate: round(m.repeat_rate(), 4),
                    timed,
                    spend_usd: round(m.spend_usd, 6),
                    ttls: TTLS
                        .iter()
                        .enumerate()
                        .map(|(t, (label, seconds))| TtlReport {
                            ttl: label,
                            seconds: *seconds,
                            hits: m.hits[t],
                            hit_rate: round(m.hit_rate(t), 4),
                            saved_usd: round(m.saved_usd[t], 6),
                        })
                        .collect(),
                    recommended_ttl: m
                        .recommended
                        .filter(|_| timed)
                        .map(|r| TTLS[r].0.to_owned()),
                    mode: if m.recommended.is_some() {
                        "cache"
                    } else {
                        "off"
                    },
                    expected_hit_rate: round(hit_rate, 4),
                    expected_saved_usd: round(saved, 6),
                }
            })
            .collect();
        models.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.model.cmp(&b.model)));
        let requests = outcome.requests;
        let budgets: Vec<BudgetReport> = outcome
            .budgets
            .iter()
            .map(|b| BudgetReport {
                max_bytes: b.max_bytes,
                hits: b.hits,
                hit_rate: round(ratio(b.hits, requests), 4),
                saved_usd: round(b.saved_usd, 6),
            })
            .collect();
        let unbounded = budgets.last().map_or(0.0, |b| b.hit_rate);
        let recommended_max_bytes = budgets
            .iter()
            .find(|b| b.max_bytes.is_some() && b.hit_rate >= unbounded - TOLERANCE)
            .and_then(|b| b.max_bytes);
        let hits: u64 = models
            .iter()
            .map(|m| (m.expected_hit_rate * m.requests as f64).round() as u64)
            .sum();
        let totals = Totals {
            requests,
            hits,
            hit_rate: round(ratio(hits, requests), 4),
            spend_usd: round(models.iter().map(|m| m.spend_usd).sum(), 6),
            saved_usd: round(models.iter().map(|m| m.expected_saved_usd).sum(), 6),
        };
        Report {
            lines: stats.lines,
            skipped: stats.skipped,
            requests,
            models,
            budgets,
            recommended_max_bytes,
            totals,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A config fragment: `[cache.memory]` and one `[[cache.rules]]` per model.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# reprise profile: {} requests, {} models ({} lines read, {} skipped).\n\
             # TTL per model = the smallest simulated TTL within 2 points of the best hit rate;\n\
             # models whose requests never repeat within 7 days get mode = \"off\".\n\
             # Expected: {:.1}% of requests answered from the cache, ${:.4} saved of ${:.4}.",
            self.requests,
            self.models.len(),
            self.lines,
            self.skipped,
            self.totals.hit_rate * 100.0,
            self.totals.saved_usd,
            self.totals.spend_usd,
        );
        match self.recommended_max_bytes {
            Some(bytes) => {
                let _ = writeln!(out, "\n[cache.memory]\nmax_bytes = {bytes}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "\n# No simulated memory budget up to 1 GiB comes within 2 points of\n\
                     # unbounded memory: consider backend = \"tiered\" (Redis behind memory)."
                );
            }
        }
        for m in &self.models {
            let _ = writeln!(
                out,
                "\n[[cache.rules]]\nmodels = [{}]",
                toml_string(&m.model)
            );
            match (m.mode, &m.recommended_ttl) {
                ("off", _) => {
                    let _ = writeln!(out, "mode = \"off\"");
                }
                (_, Some(ttl)) => {
                    let _ = writeln!(out, "ttl = \"{ttl}\"");
                }
                (_, None) => {
                    let _ = writeln!(out, "# request times unknown: the TTL stays cache.ttl");
                }
            }
            let _ = writeln!(
                out,
                "# {} requests, {} distinct, expected hit rate {:.1}%, saves ${:.4}",
                m.requests,
                m.distinct_keys,
                m.expected_hit_rate * 100.0,
                m.expected_saved_usd
            );
        }
        out
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} requests ({} lines, {} skipped), {} models\n",
            self.requests,
            self.lines,
            self.skipped,
            self.models.len()
        );
        for m in &self.models {
            let _ = writeln!(
                out,
                "{}: {} requests, {} distinct keys, repeat rate {:.1}%, ${:.4} without cache{}",
                m.model,
                m.requests,
                m.distinct_keys,
                m.repeat_rate * 100.0,
                m.spend_usd,
                if m.timed { "" } else { " (no request times)" }
            );
            let _ = writeln!(out, "  {:>4}  {:>9}  {:>12}", "ttl", "hit rate", "saved");
            for t in &m.ttls {
                let _ = writeln!(
                    out,
                    "  {:>4}  {:>8.1}%  {:>12}",
                    t.ttl,
                    t.hit_rate * 100.0,
                    format!("${:.4}", t.saved_usd)
                );
            }
            let verdict = match (m.mode, &m.recommended_ttl) {
                ("off", _) => "mode = off (no repeats within 7d)".to_owned(),
                (_, Some(ttl)) => format!("ttl = {ttl}"),
                (_, None) => "cache (TTL unknown without times)".to_owned(),
            };
            let _ = writeln!(
                out,
                "  recommended: {verdict}: hit rate {:.1}%, saves ${:.4}\n",
                m.expected_hit_rate * 100.0,
                m.expected_saved_usd
            );
        }
        let _ = writeln!(out, "memory budget (at the recommended TTLs):");
        for b in &self.budgets {
            let label = b.max_bytes.map_or("unbounded".to_owned(), human_bytes);
            let _ = writeln!(
                out,
                "  {:>10}  hit rate {:>5.1}%  saves ${:.4}",
                label,
                b.hit_rate * 100.0,
                b.saved_usd
            );
        }
        let _ = writeln!(
            out,
            "  recommended: {}\n\ntotal: {} of {} requests from the cache ({:.1}%), ${:.4} saved of ${:.4}",
            self.recommended_max_bytes
                .map_or("more than 1 GiB (use a tiered backend)".to_owned(), human_bytes),
            self.totals.hits,
            self.totals.requests,
            self.totals.hit_rate * 100.0,
            self.totals.saved_usd,
            self.totals.spend_usd
        );
        out
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
