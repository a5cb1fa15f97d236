//! Who is on a stream connection (WebSocket or SSE) and what they may do, re-checked while the connection lasts.
//!
//! A connection's token is checked at the upgrade like any request's, then again every
//! `STREAM_SESSION_RECHECK_MS`: the same query that every request runs decides, so a logout, a revocation, a
//! deactivation or a role change reaches open connections on every replica without any message between them.

use std::time::Duration;

use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use vigil_http::auth::bearer_token;
use vigil_http::{AppState, AuthUser, Error, Role};

use crate::Realtime;

/// The caller of a stream endpoint: `None` when anonymous access is allowed and no token was given; an invalid
/// token is always refused.
pub(crate) async fn stream_caller(
    app: &AppState,
    rt: &Realtime,
    token: Option<&str>,
) -> Result<Option<AuthUser>, Error> {
    match token {
        Some(t) => Ok(Some(AuthUser::from_token(app, t).await?)),
        None if rt.inner.config.stream_require_auth => {
            Err(Error::Unauthorized("Not authenticated".into()))
        }
        None => Ok(None),
    }
}

/// The token a stream client presented: `?token=` (browsers cannot set headers on sockets and `EventSource`),
/// else the bearer header.
pub(crate) fn presented_token(header: Option<String>, query: Option<String>) -> Option<String> {
    query.filter(|t| !t.is_empty()).or(header)
}

pub(crate) fn header_token(parts: &Parts) -> Option<String> {
    bearer_token(parts).map(str::to_owned)
}

/// Who is on the socket, as of the last check of its token.
pub(crate) struct Caller {
    pub user: Option<AuthUser>,
    pub token: Option<String>,
}

impl Caller {
    /// Whether this caller may feed events into `stream`: analysts and above, as on `POST /api/ingest`; without a
    /// token, only the streams the operator opened to anonymous sockets.
    pub(crate) fn may_feed(&self, rt: &Realtime, stream: &str) -> Result<(), String> {
        match &self.user {
            Some(u) if u.role >= Role::Analyst => Ok(()),
            Some(_) => Err("sending events requires the analyst role".into()),
            None if rt.inner.config.anonymous_may_feed(stream) => Ok(()),
            None => Err(format!(
                "sending events to stream '{stream}' requires a token (the operator has not opened it to \
                 anonymous sockets: STREAM_ANONYMOUS_STREAMS)"
            )),
        }
    }

    pub(crate) fn may_subscribe(&self, rt: &Realtime) -> Result<(), String> {
        if self.user.is_some() || rt.inner.config.stream_anonymous_subscribe {
            Ok(())
        } else {
            Err("subscribing to the anomaly broadcast requires a token (or STREAM_ANONYMOUS_SUBSCRIBE)".into())
        }
    }
}

/// The timer of a signed-in connection's token re-checks; its first tick is one period after the connection
/// opened (the token was checked at the upgrade).
pub(crate) fn recheck_interval(rt: &Realtime) -> tokio::time::Interval {
    let period = Duration::from_millis(rt.inner.config.stream_session_recheck_ms.max(10));
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// Re-checks `caller`'s token as a request would: `Ok(Some(user))` with the account's current role, `Ok(None)`
/// for an anonymous caller or when the database could not answer (the connection stays; the next check decides),
/// `Err(reason)` when the session has ended (logout, revocation, deactivation, expiry).
pub(crate) async fn still_valid(
    app: &AppState,
    caller: &Caller,
) -> Result<Option<AuthUser>, String> {
    let Some(token) = &caller.token else {
        return Ok(None);
    };
    match AuthUser::from_token(app, token).await {
        Ok(user) => Ok(Some(user)),
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => Err(format!("session ended: {e}")),
        Err(e) => {
            tracing::warn!(error = %e, "could not re-check a stream connection's token");
            Ok(None)
        }
    }
}

/// `?token=` on the stream endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenQuery {
    /// An access token, for clients that cannot send an `Authorization` header.
    pub token: Option<String>,
}

/// Decrements the connection gauge when the connection's resources are released.
pub(crate) struct ConnectionGauge(pub &'static str);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("topoforge_stream_connections", "kind" => self.0).decrement(1.0);
    }
}
