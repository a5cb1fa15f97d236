//! Vigil's HTTP core: what every feature's routes stand on.
//!
//! * [`AppState`]: the database handle, token keys, configuration, and the background-task tracker that graceful
//!   shutdown waits for.
//! * [`Error`]: the one error enum; every failure renders as `{"detail": "…"}` with the right status.
//! * [`ApiJson`]: the JSON body extractor (schema failures are 422 naming the field; oversize bodies 413);
//!   [`RawBody`]: the one body reader, for routes that parse their body themselves; [`ApiQuery`]: the query-string
//!   extractor (a query that does not fit is a 422).
//! * [`auth`]: HS256 access tokens, [`Role`]s, and the extractors [`auth::Viewer`], [`auth::Analyst`],
//!   [`auth::Admin`] that every protected route takes as an argument.
//! * [`ticket`]: signed, short-lived, query-bound download links for browsers that cannot send a bearer header.
//! * [`password`]: Argon2id hashing, with bcrypt hashes from the Python originals still verifying.
//! * [`app::build`]: merges the feature routers with `/health`, `/metrics`, `/openapi.json`, `/docs`, `/redoc` and the
//!   middleware stack (CORS, gzip, body limit, panic → 500, tracing, per-route metrics).
//! * [`health`]: components a feature adds to `/health` (their state, and whether it is healthy).
//! * [`serve::serve`]: serving with graceful shutdown; [`testing`] (feature `testing`): the real app on a random port.
//!
//! Feature crates expose a handle built by `Feature::new(config, deps…)` whose `router(self, &AppState)` returns a
//! `utoipa_axum::router::OpenApiRouter<AppState>` (routes land in the OpenAPI document automatically). Process-local
//! parts (socket registries, caches) are the router's typed state, read with `State<…>` through
//! [`axum::extract::FromRef`], so a handler cannot ask for something its router was not given; everything that
//! must survive a restart lives in the database. ARCHITECTURE.md, "Feature crate contract".

pub mod app;
pub mod auth;
mod client_ip;
pub mod config;
mod error;
pub mod health;
mod json;
pub mod metrics;
pub mod password;
mod query;
mod redoc;
pub mod serve;
mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ticket;

pub use auth::{AuthUser, Role};
pub use client_ip::ClientIp;
pub use config::{Environment, HttpConfig};
pub use error::{ApiResult, Error};
pub use json::{ApiJson, JsonBytes, RawBody, parse as parse_json};
pub use query::ApiQuery;
pub use state::AppState;

/// Re-exported so feature crates build routers against the same versions.
pub use {axum, utoipa, utoipa_axum};
