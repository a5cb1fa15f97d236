/// Everything that can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored value that the schema's constraints should have kept out (e.g. an unknown role).
    #[error("stored value is invalid: {0}")]
    Invalid(String),
    /// A unique constraint refused the write; the payload names the constraint or column when the engine says.
    #[error("conflict: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`], leaving every other error as it is.
    pub fn from_write(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            return StoreError::Conflict(db.message().to_owned());
        }
        StoreError::Sqlx(err)
    }
}
