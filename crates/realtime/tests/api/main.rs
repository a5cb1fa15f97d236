//! End-to-end tests over HTTP, WebSocket and SSE against the real router on a random port, on SQLite and (when
//! `TEST_DATABASE_URL` is set) PostgreSQL.
//!
//! One module per resource; shared setup in `helpers`.

// Setup helpers outside `#[test]` functions are test code too (clippy's allow-unwrap-in-tests only sees `#[test]`).
#![allow(clippy::unwrap_used)]

mod alerts;
mod helpers;
mod ingest;
mod nats;
mod ownership;
mod replicas;
mod roles;
mod socket_auth;
mod sse;
mod streams;
mod subscribers;
mod watch;
mod websocket;
