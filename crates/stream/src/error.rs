//! Errors of the stream analysis.

use thiserror::Error;

/// Why an event could not be analysed.
#[derive(Debug, Error)]
pub enum StreamError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("event for stream `{event}` analysed by the state of stream `{state}`")]
    WrongStream { state: String, event: String },
    #[error("persistent homology failed: {0}")]
    Topology(#[from] vigil_topo::TopoError),
    #[error("isolation forest failed: {0}")]
    Model(String),
    #[error("stream state version {found} is not supported (expected {expected})")]
    StateVersion { found: u32, expected: u32 },
    #[error("stream state could not be decoded: {0}")]
    StateDecode(String),
}
