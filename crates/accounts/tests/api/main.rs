//! End-to-end over HTTP: the real application on a random port, once per backend (SQLite always, PostgreSQL when
//! TEST_DATABASE_URL is set). Mail goes to an in-test SMTP server, so the verification and reset links are the ones
//! a user would receive.
//!
//! One module per resource; shared setup in `helpers`.

// Setup helpers outside `#[test]` functions are test code too (clippy's allow-unwrap-in-tests only sees `#[test]`).
#![allow(clippy::unwrap_used)]

mod auth;
mod bootstrap;
mod email;
mod helpers;
mod housekeeping;
mod rate_limits;
mod users;
