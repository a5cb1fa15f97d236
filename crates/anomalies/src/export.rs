//! `GET /api/anomalies/export`: every matching row as CSV or JSON, streamed; `POST /api/anomalies/export/link`:
//! the same download as a short-lived signed link, for browsers.
//!
//! A browser download (`window.open(url)`, an `<a href>`) cannot carry a bearer header, so the export also accepts
//! a `ticket` ([`vigil_http::ticket`]) in place of one: the link endpoint, called with the bearer header and the
//! export's own parameters, answers with the export URL plus `ticket=…`. The ticket is bound to those parameters
//! (another filter or format is refused), expires after `EXPORT_LINK_TTL_SECS` (60 s by default, never after the
//! access token it was made with) and is checked against the session on use, so a logout, a deactivation or a
//! demotion below viewer refuses it. It can be opened more than once within its minute (a browser may retry a
//! download). Access tokens are not accepted in this URL: a token in a URL lands in browser history and proxy
//! logs, and this one would be worth the whole account for a day.
//!
//! The body is produced page by page: each page is one short keyset query (`ts` descending, then `id`), rendered to
//! one chunk and handed to the connection before the next query runs. Nothing holds a database connection or a
//! cursor between pages, and memory is one page regardless of how many rows match.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use vigil_http::auth::{Viewer, bearer_token};
use vigil_http::axum::body::Body;
use vigil_http::axum::extract::rejection::QueryRejection;
use vigil_http::axum::extract::{FromRef, FromRequestParts};
use vigil_http::axum::extract::{Query, State};
use vigil_http::axum::http::Uri;
use vigil_http::axum::http::request::Parts;
use vigil_http::axum::http::{HeaderValue, header};
use vigil_http::axum::response::{IntoResponse, Response};
use vigil_http::ticket;
use vigil_http::{ApiJson, Role};
use vigil_http::{ApiResult, AppState, Error};
use vigil_store::Store;
use vigil_store::anomalies::{self as db, Anomaly, Cursor, Filter};

use crate::Settings;
use crate::doc::{AnomalyDoc, FilterQuery, format_ts};
use crate::routes::query;

/// The CSV header, as the dashboard expects it.
pub(crate) const CSV_HEADER: &str =
    "Timestamp,Source,Is Anomaly,Score,Severity,Betti H0,Betti H1,Betti H2,Entropy";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// `format=csv|json` (default csv).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormatQuery {
    /// `csv` (default) or `json`, any case.
    #[param(pattern = r"^\s*(csv|json|CSV|JSON)?\s*$")]
    format: Option<String>,
}

/// What export tickets are for; part of what their signature covers.
const TICKET_PURPOSE: &str = "anomalies-export";

/// `ticket=…`: a signed download link's ticket, instead of a bearer header.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TicketQuery {
    /// From `POST /api/anomalies/export/link`; only when no `Authorization` header is sent.
    #[allow(dead_code)]
    // read from the raw query by `Downloader`; declared here for the OpenAPI document
    ticket: Option<String>,
}

/// The caller of a download: a viewer by bearer header as on every route, or, without one, by a ticket bound to
/// this request's other query parameters.
pub(crate) struct Downloader;

impl<S> FromRequestParts<S> for Downloader
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        if bearer_token(parts).is_some() {
            Viewer::from_request_parts(parts, state).await?;
            return Ok(Downloader);
        }
        let raw = parts.uri.query();
        let Some(t) = ticket::query_param(raw, "ticket") else {
            return Err(Error::Unauthorized("Not authenticated".into()));
        };
        let app = AppState::from_ref(state);
        let user = ticket::redeem(&app, &t, TICKET_PURPOSE, &ticket::canonical_query(raw)).await?;
        user.require(Role::Viewer)?;
        Ok(Downloader)
    }
}

fn parse_format(q: &FormatQuery) -> Result<Format, Error> {
    match q.format.as_deref().map(str::trim) {
        None | Some("") => Ok(Format::Csv),
        Some(f) if f.eq_ignore_ascii_case("csv") => Ok(Format::Csv),
        Some(f) if f.eq_ignore_ascii_case("json") => Ok(Format::Json),
        Some(_) => Err(Error::unprocessable("format: expected csv or json")),
    }
}

/// A signed download link.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ExportLink {
    /// Absolute, from `PUBLIC_URL`: open it with `window.open(url)`.
    url: String,
    /// The same, relative to the API's origin (for a client that knows the API's address better than the server).
    path: String,
    /// When the link stops working (ISO 8601).
    expires_at: String,
    /// Seconds from now until then.
    expires_in: i64,
}

/// A short-lived link to the export with these parameters, for a browser download (no bearer header needed to
/// open it); see the module notes.
#[utoipa::path(post, path = "/api/anomalies/export/link", tag = "anomalies",
    params(FormatQuery, FilterQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed link", body = ExportLink),
        (status = 401, description = "Not signed in"),
        (status = 422, description = "A parameter is invalid"),
    ))]
pub(crate) async fn export_link(
    State(state): State<AppState>,
    State(settings): State<Arc<Settings>>,
    Viewer(user): Viewer,
    uri: Uri,
    format: Result<Query<FormatQuery>, QueryRejection>,
    filter: Result<Query<FilterQuery>, QueryRejection>,
) -> ApiResult<ApiJson<ExportLink>> {
    // Refuse a bad parameter now, not when the browser opens the link.
    parse_format(&query(format)?)?;
    query(filter)?.to_filter()?;
    let bound = ticket::canonical_query(uri.query());
    let now = vigil_store::time::now_ms();
    let expires_at = now
        .saturating_add(settings.export_link_ttl_ms)
        .min(user.token_expires_at);
    let t = state
        .tokens
        .ticket_key()
        .issue(&user, TICKET_PURPOSE, &bound, expires_at);
    let path = if bound.is_empty() {
        format!("/api/anomalies/export?ticket={t}")
    } else {
        format!("/api/anomalies/export?{bound}&ticket={t}")
    };
    Ok(ApiJson(ExportLink {
        url: format!("{}{path}", state.config.public_url.trim_end_matches('/')),
        path,
        expires_at: format_ts(expires_at),
        expires_in: (expires_at - now).max(0).saturating_add(999) / 1000,
    }))
}

/// Export every anomaly matching the filters, streamed as CSV or a JSON array. Authorised by the bearer header,
/// or by `ticket` from `POST /api/anomalies/export/link` (for browser downloads).
#[utoipa::path(get, path = "/api/anomalies/export", tag = "anomalies",
    params(FormatQuery, FilterQuery, TicketQuery),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "CSV (`Timestamp,Source,Is Anomaly,Score,Severity,Betti H0,Betti H1,Betti H2,Entropy`) or a JSON array of anomaly documents, as an attachment",
            content((String = "text/csv"), (Vec<AnomalyDoc> = "application/json"))),
        (status = 401, description = "Not signed in, or the link's ticket is invalid, expired, made for other parameters or of an ended session"),
        (status = 403, description = "The link's account is no longer a viewer"),
        (status = 422, description = "A parameter is invalid"),
    ))]
pub(crate) async fn export(
    State(state): State<AppState>,
    State(settings): State<Arc<Settings>>,
    _caller: Downloader,
    format: Result<Query<FormatQuery>, QueryRejection>,
    filter: Result<Query<FilterQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let format = parse_format(&query(format)?)?;
    let filter = query(filter)?.to_filter()?;
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]_[hour][minute][second]"
        ))
        .map_err(Error::internal)?;
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Json => ("application/json", "json"),
    };
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=anomalies_{stamp}.{ext}"))
            .map_err(Error::internal)?;
    metrics::counter!("anomaly_exports_total", "format" => ext).increment(1);
    // Fused: the gzip layer polls its inner body once more after the end, and a bare `unfold` panics when polled
    // after it has finished (every browser export used to be cut to 0 bytes with a panic logged).
    let body = Body::from_stream(
        pages(
            state.store.clone(),
            filter,
            format,
            settings.export_page_rows,
        )
        .fuse(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

struct Pager {
    store: Store,
    filter: Filter,
    format: Format,
    page_rows: i64,
    cursor: Option<Cursor>,
    rows_sent: u64,
    finished: bool,
}

/// The body as a stream of chunks, one per database page, ending after the first short page.
fn pages(
    store: Store,
    filter: Filter,
    format: Format,
    page_rows: i64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let pager = Pager {
        store,
        filter,
        format,
        page_rows,
        cursor: None,
        rows_sent: 0,
        finished: false,
    };
    stream::unfold(pager, |mut p| async move {
        if p.finished {
            return None;
        }
        let rows = match db::export_page(&p.store, &p.filter, p.cursor.as_ref(), p.page_rows).await
        {
            Ok(rows) => rows,
            Err(e) => {
                // The status line is gone already; ending the body early is how the client learns of it.
                tracing::error!(error = %e, rows_sent = p.rows_sent, "export aborted by a database error");
                p.finished = true;
                return Some((Err(std::io::Error::other("export aborted")), p));
            }
        };
        let mut buf = String::with_capacity(rows.len() * 256 + 128);
        if p.cursor.is_none() && p.rows_sent == 0 {
            buf.push_str(match p.format {
                Format::Csv => CSV_HEADER,
                Format::Json => "[",
            });
            if p.format == Format::Csv {
                buf.push_str("\r\n");
            }
        }
        for row in &rows {
            match p.format {
                Format::Csv => push_csv_row(&mut buf, row),
                Format::Json => {
                    if p.rows_sent > 0 {
                        buf.push(',');
                    }
                    match serde_json::to_string(&AnomalyDoc::from(row)) {
                        Ok(s) => buf.push_str(&s),
                        Err(e) => {
                            tracing::error!(error = %e, "export aborted: a row did not serialise");
                            p.finished = true;
                            return Some((Err(std::io::Error::other("export aborted")), p));
                        }
                    }
                }
            }
            p.rows_sent += 1;
        }
        let short = i64::try_from(rows.len()).unwrap_or(i64::MAX) < p.page_rows;
        match rows.last() {
            Some(last) if !short => {
                p.cursor = Some(Cursor {
                    ts: last.ts,
                    id: last.id.clone(),
                });
            }
            _ => {
                p.finished = true;
                if p.format == Format::Json {
                    buf.push(']');
                }
            }
        }
        Some((Ok(Bytes::from(buf)), p))
    })
}

/// One CSV record (RFC 4180 quoting, CRLF line ends).
fn push_csv_row(buf: &mut String, a: &Anomaly) {
    push_csv_text(buf, &format_ts(a.ts));
    buf.push(',');
    push_csv_text(buf, &a.source_type);
    buf.push(',');
    buf.push_str(if a.is_anomaly { "true" } else { "false" });
    buf.push(',');
    buf.push_str(&a.anomaly_score.to_string());
    buf.push(',');
    push_csv_text(buf, &a.risk_level);
    for b in a.betti {
        buf.push(',');
        buf.push_str(&b.to_string());
    }
    buf.push(',');
    if let Some(e) = a.entropy {
        buf.push_str(&e.to_string());
    }
    buf.push_str("\r\n");
}

/// A text cell: quoted when it holds a separator, quote or line break; and prefixed with `'` when it starts with a
/// character spreadsheets read as a formula (`= + - @`, tab, CR), so an exported source name cannot run as one.
fn push_csv_text(buf: &mut String, s: &str) {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || s.contains([',', '"', '\r', '\n']);
    if quote {
        buf.push('"');
    }
    if formula {
        buf.push('\'');
    }
    if s.contains('"') {
        buf.push_str(&s.replace('"', "\"\""));
    } else {
        buf.push_str(s);
    }
    if quote {
        buf.push('"');
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(source: &str, entropy: Option<f64>) -> Anomaly {
        Anomaly {
            id: "a".into(),
            ts: 1_768_204_800_000,
            source_type: source.into(),
            event_data: json!({}),
            betti: [1, 2, 0],
            anomaly_score: 0.75,
            is_anomaly: true,
            risk_level: "High".into(),
            entropy,
            metadata: json!({}),
            created_by: None,
            created_at: 0,
            event_count: None,
            ended_at: None,
            incident_open: false,
        }
    }

    #[test]
    fn csv_rows_quote_and_defuse() {
        let mut buf = String::new();
        push_csv_row(&mut buf, &row("netflow", Some(1.5)));
        assert_eq!(
            buf,
            "2026-01-12T08:00:00Z,netflow,true,0.75,High,1,2,0,1.5\r\n"
        );
        let mut buf = String::new();
        push_csv_row(&mut buf, &row("a,\"b\"", None));
        assert_eq!(
            buf,
            "2026-01-12T08:00:00Z,\"a,\"\"b\"\"\",true,0.75,High,1,2,0,\r\n"
        );
        let mut buf = String::new();
        push_csv_text(&mut buf, "=HYPERLINK(\"x\")");
        assert_eq!(buf, "\"'=HYPERLINK(\"\"x\"\")\"");
    }
}
