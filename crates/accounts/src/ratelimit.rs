//! Rate limits counted in the database, so every replica sees the same counts.
//!
//! Algorithm: a fixed window per bucket. A request adds one to the row `(bucket, window_start)` with an upsert that
//! returns the new count; over the limit, the request is refused with 429 and `Retry-After` = seconds until the
//! window ends. A fixed window admits at most twice the limit across a window boundary; for the limits here (5
//! logins per 15 minutes, 100 requests per minute) that bound is acceptable and buys one statement per request
//! on either engine. Rows of ended windows are deleted by the periodic purge ([`purge_ended`]), off the request path.
//!
//! Why the database and not an in-process limiter: replicas behind a load balancer would each grant the full
//! allowance, multiplying the login-guessing budget by the number of replicas.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vigil_http::utoipa_axum::router::OpenApiRouter;
use vigil_http::{AppState, ClientIp, Error};
use vigil_store::StoreError;
use vigil_store::time::now_ms;

use crate::config::secs_to_ms;

/// `max` requests per `window_ms`; `max == 0` switches the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window_ms: i64,
}

impl Limit {
    pub fn new(max: u32, window_secs: u64) -> Limit {
        Limit {
            max,
            window_ms: secs_to_ms(window_secs).max(1),
        }
    }
}

/// Counts one request against `bucket` and refuses it (429, `detail`) when the window's count exceeds the limit.
pub async fn hit(state: &AppState, bucket: &str, limit: Limit, detail: &str) -> Result<(), Error> {
    if limit.max == 0 {
        return Ok(());
    }
    let now = now_ms();
    let window_start = now - now.rem_euclid(limit.window_ms);
    let window_end = window_start.saturating_add(limit.window_ms);
    let (hits,): (i64,) = vigil_store::sqlx::query_as(
        "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits",
    )
    .bind(bucket)
    .bind(window_start)
    .bind(window_end)
    .fetch_one(state.store.pool())
    .await
    .map_err(StoreError::from)?;
    if hits > i64::from(limit.max) {
        metrics::counter!("topoforge_rate_limited_total").increment(1);
        let wait_ms = u64::try_from(window_end - now).unwrap_or(0);
        return Err(Error::TooManyRequests {
            detail: detail.to_owned(),
            retry_after_secs: wait_ms.div_ceil(1000).max(1),
        });
    }
    Ok(())
}

/// Deletes the counters of windows that have ended (run by the periodic purge; a counter is only ever read
/// inside its own window, so deleting late is harmless).
pub async fn purge_ended(store: &vigil_store::Store, now: i64) -> Result<u64, StoreError> {
    let done = vigil_store::sqlx::query("DELETE FROM rate_limits WHERE expires_at <= $1")
        .bind(now)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected())
}

/// The general per-address limit of the TopoForge API (the spec's "everything else 100 per minute",
/// `API_RATE_LIMIT` per `API_RATE_WINDOW_SECS`): one bucket per client address, shared by every route it covers.
///
/// What it covers and what it does not, and why:
/// - every accounts, users and sources route (this crate's router), every anomaly-log and alert-config route, the
///   stream configuration, the SSE stream and the WebSocket handshake ([`limited`] is applied to those routers in
///   `vigil serve`);
/// - not `POST /api/ingest` ([`UNLIMITED_ROUTES`]): it is the pipeline's producer interface, a single collector
///   posts thousands of events a second from one address, and each request may carry a batch; it takes an
///   analyst token, so who may produce is decided by roles, not by a request count;
/// - not the MaxiDOM routes (`/api/score` must serve 1,500 requests a second from one host; the MaxiDOM contract
///   sets no general limit, and password checks there have their own lockout), nor `/health`, `/metrics` and the
///   API documents, which monitoring and load balancers poll: `vigil serve` never applies the layer to them.
#[derive(Clone)]
pub struct ApiLimit {
    state: AppState,
    limit: Limit,
}

impl ApiLimit {
    pub fn new(state: &AppState, config: &crate::AccountsConfig) -> ApiLimit {
        ApiLimit {
            state: state.clone(),
            limit: Limit::new(config.api_rate_limit, config.api_rate_window_secs),
        }
    }
}

/// Routes (as matched, e.g. `/api/ingest`) of a router given to [`limited`] that the general limit leaves alone.
pub const UNLIMITED_ROUTES: [&str; 1] = ["/api/ingest"];

/// `router` with the general limit on each of its routes except [`UNLIMITED_ROUTES`], and the 429 it can answer
/// stated in the API document for exactly those operations.
pub fn limited<S>(mut router: OpenApiRouter<S>, limit: &ApiLimit) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    if limit.limit.max > 0 {
        let detail = format!(
            "Too many requests from this address (API_RATE_LIMIT, {} per {} s); see Retry-After",
            limit.limit.max,
            limit.limit.window_ms / 1000
        );
        for (path, op) in vigil_http::app::operations_mut(router.get_openapi_mut()) {
            if !UNLIMITED_ROUTES.contains(&path) {
                vigil_http::app::document_response(op, 429, &detail);
            }
        }
    }
    router.route_layer(axum::middleware::from_fn_with_state(
        limit.clone(),
        api_limit,
    ))
}

async fn api_limit(State(l): State<ApiLimit>, req: Request, next: Next) -> Response {
    let exempt = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| UNLIMITED_ROUTES.contains(&p.as_str()));
    if exempt || l.limit.max == 0 {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let ip = match ClientIp::from_request_parts(&mut parts, &l.state).await {
        Ok(ClientIp(ip)) => ip,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = hit(&l.state, &format!("api:{ip}"), l.limit, "Too many requests").await {
        return e.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}
