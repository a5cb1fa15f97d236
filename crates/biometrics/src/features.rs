//! The 15 behavioural features, computed from one [`Payload`] exactly as `spec/maxidom.md` defines them.
//!
//! The extractor is total: any payload, including empty or hostile ones, yields 15 finite numbers.
//! Statistics that have no input are 0, standard deviations are population ones (0 below two values),
//! and a feature that comes out NaN or infinite (e.g. from coordinates near `f64::MAX`) is reported as 0.
//! It makes a single pass over the mouse points and allocates only for the key-event sorts.

use crate::payload::{KeyEvent, MousePoint, Payload};

/// Number of features in a vector.
pub const FEATURE_COUNT: usize = 15;

/// A feature vector, in [`FEATURE_NAMES`] order.
pub type FeatureVector = [f64; FEATURE_COUNT];

/// Feature names in vector order; also the column names of the reference's `features.csv`.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "avg_mouse_speed",
    "std_mouse_speed",
    "avg_mouse_acceleration",
    "std_mouse_acceleration",
    "path_straightness",
    "avg_click_duration",
    "avg_pause_duration",
    "pause_frequency",
    "avg_turn_angle",
    "avg_stroke_velocity",
    "avg_dwell_time_alpha",
    "avg_flight_time_digraph",
    "std_flight_time_digraph",
    "typing_speed_kps",
    "mouse_after_typing_latency",
];

/// Indices into a [`FeatureVector`].
pub mod idx {
    pub const AVG_MOUSE_SPEED: usize = 0;
    pub const STD_MOUSE_SPEED: usize = 1;
    pub const AVG_MOUSE_ACCELERATION: usize = 2;
    pub const STD_MOUSE_ACCELERATION: usize = 3;
    pub const PATH_STRAIGHTNESS: usize = 4;
    pub const AVG_CLICK_DURATION: usize = 5;
    pub const AVG_PAUSE_DURATION: usize = 6;
    pub const PAUSE_FREQUENCY: usize = 7;
    pub const AVG_TURN_ANGLE: usize = 8;
    pub const AVG_STROKE_VELOCITY: usize = 9;
    pub const AVG_DWELL_TIME_ALPHA: usize = 10;
    pub const AVG_FLIGHT_TIME_DIGRAPH: usize = 11;
    pub const STD_FLIGHT_TIME_DIGRAPH: usize = 12;
    pub const TYPING_SPEED_KPS: usize = 13;
    pub const MOUSE_AFTER_TYPING_LATENCY: usize = 14;
}

/// Segments with `0 < dt < MAX_SEGMENT_DT_MS` contribute a speed.
pub const MAX_SEGMENT_DT_MS: f64 = 2000.0;
/// Clicks with `0 < duration < MAX_CLICK_MS` contribute.
pub const MAX_CLICK_MS: f64 = 1000.0;
/// Gaps between paths with `0 < gap < MAX_PAUSE_MS` are pauses.
pub const MAX_PAUSE_MS: f64 = 10_000.0;
/// Key dwells with `0 < dwell < MAX_DWELL_MS` contribute.
pub const MAX_DWELL_MS: f64 = 1000.0;
/// Digraph flights with `0 < flight < MAX_FLIGHT_MS` contribute.
pub const MAX_FLIGHT_MS: f64 = 2000.0;
/// Mouse-after-typing latencies with `0 < latency < MAX_LATENCY_MS` contribute.
pub const MAX_LATENCY_MS: f64 = 5000.0;
/// The eight English digraphs whose flight times are measured.
pub const DIGRAPHS: [[u8; 2]; 8] = [
    *b"th", *b"he", *b"in", *b"er", *b"an", *b"re", *b"on", *b"at",
];

/// Samples of one statistic. Mean and population std are computed two-pass (as numpy does), which
/// is both more accurate and faster than an online update with a division per sample.
#[derive(Debug, Default, Clone)]
struct Samples {
    values: Vec<f64>,
}

impl Samples {
    fn with_capacity(n: usize) -> Self {
        Samples {
            values: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, x: f64) {
        self.values.push(x);
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn mean(&self) -> f64 {
        if self.values.is_empty() {
            0.0
        } else {
            self.values.iter().sum::<f64>() / self.values.len() as f64
        }
    }

    fn std(&self) -> f64 {
        let n = self.values.len();
        if n < 2 {
            return 0.0;
        }
        let mean = self.mean();
        let ss: f64 = self.values.iter().map(|x| (x - mean) * (x - mean)).sum();
        (ss / n as f64).sqrt()
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// The extension closes a session this long after its last event when the person stops (idle close).
pub const IDLE_CLOSE_MS: f64 = 5000.0;

/// First and last finite event time of a payload (ms, the page's clock); `None` without any.
pub fn event_span(p: &Payload) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut see = |t: f64| {
        if t.is_finite() {
            lo = lo.min(t);
            hi = hi.max(t);
        }
    };
    for k in &p.key_events {
        see(k.down_time);
        see(k.up_time);
    }
    for path in &p.mouse_paths {
        for pt in path {
            see(pt.t);
        }
    }
    for c in &p.clicks {
        see(c.t);
    }
    (hi >= lo).then_some((lo, hi))
}

/// Session duration in ms, robust to a declared start or end on another clock (issue #16).
///
/// The extension takes event times from the page's `performance.now()` but `endTimestamp` from the service
/// worker's: on its 40 real payloads (`../shared/data/maxidom-extension/`) every end lies 12.9 s after the last
/// event (the 5 s idle close plus a ~7.9 s clock offset that changes per tab), which shortens typing speed and
/// pause frequency by up to 40 %. Rule: with events, the declared start is trusted only within
/// [first event − 5 s, first event] and the declared end only within [last event, last event + 5 s] (one idle
/// close); a declared time outside is clamped to that bound, so the duration is the events' own span plus at
/// most one idle close at each end, on the events' clock. A declared end inside the span (a clock behind) is
/// raised to the last event. Without events: `end − start` when positive, else 0.
pub fn session_duration_ms(p: &Payload) -> f64 {
    let Some((lo, hi)) = event_span(p) else {
        let d = p.end_timestamp - p.start_timestamp;
        return if d > 0.0 { d } else { 0.0 };
    };
    // `lo`, `hi` are finite with lo ≤ hi, so the bounds are ordered and `clamp` cannot panic.
    let start = if p.start_timestamp.is_finite() {
        p.start_timestamp.clamp(lo - IDLE_CLOSE_MS, lo)
    } else {
        lo
    };
    let end = if p.end_timestamp.is_finite() {
        p.end_timestamp.clamp(hi, hi + IDLE_CLOSE_MS)
    } else {
        hi
    };
    end - start
}

/// The letter of a `KeyX` code (lower-cased), or `None` for any other key.
fn letter(code: &str) -> Option<u8> {
    match code.as_bytes() {
        [b'K', b'e', b'y', c] if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
        _ => None,
    }
}

fn dist(a: &MousePoint, b: &MousePoint) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    (dx * dx + dy * dy).sqrt()
}

/// Accumulators for the mouse features (1–5, 7–10, 15).
#[derive(Default)]
struct MouseAcc {
    speed: Samples,
    accel: Samples,
    straightness: Samples,
    pause: Samples,
    turn: Samples,
    stroke: Samples,
    latency: Samples,
}

impl MouseAcc {
    fn with_capacity(points: usize) -> Self {
        MouseAcc {
            speed: Samples::with_capacity(points),
            accel: Samples::with_capacity(points),
            turn: Samples::with_capacity(points),
            ..MouseAcc::default()
        }
    }

    /// One path of at least two points.
    fn path(&mut self, path: &[MousePoint]) {
        let (Some(first), Some(last)) = (path.first(), path.last()) else {
            return;
        };
        let mut length = 0.0;
        // Speed of the previous *kept* segment of this path: acceleration pairs consecutive kept
        // segments and divides by the second one's own dt (the reference mis-indexed dt here).
        let mut prev_speed: Option<f64> = None;
        // Previous segment vector, for the interior angle at the shared point.
        let mut prev_seg: Option<(f64, f64, f64)> = None;
        for w in path.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let d = (dx * dx + dy * dy).sqrt();
            length += d;
            let dt = b.t - a.t;
            if dt > 0.0 && dt < MAX_SEGMENT_DT_MS {
                let v = d / (dt / 1000.0);
                self.speed.push(v);
                if let Some(v1) = prev_speed {
                    self.accel.push((v - v1) / (dt / 1000.0));
                }
                prev_speed = Some(v);
            }
            if let Some((pdx, pdy, pd)) = prev_seg {
                // Interior angle at `a` between a→(previous point) = -prev and a→b = seg.
                let angle = if pd > 0.0 && d > 0.0 {
                    let cos = (-(pdx * dx) - pdy * dy) / (pd * d);
                    cos.clamp(-1.0, 1.0).acos().to_degrees()
                } else {
                    0.0
                };
                self.turn.push(angle);
            }
            prev_seg = Some((dx, dy, d));
        }
        if length > 0.0 {
            self.straightness.push(dist(first, last) / length);
            let span = last.t - first.t;
            if span > 0.0 {
                self.stroke.push(length / (span / 1000.0));
            }
        }
    }
}

/// Extracts the 15 features of a session, in [`FEATURE_NAMES`] order.
pub fn extract_features(p: &Payload) -> FeatureVector {
    let dur_s = (session_duration_ms(p) / 1000.0).max(1.0);
    let mut f = [0.0; FEATURE_COUNT];

    // Key releases, sorted, for "the last key released before this path".
    let mut ups: Vec<f64> = p
        .key_events
        .iter()
        .map(|k| k.up_time)
        .filter(|t| t.is_finite())
        .collect();
    ups.sort_unstable_by(f64::total_cmp);

    let mut m = MouseAcc::with_capacity(p.mouse_point_count());
    let mut prev_last_t: Option<f64> = None;
    for path in p.mouse_paths.iter().filter(|path| path.len() >= 2) {
        m.path(path);
        let (Some(first), Some(last)) = (path.first(), path.last()) else {
            continue;
        };
        if let Some(prev) = prev_last_t {
            let gap = first.t - prev;
            if gap > 0.0 && gap < MAX_PAUSE_MS {
                m.pause.push(gap);
            }
        }
        prev_last_t = Some(last.t);
        let released_before = ups.partition_point(|&u| u < first.t);
        if let Some(&up) = released_before.checked_sub(1).and_then(|i| ups.get(i)) {
            let latency = first.t - up;
            if latency > 0.0 && latency < MAX_LATENCY_MS {
                m.latency.push(latency);
            }
        }
    }

    let mut clicks = Samples::default();
    for c in &p.clicks {
        if c.duration > 0.0 && c.duration < MAX_CLICK_MS {
            clicks.push(c.duration);
        }
    }

    let mut dwell = Samples::default();
    for k in &p.key_events {
        if k.code.starts_with("Key") {
            let d = k.up_time - k.down_time;
            if d > 0.0 && d < MAX_DWELL_MS {
                dwell.push(d);
            }
        }
    }

    let flight = digraph_flights(&p.key_events);

    f[idx::AVG_MOUSE_SPEED] = m.speed.mean();
    f[idx::STD_MOUSE_SPEED] = m.speed.std();
    f[idx::AVG_MOUSE_ACCELERATION] = m.accel.mean();
    f[idx::STD_MOUSE_ACCELERATION] = m.accel.std();
    f[idx::PATH_STRAIGHTNESS] = m.straightness.mean();
    f[idx::AVG_CLICK_DURATION] = clicks.mean();
    f[idx::AVG_PAUSE_DURATION] = m.pause.mean();
    f[idx::PAUSE_FREQUENCY] = m.pause.len() as f64 / dur_s;
    f[idx::AVG_TURN_ANGLE] = m.turn.mean();
    f[idx::AVG_STROKE_VELOCITY] = m.stroke.mean();
    f[idx::AVG_DWELL_TIME_ALPHA] = dwell.mean();
    f[idx::AVG_FLIGHT_TIME_DIGRAPH] = flight.mean();
    f[idx::STD_FLIGHT_TIME_DIGRAPH] = flight.std();
    f[idx::TYPING_SPEED_KPS] = p.key_events.len() as f64 / dur_s;
    f[idx::MOUSE_AFTER_TYPING_LATENCY] = m.latency.mean();
    f.map(finite_or_zero)
}

/// Flight times of the listed digraphs between consecutive keys in press order.
fn digraph_flights(keys: &[KeyEvent]) -> Samples {
    let mut order: Vec<(f64, Option<u8>)> = keys
        .iter()
        .map(|k| (k.down_time, letter(&k.code)))
        .collect();
    // Stable, so keys pressed at the same instant keep their payload order.
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut flight = Samples::default();
    for w in order.windows(2) {
        if let ((d1, Some(l1)), (d2, Some(l2))) = (w[0], w[1])
            && DIGRAPHS.contains(&[l1, l2])
        {
            let f = d2 - d1;
            if f > 0.0 && f < MAX_FLIGHT_MS {
                flight.push(f);
            }
        }
    }
    flight
}

#[cfg(test)]
mod tests {
    use super::idx::*;
    use super::*;
    use crate::payload::Click;

    fn pt(t: f64, x: f64, y: f64) -> MousePoint {
        MousePoint { t, x, y }
    }

    fn key(code: &str, down: f64, up: f64) -> KeyEvent {
        KeyEvent {
            code: code.into(),
            down_time: down,
            up_time: up,
        }
    }

    fn click(t: f64, duration: f64) -> Click {
        Click {
            t,
            x: Some(0.0),
            y: Some(0.0),
            button: Some(0),
            duration,
        }
    }

    fn payload(start: f64, end: f64) -> Payload {
        Payload {
            start_timestamp: start,
            end_timestamp: end,
            key_events: vec![],
            mouse_paths: vec![],
            clicks: vec![],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    #[track_caller]
    fn assert_close(got: f64, want: f64) {
        assert!(close(got, want), "got {got}, want {want}");
    }

    #[test]
    fn names_are_fifteen_and_unique() {
        let mut names = FEATURE_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FEATURE_COUNT);
        assert_eq!(FEATURE_NAMES[AVG_MOUSE_SPEED], "avg_mouse_speed");
        assert_eq!(FEATURE_NAMES[TYPING_SPEED_KPS], "typing_speed_kps");
        assert_eq!(
            FEATURE_NAMES[MOUSE_AFTER_TYPING_LATENCY],
            "mouse_after_typing_latency"
        );
    }

    #[test]
    fn empty_payload_is_all_zero() {
        assert_eq!(extract_features(&payload(0.0, 0.0)), [0.0; 15]);
        assert_eq!(extract_features(&payload(10.0, 5.0)), [0.0; 15]);
    }

    #[test]
    fn duration_is_the_event_span_plus_at_most_one_idle_close_each_side() {
        let mut p = payload(100.0, 100.0);
        assert_eq!(session_duration_ms(&p), 0.0);
        p.end_timestamp = 900.0;
        assert_eq!(session_duration_ms(&p), 800.0, "no events: end - start");
        p.key_events.push(key("KeyA", 1000.0, 1100.0));
        p.clicks.push(click(4000.0, 50.0));
        p.mouse_paths.push(vec![pt(500.0, 0.0, 0.0)]);
        // Events span 500..4000 (single-point paths included). A start 400 ms before the first event is
        // trusted; an end inside the span is raised to the last event.
        assert_eq!(session_duration_ms(&p), 3900.0);
        // The extension's shape: start = first event, end 12.9 s after the last one on another clock.
        p.start_timestamp = 500.0;
        p.end_timestamp = 4000.0 + 12_900.0;
        assert_eq!(session_duration_ms(&p), 3500.0 + IDLE_CLOSE_MS);
        // A start far before the first event (another clock) is clamped likewise.
        p.start_timestamp = -60_000.0;
        p.end_timestamp = 4000.0 + 1000.0;
        assert_eq!(session_duration_ms(&p), IDLE_CLOSE_MS + 3500.0 + 1000.0);
        p.start_timestamp = f64::NAN;
        p.end_timestamp = f64::INFINITY;
        assert_eq!(session_duration_ms(&p), 3500.0);
    }

    #[test]
    fn the_extensions_real_payloads_have_their_own_span_plus_one_idle_close() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/maxidom-extension");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!(
                "SKIPPED: {} is absent (shared data not mounted)",
                dir.display()
            );
            return;
        };
        let mut seen = 0;
        for e in entries.flatten() {
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(p) = Payload::from_json(&bytes) else {
                continue;
            };
            let (lo, hi) = event_span(&p).expect("real payloads have events");
            // The declared end lies beyond one idle close (the second clock); the rule ignores the excess.
            assert!(
                p.end_timestamp - hi > IDLE_CLOSE_MS,
                "{}",
                e.path().display()
            );
            assert_eq!(session_duration_ms(&p), hi - lo + IDLE_CLOSE_MS);
            assert!(session_duration_ms(&p) < p.end_timestamp - p.start_timestamp);
            seen += 1;
        }
        assert_eq!(seen, 40, "the 40 real extension payloads");
    }

    #[test]
    fn typing_speed_uses_at_least_one_second() {
        // D = 500 ms -> dur_s clamps to 1 s.
        let mut p = payload(0.0, 500.0);
        p.key_events = vec![
            key("Space", 10.0, 20.0),
            key("KeyA", 30.0, 40.0),
            key("Enter", 50.0, 60.0),
        ];
        assert_eq!(extract_features(&p)[TYPING_SPEED_KPS], 3.0);
        // D = 4000 ms -> 3 keys / 4 s.
        p.end_timestamp = 4000.0;
        assert_eq!(extract_features(&p)[TYPING_SPEED_KPS], 0.75);
    }

    #[test]
    fn speeds_accelerations_and_the_dt_filter() {
        let mut p = payload(0.0, 10_000.0);
        // Segments: 3-4-5 in 100 ms (50 px/s); 10 px in 0 ms (dropped); 6-8 in 50 ms (200 px/s);
        // 5 px in 2000 ms (dropped: not < 2000); 0 px in 100 ms (0 px/s).
        p.mouse_paths = vec![vec![
            pt(0.0, 0.0, 0.0),
            pt(100.0, 3.0, 4.0),
            pt(100.0, 13.0, 4.0),
            pt(150.0, 19.0, 12.0),
            pt(2150.0, 24.0, 12.0),
            pt(2250.0, 24.0, 12.0),
        ]];
        let f = extract_features(&p);
        let speeds = [50.0, 200.0, 0.0];
        let mean = speeds.iter().sum::<f64>() / 3.0;
        let var = speeds.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / 3.0;
        assert_close(f[AVG_MOUSE_SPEED], mean);
        assert_close(f[STD_MOUSE_SPEED], var.sqrt());
        // Kept segments pair up across the dropped ones, each divided by its own dt:
        // (200-50)/0.05 = 3000, (0-200)/0.1 = -2000.
        let acc = [3000.0, -2000.0];
        assert_close(f[AVG_MOUSE_ACCELERATION], 500.0);
        assert_close(
            f[STD_MOUSE_ACCELERATION],
            ((acc[0] - 500.0_f64).powi(2) / 2.0 + (acc[1] - 500.0_f64).powi(2) / 2.0).sqrt(),
        );
    }

    #[test]
    fn acceleration_does_not_cross_paths() {
        let mut p = payload(0.0, 10_000.0);
        p.mouse_paths = vec![
            vec![pt(0.0, 0.0, 0.0), pt(100.0, 10.0, 0.0)],
            vec![pt(200.0, 0.0, 0.0), pt(300.0, 30.0, 0.0)],
        ];
        let f = extract_features(&p);
        assert_close(f[AVG_MOUSE_SPEED], 200.0);
        assert_close(f[STD_MOUSE_SPEED], 100.0);
        assert_eq!(f[AVG_MOUSE_ACCELERATION], 0.0);
        assert_eq!(f[STD_MOUSE_ACCELERATION], 0.0);
    }

    #[test]
    fn single_point_and_empty_paths_are_skipped_everywhere() {
        let mut p = payload(0.0, 10_000.0);
        p.key_events = vec![key("KeyA", 0.0, 50.0)];
        p.mouse_paths = vec![
            vec![],
            vec![pt(100.0, 0.0, 0.0)],
            vec![pt(1000.0, 0.0, 0.0), pt(1100.0, 0.0, 10.0)],
            vec![pt(1200.0, 5.0, 5.0)],
            vec![pt(1500.0, 0.0, 0.0), pt(1600.0, 10.0, 0.0)],
        ];
        let f = extract_features(&p);
        // The only pause is between the two real paths: 1500 - 1100.
        assert_close(f[AVG_PAUSE_DURATION], 400.0);
        // Duration: events 0..1600 plus one idle close (the declared end, 10 s, is beyond it).
        assert_close(f[PAUSE_FREQUENCY], 1.0 / 6.6);
        // Latency: 1000 - 50 and 1500 - 50 (single-point paths at 100 and 1200 contribute nothing).
        assert_close(f[MOUSE_AFTER_TYPING_LATENCY], (950.0 + 1450.0) / 2.0);
        assert_close(f[AVG_MOUSE_SPEED], 100.0);
    }

    #[test]
    fn straightness_and_stroke_velocity() {
        let mut p = payload(0.0, 10_000.0);
        p.mouse_paths = vec![
            // L-shape: length 7, displacement 5, 200 ms.
            vec![pt(0.0, 0.0, 0.0), pt(100.0, 3.0, 0.0), pt(200.0, 3.0, 4.0)],
            // Straight: length 10, displacement 10, 100 ms.
            vec![pt(300.0, 0.0, 0.0), pt(400.0, 10.0, 0.0)],
            // Zero length: skipped by both.
            vec![pt(500.0, 1.0, 1.0), pt(600.0, 1.0, 1.0)],
            // Length 4 but zero time: straightness yes, stroke no.
            vec![pt(700.0, 0.0, 0.0), pt(700.0, 0.0, 4.0)],
        ];
        let f = extract_features(&p);
        assert_close(f[PATH_STRAIGHTNESS], (5.0 / 7.0 + 1.0 + 1.0) / 3.0);
        assert_close(f[AVG_STROKE_VELOCITY], (7.0 / 0.2 + 10.0 / 0.1) / 2.0);
    }

    #[test]
    fn turn_angles_are_interior_with_zero_for_degenerate_segments() {
        let mut p = payload(0.0, 10_000.0);
        p.mouse_paths = vec![vec![
            pt(0.0, 0.0, 0.0),
            pt(10.0, 1.0, 0.0), // straight on: 180
            pt(20.0, 2.0, 0.0), // right-angle turn: 90
            pt(30.0, 2.0, 1.0), // next segment has zero length: 0
            pt(40.0, 2.0, 1.0), // previous segment zero length: 0
            pt(50.0, 2.0, 2.0), // full reversal: 0
            pt(60.0, 2.0, 1.0),
        ]];
        let f = extract_features(&p);
        assert_close(f[AVG_TURN_ANGLE], (180.0 + 90.0 + 0.0 + 0.0 + 0.0) / 5.0);
        // 135 degrees: a 45-degree heading change.
        p.mouse_paths = vec![vec![
            pt(0.0, 0.0, 0.0),
            pt(10.0, 1.0, 0.0),
            pt(20.0, 2.0, 1.0),
        ]];
        assert_close(extract_features(&p)[AVG_TURN_ANGLE], 135.0);
        // Two-point paths have no middle point.
        p.mouse_paths = vec![vec![pt(0.0, 0.0, 0.0), pt(10.0, 1.0, 0.0)]];
        assert_eq!(extract_features(&p)[AVG_TURN_ANGLE], 0.0);
    }

    #[test]
    fn click_duration_filter() {
        let mut p = payload(0.0, 1000.0);
        p.clicks = vec![
            click(1.0, 0.0),
            click(2.0, 100.0),
            click(3.0, 999.0),
            click(4.0, 1000.0),
            click(5.0, -3.0),
        ];
        assert_close(
            extract_features(&p)[AVG_CLICK_DURATION],
            (100.0 + 999.0) / 2.0,
        );
    }

    #[test]
    fn pauses_keep_only_open_interval_gaps() {
        let mut p = payload(0.0, 40_000.0);
        let two = |t0: f64, t1: f64| vec![pt(t0, 0.0, 0.0), pt(t1, 1.0, 0.0)];
        // Gaps: 100 (kept), 0 (dropped), -50 (dropped), 10000 (dropped), 9999 (kept).
        p.mouse_paths = vec![
            two(0.0, 100.0),
            two(200.0, 300.0),
            two(300.0, 400.0),
            two(350.0, 500.0),
            two(10_500.0, 10_600.0),
            two(20_599.0, 20_700.0),
        ];
        let f = extract_features(&p);
        assert_close(f[AVG_PAUSE_DURATION], (100.0 + 9999.0) / 2.0);
        // Duration: events 0..20700 plus one idle close (the declared end, 40 s, is beyond it).
        assert_close(f[PAUSE_FREQUENCY], 2.0 / 25.7);
    }

    #[test]
    fn dwell_counts_only_letter_keys_in_range() {
        let mut p = payload(0.0, 1000.0);
        p.key_events = vec![
            key("KeyA", 0.0, 80.0),
            key("KeyB", 100.0, 220.0),
            key("Space", 300.0, 400.0),
            key("Digit1", 500.0, 550.0),
            key("KeyC", 600.0, 600.0),  // zero dwell: dropped
            key("KeyD", 700.0, 1700.0), // 1000: dropped
            key("KeyE", 800.0, 750.0),  // negative: dropped
        ];
        assert_close(extract_features(&p)[AVG_DWELL_TIME_ALPHA], 100.0);
    }

    #[test]
    fn digraphs_follow_press_order_and_skip_intervening_keys() {
        let mut p = payload(0.0, 10_000.0);
        // Sent out of order; press order is t(0) h(120) e(200) Space(300) i(400) n(700) KeyX(800).
        p.key_events = vec![
            key("KeyE", 200.0, 260.0),
            key("KeyT", 0.0, 60.0),
            key("KeyH", 120.0, 180.0),
            key("Space", 300.0, 350.0),
            key("KeyI", 400.0, 450.0),
            key("KeyN", 700.0, 750.0),
            key("KeyX", 800.0, 850.0),
        ];
        let f = extract_features(&p);
        // th = 120, he = 80, in = 300; "e Space" and "n x" are not digraphs.
        let flights = [120.0, 80.0, 300.0];
        let mean = flights.iter().sum::<f64>() / 3.0;
        let var = flights.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0;
        assert_close(f[AVG_FLIGHT_TIME_DIGRAPH], mean);
        assert_close(f[STD_FLIGHT_TIME_DIGRAPH], var.sqrt());
    }

    #[test]
    fn digraph_flight_filter_and_reverse_order() {
        let mut p = payload(0.0, 10_000.0);
        // "ht" is not listed; "at" at 2000 ms is dropped; "re" simultaneous (0) is dropped.
        p.key_events = vec![
            key("KeyH", 0.0, 10.0),
            key("KeyT", 100.0, 110.0),
            key("KeyA", 200.0, 210.0),
            key("KeyT", 2200.0, 2210.0),
            key("KeyR", 3000.0, 3010.0),
            key("KeyE", 3000.0, 3010.0),
            key("KeyO", 4000.0, 4010.0),
            key("KeyN", 4050.0, 4060.0),
        ];
        let f = extract_features(&p);
        // "th"? no: T(2200) is followed by R. Only "on" = 50 survives ("er" is E then R? E and R share
        // a press time and stable sorting keeps payload order R, E -> "re" with flight 0, dropped).
        assert_close(f[AVG_FLIGHT_TIME_DIGRAPH], 50.0);
        assert_eq!(f[STD_FLIGHT_TIME_DIGRAPH], 0.0);
    }

    #[test]
    fn latency_uses_the_last_key_released_before_the_path() {
        let mut p = payload(0.0, 20_000.0);
        p.key_events = vec![
            key("KeyA", 0.0, 100.0),
            key("KeyB", 150.0, 400.0),
            key("KeyC", 900.0, 2000.0), // released after the first path starts
        ];
        p.mouse_paths = vec![
            vec![pt(1000.0, 0.0, 0.0), pt(1010.0, 1.0, 0.0)], // 1000 - 400 = 600
            vec![pt(2000.0, 0.0, 0.0), pt(2010.0, 1.0, 0.0)], // up 2000 is not before 2000 -> 2000 - 400 = 1600
            vec![pt(9000.0, 0.0, 0.0), pt(9010.0, 1.0, 0.0)], // 9000 - 2000 = 7000, dropped (>= 5000)
        ];
        let f = extract_features(&p);
        assert_close(f[MOUSE_AFTER_TYPING_LATENCY], (600.0 + 1600.0) / 2.0);
        // A path before any key release has no latency.
        p.mouse_paths = vec![vec![pt(50.0, 0.0, 0.0), pt(60.0, 1.0, 0.0)]];
        assert_eq!(extract_features(&p)[MOUSE_AFTER_TYPING_LATENCY], 0.0);
    }

    #[test]
    fn non_finite_results_become_zero() {
        let mut p = payload(0.0, 1000.0);
        // Squared differences overflow to infinity.
        p.mouse_paths = vec![vec![
            pt(0.0, -1e300, 0.0),
            pt(10.0, 1e300, 0.0),
            pt(20.0, -1e300, 0.0),
        ]];
        p.key_events = vec![key("KeyT", f64::NAN, 10.0), key("KeyH", 5.0, f64::INFINITY)];
        let f = extract_features(&p);
        assert!(f.iter().all(|x| x.is_finite()), "{f:?}");
        assert_eq!(f[AVG_MOUSE_SPEED], 0.0);
        assert_eq!(f[TYPING_SPEED_KPS], 2.0);
    }

    #[test]
    fn nan_timestamps_do_not_panic_or_leak() {
        let mut p = payload(f64::NAN, f64::NAN);
        p.mouse_paths = vec![vec![pt(f64::NAN, 0.0, 0.0), pt(f64::NAN, 1.0, 1.0)]];
        p.clicks = vec![click(f64::NAN, f64::NAN)];
        let f = extract_features(&p);
        assert!(f.iter().all(|x| x.is_finite()), "{f:?}");
    }

    #[test]
    fn integer_and_float_coordinates_give_the_same_features() {
        let a = br#"{"startTimestamp":0,"endTimestamp":1000,"keyEvents":[],
            "mousePaths":[[{"t":0,"x":1,"y":2},{"t":16,"x":4,"y":6},{"t":32,"x":10,"y":6}]],"clicks":[]}"#;
        let b = br#"{"startTimestamp":0.0,"endTimestamp":1000.0,"keyEvents":[],
            "mousePaths":[[{"t":0.0,"x":1.0,"y":2.0},{"t":16.0,"x":4.0,"y":6.0},{"t":32.0,"x":10.0,"y":6.0}]],"clicks":[]}"#;
        let fa = extract_features(&Payload::from_json(a).unwrap());
        let fb = extract_features(&Payload::from_json(b).unwrap());
        assert_eq!(fa, fb);
        assert_close(fa[AVG_MOUSE_SPEED], (5.0 / 0.016 + 6.0 / 0.016) / 2.0);
    }

    #[test]
    fn letter_parsing() {
        assert_eq!(letter("KeyT"), Some(b't'));
        assert_eq!(letter("Keyt"), Some(b't'));
        assert_eq!(letter("Key"), None);
        assert_eq!(letter("KeyTT"), None);
        assert_eq!(letter("Key1"), None);
        assert_eq!(letter("Digit1"), None);
        assert_eq!(letter("Keyé"), None);
    }
}
