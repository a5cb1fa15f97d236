//! `GET /api/streams`: what each stream looks like now — its window of values, its event count and where it is
//! in calibration — read from the stored state, for the console's overview and detail pages. Read-only; it
//! never touches the pipeline, so watching streams costs ingestion nothing but one read per poll.

use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use vigil_http::auth::Viewer;
use vigil_http::axum;
use vigil_http::{ApiJson, ApiResult, AppState, Error};
use vigil_stream::{StreamConfig, StreamState};

/// Most streams listed in one answer (each carries its window of values).
pub const MAX_LISTED: i64 = 500;

/// `?stream=` narrows the list to one stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this stream.
    pub stream: Option<String>,
}

/// One stream's current state.
#[derive(Debug, Serialize, PartialEq)]
pub struct StreamSummary {
    pub stream: String,
    /// Events the stream has analysed since it was created (or last restarted).
    pub events: u64,
    /// `buffering` (fewer than `min_events` events: no analysis yet), `calibrating` (analysed, but the detector's
    /// history is too short to score: scores are 0), `live` (scored), or `unreadable` (a state this build cannot
    /// decode; the stream starts over at its next event).
    pub status: &'static str,
    /// The window's values, oldest first.
    pub values: Vec<f64>,
    /// The window's event times (ms since epoch; `null` where the event had none).
    pub times: Vec<Option<i64>>,
    /// `scores.total` (0–100) of the stream's last analysed event; `null` before its first analysis.
    pub score: Option<f64>,
    /// The stream's threshold on `scores.total` (0–100).
    pub anomaly_threshold: f64,
    /// Last write of the state (ms since epoch).
    pub updated_at: i64,
}

/// Summarises one stored row (pure, for tests).
pub fn summarise(
    stream: String,
    state: &[u8],
    config: Option<&str>,
    updated_at: i64,
) -> StreamSummary {
    let cfg: StreamConfig = config
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    match StreamState::view(state, &cfg) {
        Ok(v) => {
            let status = if usize::try_from(v.events).unwrap_or(usize::MAX) < cfg.min_events {
                "buffering"
            } else if v.detector_ready {
                "live"
            } else {
                "calibrating"
            };
            StreamSummary {
                stream,
                events: v.events,
                status,
                values: v.values,
                times: v.times,
                score: v.last_total,
                anomaly_threshold: cfg.anomaly_threshold,
                updated_at,
            }
        }
        Err(e) => {
            tracing::debug!(%stream, error = %e, "stream state not readable for the overview");
            StreamSummary {
                stream,
                events: 0,
                status: "unreadable",
                values: Vec::new(),
                times: Vec::new(),
                score: None,
                anomaly_threshold: cfg.anomaly_threshold,
                updated_at,
            }
        }
    }
}

/// Every stream with stored state (at most 500, by name), or the one named by `?stream=`: its window, event count
/// and calibration status. Viewer.
#[utoipa::path(get, path = "/api/streams", tag = "streams", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "`[{stream, events, status, values, times, score, anomaly_threshold, updated_at}]`", body = serde_json::Value),
        (status = 401, description = "Not authenticated"),
    ))]
pub(crate) async fn list(
    State(app): State<AppState>,
    Viewer(_user): Viewer,
    Query(q): Query<ListQuery>,
) -> ApiResult<ApiJson<Vec<StreamSummary>>> {
    let rows = vigil_store::streams::overview(&app.store, q.stream.as_deref(), MAX_LISTED).await?;
    // Decoding a state is tens of microseconds (its rings are stored apart); off the async threads all the same.
    let out = tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(|r| {
                summarise(
                    r.stream,
                    r.state.as_bytes(),
                    r.config.as_deref(),
                    r.updated_at,
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(Error::internal)?;
    Ok(ApiJson(out))
}

/// The topology of a stream's current window, next to its summary.
#[derive(Debug, Serialize)]
pub struct CurrentAnalysis {
    #[serde(flatten)]
    pub summary: StreamSummary,
    /// The stored window's persistence diagrams (H0–H2, standardised units), Betti numbers and H1 landscape;
    /// `null` while the stream is buffering or its state is unreadable.
    pub window: Option<vigil_stream::CurrentWindow>,
}

/// The current window of one stream: its summary (as in `GET /api/streams`) and the persistence diagrams, Betti
/// numbers and landscape of the window as stored now, computed from the stored state (any replica answers; the
/// next analyses arrive on `GET /api/realtime/stream?stream=`). Viewer.
#[utoipa::path(get, path = "/api/streams/{stream}/analysis", tag = "streams", security(("bearer" = [])),
    params(("stream" = String, Path, description = "Stream name (1–128 bytes)")),
    responses(
        (status = 200, description = "`{stream, events, status, values, times, score, anomaly_threshold, updated_at, window}`; `window` = `{window_size, betti_numbers, persistence, topology_features}` or null", body = serde_json::Value),
        (status = 401, description = "Not authenticated"),
        (status = 404, description = "The stream has no events yet"),
        (status = 422, description = "Not a usable stream name"),
    ))]
pub(crate) async fn current(
    State(app): State<AppState>,
    Viewer(_user): Viewer,
    Path(stream): Path<String>,
) -> ApiResult<ApiJson<CurrentAnalysis>> {
    if stream.is_empty() || stream.len() > vigil_stream::event::MAX_STREAM_NAME {
        return Err(Error::unprocessable("stream name must be 1 to 128 bytes"));
    }
    // The core is all this view reads (the window is in it), so neither the model nor the rings' segments are
    // loaded.
    let stored = vigil_store::streams::overview(&app.store, Some(&stream), 1).await?;
    // A stream configured before its first event has a row with an empty state.
    let Some(vigil_store::streams::OverviewRow {
        stream: name,
        state,
        config: cfg,
        updated_at: at,
    }) = stored.into_iter().find(|r| !r.state.is_empty())
    else {
        return Err(Error::NotFound(format!(
            "Stream '{stream}' has no events yet."
        )));
    };
    // One homology computation (milliseconds at the largest windows): off the async threads.
    let out = tokio::task::spawn_blocking(move || {
        let config: StreamConfig = cfg
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let window = match StreamState::current_window(state.as_bytes(), &config) {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(stream = %name, error = %e, "no current window for the analysis view");
                None
            }
        };
        CurrentAnalysis {
            summary: summarise(name, state.as_bytes(), cfg.as_deref(), at),
            window,
        }
    })
    .await
    .map_err(Error::internal)?;
    Ok(ApiJson(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_stream::Event;

    fn core_after(n: usize, cfg: &StreamConfig) -> Vec<u8> {
        let mut s = StreamState::new("s");
        for i in 0..n {
            let e = Event::new("s", (i % 7) as f64, None);
            s.analyse(&e, cfg).expect("analysis");
        }
        s.to_parts().expect("parts").core
    }

    #[test]
    fn status_follows_the_state_and_config() {
        let cfg = StreamConfig::default();
        let fresh = summarise("s".into(), &core_after(3, &cfg), None, 1);
        assert_eq!(
            (fresh.status, fresh.events, fresh.values.len()),
            ("buffering", 3, 3)
        );
        assert_eq!(fresh.values, vec![0.0, 1.0, 2.0]);
        let analysed = summarise("s".into(), &core_after(20, &cfg), None, 1);
        assert_eq!(analysed.status, "calibrating");
        // Scores are 0 until the detector is ready, but an analysed stream has one.
        assert_eq!((fresh.score, analysed.score), (None, Some(0.0)));
        // A stored configuration's threshold and `min_events` apply.
        let stored = r#"{"min_events": 30, "anomaly_threshold": 55}"#;
        let own = summarise("s".into(), &core_after(20, &cfg), Some(stored), 1);
        assert_eq!((own.status, own.anomaly_threshold), ("buffering", 55.0));
    }

    #[test]
    fn unreadable_state_is_reported_not_an_error() {
        let s = summarise("s".into(), b"{\"version\": 999}", Some("not json"), 7);
        assert_eq!(s.status, "unreadable");
        assert!(s.values.is_empty());
        assert_eq!(
            s.anomaly_threshold,
            StreamConfig::default().anomaly_threshold
        );
        assert_eq!(s.updated_at, 7);
    }
}
