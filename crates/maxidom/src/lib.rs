//! MaxiDOM over HTTP: a drop-in replacement for the browser extension's Python backend.
//!
//! Routes (under `/api` but for the updater's files, see `spec/maxidom.md`): `POST /enroll/{id}`, `POST /verify_password/{id}`,
//! `PUT /profile/{id}/password`, `DELETE /reset_profile/{id}`, `POST /train/{id}`, `POST /score/{id}`,
//! `GET /profile/{id}/status` and `GET /static/{update.xml|extension.crx}` (also under `/api/static/`).
//!
//! Invariants:
//! - Profile ids are canonical lower-case UUIDs (anything else is a 422 before storage is touched).
//! - Every fact that must survive a restart or be shared between replicas is in the database: counters,
//!   vectors, pool, models, the training slot, password-guessing state. The process keeps only a cache of
//!   decoded models, validated against the database's active model version on every score (by the pool write
//!   itself for pooled sessions, which are group-committed by one writer task: `pool`).
//! - A profile is ready per modality (30 vectors, one modality at its quota) and is retrained as it grows;
//!   only typical accepted sessions feed the retraining pool, and `--maxidom-feedback false` turns that off.
//!   Scores are calibrated p-values, comparable across profiles (ARCHITECTURE.md, "MaxiDOM detection").
//! - Training runs off the request path, at most once at a time per profile across all processes (a
//!   compare-and-set claim row), and publishes atomically; a reset during training discards its result. A live
//!   trainer refreshes its claim every quarter TTL; a claim left by a dead process expires after one TTL and
//!   every process's recovery sweeper (and a `/score` answering 404) claims the training again, so a crash costs
//!   one TTL (30 s by default), not the model until the next `/train`.
//! - `/train` costs the same whatever the number of stored vectors (counters, not counts).
//! - Passwords are Argon2id; reference bcrypt hashes verify and are upgraded on the first success; at most
//!   `lockout_failures` password checks per window are admitted, counted before the hash is checked.

pub mod admin;
pub mod config;
mod doc;
pub mod import;
pub mod pool;
pub mod routes;
pub mod service;

// `routes!` expands to `axum::…` paths; this crate's axum is vigil-http's re-export.
use std::sync::Arc;
use vigil_http::axum;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_http::AppState;
use vigil_http::axum::extract::FromRef;

pub use config::MaxidomConfig;
pub use service::Maxidom;

impl Maxidom {
    /// The MaxiDOM routes, bound to `state` and to this service. Wiring, as for every feature crate:
    /// `Maxidom::new(config)`, then this.
    ///
    /// Also starts this process's recovery sweeper ([`Maxidom::spawn_recovery`]), so it must be called inside the
    /// Tokio runtime that serves the application.
    pub fn router(self, state: &AppState) -> OpenApiRouter<AppState> {
        let svc = Arc::new(self);
        svc.spawn_recovery(state);
        OpenApiRouter::new()
            .routes(routes!(routes::enroll))
            .routes(routes!(routes::verify_password))
            .routes(routes!(routes::change_password))
            .routes(routes!(routes::reset_profile))
            .routes(routes!(routes::train))
            .routes(routes!(routes::score))
            .routes(routes!(routes::status))
            .routes(routes!(admin::profiles))
            .routes(routes!(routes::static_file))
            .routes(routes!(routes::static_file_root))
            .with_state(RouterState {
                app: state.clone(),
                svc,
            })
    }
}

/// What the handlers extract with `State<…>`: a handler asking for anything else does not compile.
#[derive(Clone)]
struct RouterState {
    app: AppState,
    svc: Arc<Maxidom>,
}

impl FromRef<RouterState> for AppState {
    fn from_ref(s: &RouterState) -> Self {
        s.app.clone()
    }
}

impl FromRef<RouterState> for Arc<Maxidom> {
    fn from_ref(s: &RouterState) -> Self {
        s.svc.clone()
    }
}
