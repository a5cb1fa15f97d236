//! # vigil-stream: the TopoForge stream engine
//!
//! A pure, deterministic engine (no I/O, no clock, no global state): every event updates its stream's
//! sliding window, the window's shape is measured with persistent homology, scored against the stream's
//! calibrated baseline and its own Isolation Forest, and mapped to MITRE ATT&CK. The HTTP layer
//! (`vigil-realtime`) stores [`StreamState`] in the database and serialises [`Analysis`] as is.
//!
//! ```
//! use vigil_stream::{Event, StreamConfig, StreamState};
//! let cfg = StreamConfig::default();
//! let mut state = StreamState::new("default");
//! let event = Event::from_json(&serde_json::json!({"value": 0.7})).unwrap();
//! let analysis = state.push(&event, &cfg).unwrap();
//! assert_eq!(serde_json::to_value(&analysis).unwrap(), serde_json::json!({"status": "buffering", "count": 1}));
//! ```
//!
//! ## Invariants
//! * Streams never share state: a [`StreamState`] belongs to one stream name and refuses other streams'
//!   events.
//! * Determinism: the same events and configuration give bit-identical results and states (the delay
//!   embedding has no randomness; model seeds derive from the stream name and a refit counter).
//! * No panics on any input; nothing fails before calibration (results then carry scores 0,
//!   `is_anomaly: false`, `calibrated: false`).
//! * A serialised state carries [`STATE_VERSION`]; other versions are refused, never misread.
//!
//! ## The pipeline, per event
//! 1. **Window**: the last `window_size` (50) values. Fewer than `min_events` (10) events →
//!    `{"status":"buffering","count":n}`.
//! 2. **Point cloud**: the time-delay embedding p_i = (x_i, x_{i+τ}, …, x_{i+(m−1)τ}) (m = 2, τ = 1),
//!    standardised as (x − μ)/σ with the stream's value statistics: the running mean/std of everything
//!    seen before the baseline exists, then the baseline's exponentially forgetting mean/std.
//! 3. **Homology**: Vietoris–Rips persistence over Z/2 up to H2 (`vigil-topo`). Betti numbers count bars
//!    longer than a threshold: fixed, or adaptive per dimension (mean + σ·std of the finite lifetimes,
//!    the fixed value when there are none); H0 counts its infinite bar. Entropy −Σ p ln p over finite bars
//!    with p = lifetime / total; total finite lifetime; first landscape of H1 on 100 points.
//! 4. **Features** f (10 values): Betti h0, h1, h2; the longest finite bar in each dimension; entropy;
//!    total lifetime; the window mean's deviation (m_w − μ)/σ; ln(s_w/σ + 10⁻³). The forest sees the six
//!    continuous ones ([`model::ML_FEATURES`]).
//! 5. **Calibration**: the first `calibration_windows` (100) *full* windows fix the baseline: per feature a
//!    centre (median) and spread (std); the value statistics; the median log event rate (from client
//!    timestamps); and the stream's Isolation Forest (contamination 0.1) fitted on those feature vectors.
//!    Until then every score is 0.
//! 6. **Scores** (0–100), all deviations from the stream's own baseline:
//!    * z_j = (f_j − centre_j) / max(spread_j, a_j + r_j·|centre_j|), floors (a, r) per feature in
//!      [`window::Z_FLOOR`] (a count that never moved during calibration is not "infinitely" deviant at 1);
//!    * `betti` = S(max |z_j| over the Betti counts and longest bars, dimensions ≤ max_dim);
//!    * `entropy` = S(max |z_j| over entropy and total lifetime);
//!    * `ml` = S(max(0, (a(f) − ā)/s_a)), a(f) = −`score_samples` of the stream's forest, ā and s_a the mean
//!      and std (floor 0.02) of a over its training windows;
//!    * S(z) = 100·(L(|z|) − L(0))/(1 − L(0)), L(z) = 1/(1 + e^{−(z−2.75)/0.75}) ([`squash`]): 0 at no
//!      deviation, ≈25 at 2σ, ≈57 at 3σ, ≈84 at 4σ, smooth and monotone (the centre was tuned on the
//!      labelled benchmark: 3.0 missed more attacks, 2.5 tripled the false alarms);
//!    * `total` = (w_b·betti + w_e·entropy + w_m·ml)/(w_b + w_e + w_m), weights 0.4/0.3/0.3;
//!      `anomaly_score` = total/100; `is_anomaly` = total > `anomaly_threshold` (65).
//! 7. **Learning**: a normal full window updates every feature's centre/spread, the value statistics
//!    and the log rate as exponentially weighted moments m ← m + α(x − m), v ← (1 − α)(v + α(x − m)²)
//!    (α = `forgetting_factor`, 0.005); a window is *judged normal* when its total is at most
//!    `learn_threshold` (40) — windows between that and the anomaly threshold neither alarm nor teach; the forest is refitted on the last `calibration_windows` normal
//!    windows every `refit_period` (100) normal windows. Other windows teach nothing — except that a
//!    change that persists is a new regime: once `window_size` consecutive windows are not normal a fresh
//!    calibration is collected (standardised with the new values' own statistics) and swapped in after
//!    `relearn_after` (150) consecutive such windows. So a stream that changes regime alarms at
//!    the change, not for ever.
//! 8. **Threats**: [`ThreatClassifier`] (risk level, MITRE mappings from measured deviations, confidence,
//!    mitigation steps); see [`classifier`].
//!
//! ## Detection quality
//! [`bench_data`] generates labelled streams; `cargo run --release -p vigil-stream --example
//! detection_report` prints precision, recall and delays; `tests/detection.rs` fails if they regress.

pub mod analysis;
pub mod bench_data;
pub mod classifier;
pub mod config;
pub mod detector;
pub mod error;
pub mod event;
pub mod model;
pub mod nab;
pub mod state;
pub mod stats;
pub mod window;

pub use analysis::{
    Analysis, AnalysisResult, BettiNumbers, Buffering, DetectorReport, Persistence, Scores,
    TopologyFeatures,
};
pub use classifier::{RiskLevel, SecurityAnalysis, Threat, ThreatClassifier, ThreatEvidence};
pub use config::{BettiRuleConfig, ConfigError, ScoreWeights, StreamConfig};
pub use detector::{DetectorParams, Verdict};
pub use error::StreamError;
pub use event::{Event, EventError};
pub use state::{STATE_VERSION, StateParts, StreamState, squash};
