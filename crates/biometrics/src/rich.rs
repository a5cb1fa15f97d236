//! The rich mouse vector: stroke shape and click timing, stored beside the 15 contract features.
//!
//! The contract features are session means; two people with the same average speed can move very
//! differently. These describe distributions instead, where the per-person differences are on real mouse
//! data (Balabit, `scripts/maxidom/eval_dev.py`). Groups, in vector order:
//!
//! | group | values |
//! |---|---|
//! | angles | mean, std and share > 90° of the absolute direction change between consecutive moving segments of a path (rad); median and 90 % quantile of ln(1 + 100 · curvature), curvature = direction change / mean length of the two segments (px, at least 1) |
//! | click timing | median ln(1 + ms from the end of the last path to the press), median ln(1 + ms from the release to the next path's start) (both only under 5 s), median and std of click duration (0–1000 ms), clicks per path |
//! | turn quantiles | 25 %, 50 % and 75 % quantiles of the same absolute direction changes as the angle group (rad) |
//! | size | mouse points in the payload (all paths) |
//!
//! Turn quantiles: the angle group's mean and share > 90° summarise the turn-angle distribution by its tails;
//! its quartiles say how a person's *ordinary* small corrections look (a steady hand vs. a jittery one), the
//! strongest per-person signal measured on the dev data (per-feature AUC of the angle values 0.72–0.76 against
//! 0.53–0.67 for the rest). Added after the first two groups, so vectors stored before them have 10 rich values
//! ([`RICH_COUNT_V1`]).
//!
//! Size: not a model input. The mouse model's calibration is conditional on it (`model::SizeCalibration`):
//! a payload with few points has noisier statistics, so its distance to the owner's payloads is larger for
//! anyone, and it is compared with the owner's payloads of similar size. Added last, so vectors stored
//! before it have 13 rich values ([`RICH_COUNT_V2`]) and their profiles calibrate on all rows as before.
//!
//! Only groups that earned their place are extracted (this runs on every `/score`). Measured on the dev protocol
//! and left out (ARCHITECTURE.md, MaxiDOM, ablation): speed quantiles and a speed histogram, acceleration and jerk
//! quantiles, stroke shape (duration, length, straightness, time to peak speed) — none of them raised the AUC
//! beside these two; a direction histogram lowered it (direction follows the screen layout more than the
//! person). Like [`crate::features`], extraction is total: any payload yields [`RICH_COUNT`] finite numbers; a
//! statistic with no input is 0.

use crate::payload::Payload;

/// Values in a rich vector.
pub const RICH_COUNT: usize = 14;
/// Values in a rich vector stored by the version before the turn quantiles.
pub const RICH_COUNT_V1: usize = 10;
/// Values in a rich vector stored by the version before the size.
pub const RICH_COUNT_V2: usize = 13;

/// A rich vector, in the order of the table above.
pub type RichVector = [f64; RICH_COUNT];

/// Where each group sits in a [`RichVector`].
pub mod groups {
    use std::ops::Range;

    pub const ANGLES: Range<usize> = 0..5;
    pub const CLICK_TIMING: Range<usize> = 5..10;
    pub const TURN_QUANTILES: Range<usize> = 10..13;
    /// One value: the payload's mouse points ([`crate::Payload::mouse_point_count`]).
    pub const SIZE: usize = 13;
}

/// Click-to-move latencies at or above this are not part of one gesture.
const MAX_CLICK_LATENCY_MS: f64 = 5000.0;

/// Linear-interpolation quantile (numpy's default), reordering `values`; 0 for none. Selection, not a sort:
/// this runs on every request.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut lo_v, upper) = values.select_nth_unstable_by(lo, f64::total_cmp);
    if frac == 0.0 || upper.is_empty() {
        return lo_v;
    }
    let hi_v = upper.iter().copied().min_by(f64::total_cmp).unwrap_or(lo_v);
    lo_v + (hi_v - lo_v) * frac
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn std_pop(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64).sqrt()
}

/// Wraps an angle difference into [-π, π).
fn wrap(a: f64) -> f64 {
    (a + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI
}

/// Extracts the rich vector of a payload.
pub fn extract_rich(p: &Payload) -> RichVector {
    let mut turns = Vec::new();
    let mut curvs = Vec::new();
    let mut path_starts = Vec::new();
    let mut path_ends = Vec::new();
    for path in p.mouse_paths.iter().filter(|path| path.len() >= 2) {
        path_starts.push(path[0].t);
        path_ends.push(path[path.len() - 1].t);
        // Direction and length of the previous moving (non-zero) segment.
        let mut prev: Option<(f64, f64)> = None;
        for w in path.windows(2) {
            let (dx, dy) = (w[1].x - w[0].x, w[1].y - w[0].y);
            let l = dx.hypot(dy);
            if l > 0.0 {
                let a = dy.atan2(dx);
                if let Some((pa, pl)) = prev {
                    let da = wrap(a - pa).abs();
                    turns.push(da);
                    curvs.push((da / ((pl + l) / 2.0).max(1.0) * 100.0).ln_1p());
                }
                prev = Some((a, l));
            }
        }
    }

    let mut out = [0.0; RICH_COUNT];
    let mut i = 0;
    let mut put = |x: f64| {
        out[i] = if x.is_finite() { x } else { 0.0 };
        i += 1;
    };

    put(mean(&turns));
    put(std_pop(&turns));
    put(if turns.is_empty() {
        0.0
    } else {
        turns
            .iter()
            .filter(|&&a| a > std::f64::consts::FRAC_PI_2)
            .count() as f64
            / turns.len() as f64
    });
    put(quantile(&mut curvs, 0.5));
    put(quantile(&mut curvs, 0.9));
    // Stored after the click group (vectors of the previous version end there); the selections reorder
    // `turns`, which the order-free statistics above no longer need.
    let turn_q = [
        quantile(&mut turns, 0.25),
        quantile(&mut turns, 0.5),
        quantile(&mut turns, 0.75),
    ];

    path_starts.sort_unstable_by(f64::total_cmp);
    path_ends.sort_unstable_by(f64::total_cmp);
    let (mut pre, mut post, mut dur) = (Vec::new(), Vec::new(), Vec::new());
    for c in &p.clicks {
        if c.duration > 0.0 && c.duration < 1000.0 {
            dur.push(c.duration);
        }
        // Latest path end at or before the press.
        let n_le = path_ends.partition_point(|&e| e <= c.t);
        if n_le > 0 {
            let gap = c.t - path_ends[n_le - 1];
            if gap < MAX_CLICK_LATENCY_MS {
                pre.push(gap.abs().ln_1p());
            }
        }
        // First path start at or after the release.
        let up = c.t + c.duration.max(0.0);
        let n_lt = path_starts.partition_point(|&s| s < up);
        if let Some(&s) = path_starts.get(n_lt) {
            let gap = s - up;
            if gap < MAX_CLICK_LATENCY_MS {
                post.push(gap.abs().ln_1p());
            }
        }
    }
    put(quantile(&mut pre, 0.5));
    put(quantile(&mut post, 0.5));
    let dur_std = std_pop(&dur);
    put(quantile(&mut dur, 0.5));
    put(dur_std);
    put(p.clicks.len() as f64 / path_starts.len().max(1) as f64);
    for q in turn_q {
        put(q);
    }
    put(p.mouse_point_count() as f64);
    debug_assert_eq!(i, RICH_COUNT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Click, MousePoint};

    fn payload(paths: Vec<Vec<(f64, f64, f64)>>, clicks: Vec<(f64, f64)>) -> Payload {
        Payload {
            start_timestamp: 0.0,
            end_timestamp: 10_000.0,
            key_events: vec![],
            mouse_paths: paths
                .into_iter()
                .map(|p| {
                    p.into_iter()
                        .map(|(t, x, y)| MousePoint { t, x, y })
                        .collect()
                })
                .collect(),
            clicks: clicks
                .into_iter()
                .map(|(t, duration)| Click {
                    t,
                    x: None,
                    y: None,
                    button: Some(0),
                    duration,
                })
                .collect(),
        }
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.5), 2.5);
        assert!((quantile(&mut v, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        assert_eq!(quantile(&mut v, 1.0), 4.0);
        assert_eq!(quantile(&mut [], 0.5), 0.0);
        assert_eq!(quantile(&mut [7.0], 0.9), 7.0);
    }

    #[test]
    fn empty_payload_is_all_zero() {
        assert_eq!(extract_rich(&payload(vec![], vec![])), [0.0; RICH_COUNT]);
    }

    #[test]
    fn straight_path_and_a_click_after_it() {
        let path: Vec<_> = (0..11)
            .map(|i| (f64::from(i) * 10.0, f64::from(i) * 10.0, 0.0))
            .collect();
        let r = extract_rich(&payload(vec![path], vec![(200.0, 100.0)]));
        // No turns: every angle value is 0.
        assert_eq!(&r[groups::ANGLES], &[0.0; 5]);
        assert_eq!(&r[groups::TURN_QUANTILES], &[0.0; 3]);
        // Pressed 100 ms after the path ended; no move after the release; one click per path.
        assert!((r[5] - 100f64.ln_1p()).abs() < 1e-12);
        assert_eq!(&r[6..10], &[0.0, 100.0, 0.0, 1.0]);
        assert_eq!(r[groups::SIZE], 11.0);
    }

    #[test]
    fn right_angle_turn() {
        let path = vec![
            (0.0, 0.0, 0.0),
            (10.0, 10.0, 0.0),
            (15.0, 10.0, 0.0),
            (20.0, 10.0, 10.0),
        ];
        let r = extract_rich(&payload(vec![path], vec![]));
        // The zero-length segment is skipped: one 90° turn between 10 px segments.
        assert!((r[0] - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert_eq!(r[2], 0.0, "exactly 90° is not more than 90°");
        let curv = (std::f64::consts::FRAC_PI_2 / 10.0 * 100.0).ln_1p();
        assert!((r[3] - curv).abs() < 1e-12);
        assert_eq!(
            &r[groups::TURN_QUANTILES],
            &[std::f64::consts::FRAC_PI_2; 3]
        );
    }

    #[test]
    fn turn_quantiles_interpolate() {
        // Turns of 0, 90° and 180° (a straight step, a right angle, a reversal): quartiles 45°, 90°, 135°.
        let path = vec![
            (0.0, 0.0, 0.0),
            (10.0, 10.0, 0.0),
            (20.0, 20.0, 0.0),
            (30.0, 20.0, 10.0),
            (40.0, 20.0, 0.0),
        ];
        let r = extract_rich(&payload(vec![path], vec![]));
        let pi = std::f64::consts::PI;
        let q = &r[groups::TURN_QUANTILES];
        assert!((q[0] - pi / 4.0).abs() < 1e-12, "{q:?}");
        assert!((q[1] - pi / 2.0).abs() < 1e-12, "{q:?}");
        assert!((q[2] - 3.0 * pi / 4.0).abs() < 1e-12, "{q:?}");
    }

    #[test]
    fn hostile_values_stay_finite() {
        let path = vec![
            (0.0, f64::MAX, -f64::MAX),
            (1.0, -f64::MAX, f64::MAX),
            (1.0, 0.0, 0.0),
            (-5.0, 1e300, 1e-300),
        ];
        let r = extract_rich(&payload(
            vec![path, vec![], vec![(3.0, 1.0, 1.0)]],
            vec![(f64::MAX, f64::MAX), (-1.0, -1.0), (f64::NAN, 5.0)],
        ));
        assert!(r.iter().all(|x| x.is_finite()), "{r:?}");
    }
}
