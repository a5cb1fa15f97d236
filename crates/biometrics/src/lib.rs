//! MaxiDOM behavioural biometrics, the pure part: no HTTP, no SQL, no clocks, no global state.
//!
//! - [`payload`]: the session payload the browser extension posts (serde schema + validation; a strict fast
//!   reader for its common shape, `fastjson`, falls back to serde for everything else).
//! - [`features`]: the 15 features of a session, a total function of the payload.
//! - [`rich`]: the rich mouse vector (stroke shape and timing distributions), stored beside the 15.
//! - [`lifecycle`]: readiness quotas, the `/train` progress object, training-matrix split, retraining set.
//! - [`model`]: training the calibrated mouse and typing k-NN models, scoring with vote gates, and the
//!   serialised [`model::ProfileModels`] blob stored in the database.
//! - [`sequential`]: evidence across a session's payloads (a profile's run and its combined score).
//! - [`synth`]: seeded realistic synthetic sessions for two distinct users, for tests and load generation.
//!
//! Invariants: feature extraction never panics and always yields 15 finite numbers; training is
//! deterministic for a given seed; a model blob either decodes to exactly what was encoded or is
//! rejected with an error, never a panic.

pub mod error;
mod fastjson;
pub mod features;
pub mod lifecycle;
pub mod model;
pub mod payload;
pub mod rich;
pub mod sequential;
pub mod synth;

pub use error::{ModelError, PayloadError};
pub use features::{FEATURE_COUNT, FEATURE_NAMES, FeatureVector, extract_features};
pub use lifecycle::{Counts, Progress, Quotas, RetrainPolicy, TrainResponse};
pub use model::{ProfileModels, Score, StoredVector, TrainParams, TrainedModel, train_models};
pub use payload::{Click, KeyEvent, MousePoint, Payload};
pub use rich::{RICH_COUNT, RichVector, extract_rich};
