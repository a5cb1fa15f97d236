//! End-to-end over HTTP: the real application on a random port, once per backend (SQLite always,
//! PostgreSQL when TEST_DATABASE_URL is set), driven with synthetic users.
//!
//! One module per resource; shared setup in `helpers`.

// Setup helpers outside `#[test]` functions are test code too (clippy's allow-unwrap-in-tests only sees `#[test]`).
#![allow(clippy::unwrap_used)]

mod concurrency;
mod enroll;
mod helpers;
mod payloads;
mod recovery;
mod replicas;
mod roles;
mod score;
mod static_files;
mod training;
