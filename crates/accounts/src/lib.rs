//! TopoForge accounts over HTTP: who may see and do what.
//!
//! Routes (see `spec/topoforge.md`): `/api/auth/{register, login, me, refresh, logout, verify-email,
//! forgot-password, reset-password, verify-reset-token/{token}}`, `/api/users`, `/api/users/{id}`,
//! `/api/sources`, `/api/sources/{id}`, and the verification page `/verify-email` ([`verify_page`]) that mailed
//! links open by default; [`bootstrap_admin`] at start; [`catalog::load_catalog`] for the CLI.
//!
//! Invariants:
//! - Every route but the anonymous auth flows (register, login, refresh, email verification, password reset) and
//!   the public catalogue listing (`GET /api/sources`) takes a role extractor (`viewer < analyst < admin`), and the role comes from the database, not the token.
//!   New accounts are `viewer` whatever the request says; only an admin changes roles.
//! - Passwords are hashed (Argon2id) before any transaction opens; a password is never stored, logged or returned.
//! - Refresh, verification and reset tokens are 32 random bytes of which only the SHA-256 is stored; each use is one
//!   conditional update, so a token works once even across replicas. Refresh rotates; replaying a rotated token
//!   revokes all of the account's sessions, while a token that a logout revoked is only refused. Reset tokens expire after 15 minutes (configurable) and a reset signs
//!   the account out everywhere.
//! - Rate limits are fixed windows counted in the database ([`ratelimit`]), so they hold across replicas: login per
//!   account+address, register and forgot-password per address, and a general limit per address
//!   ([`ratelimit::ApiLimit`]) on every route of this router but `GET /api/sources` and, applied by `vigil serve`,
//!   on the other TopoForge routers (anomalies, alerts, streams; ingest and MaxiDOM are exempt, see there).
//!   Refusals are 429 with `Retry-After`.
//! - Forgot-password answers identically whether or not the email exists, and mail is sent in the background.
//! - No admin can delete themself or demote/deactivate the last active admin, so the system never loses its
//!   last administrator through the API.

pub mod accounts;
pub mod auth;
pub mod catalog;
mod config;
pub mod mail;
pub mod policy;
pub mod ratelimit;
pub mod sources;
pub mod users;
pub mod verify_page;

use std::sync::Arc;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_http::AppState;

pub use accounts::{NewAccount, bootstrap_admin, create_account};
pub use config::AccountsConfig;

/// The accounts side of the process. Wiring, as for every feature crate: `Accounts::new(config)`, then
/// [`Accounts::router`].
#[derive(Debug, Clone)]
pub struct Accounts {
    config: AccountsConfig,
}

impl Accounts {
    pub fn new(config: AccountsConfig) -> Self {
        Accounts { config }
    }

    /// The accounts, users and sources routes, bound to `state`. Also starts this process's periodic purge of
    /// expired tokens and rate-limit windows, so it must be called inside the Tokio runtime that serves the
    /// application.
    pub fn router(self, state: &AppState) -> OpenApiRouter<AppState> {
        let config = self.config;
        let limit = ratelimit::ApiLimit::new(state, &config);
        accounts::spawn_purges(state, config.token_purge_interval_secs);
        let svc = Arc::new(accounts::Service::new(state, config));
        let routes = OpenApiRouter::new()
            .routes(routes!(auth::register))
            .routes(routes!(auth::login))
            .routes(routes!(auth::me))
            .routes(routes!(auth::refresh))
            .routes(routes!(auth::logout))
            .routes(routes!(auth::verify_email))
            .routes(routes!(verify_page::page, verify_page::confirm))
            .routes(routes!(auth::forgot_password))
            .routes(routes!(auth::reset_password))
            .routes(routes!(auth::verify_reset_token))
            .routes(routes!(users::list_users))
            .routes(routes!(
                users::get_user,
                users::update_user,
                users::delete_user
            ))
            .routes(routes!(sources::create_source))
            .routes(routes!(sources::delete_source));
        // `GET /api/sources` is public and outside the per-address limit (see `sources`): added after the limit's
        // route layer, which therefore does not reach it.
        ratelimit::limited(routes, &limit)
            .routes(routes!(sources::list_sources))
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
    svc: Arc<accounts::Service>,
}

impl FromRef<RouterState> for AppState {
    fn from_ref(s: &RouterState) -> Self {
        s.app.clone()
    }
}

impl FromRef<RouterState> for Arc<accounts::Service> {
    fn from_ref(s: &RouterState) -> Self {
        s.svc.clone()
    }
}
