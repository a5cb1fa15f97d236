//! The anomaly log's handlers: list, create, stats, get, delete.

use vigil_http::auth::{Admin, Analyst, Viewer};
use vigil_http::axum::extract::rejection::QueryRejection;
use vigil_http::axum::extract::{Path, Query, State};
use vigil_http::axum::http::StatusCode;
use vigil_http::{ApiJson, ApiResult, AppState, Error};
use vigil_store::anomalies as db;
use vigil_store::time::now_ms;

use crate::dispatch::AlertDispatcher;
use crate::doc::{AnomalyDoc, AnomalyList, CreateAnomaly, FilterQuery, PageQuery, StatsDoc};

pub(crate) const NOT_FOUND: &str = "Anomaly not found";

/// A query string that does not even parse (e.g. a parameter given twice) is a 422 like any other bad parameter.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Error> {
    q.map(|Query(v)| v)
        .map_err(|e| Error::unprocessable(e.body_text()))
}

/// List anomalies, newest first, with filters and paging.
#[utoipa::path(get, path = "/api/anomalies", tag = "anomalies",
    params(FilterQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page and the total matching", body = AnomalyList),
        (status = 401, description = "Not signed in"),
        (status = 422, description = "A parameter is invalid"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    filter: Result<Query<FilterQuery>, QueryRejection>,
    paging: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<ApiJson<AnomalyList>> {
    let filter = query(filter)?.to_filter()?;
    let (page, limit) = query(paging)?.page_limit()?;
    let offset = (page - 1).saturating_mul(limit);
    let found = db::list(&state.store, &filter, offset, limit).await?;
    Ok(ApiJson(AnomalyList {
        data: found.rows.iter().map(AnomalyDoc::from).collect(),
        page,
        limit,
        total: found.total,
    }))
}

/// Record an anomaly by hand; alert configs fire as for the pipeline's.
#[utoipa::path(post, path = "/api/anomalies", tag = "anomalies",
    request_body = CreateAnomaly,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = AnomalyDoc),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
        (status = 422, description = "The body is invalid"),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    State(dispatcher): State<AlertDispatcher>,
    Analyst(user): Analyst,
    ApiJson(body): ApiJson<CreateAnomaly>,
) -> ApiResult<(StatusCode, ApiJson<AnomalyDoc>)> {
    let new = body.into_new(&user.id, now_ms())?;
    let stored = db::insert(&state.store, &new).await?;
    metrics::counter!("anomalies_created_total", "origin" => "api").increment(1);
    // Webhooks are queued; `websocket` channels reach the stream sockets through the realtime crate's sink.
    dispatcher.fire_and_deliver(&state, &stored).await;
    Ok((StatusCode::CREATED, ApiJson(AnomalyDoc::from(&stored))))
}

/// Totals, counts by source and risk level, and a timeline, over the same filters as the listing.
#[utoipa::path(get, path = "/api/anomalies/stats", tag = "anomalies",
    params(FilterQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Aggregates computed by the database", body = StatsDoc),
        (status = 401, description = "Not signed in"),
        (status = 422, description = "A parameter is invalid"),
    ))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    _viewer: Viewer,
    filter: Result<Query<FilterQuery>, QueryRejection>,
) -> ApiResult<ApiJson<StatsDoc>> {
    let filter = query(filter)?.to_filter()?;
    let stats = db::stats(&state.store, &filter).await?;
    Ok(ApiJson(StatsDoc::from(stats)))
}

/// One anomaly.
#[utoipa::path(get, path = "/api/anomalies/{id}", tag = "anomalies",
    params(("id" = String, Path, description = "Anomaly id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The anomaly", body = AnomalyDoc),
        (status = 401, description = "Not signed in"),
        (status = 404, description = "No such anomaly"),
    ))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    _viewer: Viewer,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<AnomalyDoc>> {
    let found = db::get(&state.store, &id)
        .await?
        .ok_or_else(|| Error::not_found(NOT_FOUND))?;
    Ok(ApiJson(AnomalyDoc::from(&found)))
}

/// Delete an anomaly.
#[utoipa::path(delete, path = "/api/anomalies/{id}", tag = "anomalies",
    params(("id" = String, Path, description = "Anomaly id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the admin role"),
        (status = 404, description = "No such anomaly"),
    ))]
pub(crate) async fn delete_one(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if db::delete(&state.store, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(NOT_FOUND))
    }
}
