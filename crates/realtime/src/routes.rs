//! The HTTP routes: ingest, SSE and per-stream configuration (the WebSocket is [`crate::ws`]; both are assembled
//! by [`crate::Realtime::router`]).

use std::convert::Infallible;
use std::time::Duration;
use vigil_http::axum;

use axum::extract::{Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use vigil_http::auth::{Analyst, Viewer};
use vigil_http::{ApiJson, ApiQuery, ApiResult, AppState, Error};
use vigil_stream::StreamConfig;

use crate::Realtime;
use crate::answer::Detail;
use crate::hub::Shared;
use crate::pipeline::{Lane, parse_event};
use crate::session::{
    Caller, ConnectionGauge, header_token, presented_token, recheck_interval, still_valid,
    stream_caller,
};
use crate::watch::Delivery;

/// An event as `/openapi.json` states it: any JSON object; these members have a meaning, any other is kept and
/// echoed in the analysis (documentation only: events are read by [`vigil_stream::Event::from_json`]).
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = StreamEvent)]
#[allow(dead_code)]
struct EventDoc {
    /// The signal (default 0); a number or a numeric string, |value| ≤ 1e100.
    #[schema(minimum = -1e100, maximum = 1e100)]
    value: Option<f64>,
    /// RFC 3339 (an offset-less ISO time is UTC), or Unix seconds as a number (|seconds| ≤ 1e11).
    timestamp: Option<EventTime>,
    /// The stream this event belongs to (default `default`); 1–128 bytes. Without `stream`, a `source` member
    /// names it instead (the same rule).
    #[schema(min_length = 1, max_length = 128)]
    stream: Option<String>,
    /// A client id making the event idempotent: an event whose id is among the last 1,000 ids its stream applied
    /// is answered `{"stream","status":"duplicate","event_id","seq"}` and not applied again. 1–128 bytes (or an
    /// integer from 0 to 2^53, the same id as its decimal text).
    event_id: Option<EventIdDoc>,
    /// A per-source sequence number (the source is the event's stream): an event numbered at or below the highest
    /// `seq` its stream applied is a duplicate (answered as for `event_id`), so an in-order producer can retry any
    /// batch after a failure.
    #[schema(minimum = 0, maximum = 9_007_199_254_740_992_u64)]
    seq: Option<u64>,
}

/// An event's client id: 1–128 bytes of text, or an integer from 0 to 2^53. Written by hand: the derive takes no
/// bounds on an untagged enum's variants.
#[derive(Deserialize)]
#[allow(dead_code)]
struct EventIdDoc(Value);

impl utoipa::PartialSchema for EventIdDoc {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::Type;
        use utoipa::openapi::{ObjectBuilder, OneOfBuilder};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(crate::dedup::MAX_ID_LEN)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0.0))
                    .maximum(Some(crate::dedup::MAX_SEQ as f64)),
            )
            .into()
    }
}

impl utoipa::ToSchema for EventIdDoc {}

/// An event's time: text or Unix seconds.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum EventTime {
    #[schema(format = DateTime)]
    Text(String),
    Seconds(EpochSeconds),
}

/// Unix seconds, |s| ≤ 1e11 (about ±3,000 years). Written by hand: the derive takes no bounds on a newtype.
#[derive(Deserialize)]
#[allow(dead_code)]
struct EpochSeconds(f64);

impl utoipa::PartialSchema for EpochSeconds {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .minimum(Some(-1e11))
            .maximum(Some(1e11))
            .description(Some("Unix seconds, |s| ≤ 1e11"))
            .into()
    }
}

impl utoipa::ToSchema for EpochSeconds {}

/// The body of `POST /api/ingest`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum IngestBody {
    One(EventDoc),
    /// At most `STREAM_MAX_BATCH` events (413 beyond).
    Many(Vec<EventDoc>),
}

/// `?detail=` of `POST /api/ingest`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IngestQuery {
    /// `full` (default: the whole analysis per event), `compact` (stream, `anomaly_score`, `is_anomaly`,
    /// `incident_id` per event, and the whole analysis only for anomalous events) or `scores` (compact without any
    /// whole analysis).
    // Inline: the enum is not a named component of the document, and a reference to one would dangle.
    #[param(inline)]
    pub detail: Option<Detail>,
}

/// Analyses one event (a JSON object) or a batch (an array of objects), in order; answers with one analysis per
/// event (an object for an object, an array for an array). Events of different streams run in parallel.
/// `?detail=compact|scores` answers each event with its score, flag and incident only (see [`crate::answer`]).
/// Events carrying an `event_id` or `seq` their stream already applied (a retried batch) are not applied again:
/// each is answered `{"stream":…,"status":"duplicate","event_id":…,"seq":…}` in every `detail` form.
#[utoipa::path(post, path = "/api/ingest", tag = "streams", security(("bearer" = [])),
    params(IngestQuery),
    request_body(content = IngestBody, description = "An event object, or an array of them"),
    responses(
        (status = 200, description = "The analysis of each event, in the `detail` form; an event already applied (by `event_id` or `seq`) is `{\"stream\",\"status\":\"duplicate\",\"event_id\",\"seq\"}`", body = Value),
        (status = 401, description = "Not authenticated"),
        (status = 403, description = "Not an analyst"),
        (status = 413, description = "More events than `STREAM_MAX_BATCH` (10,000) in one batch"),
        (status = 422, description = "An event is not usable (including a malformed `event_id` or `seq`), or `detail` is not full, compact or scores"),
    ))]
pub(crate) async fn ingest(
    State(app): State<AppState>,
    State(rt): State<Realtime>,
    Analyst(_user): Analyst,
    ApiQuery(query): ApiQuery<IngestQuery>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Response> {
    let detail = query.detail.unwrap_or_default();
    // Watchers of these streams on other replicas are learnt of, and reached, through the relay.
    rt.start(&app);
    let (events, single) = match &body {
        Value::Array(items) => {
            if items.len() > rt.inner.config.stream_max_batch {
                return Err(Error::PayloadTooLarge(format!(
                    "A batch holds at most {} events.",
                    rt.inner.config.stream_max_batch
                )));
            }
            let events = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_event(v, Some(i)))
                .collect::<Result<Vec<_>, _>>()?;
            (events, false)
        }
        other => (vec![parse_event(other, None)?], true),
    };
    let (outcomes, notices) = rt
        .inner
        .pipeline
        .process_incidents(&app, events, None, Lane::Bulk, detail)
        .await;
    // Announced even if another stream's batch failed: the stored streams' incidents are committed.
    crate::alerts::handle_incidents(&app, &rt, notices);
    let outcomes = outcomes?;
    // The analyses were serialised on the analysis pool; here they are only copied into the body.
    let body = if single {
        outcomes
            .first()
            .map_or_else(|| b"null".to_vec(), |o| o.json.get().as_bytes().to_vec())
    } else {
        let parts: Vec<&RawValue> = outcomes.iter().map(|o| &*o.json).collect();
        serde_json::to_vec(&parts).map_err(Error::internal)?
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `?token=` and `?stream=` of the SSE feed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SseQuery {
    /// An access token, for clients that cannot send an `Authorization` header.
    pub token: Option<String>,
    /// Also carry every analysis of this stream, as event `analysis` (signed-in callers only; 1–128 bytes).
    #[param(min_length = 1, max_length = 128)]
    pub stream: Option<String>,
}

/// Server-Sent Events: every anomaly of every stream as event `anomaly` with the analysis result as data. With
/// `?stream=S` (signed-in callers, any role), also every analysis of stream S as event `analysis`, data
/// `{"value","timestamp","analysis"}` (the event's value and client time in ms, and the whole result or the
/// buffering status; an analysis made on another replica arrives compact, `"compact":true`, without persistence,
/// landscape, security analysis and detector report, which `GET /api/streams/{stream}/analysis` serves), and event
/// `lagged`, data `{"missed":n}`, when the client fell more than the subscriber queue behind that stream's
/// analyses (it goes on with the oldest analysis still queued) or analyses relayed from another replica were lost. A client that falls more than the subscriber queue
/// behind the anomalies is disconnected (it can reconnect).
#[utoipa::path(get, path = "/api/realtime/stream", tag = "streams", params(SseQuery),
    responses(
        (status = 200, description = "text/event-stream of `anomaly` (and, with `stream`, `analysis` and `lagged`) events"),
        (status = 401, description = "A token is required (STREAM_REQUIRE_AUTH, or `stream` given) or the given one is invalid"),
        (status = 422, description = "`stream` is not 1 to 128 bytes"),
    ))]
pub(crate) async fn sse(
    State(app): State<AppState>,
    State(rt): State<Realtime>,
    ApiQuery(q): ApiQuery<SseQuery>,
    parts: Parts,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    if let Some(s) = &q.stream
        && (s.is_empty() || s.len() > vigil_stream::event::MAX_STREAM_NAME)
    {
        return Err(Error::unprocessable("stream name must be 1 to 128 bytes"));
    }
    let token = presented_token(header_token(&parts), q.token);
    let caller = Caller {
        user: stream_caller(&app, &rt, token.as_deref()).await?,
        token,
    };
    if let Err(detail) = caller.may_subscribe(&rt) {
        return Err(Error::Unauthorized(detail));
    }
    // A stream's every analysis is for signed-in users (a viewer sees), even where the anomaly broadcast is open
    // to anonymous clients.
    if q.stream.is_some() && caller.user.is_none() {
        return Err(Error::Unauthorized(
            "watching a stream's analyses requires a token".into(),
        ));
    }
    // The stream ends when the session does (logout, revocation, deactivation, expiry), as a socket closes.
    let session_ended = {
        let app = app.clone();
        let mut recheck = recheck_interval(&rt);
        async move {
            if caller.token.is_none() {
                return std::future::pending().await;
            }
            loop {
                recheck.tick().await;
                if still_valid(&app, &caller).await.is_err() {
                    metrics::counter!("topoforge_sessions_ended_total", "kind" => "sse")
                        .increment(1);
                    return;
                }
            }
        }
    };
    // Anomalies of other replicas reach this client through the relay.
    rt.start(&app);
    let feed = Feed {
        anomalies: rt.inner.hub.subscribe(),
        analyses: q
            .stream
            .as_deref()
            .map(|s| rt.inner.pipeline.watchers().watch(s)),
        _gauge: {
            metrics::gauge!("topoforge_stream_connections", "kind" => "sse").increment(1.0);
            ConnectionGauge("sse")
        },
    };
    let shutdown = app.shutdown.clone();
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    })
    .take_until(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = session_ended => {}
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What one SSE client receives: the anomaly broadcast and, if it watches a stream, that stream's analyses.
struct Feed {
    anomalies: broadcast::Receiver<Shared>,
    analyses: Option<broadcast::Receiver<Delivery>>,
    _gauge: ConnectionGauge,
}

impl Feed {
    /// The next event to send; `None` ends the response (a slow anomaly subscriber, or the server closing).
    async fn next(&mut self) -> Option<SseEvent> {
        tokio::select! {
            r = self.anomalies.recv() => match r {
                Ok(data) => Some(SseEvent::default().event("anomaly").data(data.as_ref())),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("topoforge_subscribers_dropped_total", "reason" => "lagged")
                        .increment(1);
                    tracing::warn!(missed = n, "dropping a slow SSE subscriber");
                    None
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            r = recv_watched(&mut self.analyses) => match r {
                Ok(Delivery::Analysis(data)) => Some(SseEvent::default().event("analysis").data(data.as_ref())),
                // Analyses relayed from another replica that never arrived.
                Ok(Delivery::Missed(n)) => {
                    metrics::counter!("topoforge_watch_lagged_total").increment(1);
                    Some(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}")))
                }
                // A watcher is a live chart: it is told what it missed and reads on from the oldest kept.
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("topoforge_watch_lagged_total").increment(1);
                    Some(SseEvent::default().event("lagged").data(format!("{{\"missed\":{n}}}")))
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.analyses = None;
                    Some(SseEvent::default().comment("feed closed"))
                }
            },
        }
    }
}

async fn recv_watched(
    rx: &mut Option<broadcast::Receiver<Delivery>>,
) -> Result<Delivery, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A stream's analysis configuration (defaults when none was set).
#[utoipa::path(get, path = "/api/streams/{stream}/config", tag = "streams", security(("bearer" = [])),
    params(("stream" = String, Path, description = "Stream name")),
    responses((status = 200, description = "The configuration", body = Value), (status = 401),
        (status = 422, description = "Not a usable stream name")))]
pub(crate) async fn get_config(
    State(app): State<AppState>,
    Viewer(_user): Viewer,
    Path(stream): Path<String>,
) -> ApiResult<ApiJson<StreamConfig>> {
    let cfg = match vigil_store::streams::config(&app.store, &stream).await? {
        Some(c) => serde_json::from_str(&c).unwrap_or_default(),
        None => StreamConfig::default(),
    };
    Ok(ApiJson(cfg))
}

/// Replaces a stream's analysis configuration. Fields left out take their defaults. Changing the window, the
/// embedding, the homology dimension or the Betti rule makes the stream recalibrate.
#[utoipa::path(put, path = "/api/streams/{stream}/config", tag = "streams", security(("bearer" = [])),
    params(("stream" = String, Path, description = "Stream name")),
    request_body(content = Object, description = "StreamConfig fields (see `GET`); members left out take their defaults, unknown members are refused. The ranges couple fields (window_size ≥ min_events ≥ (embedding_dim − 1) · embedding_delay + 3, and the homology cost bound: at most 100 points with H2, 289 with H1), and the 422 names the rule broken."),
    responses(
        (status = 200, description = "The stored configuration", body = Value),
        (status = 401),
        (status = 403, description = "Not an analyst"),
        (status = 422, description = "A value is out of range"),
    ))]
pub(crate) async fn put_config(
    State(app): State<AppState>,
    Analyst(_user): Analyst,
    Path(stream): Path<String>,
    ApiJson(cfg): ApiJson<StreamConfig>,
) -> ApiResult<ApiJson<StreamConfig>> {
    if stream.is_empty() || stream.len() > vigil_stream::event::MAX_STREAM_NAME {
        return Err(Error::unprocessable("stream name must be 1 to 128 bytes"));
    }
    cfg.validate()
        .map_err(|e| Error::unprocessable(e.to_string()))?;
    let json = serde_json::to_string(&cfg).map_err(Error::internal)?;
    vigil_store::streams::set_config(&app.store, &stream, Some(&json)).await?;
    Ok(ApiJson(cfg))
}
