//! Seeded synthetic sessions that look like what the extension records, for tests and load generation.
//!
//! A [`Persona`] fixes a user's habits: pointer speed, path curvature and tremor, how long they pause,
//! how long they hold a mouse button, and their typing rhythm (key dwell, press-to-press flight, and
//! how much faster the common digraphs go). [`SessionGenerator`] turns a persona and a seed into
//! [`Payload`]s: mouse movements follow a minimum-jerk speed profile along a bent (quadratic Bézier)
//! route sampled at the browser's ~60 Hz with jitter, integer coordinates like `MouseEvent.clientX`,
//! words typed from a digraph-rich vocabulary with `Space` between them, and clicks at the end of some
//! movements. The same persona and seed always give the same sessions.

use crate::payload::{Click, KeyEvent, MousePoint, Payload};

/// SplitMix64: tiny, fast, and good enough for test data (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform index below `n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.unit() * n as f64) as usize % n
        }
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1], so ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Normal with the given mean and sd, clamped below at `min`.
    pub fn gauss(&mut self, mean: f64, sd: f64, min: f64) -> f64 {
        (mean + sd * self.normal()).max(min)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A synthetic user's habits. All times in ms, speeds in px/s.
#[derive(Debug, Clone, PartialEq)]
pub struct Persona {
    pub name: &'static str,
    /// Mean pointer speed over a movement, and its sd between movements.
    pub speed: (f64, f64),
    /// Movement distance range in px.
    pub distance: (f64, f64),
    /// Sideways bend of a movement as a fraction of its length (sd of a normal).
    pub curvature: f64,
    /// Hand tremor, px sd added to every sample.
    pub tremor: f64,
    /// Pause between movements (mean, sd).
    pub pause: (f64, f64),
    /// Button hold time (mean, sd).
    pub click: (f64, f64),
    /// Probability that a movement ends with a click.
    pub click_rate: f64,
    /// Key hold time (mean, sd).
    pub dwell: (f64, f64),
    /// Press-to-press interval inside a word (mean, sd).
    pub flight: (f64, f64),
    /// Multiplier on `flight` for the eight measured digraphs (practised pairs go faster).
    pub digraph_factor: f64,
    /// Extra gap around the space bar (mean).
    pub word_gap: f64,
    /// Delay from the last key release to grabbing the mouse (mean, sd).
    pub hand_to_mouse: (f64, f64),
}

impl Persona {
    /// A quick, precise user: fast straight movements, short holds, brisk typing.
    pub fn alice() -> Self {
        Persona {
            name: "alice",
            speed: (950.0, 120.0),
            distance: (120.0, 700.0),
            curvature: 0.06,
            tremor: 0.6,
            pause: (450.0, 150.0),
            click: (85.0, 12.0),
            click_rate: 0.35,
            dwell: (92.0, 14.0),
            flight: (150.0, 30.0),
            digraph_factor: 0.75,
            word_gap: 60.0,
            hand_to_mouse: (420.0, 90.0),
        }
    }

    /// A slow, deliberate user: curvy slow movements, long holds and pauses, hunt-and-peck typing.
    pub fn bob() -> Self {
        Persona {
            name: "bob",
            speed: (380.0, 60.0),
            distance: (80.0, 500.0),
            curvature: 0.22,
            tremor: 1.8,
            pause: (1400.0, 400.0),
            click: (170.0, 30.0),
            click_rate: 0.5,
            dwell: (145.0, 30.0),
            flight: (330.0, 80.0),
            digraph_factor: 1.0,
            word_gap: 220.0,
            hand_to_mouse: (1100.0, 250.0),
        }
    }
}

/// Words chosen so that the measured digraphs (th he in er an re on at) occur often.
const WORDS: [&str; 24] = [
    "the", "there", "other", "then", "than", "here", "where", "rather", "another", "winter",
    "station", "on", "in", "at", "and", "are", "read", "note", "hello", "world", "login",
    "password", "thanks", "great",
];

const SCREEN: (f64, f64) = (1920.0, 1080.0);
const SAMPLE_MS: f64 = 16.7;

/// What one generated session contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Keep adding movements until at least this many mouse points exist.
    pub mouse_points: usize,
    /// Exactly this many key events (words are cut to fit).
    pub key_events: usize,
}

/// Generates sessions for one persona.
#[derive(Debug, Clone)]
pub struct SessionGenerator {
    persona: Persona,
    rng: Rng,
    /// `performance.now()` of the next session's start; sessions follow each other in time.
    clock: f64,
    cursor: (f64, f64),
}

impl SessionGenerator {
    pub fn new(persona: Persona, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x0005_EED0_FB10_u64);
        let clock = rng.range(2_000.0, 60_000.0);
        let cursor = (rng.range(0.0, SCREEN.0), rng.range(0.0, SCREEN.1));
        SessionGenerator {
            persona,
            rng,
            clock,
            cursor,
        }
    }

    pub fn persona(&self) -> &Persona {
        &self.persona
    }

    /// One realistic activity session: mostly mixed typing and pointing, sometimes only one of them.
    /// Sessions of each kind are frequent enough that 300 of them pass the readiness quotas.
    pub fn random_shape(&mut self) -> Shape {
        let r = self.rng.unit();
        let mouse_points = if r < 0.15 {
            0
        } else {
            40 + self.rng.below(200)
        };
        let key_events = if (0.15..0.35).contains(&r) {
            0
        } else {
            8 + self.rng.below(40)
        };
        Shape {
            mouse_points,
            key_events,
        }
    }

    /// Generates the next session of a random realistic shape.
    pub fn next_payload(&mut self) -> Payload {
        let shape = self.random_shape();
        self.payload(shape)
    }

    /// Generates a session of the given shape: typing bursts interleaved with mouse movements.
    pub fn payload(&mut self, shape: Shape) -> Payload {
        let start = self.clock;
        let mut t = start + self.rng.range(50.0, 400.0);
        let mut keys: Vec<KeyEvent> = Vec::with_capacity(shape.key_events);
        let mut paths: Vec<Vec<MousePoint>> = Vec::new();
        let mut clicks: Vec<Click> = Vec::new();
        let mut points = 0usize;
        // Interleave: a typing burst of a few words, then a few movements, until both budgets are met.
        while keys.len() < shape.key_events || points < shape.mouse_points {
            if keys.len() < shape.key_events {
                let burst = (shape.key_events - keys.len()).min(6 + self.rng.below(14));
                t = self.type_keys(t, burst, &mut keys);
                t += self.rng.gauss(
                    self.persona.hand_to_mouse.0,
                    self.persona.hand_to_mouse.1,
                    50.0,
                );
            }
            let moves = 1 + self.rng.below(4);
            for _ in 0..moves {
                if points >= shape.mouse_points {
                    break;
                }
                let path = self.movement(t);
                points += path.len();
                if let Some(last) = path.last() {
                    t = last.t;
                }
                paths.push(path);
                if self.rng.chance(self.persona.click_rate) {
                    t += self.rng.range(30.0, 120.0);
                    let duration = self
                        .rng
                        .gauss(self.persona.click.0, self.persona.click.1, 25.0);
                    clicks.push(Click {
                        t,
                        x: Some(self.cursor.0),
                        y: Some(self.cursor.1),
                        button: Some(0),
                        duration,
                    });
                    t += duration;
                }
                t += self
                    .rng
                    .gauss(self.persona.pause.0, self.persona.pause.1, 60.0);
            }
        }
        // The extension closes a session after 5 s idle; the end stamp lands inside that window.
        let end = t + self.rng.range(100.0, 1500.0);
        self.clock = end + self.rng.range(5_000.0, 30_000.0);
        Payload {
            start_timestamp: round1(start),
            end_timestamp: round1(end),
            key_events: keys,
            mouse_paths: paths,
            clicks,
        }
    }

    /// Types `n` key events starting at `t`; returns the time after the last release.
    fn type_keys(&mut self, mut t: f64, n: usize, out: &mut Vec<KeyEvent>) -> f64 {
        let p = self.persona.clone();
        let mut prev: Option<u8> = None;
        let mut last_up = t;
        let mut typed = 0;
        while typed < n {
            let word = WORDS[self.rng.below(WORDS.len())];
            let mut letters: Vec<u8> = word.bytes().collect();
            letters.push(b' ');
            for c in letters {
                if typed >= n {
                    break;
                }
                let measured =
                    matches!(prev, Some(a) if crate::features::DIGRAPHS.contains(&[a, c]));
                let base = if measured {
                    p.flight.0 * p.digraph_factor
                } else {
                    p.flight.0
                };
                let mut gap = self.rng.gauss(base, p.flight.1, 35.0);
                if c == b' ' || prev == Some(b' ') {
                    gap += p.word_gap;
                }
                if prev.is_some() {
                    t += gap;
                }
                let dwell = self.rng.gauss(p.dwell.0, p.dwell.1, 25.0);
                let code = if c == b' ' {
                    "Space".to_string()
                } else {
                    format!("Key{}", c.to_ascii_uppercase() as char)
                };
                out.push(KeyEvent {
                    code,
                    down_time: round1(t),
                    up_time: round1(t + dwell),
                });
                last_up = last_up.max(t + dwell);
                prev = Some(c);
                typed += 1;
            }
        }
        last_up
    }

    /// One pointer movement from the cursor to a new target, starting at `t0`.
    fn movement(&mut self, t0: f64) -> Vec<MousePoint> {
        let p = &self.persona;
        let (x0, y0) = self.cursor;
        let dist = self.rng.range(p.distance.0, p.distance.1);
        let heading = self.rng.range(0.0, std::f64::consts::TAU);
        let x1 = (x0 + dist * heading.cos()).clamp(0.0, SCREEN.0 - 1.0);
        let y1 = (y0 + dist * heading.sin()).clamp(0.0, SCREEN.1 - 1.0);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        // Bézier control point pushed sideways from the midpoint.
        let bend = p.curvature * len * self.rng.normal();
        let (cx, cy) = (
            (x0 + x1) / 2.0 - dy / len * bend,
            (y0 + y1) / 2.0 + dx / len * bend,
        );
        let speed = self.rng.gauss(p.speed.0, p.speed.1, 40.0);
        let duration = (len / speed * 1000.0).max(2.0 * SAMPLE_MS);
        let (tremor, mut t) = (p.tremor, t0);
        let mut out = vec![MousePoint {
            t: round1(t),
            x: x0.round(),
            y: y0.round(),
        }];
        loop {
            t += SAMPLE_MS * self.rng.range(0.8, 1.25);
            let tau = ((t - t0) / duration).min(1.0);
            // Minimum-jerk progress: bell-shaped speed, slow at both ends.
            let s = tau * tau * tau * (10.0 - 15.0 * tau + 6.0 * tau * tau);
            let u = 1.0 - s;
            let bx = u * u * x0 + 2.0 * u * s * cx + s * s * x1;
            let by = u * u * y0 + 2.0 * u * s * cy + s * s * y1;
            let x = (bx + tremor * self.rng.normal())
                .clamp(0.0, SCREEN.0 - 1.0)
                .round();
            let y = (by + tremor * self.rng.normal())
                .clamp(0.0, SCREEN.1 - 1.0)
                .round();
            out.push(MousePoint { t: round1(t), x, y });
            if tau >= 1.0 {
                break;
            }
        }
        self.cursor = (x1.round(), y1.round());
        out
    }
}

/// `performance.now()` values as the extension logs them (0.1 ms resolution).
fn round1(t: f64) -> f64 {
    (t * 10.0).round() / 10.0
}

/// The load-test payload: about 1,200 mouse points and 40 key events, ≈42 KB as JSON.
pub fn load_payload(persona: Persona, seed: u64) -> Payload {
    SessionGenerator::new(persona, seed).payload(Shape {
        mouse_points: 1200,
        key_events: 40,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{extract_features, idx};

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.unit();
            assert_eq!(x, b.unit());
            assert!((0.0..1.0).contains(&x));
            assert!(a.below(5) < 5 && b.below(5) < 5);
        }
        assert_eq!(Rng::new(1).below(0), 0);
        let mean = (0..20_000).map(|_| a.normal()).sum::<f64>() / 20_000.0;
        assert!(mean.abs() < 0.05, "{mean}");
    }

    #[test]
    fn same_seed_same_sessions_different_seed_different_sessions() {
        let mut g1 = SessionGenerator::new(Persona::alice(), 3);
        let mut g2 = SessionGenerator::new(Persona::alice(), 3);
        let mut g3 = SessionGenerator::new(Persona::alice(), 4);
        let (a, b, c) = (g1.next_payload(), g2.next_payload(), g3.next_payload());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn shape_is_honoured_and_times_are_ordered() {
        let mut g = SessionGenerator::new(Persona::bob(), 11);
        let p = g.payload(Shape {
            mouse_points: 300,
            key_events: 25,
        });
        assert_eq!(p.key_events.len(), 25);
        assert!(p.mouse_point_count() >= 300);
        assert!(p.end_timestamp > p.start_timestamp);
        for path in &p.mouse_paths {
            assert!(path.len() >= 2);
            assert!(path.windows(2).all(|w| w[1].t > w[0].t));
            assert!(
                path.iter()
                    .all(|q| q.x.fract() == 0.0 && q.y.fract() == 0.0)
            );
        }
        assert!(
            p.key_events
                .windows(2)
                .all(|w| w[1].down_time > w[0].down_time)
        );
        assert!(p.key_events.iter().all(|k| k.up_time > k.down_time));
        let next = g.next_payload();
        assert!(next.start_timestamp > p.end_timestamp);
    }

    #[test]
    fn load_payload_is_about_42_kb() {
        let p = load_payload(Persona::alice(), 1);
        let bytes = serde_json::to_vec(&p).unwrap().len();
        assert!(
            (1200..1300).contains(&p.mouse_point_count()),
            "{}",
            p.mouse_point_count()
        );
        assert_eq!(p.key_events.len(), 40);
        assert!((34_000..50_000).contains(&bytes), "{bytes} bytes");
    }

    #[test]
    fn personas_differ_in_speed_and_rhythm() {
        let mean_of = |persona: Persona, i: usize| {
            let mut g = SessionGenerator::new(persona, 5);
            let fs: Vec<_> = (0..30)
                .map(|_| {
                    extract_features(&g.payload(Shape {
                        mouse_points: 200,
                        key_events: 30,
                    }))
                })
                .collect();
            fs.iter().map(|f| f[i]).sum::<f64>() / fs.len() as f64
        };
        let (a, b) = (Persona::alice(), Persona::bob());
        assert!(
            mean_of(a.clone(), idx::AVG_MOUSE_SPEED)
                > 1.5 * mean_of(b.clone(), idx::AVG_MOUSE_SPEED)
        );
        assert!(
            mean_of(b.clone(), idx::AVG_DWELL_TIME_ALPHA)
                > 1.3 * mean_of(a.clone(), idx::AVG_DWELL_TIME_ALPHA)
        );
        assert!(
            mean_of(b.clone(), idx::AVG_FLIGHT_TIME_DIGRAPH)
                > 1.5 * mean_of(a.clone(), idx::AVG_FLIGHT_TIME_DIGRAPH)
        );
        assert!(mean_of(a, idx::PATH_STRAIGHTNESS) > mean_of(b, idx::PATH_STRAIGHTNESS));
    }

    #[test]
    fn typical_sessions_produce_every_kind_of_feature() {
        let mut g = SessionGenerator::new(Persona::alice(), 9);
        let f = extract_features(&g.payload(Shape {
            mouse_points: 200,
            key_events: 40,
        }));
        for (i, x) in f.iter().enumerate() {
            assert!(
                *x != 0.0 || i == idx::AVG_MOUSE_ACCELERATION,
                "feature {i} is zero: {f:?}"
            );
        }
    }
}
