//! Evidence across a session's payloads: a profile's *run* of recent payloads and their combined score.
//!
//! The extension posts one payload per ~90 s of activity. One payload's calibrated p-value is weak evidence
//! (dev protocol: AUC ≈ 0.80 per payload), but a person at the keyboard for several payloads is the same person
//! throughout, so the evidence of the payloads of one activity run is combined:
//!
//! **Combination (weighted Stouffer, correlation-corrected, bounded memory).** Each payload's p-value becomes
//! z = Φ⁻¹(p); a run's score is Φ(Σ w z / √(Σ w² + ρ Σ_{i≠j} w_i w_j)) over its newest m ≤ [`RUN_WINDOW`]
//! payloads, w being each payload's weight ([`payload_weight`]). Under the owner the p-values are uniform, so
//! each z is standard normal and the denominator is the weighted sum's standard deviation; payloads of one
//! session are not independent, though (the whole session sits a little nearer or farther from the enrolment
//! data), and ρ = [`RUN_CORRELATION`] is their pairwise correlation, which keeps the combined score a
//! calibrated p-value: `score < α` still flags about α of the owner's payloads. Measured on the dev protocol's
//! genuine chunks (`scripts/maxidom/eval_dev.py --dump-chunks`, payload p-values of the Euclidean model,
//! combined offline): the within-session correlation of z, estimated leaving each user out, is 0.11–0.16
//! (pooled 0.13); with ρ = 0 5 % turns into 9.4 % of genuine payloads flagged, with 0.15 it is 5.1 % (through
//! the service, with the fractional model: 5.3 %). Stouffer rather than Fisher: Fisher's sum of −2 ln p is
//! dominated by the smallest p-value, so one odd payload of the owner would flag the whole run; the mean of z
//! is not (chunk AUC 0.878 vs 0.858, window 10 vs 5: 0.878 vs 0.862, longer windows the same). Through the
//! service (chunk protocol, shipped defaults, equal weights, the model of that time): pooled AUC per payload
//! 0.816 alone → 0.881 in its run, per chunk (last payload) 0.817 → 0.891; from the 4th payload of a session
//! on, 0.904.
//!
//! **Weights: √(mouse points).** A payload's mouse p-value is calibrated among the owner's payloads of similar
//! size (`model::SizeCalibration`), so it is uniform under the owner at every size, but a small payload's
//! statistics are means over few points and separate the owner from others less well: it is weaker evidence.
//! The weighted Z-test with w ∝ √(sample size) is the textbook way to combine such p-values (Lipták 1958;
//! Zaykin 2011, J. Evol. Biol. 24:1836, "Optimally weighted Z-test is a powerful method for combining
//! probabilities in meta-analysis": with w = √n about the power of a test on the pooled data), and weights keep the
//! combination a p-value whatever they are, as long as they do not depend on the p-values. A payload of
//! [`REFERENCE_POINTS`] (200, about the median voting payload on the dev data) weighs 1; weights are bounded to
//! [1/3, 3] of that ([`MAX_WEIGHT_RATIO`]): on the dev data the bound changes nothing measurable (the gate of
//! 30 points is above the lower bound, ~3 % of payloads exceed 1,800 points), it is there so that one
//! enormous payload from a client cannot outweigh a whole run. A keyboard-only payload weighs 1, a typical
//! payload: the typing model is not size-conditional and there is no point count to scale by (the dev data has
//! no keyboard, so this is a choice, not a measurement). Format-1 run states, written before weights, load
//! with weight 1 each, i.e. the equal-weight combination they were written with. Measured offline
//! (`scripts/maxidom/offline_dev.py --weights equal,sqrt-points:clip3`, the shipped model, same p-values),
//! pooled chunk-last AUC / EER / FRR@1%FAR 0.927 / 0.151 / 0.686 → 0.931 / 0.150 / 0.680, per payload in its
//! run 0.915 / 0.168 → 0.917 / 0.164; no user worse (user15 0.899 → 0.907, user16 0.900 → 0.907, user20 0.957 →
//! 0.964, user21 0.927 → 0.937, user23 0.893 → 0.905, the others within 0.002). ρ still holds with weights:
//! the moment estimate of the correlation as the weighted sum sees it, E[(Σ w z)²] = Σ w² + ρ Σ_{i≠j} w_i w_j,
//! is 0.135 weighted vs 0.137 equal (pooled over the genuine chunks without user9, whose held-out sessions sit
//! far on the typical side, z sd ≫ 1, which says nothing about the lower tail), and the genuine payloads'
//! combined scores below 0.05 are 3.7 % weighted vs 3.9 % equal offline. Through the service (`eval_dev.py`, chunk
//! protocol, shipped defaults, before/after back to back): chunk-last 0.922 / 0.160 / 0.716 → 0.926 / 0.155 /
//! 0.698, per payload 0.909 / 0.176 → 0.912 / 0.171, genuine payloads flagged 3.8 % → 3.5 % (a repeat: 3.8 %),
//! no user's AUC worse.
//!
//! **One odd payload is not a lock-out.** The current payload enters with its full z (a payload that is
//! flagged on its own is still reported), but once answered it weighs at most [`MIN_PAST_Z`] in later
//! combinations: with ρ = 0.15, a single −3σ payload followed by typical ones of the same weight no longer
//! flags the run from its third payload on, while a sustained impostor keeps pulling the sum down. A heavier
//! odd payload is stronger evidence and is forgiven later (weight 3 among payloads of weight 1: from the
//! eighth on); that this is rare for the owner is what the 3.7 % above measures.
//!
//! **A change of person.** The whole run's sum answers "has this run been someone else?"; it answers "has
//! someone else just taken over?" slowly, because the owner's last payloads are still in it. Replayed through
//! the API, the real extension's recording (`crates/vigil/tests/compat_maxidom.rs`) has the impostor continue
//! the owner's run (the same page clock, no pause: a walk-up to an unlocked machine): each impostor payload is
//! below 1e-13 on its own, yet the run scored 0.13 and 0.06 on the first two and flagged only from the third.
//! So the run is tested as a change-point problem: besides the whole run, the combinations of its newest k
//! payloads (k = 1 … m − 1, each ending at the current payload) are tests too, and the score is their weighted
//! Bonferroni bound min(p_run / (1 − ε), (m − 1)/ε · min_k p_k), which keeps it a p-value: under the owner
//! P(score ≤ α) ≤ P(p_run ≤ (1 − ε)α) + Σ_k P(p_k ≤ εα/(m − 1)) = α. ε = [`CHANGE_SHARE`] = 0.1 spends a tenth of the false-alarm rate
//! on a change of person; the whole run keeps nine tenths (its p-value is divided by 0.9). A suffix only counts
//! when a payload is added, so a past odd payload (floored at [`MIN_PAST_Z`]) is not tested again on its own.
//! On the recording, the walk-up is flagged at the impostor's first payload. Offline on the dev protocol (its
//! chunks are one person each, so this measures only the price; `offline_dev.py --weights sqrt-points:clip3`,
//! the mirror's `CP_EPS`), chunk seeds 7 / 1 / 2, chunk-last AUC / EER / FRR@1%FAR before → after: 0.937 /
//! 0.135 / 0.647 → 0.937 / 0.137 / 0.644; 0.936 / 0.144 / 0.739 → 0.936 / 0.144 / 0.712; 0.929 / 0.153 / 0.729 →
//! 0.929 / 0.153 / 0.726; genuine run scores below 0.05: 4.0 / 5.2 / 4.9 % → 3.5 / 4.9 / 4.8 % (ε = 0.05 gave the
//! same to ±0.002). Young profiles pay a little (their owner's p-values are too low in new sessions, see
//! ARCHITECTURE "Young profiles"): chunk-last AUC at 20 / 30 / 50 training payloads 0.830 / 0.843 / 0.876 →
//! 0.822 / 0.839 / 0.873 offline. Through the API (`eval_dev.py --protocol both --curve 20,30,50,100,150`, the
//! build before and after, same session): chunk last 0.932 / 0.142 / 0.674 → 0.932 / 0.142 / 0.659, per payload
//! 0.920 / 0.162 / 0.749 → 0.920 / 0.162 / 0.740, genuine payloads flagged 4.0 → 3.5 %, impostor payloads
//! 66.0 → 64.9 %; the curve's chunk-last AUC at 20 / 30 / 50 / 100 / 150 payloads 0.823 / 0.845 / 0.867 / 0.918 /
//! 0.926 → 0.817 / 0.840 / 0.860 / 0.918 / 0.926.
//!
//! **Run boundaries.** A run is the same activity stream of the same person, as far as the server can tell.
//! It ends when a payload's first event time is earlier than the previous payload's last event time (the
//! page's `performance.now()` clock restarts with every page, so the events' clock going backwards means
//! another page, browser or machine), when the gap between the two exceeds [`RUN_GAP_MS`] (10 minutes:
//! common screen-lock timeouts are 5–15 minutes, so the person at the keyboard may have changed), and after
//! a successful password verification (the owner just proved themselves; evidence from before is stale).
//! Event times are used, not `startTimestamp` / `endTimestamp`, because the extension's end time comes from
//! another clock (issue #16).
//!
//! The run state is small ([`Run::to_bytes`]) and lives in the database beside the profile, so any replica
//! can continue any run.

/// Newest payloads a run's score combines (about 15 minutes of activity).
pub const RUN_WINDOW: usize = 10;
/// Pairwise correlation of the owner's payload z-scores within one run (measured, see the module docs).
pub const RUN_CORRELATION: f64 = 0.15;
/// Share ε of the false-alarm rate spent on a change of person within the run (see the module docs).
pub const CHANGE_SHARE: f64 = 0.1;
/// Floor of a past payload's z in later combinations.
pub const MIN_PAST_Z: f64 = -3.0;
/// Longest gap between two payloads' events that continues a run, in ms.
pub const RUN_GAP_MS: f64 = 10.0 * 60.0 * 1000.0;

/// Mouse points of a payload whose evidence weighs 1 in its run (about the median voting payload's on the dev
/// data): only weight ratios matter to the combination, so this only says what weight 1 means, that of
/// format-1 run entries and of keyboard-only payloads.
pub const REFERENCE_POINTS: f64 = 200.0;
/// Largest ratio of a payload's weight to the reference payload's, either way (see the module docs).
pub const MAX_WEIGHT_RATIO: f64 = 3.0;

/// Version byte of the stored run encoding: 2 stores each payload's weight beside its z.
const RUN_FORMAT: u8 = 2;
/// The encoding before weights (z only; every payload weighs 1). Still read.
const RUN_FORMAT_EQUAL: u8 = 1;

/// A payload's weight in its run: √(mouse points / [`REFERENCE_POINTS`]) bounded to [1/R, R] with
/// R = [`MAX_WEIGHT_RATIO`] when its mouse voted; 1 (a typical payload) when only its keyboard did: the typing
/// model's p-value is not conditioned on size, and there is no point count to scale. A payload whose mouse and
/// keyboard both voted weighs at least 1: its p-value combines both.
pub fn payload_weight(mouse_points: Option<usize>, typing_voted: bool) -> f64 {
    let Some(points) = mouse_points else {
        return 1.0;
    };
    // Point counts are far below 2^52: exact as f64.
    let w = (points as f64 / REFERENCE_POINTS)
        .sqrt()
        .clamp(1.0 / MAX_WEIGHT_RATIO, MAX_WEIGHT_RATIO);
    if typing_voted { w.max(1.0) } else { w }
}

pub use crate::features::event_span;

/// A profile's current run: the last event time seen and the z-scores and weights of its newest payloads
/// (oldest first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    /// Last event time of the run's newest payload (ms, the page's clock); `None` before any payload.
    pub last_event_ms: Option<f64>,
    /// z = Φ⁻¹(p) of the newest payloads that voted, oldest first, at most [`RUN_WINDOW`].
    pub z: Vec<f64>,
    /// Each of those payloads' weight ([`payload_weight`]), same order and length as `z`.
    pub w: Vec<f64>,
}

/// A payload's evidence: its own p-value and its weight in the run ([`payload_weight`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vote {
    pub p: f64,
    pub weight: f64,
}

/// What a payload did to the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStep {
    /// The run's combined score including this payload (`None`: no payload of the run has voted).
    pub score: Option<f64>,
    /// Payloads whose evidence the score combines.
    pub payloads: usize,
    /// Whether this payload started a new run.
    pub started: bool,
}

impl Run {
    /// Whether a payload whose events start at `first_event` continues this run.
    pub fn continues(&self, first_event: f64) -> bool {
        match self.last_event_ms {
            Some(last) => first_event >= last && first_event - last <= RUN_GAP_MS,
            None => false,
        }
    }

    /// Adds a payload: its event span and its vote (`None`: no modality voted, so it is no evidence; the run
    /// still moves on in time). Returns the run's score after it. A payload without event times cannot be
    /// placed in any run: it is answered on its own and the run is left as it is.
    pub fn push(&mut self, span: Option<(f64, f64)>, vote: Option<Vote>) -> RunStep {
        let p = vote.map(|v| v.p);
        let Some((first, last)) = span else {
            return RunStep {
                score: p,
                payloads: usize::from(p.is_some()),
                started: false,
            };
        };
        let started = !self.continues(first);
        // A run built by hand with missing weights counts those payloads as typical (weight 1), as format 1 does.
        self.w.resize(self.z.len(), 1.0);
        if started {
            self.z.clear();
            self.w.clear();
        }
        self.last_event_ms = Some(last);
        // A weight that is not a positive number (a caller's bug) counts as a typical payload's.
        let current = vote.map(|v| {
            let w = if v.weight.is_finite() && v.weight > 0.0 {
                v.weight
            } else {
                1.0
            };
            (z_of(v.p), w)
        });
        let (mut score, payloads) = self.combined(current);
        if payloads == 1 {
            // A run of one is the payload itself: its p-value exactly, not Φ(Φ⁻¹(p)) with its rounding.
            score = p.or(score);
        }
        if let Some((z, w)) = current {
            if self.z.len() == RUN_WINDOW {
                self.z.remove(0);
                self.w.remove(0);
            }
            self.z.push(z.max(MIN_PAST_Z));
            self.w.push(w);
        }
        RunStep {
            score,
            payloads,
            started,
        }
    }

    /// Weighted Stouffer combination of the stored (z, w) (the newest `RUN_WINDOW − 1` when a current one is
    /// added) and the current payload's: Σ w z / √(Σ w² + ρ Σ_{i≠j} w_i w_j), the denominator being the sum's
    /// standard deviation under the owner, written as √((1 − ρ) Σ w² + ρ (Σ w)²).
    ///
    /// With a current payload and a past, the whole run is one of several tests (see "A change of person" in
    /// the module docs): the score is min(p_run / (1 − ε), (m − 1)/ε · min_k p_k) over the newest k = 1 … m − 1
    /// payloads' combinations p_k, ε = [`CHANGE_SHARE`] (a weighted Bonferroni bound, so still a p-value where
    /// it is below ½; above, [`whole_run_score`] keeps the order without ties).
    fn combined(&self, current: Option<(f64, f64)>) -> (Option<f64>, usize) {
        let keep = if current.is_some() {
            RUN_WINDOW - 1
        } else {
            RUN_WINDOW
        };
        let from = self.z.len().saturating_sub(keep);
        // A missing weight (a run built by hand) counts as 1.
        let past = self.z[from..]
            .iter()
            .enumerate()
            .map(|(i, &z)| (z, self.w.get(from + i).copied().unwrap_or(1.0)));
        let mut run = [(0.0, 0.0); RUN_WINDOW];
        let mut m = 0;
        for entry in past.chain(current) {
            run[m] = entry;
            m += 1;
        }
        if m == 0 {
            return (None, 0);
        }
        // Every suffix ending at the newest payload in one backward pass: each extends the previous one's sums,
        // and the last is the whole run.
        let mut sums = Stouffer::default();
        let mut newest = 1.0_f64;
        for (k, &(z, w)) in run[..m].iter().rev().enumerate() {
            sums.add(z, w);
            if k + 1 < m {
                newest = newest.min(sums.p_value());
            }
        }
        let whole = sums.p_value();
        if current.is_none() || m == 1 {
            return (Some(whole), m);
        }
        let tests = (m - 1) as f64;
        let score = whole_run_score(whole).min(newest * tests / CHANGE_SHARE);
        (Some(score), m)
    }

    /// Stored form: format byte (2), presence byte and last event time, count byte, then per payload its z and
    /// its weight (LE f64 each). Format 1 had no weights: [`from_bytes`](Self::from_bytes) reads it with
    /// weight 1 for each payload, which is the equal-weight combination it was written for.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + 16 * self.z.len());
        out.push(RUN_FORMAT);
        match self.last_event_ms {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
            None => out.push(0),
        }
        // At most RUN_WINDOW (10) values: fits a byte.
        out.push(u8::try_from(self.z.len()).unwrap_or(u8::MAX));
        for (i, z) in self.z.iter().enumerate() {
            out.extend_from_slice(&z.to_le_bytes());
            // A missing weight (a run built by hand) is stored as 1, what it counts as.
            let w = self.w.get(i).copied().unwrap_or(1.0);
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Parses [`to_bytes`](Self::to_bytes); `None` for anything else (the caller starts a new run).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        let weighted = match format {
            RUN_FORMAT => true,
            RUN_FORMAT_EQUAL => false,
            _ => return None,
        };
        let (&present, mut rest) = rest.split_first()?;
        let last_event_ms = match present {
            0 => None,
            1 => {
                let (t, r) = rest.split_first_chunk::<8>()?;
                rest = r;
                Some(f64::from_le_bytes(*t)).filter(|t| t.is_finite())
            }
            _ => return None,
        };
        let (&n, rest) = rest.split_first()?;
        let n = usize::from(n);
        let per = if weighted { 16 } else { 8 };
        if n > RUN_WINDOW || rest.len() != per * n {
            return None;
        }
        let values: Vec<f64> = rest
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let (z, w): (Vec<f64>, Vec<f64>) = if weighted {
            values.chunks_exact(2).map(|c| (c[0], c[1])).unzip()
        } else {
            (values, vec![1.0; n])
        };
        if z.iter().any(|v| !v.is_finite()) || w.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return None;
        }
        Some(Run {
            last_event_ms,
            z,
            w,
        })
    }
}

/// z-score of a p-value, bounded so that p = 0 or 1 stay finite (|z| ≤ 38, beyond any real p-value's).
/// Where [`whole_run_score`] stops dividing by 1 − ε.
const WHOLE_RUN_KNEE: f64 = 0.5;

/// The whole run's test as a score beside the suffix tests: p / (1 − ε) up to p = ½ (where decisions are
/// made: the thresholds are 0.05), then linear up to 1 at p = 1. Capping p / (1 − ε) at 1 instead tied every
/// run above 1 − ε at 1 and lost the ordering of the most owner-like runs (through the API, young profiles'
/// per-payload FRR at 1 % FAR became 1.0: more than 1 % of impostor payloads tied at the top).
fn whole_run_score(p: f64) -> f64 {
    let at_knee = WHOLE_RUN_KNEE / (1.0 - CHANGE_SHARE);
    if p <= WHOLE_RUN_KNEE {
        p / (1.0 - CHANGE_SHARE)
    } else {
        at_knee + (p - WHOLE_RUN_KNEE) * (1.0 - at_knee) / (1.0 - WHOLE_RUN_KNEE)
    }
}

/// Weighted Stouffer combination of (z, w) pairs, accumulated: Φ(Σ w z / √(Σ w² + ρ Σ_{i≠j} w_i w_j)), the
/// denominator being the sum's standard deviation under the owner, written as √((1 − ρ) Σ w² + ρ (Σ w)²).
#[derive(Default)]
struct Stouffer {
    sum: f64,
    sum_w: f64,
    sum_w2: f64,
}

impl Stouffer {
    fn add(&mut self, z: f64, w: f64) {
        self.sum += w * z;
        self.sum_w += w;
        self.sum_w2 += w * w;
    }

    fn p_value(&self) -> f64 {
        let sd = ((1.0 - RUN_CORRELATION) * self.sum_w2
            + RUN_CORRELATION * self.sum_w * self.sum_w)
            .sqrt();
        normal_cdf(self.sum / sd)
    }
}

fn z_of(p: f64) -> f64 {
    normal_quantile(p.clamp(1e-300, 1.0 - 1e-16))
}

/// Standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal quantile: Acklam's rational approximation (relative error < 1.2e-9) refined by one
/// Halley step on the exact CDF, which brings it to about machine precision.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 {
        return if p == 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::NAN
        };
    }
    if p >= 1.0 {
        return if p == 1.0 { f64::INFINITY } else { f64::NAN };
    }
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
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // Halley refinement: e = Φ(x) − p, u = e·√(2π)·exp(x²/2).
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    let refined = x - u / (1.0 + x * u / 2.0);
    if refined.is_finite() { refined } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_inverts_the_cdf() {
        for &p in &[
            1e-300, 1e-20, 1e-5, 0.001, 0.02425, 0.05, 0.3, 0.5, 0.7, 0.975, 0.999,
        ] {
            let x = normal_quantile(p);
            let back = normal_cdf(x);
            assert!(((back - p) / p).abs() < 1e-9, "{p}: {x} -> {back}");
        }
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        assert!((normal_quantile(0.05) + 1.644_853_626_951_472_2).abs() < 1e-12);
        assert_eq!(normal_quantile(0.5), 0.0);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert!(normal_quantile(f64::NAN).is_nan() && normal_quantile(1.5).is_nan());
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-16);
    }

    fn span(a: f64, b: f64) -> Option<(f64, f64)> {
        Some((a, b))
    }

    /// A vote of weight 1 (the equal-weight combination).
    fn vote(p: f64) -> Vote {
        Vote { p, weight: 1.0 }
    }

    #[test]
    fn one_payload_scores_its_own_p_value() {
        let mut run = Run::default();
        let step = run.push(span(0.0, 1000.0), Some(vote(0.3)));
        assert!(step.started && step.payloads == 1);
        assert!((step.score.unwrap() - 0.3).abs() < 1e-12);
        // Even an extreme payload is reported in full when it arrives.
        let mut run = Run::default();
        let s = run.push(span(0.0, 1.0), Some(vote(1e-12))).score.unwrap();
        assert!((s / 1e-12 - 1.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn a_sustained_impostor_sinks_and_one_odd_owner_payload_is_forgiven() {
        // Payloads 90 s apart, each 80 s long.
        fn next(run: &mut Run, p: f64) -> RunStep {
            let t = run.last_event_ms.map_or(0.0, |t| t + 10_000.0);
            run.push(span(t, t + 80_000.0), Some(vote(p)))
        }
        let mut run = Run::default();
        // An impostor whose payloads are each only mildly unusual (p = 0.15, never flagged alone).
        let scores: Vec<f64> = (0..6)
            .map(|_| next(&mut run, 0.15).score.unwrap())
            .collect();
        assert!(scores.windows(2).all(|w| w[1] < w[0]), "{scores:?}");
        assert!(scores[5] < 0.05, "{scores:?}");
        // The owner: one very odd payload, then typical ones: flagged once, then not.
        let mut run = Run::default();
        assert!(next(&mut run, 1e-9).score.unwrap() < 0.05);
        next(&mut run, 0.5);
        let third = next(&mut run, 0.5);
        assert_eq!(third.payloads, 3);
        assert!(third.score.unwrap() > 0.05, "{third:?}");
        // A heavy odd payload (weight 3) among typical payloads of weight 1 is forgiven from the eighth on.
        let mut run = Run::default();
        run.push(
            span(0.0, 80_000.0),
            Some(Vote {
                p: 1e-9,
                weight: 3.0,
            }),
        );
        let scores: Vec<f64> = (0..8).map(|_| next(&mut run, 0.5).score.unwrap()).collect();
        assert!(scores[5] < 0.05 && scores[6] > 0.05, "{scores:?}");
    }

    #[test]
    fn a_change_of_person_within_a_run_is_flagged_at_once_and_a_mildly_odd_payload_is_not() {
        fn after_typical_owner(last: f64) -> f64 {
            let mut run = Run::default();
            for i in 0..9 {
                let t = f64::from(i) * 90_000.0;
                run.push(span(t, t + 80_000.0), Some(vote(0.5)));
            }
            run.push(span(810_000.0, 890_000.0), Some(vote(last)))
                .score
                .unwrap()
        }
        // Someone else takes over the owner's page: their first payload, far outside the owner's behaviour.
        let walk_up = after_typical_owner(1e-13);
        assert!(walk_up < 1e-10, "{walk_up}");
        // It is the newest payload's test, bounded: (m − 1)/ε times its p-value.
        assert!(
            (walk_up / (9.0 / CHANGE_SHARE * 1e-13) - 1.0).abs() < 1e-6,
            "{walk_up}"
        );
        // The whole run alone would not have flagged it yet.
        let zs: f64 = 9.0 * normal_quantile(0.5) + normal_quantile(1e-13);
        let whole = normal_cdf(zs / (10.0 + 90.0 * RUN_CORRELATION).sqrt());
        assert!(whole > 0.05, "{whole}");
        // An owner's mildly odd payload (p = 0.01) among typical ones is not a lock-out.
        assert!(after_typical_owner(0.01) > 0.05);
    }

    #[test]
    fn the_whole_runs_score_keeps_its_order_without_ties() {
        let ps: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let scores: Vec<f64> = ps.iter().map(|&p| whole_run_score(p)).collect();
        assert!(
            scores.windows(2).all(|w| w[1] > w[0]),
            "strictly increasing"
        );
        assert!((whole_run_score(1.0) - 1.0).abs() < 1e-12);
        // A Bonferroni share of α where decisions are made, and continuous at the knee.
        assert!((whole_run_score(0.045) - 0.05).abs() < 1e-12);
        let knee = WHOLE_RUN_KNEE / (1.0 - CHANGE_SHARE);
        assert!((whole_run_score(WHOLE_RUN_KNEE + 1e-12) - knee).abs() < 1e-9);
    }

    #[test]
    fn runs_end_on_backward_clocks_and_long_gaps() {
        let mut run = Run::default();
        run.push(span(10_000.0, 50_000.0), Some(vote(0.01)));
        // Continues.
        let s = run.push(span(55_000.0, 90_000.0), Some(vote(0.01)));
        assert!(!s.started && s.payloads == 2);
        // The page's clock restarted: a new run.
        let s = run.push(span(100.0, 30_000.0), Some(vote(0.5)));
        assert!(s.started && s.payloads == 1);
        assert!((s.score.unwrap() - 0.5).abs() < 1e-12);
        // A gap just within the limit continues, one beyond starts anew.
        let s = run.push(
            span(30_000.0 + RUN_GAP_MS, 30_000.0 + RUN_GAP_MS),
            Some(vote(0.5)),
        );
        assert!(!s.started);
        let s = run.push(
            span(60_001.0 + 2.0 * RUN_GAP_MS, 70_000.0 + 2.0 * RUN_GAP_MS),
            None,
        );
        assert!(s.started && s.score.is_none() && s.payloads == 0);
        // No event times: answered on its own, the run is kept as it is.
        run.push(
            span(80_000.0 + 2.0 * RUN_GAP_MS, 90_000.0 + 2.0 * RUN_GAP_MS),
            Some(vote(0.01)),
        );
        let before = run.clone();
        let s = run.push(None, None);
        assert!(!s.started && s.score.is_none() && run == before);
        let s = run.push(None, Some(vote(0.7)));
        assert_eq!((s.score, s.payloads), (Some(0.7), 1));
        assert_eq!(run, before);
    }

    #[test]
    fn the_window_is_bounded_and_abstaining_payloads_keep_the_score() {
        let mut run = Run::default();
        for i in 0..25 {
            let t = f64::from(i) * 1000.0;
            run.push(span(t, t + 500.0), Some(vote(0.4)));
        }
        assert_eq!(run.z.len(), RUN_WINDOW);
        let before = run.clone();
        let s = run.push(span(30_000.0, 30_500.0), None);
        assert_eq!(s.payloads, RUN_WINDOW);
        assert_eq!(run.z, before.z);
        assert_eq!(s.score, before.combined(None).0);
    }

    /// Share of payloads whose run score is below 0.05, over 3,000 runs of 1–10 payloads voting `vote(rng)`.
    fn flagged_share(
        rng: &mut crate::synth::Rng,
        vote: impl Fn(&mut crate::synth::Rng) -> Vote,
    ) -> f64 {
        let (mut below, mut total) = (0, 0);
        for _ in 0..3000 {
            let mut run = Run::default();
            let len = 1 + rng.below(10);
            for j in 0..len {
                let t = j as f64 * 1000.0;
                let s = run.push(span(t, t + 10.0), Some(vote(rng)));
                below += usize::from(s.score.unwrap() < 0.05);
                total += 1;
            }
        }
        below as f64 / total as f64
    }

    #[test]
    fn genuine_uniform_p_values_stay_calibrated() {
        // Independent uniform p-values in runs of 1–10: the combined score is conservative but near α
        // (ρ > 0 makes it conservative on independent data; real sessions are correlated, see the module docs).
        let mut rng = crate::synth::Rng::new(5);
        let rate = flagged_share(&mut rng, |rng| vote(rng.unit().max(1e-9)));
        assert!((0.02..=0.06).contains(&rate), "{rate}");
        // The same with weights spread over their whole range: weights do not change the calibration.
        let rate = flagged_share(&mut rng, |rng| {
            let points = 30 + rng.below(2000);
            Vote {
                p: rng.unit().max(1e-9),
                weight: payload_weight(Some(points), false),
            }
        });
        assert!((0.02..=0.06).contains(&rate), "{rate}");
    }

    #[test]
    fn runs_round_trip_and_bad_bytes_are_refused() {
        let mut run = Run::default();
        assert_eq!(Run::from_bytes(&run.to_bytes()), Some(run.clone()));
        run.push(span(1.0, 2.0), Some(vote(0.2)));
        run.push(span(3.0, 4.0), Some(vote(0.7)));
        let b = run.to_bytes();
        assert_eq!(Run::from_bytes(&b), Some(run));
        for cut in 0..b.len() {
            assert_eq!(Run::from_bytes(&b[..cut]), None, "cut {cut}");
        }
        let mut bad = b.clone();
        bad[0] = 9;
        assert_eq!(Run::from_bytes(&bad), None);
        let mut extra = b.clone();
        extra.push(0);
        assert_eq!(Run::from_bytes(&extra), None);
        // A weight that is not positive is refused (the last 8 bytes are the newest payload's weight).
        let mut zero = b.clone();
        let at = zero.len() - 8;
        zero[at..].copy_from_slice(&0.0f64.to_le_bytes());
        assert_eq!(Run::from_bytes(&zero), None);
    }

    #[test]
    fn format_1_states_load_with_equal_weights_and_score_as_before() {
        // A format-1 state as the previous version wrote it: no weights.
        let (z1, z2) = (-1.2_f64, 0.4_f64);
        let mut old = vec![1u8, 1];
        old.extend_from_slice(&5_000.0f64.to_le_bytes());
        old.push(2);
        old.extend_from_slice(&z1.to_le_bytes());
        old.extend_from_slice(&z2.to_le_bytes());
        let mut run = Run::from_bytes(&old).unwrap();
        assert_eq!(run.w, vec![1.0, 1.0]);
        assert_eq!(
            (run.last_event_ms, run.z.clone()),
            (Some(5_000.0), vec![z1, z2])
        );
        // The next weight-1 payload scores with the old equal-weight formula Φ(Σz / √(m + m(m − 1)ρ)) (as the
        // whole run's test, divided by 1 − ε; its newest payloads are typical, so no suffix test is lower).
        let s = run
            .push(span(6_000.0, 7_000.0), Some(vote(0.3)))
            .score
            .unwrap();
        let m = 3.0;
        let want = normal_cdf(
            (z1 + z2 + normal_quantile(0.3)) / (m + m * (m - 1.0) * RUN_CORRELATION).sqrt(),
        ) / (1.0 - CHANGE_SHARE);
        assert!((s - want).abs() < 1e-12, "{s} vs {want}");
        // Stored again, it is format 2 and keeps the weights.
        let b = run.to_bytes();
        assert_eq!(b[0], 2);
        assert_eq!(Run::from_bytes(&b), Some(run));
        // A format-1 state with a wrong length is refused, as before.
        assert_eq!(Run::from_bytes(&old[..old.len() - 1]), None);
    }

    #[test]
    fn weights_scale_each_payloads_evidence() {
        // Weighted Stouffer: Σ w z / √(Σ w² + ρ Σ_{i≠j} w_i w_j).
        let mut run = Run::default();
        let (p1, w1, p2, w2) = (0.02, 2.0, 0.6, 0.5);
        run.push(span(0.0, 1.0), Some(Vote { p: p1, weight: w1 }));
        let s = run.push(span(2.0, 3.0), Some(Vote { p: p2, weight: w2 }));
        let (z1, z2) = (normal_quantile(p1), normal_quantile(p2));
        let sd = (w1 * w1 + w2 * w2 + 2.0 * RUN_CORRELATION * w1 * w2).sqrt();
        // The whole run's test (the newest payload alone, p2 · 1/ε, is no lower).
        let want = normal_cdf((w1 * z1 + w2 * z2) / sd) / (1.0 - CHANGE_SHARE);
        assert!((s.score.unwrap() - want).abs() < 1e-12);
        // The large odd payload outweighs the small typical one: still flagged, unlike with equal weights.
        assert!(want < 0.05, "{want}");
        let mut equal = Run::default();
        equal.push(span(0.0, 1.0), Some(vote(p1)));
        assert!(equal.push(span(2.0, 3.0), Some(vote(p2))).score.unwrap() > 0.05);
        // Only ratios matter.
        let mut scaled = Run::default();
        scaled.push(
            span(0.0, 1.0),
            Some(Vote {
                p: p1,
                weight: 10.0 * w1,
            }),
        );
        let t = scaled.push(
            span(2.0, 3.0),
            Some(Vote {
                p: p2,
                weight: 10.0 * w2,
            }),
        );
        assert!((t.score.unwrap() - want).abs() < 1e-12);
        // A weight that is not a positive number counts as 1.
        let mut bad = Run::default();
        bad.push(
            span(0.0, 1.0),
            Some(Vote {
                p: 0.5,
                weight: f64::NAN,
            }),
        );
        bad.push(
            span(2.0, 3.0),
            Some(Vote {
                p: 0.5,
                weight: -1.0,
            }),
        );
        assert_eq!(bad.w, vec![1.0, 1.0]);
    }

    #[test]
    fn a_run_built_without_weights_counts_them_as_1() {
        let mut run = Run {
            last_event_ms: Some(1.0),
            z: vec![-1.0; RUN_WINDOW],
            w: Vec::new(),
        };
        let back = Run::from_bytes(&run.to_bytes()).unwrap();
        assert_eq!(back.w, vec![1.0; RUN_WINDOW]);
        assert_eq!(run.combined(None), back.combined(None));
        let s = run.push(span(2.0, 3.0), Some(vote(0.5)));
        assert_eq!((s.payloads, run.w.len()), (RUN_WINDOW, RUN_WINDOW));
    }

    #[test]
    fn payload_weights_grow_with_mouse_points_within_bounds() {
        assert_eq!(payload_weight(None, true), 1.0);
        assert_eq!(payload_weight(None, false), 1.0);
        let reference = REFERENCE_POINTS as usize;
        assert!((payload_weight(Some(reference), false) - 1.0).abs() < 1e-12);
        assert!((payload_weight(Some(4 * reference), false) - 2.0).abs() < 1e-12);
        assert!((payload_weight(Some(reference / 4), false) - 0.5).abs() < 1e-12);
        assert_eq!(payload_weight(Some(1_000_000), false), MAX_WEIGHT_RATIO);
        assert_eq!(payload_weight(Some(1), false), 1.0 / MAX_WEIGHT_RATIO);
        // A small mouse payload whose keyboard also voted weighs at least a typical payload.
        assert_eq!(payload_weight(Some(reference / 4), true), 1.0);
        assert!((payload_weight(Some(4 * reference), true) - 2.0).abs() < 1e-12);
    }
}
