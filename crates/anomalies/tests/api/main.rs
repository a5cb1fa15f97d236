//! End-to-end over HTTP: the real application on a random port, once per backend (SQLite always, PostgreSQL when
//! TEST_DATABASE_URL is set).
//!
//! One module per resource; shared setup in `helpers`.

// Setup helpers outside `#[test]` functions are test code too (clippy's allow-unwrap-in-tests only sees `#[test]`).
#![allow(clippy::unwrap_used)]

mod alerts;
mod anomalies;
#[path = "../common/mod.rs"]
mod common;
mod export;
mod helpers;
mod input;
mod roles;
mod stats;
