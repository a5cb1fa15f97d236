//! Labelled benchmark streams and the detection-quality evaluation.
//!
//! Normal behaviour comes in three kinds (Gaussian noise around a level, a slow random walk under
//! observation noise, a seasonal sine under noise); onto each, one of four attacks is injected at a known
//! position: periodic beaconing (a spike every 10 events), a burst (40 events with extra independent noise of σ 3.9, so the spread is ×4), a persistent level shift
//! (+5σ from then on) and a coordinated oscillation (a period-8 sine of 3σ). Pure-normal streams measure
//! false alarms. Everything is generated from a seed with the crate's own SplitMix64, so the data, and
//! therefore the measured precision/recall/delay, are identical on every machine.
//!
//! Scoring (per stream, with the analysis results):
//! * the *zone* of an injected segment [start, end) is [start, end + window_size): a window that still
//!   contains attacked events may alarm. For a level shift only the change itself is labelled
//!   ([start, start + 1)): alarming for ever after the shift is a false alarm, which is the point;
//! * a segment is *detected* if any event in its zone alarms; its *delay* is the first alarm minus start;
//! * precision = alarms inside zones / all alarms; recall = detected segments / segments.

use chrono::{DateTime, Duration, Utc};

use crate::config::StreamConfig;
use crate::error::StreamError;
use crate::event::Event;
use crate::state::StreamState;

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever, unlike a library's generator.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Normal behaviour of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Noise,
    RandomWalk,
    Seasonal,
}

/// What is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    Beaconing,
    Burst,
    LevelShift,
    Oscillation,
}

impl Attack {
    pub const ALL: [Attack; 4] = [
        Attack::Beaconing,
        Attack::Burst,
        Attack::LevelShift,
        Attack::Oscillation,
    ];
}

/// A labelled attacked span of events, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
    pub attack: Attack,
}

/// A generated stream and its labels.
#[derive(Debug, Clone)]
pub struct LabelledStream {
    pub name: String,
    pub base: Base,
    pub values: Vec<f64>,
    pub segments: Vec<Segment>,
}

impl LabelledStream {
    /// The events, one per second from a fixed epoch, with client timestamps.
    pub fn events(&self) -> Vec<Event> {
        let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        self.values
            .iter()
            .enumerate()
            .map(|(i, &v)| Event::new(&self.name, v, Some(t0 + Duration::seconds(i as i64))))
            .collect()
    }
}

/// Length of every generated stream, and where attacks start (after calibration and a normal stretch).
pub const STREAM_LEN: usize = 480;
pub const ATTACK_START: usize = 300;

/// Generates one stream.
pub fn generate(base: Base, attack: Option<Attack>, seed: u64) -> LabelledStream {
    let mut rng = SplitMix::new(seed ^ 0x5eed);
    let mut level = 10.0;
    let mut values = Vec::with_capacity(STREAM_LEN);
    for t in 0..STREAM_LEN {
        let noise = rng.normal();
        let v = match base {
            Base::Noise => 10.0 + noise,
            Base::RandomWalk => {
                level += 0.15 * rng.normal();
                level + noise
            }
            Base::Seasonal => 10.0 + 3.0 * (std::f64::consts::TAU * t as f64 / 120.0).sin() + noise,
        };
        values.push(v);
    }
    let mut segments = Vec::new();
    if let Some(a) = attack {
        let s = ATTACK_START;
        let seg = match a {
            Attack::Beaconing => {
                for t in (s..s + 80).step_by(10) {
                    values[t] += 6.0;
                }
                Segment {
                    start: s,
                    end: s + 80,
                    attack: a,
                }
            }
            Attack::Burst => {
                for (t, v) in values.iter_mut().enumerate().skip(s).take(40) {
                    // Extra noise of σ √15 ≈ 3.9 on top of σ 1 gives a total spread of 4, drawn from its
                    // own generator so the rest of the stream is unchanged.
                    let extra = SplitMix::new(seed ^ (t as u64).wrapping_mul(0x9e37)).normal();
                    *v += 15f64.sqrt() * extra;
                }
                Segment {
                    start: s,
                    end: s + 40,
                    attack: a,
                }
            }
            Attack::LevelShift => {
                for v in values.iter_mut().skip(s) {
                    *v += 5.0;
                }
                Segment {
                    start: s,
                    end: s + 1,
                    attack: a,
                }
            }
            Attack::Oscillation => {
                for (t, v) in values.iter_mut().enumerate().skip(s).take(80) {
                    *v += 3.0 * (std::f64::consts::TAU * (t - s) as f64 / 8.0).sin();
                }
                Segment {
                    start: s,
                    end: s + 80,
                    attack: a,
                }
            }
        };
        segments.push(seg);
    }
    let name = format!(
        "{base:?}-{}-{seed}",
        attack.map_or("normal".to_owned(), |a| format!("{a:?}"))
    );
    LabelledStream {
        name,
        base,
        values,
        segments,
    }
}

/// The benchmark suite: for each seed, every base with every attack plus every base without one.
pub fn suite(seeds: std::ops::Range<u64>) -> Vec<LabelledStream> {
    let mut out = Vec::new();
    for seed in seeds {
        for base in [Base::Noise, Base::RandomWalk, Base::Seasonal] {
            out.push(generate(base, None, seed));
            for a in Attack::ALL {
                out.push(generate(base, Some(a), seed));
            }
        }
    }
    out
}

/// Per-stream outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOutcome {
    pub name: String,
    pub alarms: usize,
    pub true_alarms: usize,
    pub segments: usize,
    pub detected: usize,
    pub delays: Vec<usize>,
}

/// Aggregated detection quality.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub streams: Vec<StreamOutcome>,
    pub precision: f64,
    pub recall: f64,
    pub median_delay: f64,
    pub mean_delay: f64,
    /// Alarms per 1000 events on the pure-normal streams (after calibration).
    pub normal_false_alarm_rate: f64,
}

/// Runs `cfg` over every stream and scores the alarms.
pub fn evaluate(streams: &[LabelledStream], cfg: &StreamConfig) -> Result<Report, StreamError> {
    let mut outcomes = Vec::with_capacity(streams.len());
    let (mut normal_alarms, mut normal_events) = (0usize, 0usize);
    for s in streams {
        let mut state = StreamState::new(&s.name);
        let mut alarm_at = Vec::new();
        let mut scored = 0usize;
        for (i, e) in s.events().iter().enumerate() {
            let a = state.analyse(e, cfg)?;
            if a.result().is_some_and(|r| r.calibrated) {
                scored += 1;
            }
            if a.is_anomaly() {
                alarm_at.push(i);
            }
        }
        let in_zone = |i: usize| {
            s.segments
                .iter()
                .any(|g| i >= g.start && i < g.end + cfg.window_size)
        };
        let true_alarms = alarm_at.iter().filter(|&&i| in_zone(i)).count();
        let mut delays = Vec::new();
        for g in &s.segments {
            if let Some(&first) = alarm_at
                .iter()
                .find(|&&i| i >= g.start && i < g.end + cfg.window_size)
            {
                delays.push(first - g.start);
            }
        }
        if s.segments.is_empty() {
            normal_alarms += alarm_at.len();
            normal_events += scored;
        }
        outcomes.push(StreamOutcome {
            name: s.name.clone(),
            alarms: alarm_at.len(),
            true_alarms,
            segments: s.segments.len(),
            detected: delays.len(),
            delays,
        });
    }
    let alarms: usize = outcomes.iter().map(|o| o.alarms).sum();
    let true_alarms: usize = outcomes.iter().map(|o| o.true_alarms).sum();
    let segments: usize = outcomes.iter().map(|o| o.segments).sum();
    let detected: usize = outcomes.iter().map(|o| o.detected).sum();
    let delays: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.delays.iter().map(|&d| d as f64))
        .collect();
    Ok(Report {
        precision: if alarms == 0 {
            1.0
        } else {
            true_alarms as f64 / alarms as f64
        },
        recall: if segments == 0 {
            1.0
        } else {
            detected as f64 / segments as f64
        },
        median_delay: crate::stats::median(&delays),
        mean_delay: crate::stats::mean_std(&delays).0,
        normal_false_alarm_rate: if normal_events == 0 {
            0.0
        } else {
            1000.0 * normal_alarms as f64 / normal_events as f64
        },
        streams: outcomes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_labelled() {
        let a = generate(Base::Seasonal, Some(Attack::Beaconing), 3);
        let b = generate(Base::Seasonal, Some(Attack::Beaconing), 3);
        assert_eq!(a.values, b.values);
        assert_eq!(
            a.segments,
            vec![Segment {
                start: ATTACK_START,
                end: ATTACK_START + 80,
                attack: Attack::Beaconing
            }]
        );
        let n = generate(Base::Seasonal, None, 3);
        assert!(n.segments.is_empty());
        // The injection changes exactly the attacked events.
        let diff: Vec<usize> = (0..STREAM_LEN)
            .filter(|&i| a.values[i] != n.values[i])
            .collect();
        assert_eq!(
            diff,
            (ATTACK_START..ATTACK_START + 80)
                .step_by(10)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn normals_are_standard() {
        let mut r = SplitMix::new(1);
        let xs: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let (m, s) = crate::stats::mean_std(&xs);
        assert!(m.abs() < 0.03 && (s - 1.0).abs() < 0.03, "{m} {s}");
    }

    #[test]
    fn suite_has_every_combination() {
        let s = suite(0..2);
        assert_eq!(s.len(), 2 * 3 * 5);
        assert_eq!(s.iter().filter(|x| x.segments.is_empty()).count(), 6);
    }
}
