//! Vigil's persistence layer: one repository API over two backends.
//!
//! * **SQLite** (the default): a single file under the data directory, WAL mode, created on first start.
//! * **PostgreSQL** (the scale-out store): any number of stateless replicas share one database.
//!
//! Both run through sqlx's `Any` driver, so every query in this crate is written once, in the SQL subset the
//! two engines share. The conventions that make that work — and that every module here follows — are:
//!
//! * placeholders are `$1, $2, …` (PostgreSQL syntax; sqlx's SQLite driver maps `$N` to bind index N);
//! * identifiers are `TEXT` (UUIDs generated in Rust), never auto-increment integers;
//! * times are `BIGINT` Unix milliseconds (UTC), so time arithmetic (buckets, expiry) is integer arithmetic;
//! * JSON documents are `TEXT`, blobs are `BLOB`/`BYTEA`;
//! * booleans are integer columns holding 0/1 (`BIGINT` / `INTEGER`), bound and read as `i64`: the `Any` driver
//!   cannot decode a SQLite `BOOLEAN` column, so a declared boolean would fail at the first read on SQLite;
//! * aggregates whose PostgreSQL type would be `NUMERIC` (e.g. `SUM(bigint)`) are cast to `BIGINT`/`DOUBLE PRECISION`,
//!   because the `Any` driver does not decode `NUMERIC`.
//!
//! **Every SQL statement of the service is in this crate**, one module per table or concern (the table → module
//! map is in ARCHITECTURE.md). The crate does not expose sqlx, its pool or its connections, so the compiler keeps it
//! that way: a feature crate that needs a new query adds a function here.
//!
//! Schema changes are SQL files under `migrations/sqlite/` and `migrations/postgres/`, with the same number and
//! name on both sides; they run at start ([`Store::connect`]). On PostgreSQL sqlx holds an advisory lock while
//! migrating, so replicas starting together are safe.
//!
//! SQLite gets a single pooled connection for everything that writes: SQLite admits one writer at a time anyway,
//! and a single connection rules out the `SQLITE_BUSY` failures that deferred transactions upgrading from read to
//! write hit under concurrency. Long reads (exports) therefore page through results instead of holding the
//! connection. A few hot reads outside transactions (the MaxiDOM scoring path's, a training's vectors) go to two
//! read-only connections instead (`Store::reader`), which WAL mode lets read beside the writer.

pub mod alert_configs;
pub mod alert_deliveries;
pub mod anomalies;
mod args;
mod checkpoint;
mod error;
pub mod incidents;
pub mod leases;
pub mod maxidom;
pub mod notify;
pub mod rate_limits;
pub mod reference;
pub mod sources;
mod store;
pub mod streams;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod tokens;
pub mod users;

pub use error::StoreError;
pub use store::{Backend, Store, StoreOptions};
pub use users::Role;
