//! Per-stream state and its one step, `analyse`.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::{
    Analysis, AnalysisResult, BettiNumbers, Buffering, ComponentReport, DetectorReport,
    LandscapeJson, Pair, Persistence, Scores, TopologyFeatures,
};
use crate::classifier::{ThreatClassifier, ThreatEvidence};
use crate::config::{BettiRuleConfig, StreamConfig};
use crate::detector::{ComponentKind, Detector, Verdict};
use crate::error::StreamError;
use crate::event::Event;
use crate::model::Model;
use crate::ring::{Prune, Ring, Segment, StoredRing};
use crate::stats::{Ewm, Running, median};
use crate::window::{self, N_FEATURES, WindowTopology, Z_FLOOR, feat};

/// Version of the serialised [`StreamState`]. Bump it whenever the layout or the meaning of a field
/// changes; a state of another version is refused by [`StreamState::from_parts`] and the stream starts over.
/// Version 2 added the scoring detector; version 3 its multi-scale evidences and the autoencoder; version 4 stores
/// the rings apart, as segments ([`crate::ring`]). A version 3 state is still read (its rings are inline, and the
/// next checkpoint stores them apart); an older one is refused and the stream starts over.
pub const STATE_VERSION: u32 = 4;

/// The oldest [`STATE_VERSION`] still read: the same layout with the rings inline.
const OLDEST_READ: u32 = 3;

/// Centre and width of the squashing curve that maps a deviation z (in baseline σ) to a 0–100 score.
const SQUASH_CENTER: f64 = 2.75;
const SQUASH_WIDTH: f64 = 0.75;

/// Maps |z| ≥ 0 to 0–100: a logistic centred on [`SQUASH_CENTER`] σ, shifted so that z = 0 gives exactly
/// 0 and rescaled so that z → ∞ gives 100. z = 1 → 7, 2 → 25, 2.75 → 49, 3 → 57, 4 → 84, 5 → 95.
pub fn squash(z: f64) -> f64 {
    let z = if z.is_finite() { z.abs() } else { 0.0 };
    let l = |x: f64| 1.0 / (1.0 + (-(x - SQUASH_CENTER) / SQUASH_WIDTH).exp());
    let l0 = l(0.0);
    (100.0 * (l(z) - l0) / (1.0 - l0)).clamp(0.0, 100.0)
}

/// The parts of the configuration that fix what a feature vector means; when they change the stream
/// recalibrates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Shape {
    window_size: usize,
    embedding_dim: usize,
    embedding_delay: usize,
    max_homology_dim: usize,
    betti_rule: BettiRuleConfig,
}

impl Shape {
    fn of(cfg: &StreamConfig) -> Self {
        Self {
            window_size: cfg.window_size,
            embedding_dim: cfg.embedding_dim,
            embedding_delay: cfg.embedding_delay,
            max_homology_dim: cfg.max_homology_dim,
            betti_rule: cfg.betti_rule,
        }
    }
}

/// Windows being collected for a (re)calibration.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Collector {
    rows: Vec<[f64; N_FEATURES]>,
    log_rates: Vec<f64>,
    /// Statistics of the values seen since collection started; they standardise the collected windows.
    values: Running,
}

/// A stream's calibrated baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Baseline {
    /// Value statistics used to standardise the embedding.
    value: Ewm,
    /// Distribution of each window feature.
    features: [Ewm; N_FEATURES],
    /// Distribution of ln(events per second), when the client sends timestamps.
    log_rate: Option<Ewm>,
    /// Stored apart from the rest of the state (it is large and changes only at calibration and refits);
    /// see [`StreamState::to_parts`].
    #[serde(skip)]
    model: Option<Model>,
}

/// A [`StreamState`] split for storage (see [`StreamState::to_parts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StateParts {
    /// Everything but the model and the rings' entries (JSON, a few kB).
    pub core: Vec<u8>,
    /// The ring segments to write (insert or replace), see [`crate::ring`].
    pub segments: Vec<Segment>,
    /// Per ring whose oldest segment moved, which of its stored segments stay; the others are deleted.
    pub prunes: Vec<Prune>,
    /// The model (JSON with the forest as base64), once the stream is calibrated.
    pub model: Option<Vec<u8>>,
    /// Number of model fits so far.
    pub model_generation: u64,
}

/// A read-only view of a stored state (see [`StreamState::view`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StateView {
    /// Events the stream has seen.
    pub events: u64,
    /// The window's values, oldest first.
    pub values: Vec<f64>,
    /// The window's client timestamps (ms since epoch), aligned with `values`.
    pub times: Vec<Option<i64>>,
    /// Whether the detector's history is long enough to score the next event (before that, results carry
    /// `calibrated: false` and score 0).
    pub detector_ready: bool,
    /// `scores.total` (0–100) of the last analysed event, when the state has one.
    pub last_total: Option<f64>,
}

/// The topology of a stored state's current window (see [`StreamState::current_window`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrentWindow {
    /// Events in the window.
    pub window_size: usize,
    pub betti_numbers: BettiNumbers,
    pub persistence: Persistence,
    pub topology_features: TopologyFeatures,
}

/// All the state of one stream: its window, calibration, baseline and model. Streams never share state.
/// Serialisable (with a [`STATE_VERSION`]) so it can be stored and moved between replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamState {
    version: u32,
    stream: String,
    shape: Option<Shape>,
    /// Events seen by this stream.
    events: u64,
    values: VecDeque<f64>,
    /// Client timestamps (ms since epoch) of the window's events.
    times: VecDeque<Option<i64>>,
    /// Last time attached to a result, used when an event carries none.
    last_time_ms: Option<i64>,
    /// Value statistics of the stream before it has a baseline.
    running: Running,
    collector: Option<Collector>,
    baseline: Option<Baseline>,
    consecutive_unusual: u64,
    normal_since_refit: u64,
    refits: u64,
    /// The most recent normal windows, for refitting the model.
    recent_normal: Ring<[f64; N_FEATURES]>,
    /// The scoring detector (see [`crate::detector`]).
    detector: Detector,
    /// `scores.total` of the last analysed event (0–100), for read-only views; absent in states written before
    /// it was kept, and until the first analysis.
    #[serde(default)]
    last_total: Option<f64>,
    /// Reused embedding buffer (not state).
    #[serde(skip)]
    coords: Vec<f64>,
}

impl StreamState {
    /// A fresh stream.
    pub fn new(stream: &str) -> Self {
        Self {
            version: STATE_VERSION,
            stream: stream.to_owned(),
            shape: None,
            events: 0,
            values: VecDeque::new(),
            times: VecDeque::new(),
            last_time_ms: None,
            running: Running::default(),
            collector: None,
            baseline: None,
            consecutive_unusual: 0,
            normal_since_refit: 0,
            refits: 0,
            recent_normal: Ring::default(),
            detector: Detector::new(),
            last_total: None,
            coords: Vec::new(),
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Events seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Whether the stream has a calibrated baseline.
    pub fn is_calibrated(&self) -> bool {
        self.baseline.is_some()
    }

    /// How many times the model has been refitted since the stream was created.
    pub fn refits(&self) -> u64 {
        self.refits
    }

    /// Splits the state for storage, everything included: the small part that changes with every event (JSON),
    /// every ring's segments, and the model, which changes only when the stream calibrates or refits, with its
    /// generation (it grows by one at every fit), so a store can rewrite the model only when the generation moved.
    pub fn to_parts(&self) -> Result<StateParts, StreamError> {
        self.split(None, true)
    }

    /// [`Self::to_parts`] for a store that already holds this state as of its last load or
    /// [`Self::mark_stored`], and model generation `stored_generation`: only the ring segments written since
    /// (usually the open one of each ring, ≤ 1 KB), and the model only when it has changed (its JSON is most of a
    /// state's size, and a refit happens once per hundred windows while the core is saved after every batch).
    pub fn to_parts_after(
        &self,
        stored_generation: Option<u64>,
    ) -> Result<StateParts, StreamError> {
        self.split(stored_generation, false)
    }

    fn split(&self, stored_generation: Option<u64>, all: bool) -> Result<StateParts, StreamError> {
        let core = serde_json::to_vec(self).map_err(|e| StreamError::StateDecode(e.to_string()))?;
        let model = match self.baseline.as_ref().and_then(|b| b.model.as_ref()) {
            Some(_) if stored_generation == Some(self.refits) => None,
            Some(m) => {
                Some(serde_json::to_vec(m).map_err(|e| StreamError::StateDecode(e.to_string()))?)
            }
            None => None,
        };
        let (mut segments, mut prunes) = (Vec::new(), Vec::new());
        for (name, ring) in self.rings() {
            let (s, p) = ring.delta(&name, all);
            segments.extend(s);
            prunes.extend(p);
        }
        Ok(StateParts {
            core,
            segments,
            prunes,
            model,
            model_generation: self.refits,
        })
    }

    /// Records that the store now holds this state as [`Self::to_parts_after`] last split it, so the next split
    /// writes only what changes after this.
    pub fn mark_stored(&mut self) {
        for (_, ring) in self.rings_mut() {
            ring.mark_stored();
        }
    }

    fn rings(&self) -> Vec<(String, &dyn StoredRing)> {
        let mut out = self.detector.rings();
        out.push(("recent_normal".into(), &self.recent_normal));
        out
    }

    fn rings_mut(&mut self) -> Vec<(String, &mut dyn StoredRing)> {
        let mut out = self.detector.rings_mut();
        out.push(("recent_normal".into(), &mut self.recent_normal));
        out
    }

    /// Refuses a core of a version this build does not read.
    fn check_version(core: &[u8]) -> Result<(), StreamError> {
        #[derive(Deserialize)]
        struct V {
            version: u32,
        }
        let v: V =
            serde_json::from_slice(core).map_err(|e| StreamError::StateDecode(e.to_string()))?;
        if !(OLDEST_READ..=STATE_VERSION).contains(&v.version) {
            return Err(StreamError::StateVersion {
                found: v.version,
                expected: STATE_VERSION,
            });
        }
        Ok(())
    }

    /// What the stored core of a state (the `core` of [`Self::to_parts`]) shows, without its model: the window,
    /// the event count and whether the next event is scored under `cfg`. For read-only views (the console's
    /// stream list); analysis always goes through [`Self::from_parts`].
    pub fn view(core: &[u8], cfg: &StreamConfig) -> Result<StateView, StreamError> {
        Self::check_version(core)?;
        // The rings stay detached: readiness needs only their lengths, which the core declares.
        let state: Self =
            serde_json::from_slice(core).map_err(|e| StreamError::StateDecode(e.to_string()))?;
        Ok(StateView {
            events: state.events,
            detector_ready: state.detector.is_ready(&cfg.detector),
            last_total: state.last_total,
            values: state.values.into(),
            times: state.times.into(),
        })
    }

    /// The persistent homology of the stored window as it stands, standardised as the stream's next analysis
    /// will standardise it (its baseline, or its running statistics before calibration); `None` while the window
    /// holds fewer than `min_events` values (the stream is buffering). Read-only, from the stored core alone, so
    /// any replica answers it without the stream's engine. The standardisation moves a little with every normal
    /// event, so this can differ slightly from the last event's own result, which was computed before that event
    /// was learned.
    pub fn current_window(
        core: &[u8],
        cfg: &StreamConfig,
    ) -> Result<Option<CurrentWindow>, StreamError> {
        cfg.validate()?;
        // `view` checks the version first, so a state of another version is refused with that reason.
        Self::view(core, cfg)?;
        let state: Self =
            serde_json::from_slice(core).map_err(|e| StreamError::StateDecode(e.to_string()))?;
        let values: Vec<f64> = state.values.iter().copied().collect();
        if values.len() < cfg.min_events {
            return Ok(None);
        }
        let (mean, scale) = match &state.baseline {
            Some(b) => (
                b.value.mean,
                window::usable_scale(b.value.std(), b.value.mean),
            ),
            None => (
                state.running.mean,
                window::usable_scale(state.running.std(), state.running.mean),
            ),
        };
        let mut coords = Vec::new();
        window::embed(
            &values,
            cfg.embedding_dim,
            cfg.embedding_delay,
            mean,
            scale,
            &mut coords,
        );
        let t = window::topology(&coords, cfg)?;
        let pairs = |d: usize| -> Vec<Pair> {
            t.barcodes
                .dims
                .get(d)
                .map(|bars| {
                    bars.iter()
                        .map(|b| (b.birth, b.death.is_finite().then_some(b.death)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Some(CurrentWindow {
            window_size: values.len(),
            betti_numbers: BettiNumbers {
                h0: t.betti[0],
                h1: t.betti[1],
                h2: t.betti[2],
            },
            persistence: Persistence {
                h0: pairs(0),
                h1: pairs(1),
                h2: pairs(2),
            },
            topology_features: TopologyFeatures {
                entropy: t.entropy,
                total_lifetime: t.total_lifetime,
                landscape: LandscapeJson {
                    x: t.landscape.x,
                    y: t.landscape.y,
                },
            },
        }))
    }

    /// Reassembles a state from [`Self::to_parts`]: its core, its model and its rings' stored segments (others'
    /// are ignored). Refuses other versions, a calibrated state without its model, and a ring whose segments are
    /// missing or do not fit.
    pub fn from_parts(
        core: &[u8],
        model: Option<&[u8]>,
        segments: &[Segment],
    ) -> Result<Self, StreamError> {
        Self::check_version(core)?;
        let mut state: Self =
            serde_json::from_slice(core).map_err(|e| StreamError::StateDecode(e.to_string()))?;
        state.version = STATE_VERSION;
        if let Some(b) = state.baseline.as_mut() {
            let bytes = model.ok_or_else(|| {
                StreamError::StateDecode("calibrated state without its model".into())
            })?;
            let m: Model = serde_json::from_slice(bytes)
                .map_err(|e| StreamError::StateDecode(e.to_string()))?;
            b.model = Some(m);
        }
        for (name, ring) in state.rings_mut() {
            ring.attach(&name, segments)
                .map_err(StreamError::StateDecode)?;
        }
        Ok(state)
    }

    /// The whole state as one JSON document (`{"core": …, "model": …, "segments": [[ring, index, first, base64],
    /// …]}`).
    pub fn to_json(&self) -> Result<Vec<u8>, StreamError> {
        let parts = self.to_parts()?;
        let decode = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b);
        let core = decode(&parts.core).map_err(|e| StreamError::StateDecode(e.to_string()))?;
        let model = match &parts.model {
            Some(m) => decode(m).map_err(|e| StreamError::StateDecode(e.to_string()))?,
            None => serde_json::Value::Null,
        };
        let segments: Vec<serde_json::Value> = parts
            .segments
            .iter()
            .map(|s| serde_json::json!([s.ring, s.index, s.first, STANDARD.encode(&s.data)]))
            .collect();
        serde_json::to_vec(&serde_json::json!({"core": core, "model": model, "segments": segments}))
            .map_err(|e| StreamError::StateDecode(e.to_string()))
    }

    /// Restores a state written by [`Self::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, StreamError> {
        #[derive(Deserialize)]
        struct Whole {
            core: serde_json::Value,
            #[serde(default)]
            model: serde_json::Value,
            #[serde(default)]
            segments: Vec<(String, u64, u64, String)>,
        }
        let bad = |e: &dyn std::fmt::Display| StreamError::StateDecode(e.to_string());
        let w: Whole = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
        let core = serde_json::to_vec(&w.core).map_err(|e| bad(&e))?;
        let model = match &w.model {
            serde_json::Value::Null => None,
            m => Some(serde_json::to_vec(m).map_err(|e| bad(&e))?),
        };
        let segments = w
            .segments
            .into_iter()
            .map(|(ring, index, first, data)| {
                Ok(Segment {
                    ring,
                    index,
                    first,
                    data: STANDARD.decode(data.as_bytes()).map_err(|e| bad(&e))?,
                })
            })
            .collect::<Result<Vec<_>, StreamError>>()?;
        Self::from_parts(&core, model.as_deref(), &segments)
    }

    /// Analyses one event: updates the stream's state with it and returns its analysis. See the crate
    /// documentation for the formulas. Fails only on an invalid configuration, an event of another stream, or a
    /// homology error; never panics.
    pub fn analyse(&mut self, event: &Event, cfg: &StreamConfig) -> Result<Analysis, StreamError> {
        cfg.validate()?;
        if event.stream != self.stream {
            return Err(StreamError::WrongStream {
                state: self.stream.clone(),
                event: event.stream.clone(),
            });
        }
        let shape = Shape::of(cfg);
        if self.shape != Some(shape) {
            // What a feature vector means changed (or this is the first event): start calibration over.
            if self.shape.is_some() {
                self.reset_learning();
            }
            self.shape = Some(shape);
        }

        self.events += 1;
        let client_ms = event.timestamp.map(|t| t.timestamp_millis());
        let time_ms = client_ms
            .or(event.received_at.map(|t| t.timestamp_millis()))
            .or(self.last_time_ms);
        self.last_time_ms = time_ms;
        self.values.push_back(event.value);
        self.times.push_back(client_ms);
        while self.values.len() > cfg.window_size {
            self.values.pop_front();
            self.times.pop_front();
        }
        if self.baseline.is_none() {
            self.running.push(event.value);
        }
        if let Some(c) = self.collector.as_mut() {
            c.values.push(event.value);
        }
        let n = self.values.len();
        if n < cfg.min_events {
            // The detector learns from the first event on.
            self.detector
                .observe(event.value, &cfg.detector, cfg.anomaly_threshold / 100.0);
            return Ok(Analysis::Buffering(Buffering {
                status: "buffering".into(),
                count: usize::try_from(self.events).unwrap_or(usize::MAX),
            }));
        }

        let values: Vec<f64> = self.values.iter().copied().collect();
        let (mean, scale) = match &self.baseline {
            Some(b) => (
                b.value.mean,
                window::usable_scale(b.value.std(), b.value.mean),
            ),
            None => (
                self.running.mean,
                window::usable_scale(self.running.std(), self.running.mean),
            ),
        };
        let mut coords = std::mem::take(&mut self.coords);
        window::embed(
            &values,
            cfg.embedding_dim,
            cfg.embedding_delay,
            mean,
            scale,
            &mut coords,
        );
        let topo = window::topology(&coords, cfg);
        self.coords = coords;
        let topo = topo?;
        let row = window::feature_row(&topo, &values, mean, scale);
        let log_rate = self.window_log_rate();
        let full = n == cfg.window_size;

        let (topo_scores, mut evidence) = match &self.baseline {
            Some(b) => score(b, &row, &values, log_rate, cfg),
            None => (
                Scores {
                    total: 0.0,
                    betti: 0.0,
                    entropy: 0.0,
                    ml: 0.0,
                },
                ThreatEvidence::default(),
            ),
        };
        let verdict = self.detector.observe_with(
            event.value,
            self.baseline.is_some().then_some(topo_scores.total),
            &cfg.detector,
            cfg.anomaly_threshold / 100.0,
        );
        let calibrated = verdict.ready;
        // The topology baseline's own total decides what it learns from; the reported total is the detector's.
        let topology_total = topo_scores.total;
        let scores = Scores {
            total: (100.0 * verdict.score).clamp(0.0, 100.0),
            ..topo_scores
        };
        let is_anomaly = calibrated && scores.total > cfg.anomaly_threshold;
        evidence.total = scores.total;
        evidence.threshold = cfg.anomaly_threshold;
        evidence.calibrated = calibrated;
        if evidence.max_value_dev.is_none() {
            evidence.max_value_dev = verdict.value_z.map(f64::abs);
        }
        if let Some(c) = verdict.driver() {
            evidence.driver = Some(c.kind);
            evidence.driver_reading = c.reading;
        }
        if let Some(c) = verdict.strongest_level() {
            evidence.level_z = Some(c.reading);
        }

        if full {
            let normal = topology_total <= cfg.learn_threshold;
            self.learn(cfg, &row, log_rate, normal, &values)?;
        }
        let report = report(&verdict, topology_total, cfg);

        let security_analysis = ThreatClassifier::default().classify(&evidence);
        let timestamp = time_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true);
        self.last_total = Some(scores.total);
        Ok(Analysis::Result(Box::new(build_result(
            &self.stream,
            n,
            timestamp,
            &topo,
            scores,
            is_anomaly,
            security_analysis,
            calibrated,
            report,
        ))))
    }

    /// ln(events per second) over the window, from client timestamps only; `None` when any event of the
    /// window lacks one or the window spans no time.
    fn window_log_rate(&self) -> Option<f64> {
        let first = (*self.times.front()?)?;
        let last = (*self.times.back()?)?;
        if self.times.iter().any(Option::is_none) || last <= first {
            return None;
        }
        let per_sec = (self.times.len() - 1) as f64 * 1000.0 / (last - first) as f64;
        per_sec.is_finite().then(|| per_sec.ln())
    }

    /// Updates calibration, baseline and model with a full window's features.
    fn learn(
        &mut self,
        cfg: &StreamConfig,
        row: &[f64; N_FEATURES],
        log_rate: Option<f64>,
        normal: bool,
        values: &[f64],
    ) -> Result<(), StreamError> {
        let alpha = cfg.forgetting_factor;
        let Some(b) = self.baseline.as_mut() else {
            // Initial calibration: collect full windows standardised with the stream's running statistics.
            let c = self.collector.get_or_insert_with(|| Collector {
                rows: Vec::new(),
                log_rates: Vec::new(),
                values: self.running,
            });
            c.values = self.running;
            c.rows.push(*row);
            c.log_rates.extend(log_rate);
            if c.rows.len() >= cfg.calibration_windows {
                let seed = self.seed();
                if let Some(c) = self.collector.take() {
                    self.install_baseline(c, cfg, seed)?;
                }
            }
            return Ok(());
        };

        if normal {
            // A normal window: the baseline keeps learning with exponential forgetting.
            let newest = values.last().copied().unwrap_or(b.value.mean);
            b.value.update(newest, alpha);
            for (e, x) in b.features.iter_mut().zip(row) {
                e.update(*x, alpha);
            }
            if let Some(lr) = log_rate {
                match b.log_rate.as_mut() {
                    Some(e) => e.update(lr, alpha),
                    None => b.log_rate = Some(Ewm { mean: lr, var: 0.0 }),
                }
            }
            self.consecutive_unusual = 0;
            self.collector = None;
            self.recent_normal.push(*row, cfg.calibration_windows);
            self.normal_since_refit += 1;
            if self.normal_since_refit >= cfg.refit_period as u64 && self.recent_normal.len() >= 8 {
                let rows: Vec<[f64; N_FEATURES]> = self.recent_normal.iter().copied().collect();
                let seed = self.seed();
                if let Some(b) = self.baseline.as_mut() {
                    b.model = Some(Model::fit(&rows, cfg.trees, seed)?);
                }
                self.refits += 1;
                self.normal_since_refit = 0;
            }
            return Ok(());
        }

        // A window not judged normal. A change that persists is a new regime: once the whole window lies
        // past the change, collect a fresh calibration (standardised with the new values' own statistics)
        // and swap it in after `relearn_after` consecutive such windows.
        self.consecutive_unusual += 1;
        if self.consecutive_unusual >= cfg.window_size as u64 {
            let c = self.collector.get_or_insert_with(|| {
                let mut r = Running::default();
                values.iter().for_each(|&x| r.push(x));
                Collector {
                    rows: Vec::new(),
                    log_rates: Vec::new(),
                    values: r,
                }
            });
            let mean = c.values.mean;
            let scale = window::usable_scale(c.values.std(), mean);
            let mut coords = Vec::with_capacity(values.len() * cfg.embedding_dim);
            window::embed(
                values,
                cfg.embedding_dim,
                cfg.embedding_delay,
                mean,
                scale,
                &mut coords,
            );
            let topo = window::topology(&coords, cfg)?;
            c.rows.push(window::feature_row(&topo, values, mean, scale));
            c.log_rates.extend(log_rate);
            if c.rows.len() >= cfg.calibration_windows
                && self.consecutive_unusual >= cfg.relearn_after as u64
            {
                let seed = self.seed();
                if let Some(c) = self.collector.take() {
                    self.install_baseline(c, cfg, seed)?;
                }
            }
        }
        Ok(())
    }

    /// Turns a finished collection into the stream's baseline and model.
    fn install_baseline(
        &mut self,
        c: Collector,
        cfg: &StreamConfig,
        seed: u64,
    ) -> Result<(), StreamError> {
        let model = Model::fit(&c.rows, cfg.trees, seed)?;
        // Centre on the median (robust to the odd unusual window in the calibration span), spread from
        // the standard deviation (the z floors handle features that were constant).
        let mut features = [Ewm {
            mean: 0.0,
            var: 0.0,
        }; N_FEATURES];
        for (j, f) in features.iter_mut().enumerate() {
            let col: Vec<f64> = c.rows.iter().map(|r| r[j]).collect();
            let (_, std) = crate::stats::mean_std(&col);
            *f = Ewm {
                mean: median(&col),
                var: std * std,
            };
        }
        let log_rate = (!c.log_rates.is_empty()).then(|| {
            let (_, std) = crate::stats::mean_std(&c.log_rates);
            Ewm {
                mean: median(&c.log_rates),
                var: std * std,
            }
        });
        let value = Ewm {
            mean: c.values.mean,
            var: c.values.std() * c.values.std(),
        };
        self.baseline = Some(Baseline {
            value,
            features,
            log_rate,
            model: Some(model),
        });
        // Cleared and refilled rather than replaced: its indexes go on, so no stored segment is mistaken for these.
        self.recent_normal.clear();
        let skip = c.rows.len().saturating_sub(cfg.calibration_windows);
        for row in &c.rows[skip..] {
            self.recent_normal.push(*row, cfg.calibration_windows);
        }
        self.consecutive_unusual = 0;
        self.normal_since_refit = 0;
        self.refits += 1;
        Ok(())
    }

    fn reset_learning(&mut self) {
        self.running = Running::default();
        self.values.iter().for_each(|&x| self.running.push(x));
        self.collector = None;
        self.baseline = None;
        self.consecutive_unusual = 0;
        self.normal_since_refit = 0;
        self.recent_normal.clear();
    }

    /// Deterministic model seed: FNV-1a of the stream name mixed with the refit counter, so replays of a
    /// stream give identical models and different streams get different ones.
    fn seed(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.stream.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^ self.refits.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Component scores and classifier evidence of a window against a baseline.
fn score(
    b: &Baseline,
    row: &[f64; N_FEATURES],
    values: &[f64],
    log_rate: Option<f64>,
    cfg: &StreamConfig,
) -> (Scores, ThreatEvidence) {
    let z = |j: usize| {
        let (abs, rel) = Z_FLOOR[j];
        b.features[j].z(row[j], abs + rel * b.features[j].mean.abs())
    };
    let max_abs = |set: &[usize]| set.iter().map(|&j| z(j).abs()).fold(0.0, f64::max);
    let dims = cfg.max_homology_dim;
    let betti_set: Vec<usize> = feat::BETTI
        .iter()
        .copied()
        .filter(|&j| match j {
            feat::H1 | feat::LIFE_H1 => dims >= 1,
            feat::H2 | feat::LIFE_H2 => dims >= 2,
            _ => true,
        })
        .collect();
    let betti = squash(max_abs(&betti_set));
    let entropy = squash(max_abs(&feat::ENTROPY_SET));
    let ml = b.model.as_ref().map_or(0.0, |m| squash(m.deviation(row)));
    let w = cfg.weights;
    let total = ((w.betti * betti + w.entropy * entropy + w.ml * ml)
        / (w.betti + w.entropy + w.ml))
        .clamp(0.0, 100.0);

    let scale = window::usable_scale(b.value.std(), b.value.mean);
    let max_value_dev = values
        .iter()
        .map(|x| ((x - b.value.mean) / scale).abs())
        .filter(|d| d.is_finite())
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
    let rate_ratio = match (log_rate, b.log_rate) {
        (Some(lr), Some(base)) => Some((lr - base.mean).exp()).filter(|r| r.is_finite()),
        _ => None,
    };
    let evidence = ThreatEvidence {
        total,
        threshold: cfg.anomaly_threshold,
        calibrated: true,
        h1: row[feat::H1] as usize,
        h1_baseline: b.features[feat::H1].mean,
        h1_count_z: z(feat::H1),
        h1_life_z: z(feat::LIFE_H1),
        max_value_dev,
        rate_ratio,
        ..ThreatEvidence::default()
    };
    (
        Scores {
            total,
            betti,
            entropy,
            ml,
        },
        evidence,
    )
}

#[allow(clippy::too_many_arguments)]
fn build_result(
    stream: &str,
    n: usize,
    timestamp: String,
    t: &WindowTopology,
    scores: Scores,
    is_anomaly: bool,
    security_analysis: crate::classifier::SecurityAnalysis,
    calibrated: bool,
    detector: DetectorReport,
) -> AnalysisResult {
    let pairs = |d: usize| -> Vec<Pair> {
        t.barcodes
            .dims
            .get(d)
            .map(|bars| {
                bars.iter()
                    .map(|b| (b.birth, b.death.is_finite().then_some(b.death)))
                    .collect()
            })
            .unwrap_or_default()
    };
    AnalysisResult {
        stream: stream.to_owned(),
        window_size: n,
        timestamp,
        betti_numbers: BettiNumbers {
            h0: t.betti[0],
            h1: t.betti[1],
            h2: t.betti[2],
        },
        persistence: Persistence {
            h0: pairs(0),
            h1: pairs(1),
            h2: pairs(2),
        },
        topology_features: TopologyFeatures {
            entropy: t.entropy,
            total_lifetime: t.total_lifetime,
            landscape: LandscapeJson {
                x: t.landscape.x.clone(),
                y: t.landscape.y.clone(),
            },
        },
        scores,
        anomaly_score: scores.total / 100.0,
        is_anomaly,
        security_analysis,
        calibrated,
        detector,
        incident_id: None,
    }
}

/// The detector's part of a result, with a sentence naming what drove the score.
fn report(v: &Verdict, topology_total: f64, cfg: &StreamConfig) -> DetectorReport {
    let d = &cfg.detector;
    let window_of = |k: ComponentKind| match k {
        ComponentKind::Shape | ComponentKind::Autoencoder => d.dim,
        ComponentKind::Level(w) => w,
        ComponentKind::Spread => crate::detector::SPREAD_WINDOW,
        ComponentKind::Volatility => crate::detector::VOLATILITY_WINDOW,
        ComponentKind::Topology => cfg.window_size,
    };
    let components: Vec<ComponentReport> = v
        .components
        .iter()
        .map(|c| ComponentReport {
            name: c.kind.name().into(),
            window: window_of(c.kind),
            value: c.reading,
            p_value: c.p_value,
            in_score: c.in_score,
            text: c.text(d.dim),
        })
        .collect();
    let explanation = if !v.ready {
        format!(
            "Learning the stream's normal behaviour: a score needs {} evidences of history.",
            2 * d.min_history
        )
    } else {
        let driver = v
            .driver()
            .map(|c| {
                format!(
                    "Driven by the {}: {} (its tail probability {:.1e})",
                    c.kind.name(),
                    c.text(d.dim),
                    c.p_value.unwrap_or(1.0)
                )
            })
            .unwrap_or_else(|| "No evidence calibrated yet".into());
        // Context: the level reading of largest magnitude, and the spread when it is far from the learned one.
        let mut context = Vec::new();
        if let Some(c) = v.strongest_level()
            && v.driver().map(|d| d.kind) != Some(c.kind)
        {
            context.push(c.text(d.dim));
        }
        if let Some(c) = v
            .components
            .iter()
            .find(|c| c.kind == ComponentKind::Spread && !(0.5..=2.0).contains(&c.reading))
            && v.driver().map(|d| d.kind) != Some(c.kind)
        {
            context.push(c.text(d.dim));
        }
        let context = if context.is_empty() {
            String::new()
        } else {
            format!("; {}", context.join("; "))
        };
        let incident = if v.suppressed {
            " Part of an incident that already alarmed: score capped."
        } else {
            ""
        };
        format!(
            "{driver}; combined tail probability {:.2e}{context}.{incident}",
            v.p_value
        )
    };
    DetectorReport {
        p_value: v.p_value,
        shape_distance: v.evidence,
        value_z: v.value_z,
        topology_score: topology_total,
        in_incident: v.suppressed,
        explanation,
        driver: v.driver().map(|c| c.kind.name().to_owned()),
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squash_shape() {
        assert_eq!(squash(0.0), 0.0);
        assert!((squash(2.75) - 50.0).abs() < 2.0);
        assert!(squash(1.0) < 10.0);
        assert!(squash(5.0) > 90.0);
        assert!(squash(100.0) <= 100.0);
        assert_eq!(squash(-4.0), squash(4.0));
        assert_eq!(squash(f64::NAN), 0.0);
        let mut prev = 0.0;
        for i in 0..100 {
            let s = squash(i as f64 * 0.1);
            assert!(s >= prev);
            prev = s;
        }
    }

    /// Before calibration the window is standardised with the running statistics, which already include the
    /// last event when it is analysed, so the stored window's topology is exactly the last result's.
    #[test]
    fn current_window_matches_the_last_result_before_calibration() {
        let cfg = StreamConfig::default();
        let mut st = StreamState::new("s");
        let core = st.to_parts().expect("parts").core;
        assert_eq!(
            StreamState::current_window(&core, &cfg).expect("read"),
            None
        );
        let mut last = None;
        for i in 0..cfg.min_events + 5 {
            let v = (i as f64 * 0.7).sin() * 3.0 + (i % 5) as f64;
            last = Some(st.analyse(&Event::new("s", v, None), &cfg).expect("push"));
        }
        assert!(
            !st.is_calibrated(),
            "the test needs a stream still calibrating"
        );
        let Some(Analysis::Result(r)) = last else {
            panic!("the last event was analysed")
        };
        let core = st.to_parts().expect("parts").core;
        let w = StreamState::current_window(&core, &cfg)
            .expect("read")
            .expect("a full enough window");
        assert_eq!(w.persistence, r.persistence);
        assert_eq!(w.betti_numbers, r.betti_numbers);
        assert_eq!(w.window_size, r.window_size);
        assert!(StreamState::current_window(b"{}", &cfg).is_err());
    }
}
