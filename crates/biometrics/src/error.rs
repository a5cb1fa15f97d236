//! Error types. Every `Display` text is written for a person: the HTTP layer shows
//! [`PayloadError`] verbatim as the 422 `detail`.

use thiserror::Error;

/// Why a request body is not a valid session payload.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// The JSON is malformed or does not match the schema; the text names the field's path.
    #[error("invalid payload: {0}")]
    Schema(String),
    /// A number is NaN or infinite (only possible for payloads not parsed from JSON).
    #[error("invalid payload: {0} must be a finite number")]
    NonFinite(String),
}

/// Why models could not be trained, serialised or restored.
#[derive(Debug, Error)]
pub enum ModelError {
    /// Neither the mouse nor the typing model has enough rows to be trained.
    #[error(
        "not enough data to train any model: {mouse_rows} mouse rows and {typing_rows} typing rows, at least {min} needed for one"
    )]
    NotEnoughData {
        mouse_rows: usize,
        typing_rows: usize,
        min: usize,
    },
    /// The Isolation Forest rejected its input or parameters.
    #[error("isolation forest: {0}")]
    Forest(String),
    /// Stored model bytes are not a model this version can read.
    #[error("corrupt model blob: {0}")]
    Corrupt(String),
}
