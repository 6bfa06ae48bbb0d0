//! Verified mode: a per-entry learned threshold with a user-set error bound, after
//! vCache (Schroeder et al., "vCache: Verified Semantic Prompt Caching",
//! arXiv 2502.03771). Our own code; the policy is the paper's:
//!
//! - an entry keeps observations (similarity of a query that matched it, was the cached
//!   answer right for that query?);
//! - with fewer than [`MIN_OBSERVATIONS`], a candidate hit is explored (forwarded);
//! - otherwise fit P(correct | s) = σ(γ (s − t)), estimate the uncertainty of t, and
//!   explore with probability τ = min over ε of 1 − δ / (1 − (1 − ε) σ(γ (s − t'_ε))),
//!   where t'_ε is the (1 − ε) upper confidence bound of t. Serving with probability
//!   1 − τ keeps P(wrong answer) ≤ δ under the fitted model.
//!
//! Departures from the reference implementation, all on the conservative side:
//! one-class observations (only right, or only wrong) have no logistic MLE; we place t
//! one standard deviation beyond the observed extreme instead of refusing to fit, and
//! perfectly separated data uses a fixed steep γ with a variance that shrinks with the
//! number of observations (vCache uses an empirical table of the same magnitude).

use serde::{Deserialize, Serialize};

/// Below this many observations every candidate is explored (vCache uses 6).
pub const MIN_OBSERVATIONS: usize = 6;
/// Observations kept per entry (the oldest are dropped): bounds memory and Redis bytes.
pub const MAX_OBSERVATIONS: usize = 64;
/// Slope used when the data is perfectly separated (the MLE slope is infinite).
const SEPARATED_GAMMA: f64 = 100.0;
/// ε grid for the confidence bound (as in vCache: 50 points over (0, 1)).
const EPSILON_STEPS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedDecision {
    /// Serve the cached answer.
    Serve,
    /// Forward to the provider and record whether the cached answer would have been right.
    Explore,
}

/// One entry's observations: (similarity, was the cached answer right?).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    #[serde(default)]
    samples: Vec<(f32, bool)>,
}

impl Observations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The kept observations, oldest first.
    pub fn samples(&self) -> &[(f32, bool)] {
        &self.samples
    }

    /// Record one labelled observation; keeps the newest [`MAX_OBSERVATIONS`].
    /// Non-finite similarities are ignored; others are clamped to [-1, 1].
    pub fn record(&mut self, similarity: f32, correct: bool) {
        if !similarity.is_finite() {
            return;
        }
        if self.samples.len() >= MAX_OBSERVATIONS {
            self.samples.remove(0);
        }
        self.samples.push((similarity.clamp(-1.0, 1.0), correct));
    }

    /// Serve or explore a candidate at `similarity`, with error bound `max_error_rate`
    /// (δ) and `u` a uniform sample from [0, 1) (the caller's randomness, so tests and
    /// simulations are reproducible).
    pub fn decide(&self, similarity: f32, max_error_rate: f64, u: f64) -> VerifiedDecision {
        match self.explore_probability(similarity, max_error_rate) {
            Some(tau) if u >= tau => VerifiedDecision::Serve,
            _ => VerifiedDecision::Explore,
        }
    }

    /// τ, the probability of exploring a candidate at `similarity`; `None` while the
    /// entry has too few observations to fit (always explore).
    pub fn explore_probability(&self, similarity: f32, max_error_rate: f64) -> Option<f64> {
        // A samples vector longer than the cap can only come from a foreign store.
        if self.samples.len() < MIN_OBSERVATIONS || self.samples.len() > MAX_OBSERVATIONS {
            return None;
        }
        if !similarity.is_finite() || !max_error_rate.is_finite() {
            return None;
        }
        let delta = max_error_rate.clamp(0.0, 1.0);
        let fit = Fit::of(&self.samples)?;
        let s = f64::from(similarity);
        let sd = fit.var_t.max(0.0).sqrt();
        let mut tau = 1.0f64;
        for i in 0..EPSILON_STEPS {
            let eps = 1e-6 + (1.0 - 2e-6) * i as f64 / (EPSILON_STEPS - 1) as f64;
            let t_prime = (fit.t + normal_quantile(1.0 - eps) * sd).clamp(0.0, 1.0);
            let alpha_lower = (1.0 - eps) * sigmoid(fit.gamma * (s - t_prime));
            let room = (1.0 - alpha_lower).max(1e-12);
            tau = tau.min(1.0 - delta / room);
        }
        Some(tau.clamp(0.0, 1.0))
    }
}

/// The fitted boundary t, slope γ and the variance of t.
#[derive(Debug, Clone, Copy)]
struct Fit {
    t: f64,
    gamma: f64,
    var_t: f64,
}

impl Fit {
    fn of(samples: &[(f32, bool)]) -> Option<Self> {
        let n = samples.len();
        let right = samples
            .iter()
            .filter(|(_, c)| *c)
            .map(|(s, _)| f64::from(*s));
        let wrong = samples
            .iter()
            .filter(|(_, c)| !*c)
            .map(|(s, _)| f64::from(*s));
        let min_right = right.fold(f64::INFINITY, f64::min);
        let max_wrong = wrong.fold(f64::NEG_INFINITY, f64::max);
        let var_sep = separated_variance(n);
        let separated = |t: f64| Fit {
            t: t.clamp(0.0, 1.0),
            gamma: SEPARATED_GAMMA,
            var_t: var_sep,
        };
        if max_wrong == f64::NEG_INFINITY {
            // Only right answers: the boundary lies somewhere below the lowest one.
            return Some(separated(min_right - var_sep.sqrt()));
        }
        if min_right == f64::INFINITY {
            // Only wrong answers: the boundary lies somewhere above the highest one.
            return Some(separated(max_wrong + var_sep.sqrt()));
        }
        if min_right > max_wrong {
            return Some(separated((min_right + max_wrong) / 2.0));
        }
        logistic_fit(samples)
    }
}

/// Variance of t for perfectly separated data: the gap between classes is unknown to
/// within roughly the spacing of n points; ~0.035 at 6 observations, ~0.005 at 40
/// (the magnitudes of vCache's empirical table).
fn separated_variance(n: usize) -> f64 {
    (0.2 / n.max(1) as f64).clamp(0.005, 0.035)
}

/// Maximum-likelihood logistic regression on (1, s) by Newton's method (a tiny ridge
/// keeps the Hessian invertible), then t = −β0/β1 and var(t) by the delta method.
fn logistic_fit(samples: &[(f32, bool)]) -> Option<Fit> {
    const RIDGE: f64 = 1e-6;
    let (mut b0, mut b1) = (0.0f64, 0.0f64);
    let mut hessian = [[0.0f64; 2]; 2];
    for _ in 0..100 {
        let (mut g0, mut g1) = (-RIDGE * b0, -RIDGE * b1);
        let (mut h00, mut h01, mut h11) = (RIDGE, 0.0, RIDGE);
        for &(s, c) in samples {
            let s = f64::from(s);
            let p = sigmoid(b0 + b1 * s);
            let y = if c { 1.0 } else { 0.0 };
            g0 += y - p;
            g1 += (y - p) * s;
            let w = p * (1.0 - p);
            h00 += w;
            h01 += w * s;
            h11 += w * s * s;
        }
        hessian = [[h00, h01], [h01, h11]];
        let det = h00 * h11 - h01 * h01;
        if det.abs() < 1e-18 {
            return None;
        }
        let step0 = (h11 * g0 - h01 * g1) / det;
        let step1 = (h00 * g1 - h01 * g0) / det;
        b0 += step0;
        b1 += step1;
        if step0.abs() + step1.abs() < 1e-10 {
            break;
        }
    }
    if !(b0.is_finite() && b1.is_finite()) {
        return None;
    }
    let gamma = b1.max(1e-6);
    let t = (-b0 / gamma).clamp(0.0, 1.0);
    let [[h00, h01], [_, h11]] = hessian;
    let det = h00 * h11 - h01 * h01;
    if det.abs() < 1e-18 {
        return None;
    }
    // Covariance = H⁻¹; gradient of t = −β0/β1 w.r.t. (β0, β1) = (−1/β1, β0/β1²).
    let (c00, c01, c11) = (h11 / det, -h01 / det, h00 / det);
    let (d0, d1) = (-1.0 / gamma, b0 / (gamma * gamma));
    let var_t = (d0 * d0 * c00 + 2.0 * d0 * d1 * c01 + d1 * d1 * c11).max(0.0);
    Some(Fit { t, gamma, var_t })
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(samples: &[(f32, bool)]) -> Observations {
        let mut o = Observations::new();
        for &(s, c) in samples {
            o.record(s, c);
        }
        o
    }

    #[test]
    fn few_observations_always_explore() {
        let o = with(&[(0.99, true); MIN_OBSERVATIONS - 1]);
        assert_eq!(o.decide(0.99, 0.5, 0.999), VerifiedDecision::Explore);
        assert_eq!(o.explore_probability(0.99, 0.5), None);
    }

    #[test]
    fn normal_quantile_matches_known_values() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.01) + 2.326_348).abs() < 1e-5);
    }

    #[test]
    fn separated_history_serves_well_above_and_explores_below_the_boundary() {
        // Wrong up to 0.80, right from 0.90: boundary ≈ 0.85.
        let mut samples = Vec::new();
        for i in 0..20 {
            samples.push((0.70 + 0.005 * i as f32, false));
            samples.push((0.90 + 0.004 * i as f32, true));
        }
        let o = with(&samples);
        let high = o.explore_probability(0.99, 0.05).unwrap();
        let low = o.explore_probability(0.80, 0.05).unwrap();
        // Serving probability 1 − τ is about δ/ε: even a clean history explores often.
        assert!(high < 0.6, "tau at 0.99 = {high}");
        assert!(low > 0.9, "tau at 0.80 = {low}");
        assert_eq!(o.decide(0.99, 0.05, 0.7), VerifiedDecision::Serve);
        assert_eq!(o.decide(0.80, 0.05, 0.7), VerifiedDecision::Explore);
        // More evidence at the same similarity never makes serving less likely.
        let mut more = o.clone();
        for _ in 0..20 {
            more.record(0.99, true);
        }
        assert!(more.explore_probability(0.99, 0.05).unwrap() <= high + 1e-9);
    }

    #[test]
    fn overlapping_history_uses_the_logistic_fit() {
        // Right answers become likelier with similarity, with overlap around 0.85.
        let mut samples = Vec::new();
        for i in 0..60 {
            let s = 0.70 + 0.005 * i as f32;
            samples.push((s, (i % 7 != 0 && s > 0.82) || (s > 0.84)));
        }
        let o = with(&samples);
        assert_eq!(o.len(), 60);
        let fit = Fit::of(&o.samples).unwrap();
        assert!((0.78..0.90).contains(&fit.t), "t = {}", fit.t);
        let taus: Vec<f64> = [0.75f32, 0.85, 0.99]
            .iter()
            .map(|s| o.explore_probability(*s, 0.05).unwrap())
            .collect();
        assert!(taus[0] >= taus[1] && taus[1] >= taus[2], "{taus:?}");
    }

    #[test]
    fn a_tighter_bound_explores_more() {
        let o = with(&[(0.95, true); 12]);
        let loose = o.explore_probability(0.95, 0.2).unwrap();
        let tight = o.explore_probability(0.95, 0.01).unwrap();
        assert!(tight > loose, "tight {tight} loose {loose}");
        assert_eq!(
            o.explore_probability(0.95, 0.0),
            Some(1.0),
            "δ = 0 never serves"
        );
        assert_eq!(o.decide(0.95, 0.0, 0.999_999), VerifiedDecision::Explore);
    }

    #[test]
    fn six_agreeing_observations_serve_surely_under_a_loose_bound() {
        // tests/semantic_verified.rs relies on this: τ clamps to 0 for a query
        // about as similar as the agreeing ones, so "serve" needs no luck.
        let o = with(&[
            (0.99, true),
            (0.97, true),
            (0.94, true),
            (0.95, true),
            (0.97, true),
            (0.96, true),
        ]);
        assert_eq!(o.explore_probability(0.93, 0.5), Some(0.0));
        assert_eq!(o.decide(0.93, 0.5, 0.0), VerifiedDecision::Serve);
        // Far below the agreeing ones it still explores sometimes.
        assert!(o.explore_probability(0.70, 0.5).unwrap() > 0.0);
    }

    #[test]
    fn a_disagreement_makes_a_serving_entry_explore_again() {
        // Verified mode records (s, false) when an explored answer disagrees:
        // where six agreeing observations served surely, the entry now
        // explores, and under a tight bound it practically never serves there.
        let agreeing = [
            (0.99, true),
            (0.97, true),
            (0.95, true),
            (0.96, true),
            (0.98, true),
            (0.97, true),
        ];
        let before = with(&agreeing);
        assert_eq!(before.explore_probability(0.94, 0.5), Some(0.0));
        let mut after = before.clone();
        after.record(0.94, false);
        assert!(after.explore_probability(0.94, 0.5).unwrap() > 0.1);
        assert!(after.explore_probability(0.94, 0.01).unwrap() > 0.98);
    }

    #[test]
    fn wrong_only_history_rarely_serves() {
        let o = with(&[(0.93, false); 10]);
        let tau = o.explore_probability(0.93, 0.01).unwrap();
        assert!(tau > 0.98, "tau {tau}");
    }

    #[test]
    fn observations_are_bounded_and_sanitized() {
        let mut o = Observations::new();
        for i in 0..(MAX_OBSERVATIONS + 10) {
            o.record(if i % 2 == 0 { 0.9 } else { 7.0 }, true);
        }
        o.record(f32::NAN, false);
        assert_eq!(o.len(), MAX_OBSERVATIONS);
        assert!(o.samples.iter().all(|(s, _)| (-1.0..=1.0).contains(s)));
        assert_eq!(o.decide(f32::NAN, 0.01, 0.999), VerifiedDecision::Explore);
    }

    #[test]
    fn serde_round_trip() {
        let o = with(&[(0.91, true), (0.42, false)]);
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Observations>(&json).unwrap(), o);
        let oversized = format!(
            r#"{{"samples":{}}}"#,
            serde_json::to_string(&vec![(0.9, true); 100]).unwrap()
        );
        let o: Observations = serde_json::from_str(&oversized).unwrap();
        assert_eq!(o.decide(0.9, 0.5, 0.999), VerifiedDecision::Explore);
    }
}
