//! The rich mouse vector: stroke-level shape and timing, stored beside the 15 contract features.
//!
//! The contract features are session means; two people with the same average speed can move very
//! differently. These describe the distributions instead (quantiles and histograms), which is where the
//! per-person differences are on real mouse data (Balabit, `scripts/maxidom/eval_dev.py`). Groups, in vector
//! order (the model uses the groups that earned their place on the dev protocol, see
//! [`crate::model::MOUSE_RICH_GROUPS`] and the ablation in ARCHITECTURE.md, MaxiDOM; all are stored, so a later
//! model can use the others without waiting for new data):
//!
//! | group | values |
//! |---|---|
//! | speed | 10/25/50/75/90 % quantiles of ln(1 + segment speed px/s) |
//! | speed histogram | share of segments < 50, < 150, < 400, < 1000, < 2500, ≥ 2500 px/s |
//! | angles | mean, std and share > 90° of the absolute direction change between moving segments (rad); median and 90 % of ln(1 + 100 · curvature), curvature = direction change / mean segment length |
//! | jerk | median and 90 % of ln(1 + \|acceleration\|) and of ln(1 + \|jerk\|) between kept segments |
//! | stroke | per path: median ln(1 + duration ms); 25/50/75 % of ln(1 + length px); 25/50 % straightness; mean time-to-peak-speed share; median ln(1 + peak speed) |
//! | click timing | median ln(1 + move-end → press ms), median ln(1 + release → next move ms) (both < 5 s), median and std of click duration (0–1000 ms), clicks per path |
//!
//! A direction histogram was measured too and left out: it lowered the AUC (movement direction follows
//! the screen layout more than the person). Like [`crate::features`], extraction is total: any payload
//! yields [`RICH_COUNT`] finite numbers; a statistic with no input is 0.

use crate::payload::Payload;

/// Values in a rich vector.
pub const RICH_COUNT: usize = 33;

/// A rich vector, in the order of the table above.
pub type RichVector = [f64; RICH_COUNT];

/// Where each group sits in a [`RichVector`].
pub mod groups {
    use std::ops::Range;

    pub const SPEED: Range<usize> = 0..5;
    pub const SPEED_HISTOGRAM: Range<usize> = 5..11;
    pub const ANGLES: Range<usize> = 11..16;
    pub const JERK: Range<usize> = 16..20;
    pub const STROKE: Range<usize> = 20..28;
    pub const CLICK_TIMING: Range<usize> = 28..33;
}

/// Speed-histogram bin edges, px/s.
const SPEED_EDGES: [f64; 5] = [50.0, 150.0, 400.0, 1000.0, 2500.0];
/// Segments with `0 < dt < MAX_SEGMENT_DT_MS` have a speed (as in the contract features).
const MAX_SEGMENT_DT_MS: f64 = 2000.0;
/// Click-to-move latencies at or above this are not part of one gesture.
const MAX_CLICK_LATENCY_MS: f64 = 5000.0;

/// Linear-interpolation quantile (numpy's default) of unsorted values; 0 for none.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    quantile_sorted(values, q)
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
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

fn ln1p_all(v: &mut [f64]) {
    for x in v.iter_mut() {
        *x = x.abs().ln_1p();
    }
}

/// Wraps an angle difference into [-π, π).
fn wrap(a: f64) -> f64 {
    (a + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI
}

/// Extracts the rich vector of a payload.
pub fn extract_rich(p: &Payload) -> RichVector {
    let mut speeds = Vec::new();
    let mut turns = Vec::new();
    let mut curvs = Vec::new();
    let mut accels = Vec::new();
    let mut jerks = Vec::new();
    let (mut s_dur, mut s_len, mut s_str, mut s_peak, mut s_vmax) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut path_ends = Vec::new();
    let mut path_starts = Vec::new();
    // Per-path scratch, reused.
    let mut kept: Vec<(f64, f64)> = Vec::new();
    let mut moving: Vec<(f64, f64)> = Vec::new();
    for path in p.mouse_paths.iter().filter(|path| path.len() >= 2) {
        path_starts.push(path[0].t);
        path_ends.push(path[path.len() - 1].t);
        kept.clear();
        moving.clear();
        let mut length = 0.0;
        // Peak speed and the end time of its segment (first maximum, as numpy's argmax).
        let mut peak: Option<(f64, f64)> = None;
        for w in path.windows(2) {
            let (dx, dy, dt) = (w[1].x - w[0].x, w[1].y - w[0].y, w[1].t - w[0].t);
            let l = dx.hypot(dy);
            length += l;
            if dt > 0.0 && dt < MAX_SEGMENT_DT_MS {
                let v = l / (dt / 1000.0);
                speeds.push(v);
                kept.push((v, w[1].t));
                if peak.is_none_or(|(pv, _)| v > pv) {
                    peak = Some((v, w[1].t));
                }
            }
            if l > 0.0 {
                moving.push((dy.atan2(dx), l));
            }
        }
        for m in moving.windows(2) {
            let da = wrap(m[1].0 - m[0].0).abs();
            turns.push(da);
            curvs.push(da / ((m[0].1 + m[1].1) / 2.0).max(1.0) * 100.0);
        }
        let mut prev_a: Option<(f64, f64)> = None;
        for k in kept.windows(2) {
            let dt = (k[1].1 - k[0].1).max(1.0) / 1000.0;
            let a = (k[1].0 - k[0].0) / dt;
            accels.push(a);
            if let Some((pa, _)) = prev_a {
                jerks.push((a - pa) / dt);
            }
            prev_a = Some((a, k[1].1));
        }
        let (t0, t1) = (path[0].t, path[path.len() - 1].t);
        let span = t1 - t0;
        if length > 0.0 && span > 0.0 {
            s_dur.push(span);
            s_len.push(length);
            let (first, last) = (path[0], path[path.len() - 1]);
            s_str.push((last.x - first.x).hypot(last.y - first.y) / length);
            if let Some((v, t)) = peak {
                s_peak.push((t - t0) / span);
                s_vmax.push(v);
            }
        }
    }

    let mut out = [0.0; RICH_COUNT];
    let mut i = 0;
    let mut put = |x: f64| {
        out[i] = if x.is_finite() { x } else { 0.0 };
        i += 1;
    };

    // Speed quantiles and histogram.
    let n_speeds = speeds.len();
    let mut hist = [0usize; 6];
    for &v in &speeds {
        hist[SPEED_EDGES.iter().take_while(|&&e| v >= e).count()] += 1;
    }
    ln1p_all(&mut speeds);
    speeds.sort_unstable_by(f64::total_cmp);
    for q in [0.1, 0.25, 0.5, 0.75, 0.9] {
        put(quantile_sorted(&speeds, q));
    }
    for h in hist {
        put(if n_speeds == 0 {
            0.0
        } else {
            h as f64 / n_speeds as f64
        });
    }

    // Angles and curvature.
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
    ln1p_all(&mut curvs);
    curvs.sort_unstable_by(f64::total_cmp);
    put(quantile_sorted(&curvs, 0.5));
    put(quantile_sorted(&curvs, 0.9));

    // Acceleration and jerk magnitudes.
    ln1p_all(&mut accels);
    accels.sort_unstable_by(f64::total_cmp);
    put(quantile_sorted(&accels, 0.5));
    put(quantile_sorted(&accels, 0.9));
    ln1p_all(&mut jerks);
    jerks.sort_unstable_by(f64::total_cmp);
    put(quantile_sorted(&jerks, 0.5));
    put(quantile_sorted(&jerks, 0.9));

    // Strokes.
    ln1p_all(&mut s_dur);
    put(quantile(&mut s_dur, 0.5));
    ln1p_all(&mut s_len);
    s_len.sort_unstable_by(f64::total_cmp);
    for q in [0.25, 0.5, 0.75] {
        put(quantile_sorted(&s_len, q));
    }
    s_str.sort_unstable_by(f64::total_cmp);
    put(quantile_sorted(&s_str, 0.25));
    put(quantile_sorted(&s_str, 0.5));
    put(mean(&s_peak));
    ln1p_all(&mut s_vmax);
    put(quantile(&mut s_vmax, 0.5));

    // Click timing, relative to the strokes around each click.
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
                pre.push(gap);
            }
        }
        // First path start at or after the release.
        let up = c.t + c.duration.max(0.0);
        let n_lt = path_starts.partition_point(|&s| s < up);
        if let Some(&s) = path_starts.get(n_lt) {
            let gap = s - up;
            if gap < MAX_CLICK_LATENCY_MS {
                post.push(gap);
            }
        }
    }
    ln1p_all(&mut pre);
    put(quantile(&mut pre, 0.5));
    ln1p_all(&mut post);
    put(quantile(&mut post, 0.5));
    let dur_std = std_pop(&dur);
    put(quantile(&mut dur, 0.5));
    put(dur_std);
    put(p.clicks.len() as f64 / path_starts.len().max(1) as f64);
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
    fn empty_payload_is_all_zero() {
        assert_eq!(extract_rich(&payload(vec![], vec![])), [0.0; RICH_COUNT]);
    }

    #[test]
    fn straight_constant_speed_path() {
        // 10 px every 10 ms: 1000 px/s, no turns, straight.
        let path: Vec<_> = (0..11)
            .map(|i| (f64::from(i) * 10.0, f64::from(i) * 10.0, 0.0))
            .collect();
        let r = extract_rich(&payload(vec![path], vec![(200.0, 100.0)]));
        let ln_v = 1000f64.ln_1p();
        for q in &r[0..5] {
            assert!((q - ln_v).abs() < 1e-12);
        }
        // 1000 px/s is in the [1000, 2500) bin.
        assert_eq!(&r[5..11], &[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(&r[11..16], &[0.0; 5]);
        // Straightness 1, peak at the first segment.
        assert_eq!(r[24], 1.0);
        assert!((r[26] - 0.1).abs() < 1e-12);
        // Press 100 ms after the path ended.
        assert!((r[28] - 100f64.ln_1p()).abs() < 1e-12);
        // No move after the release.
        assert_eq!(r[29], 0.0);
        assert_eq!((r[30], r[31], r[32]), (100.0, 0.0, 1.0));
    }

    #[test]
    fn right_angle_turn() {
        let path = vec![(0.0, 0.0, 0.0), (10.0, 10.0, 0.0), (20.0, 10.0, 10.0)];
        let r = extract_rich(&payload(vec![path], vec![]));
        assert!((r[11] - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert_eq!(r[13], 0.0, "exactly 90° is not more than 90°");
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
            vec![(f64::MAX, f64::MAX), (-1.0, -1.0)],
        ));
        assert!(r.iter().all(|x| x.is_finite()), "{r:?}");
    }
}
