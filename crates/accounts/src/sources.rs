//! `/api/sources`: the catalogue of event feeds (read: anyone, no token; write: analysts).
//!
//! The listing is public as the contract says (the dashboard's Data Sources page sends no token) and is served
//! outside the per-address API limit: the dashboard re-fetches it on every stream event, and a read of a small
//! catalogue that reveals nothing private is not what that limit protects (it guards the credential and account
//! routes). It stays cheap: one indexed read of a table of tens of rows.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vigil_http::auth::Analyst;
use vigil_http::axum;
use vigil_http::{ApiJson, ApiResult, AppState, Error};
use vigil_store::StoreError;
use vigil_store::sources::{self, Source};
use vigil_store::time::now_ms;

/// A feed as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub protocol: String,
    pub description: String,
    pub active: bool,
}

impl From<Source> for SourceView {
    fn from(s: Source) -> Self {
        SourceView {
            id: s.id,
            name: s.name,
            kind: s.kind,
            url: s.url,
            protocol: s.protocol,
            description: s.description,
            active: s.active,
        }
    }
}

/// A new feed. Without an `id`, one is generated; without a `protocol` (the dashboard never sends one), it is
/// derived from the URL's scheme by [`default_protocol`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewSource {
    /// Letters, digits, `-`, `_` and `.`; generated when absent.
    #[schema(pattern = r"^ *[A-Za-z0-9._-]{1,100} *$")]
    pub id: Option<String>,
    /// Printable text (no control characters), not blank.
    #[schema(
        max_length = 200,
        pattern = r"^ *[^\x00-\x20\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f\s])? *$"
    )]
    pub name: String,
    #[serde(rename = "type")]
    #[schema(
        max_length = 100,
        pattern = r"^ *[^\x00-\x20\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f\s])? *$"
    )]
    pub kind: String,
    /// An absolute URL (`scheme://…`).
    #[schema(
        max_length = 2048,
        pattern = r"^ *[A-Za-z0-9+.-]+://[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f\s] *$"
    )]
    pub url: String,
    /// Default from the URL: `ws`/`wss` → `websocket`, `http` → `http-poll`, `https` → `https-poll`, any other
    /// scheme → the scheme itself (lower case).
    #[schema(
        max_length = 50,
        pattern = r"^ *[^\x00-\x20\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f\s])? *$"
    )]
    pub protocol: Option<String>,
    #[serde(default)]
    pub description: String,
    pub active: Option<bool>,
}

/// Every feed in the catalogue, by name. Public: no token needed, and not counted against the per-address API
/// limit.
#[utoipa::path(get, path = "/api/sources", tag = "sources",
    responses((status = 200, body = [SourceView])))]
pub async fn list_sources(State(state): State<AppState>) -> ApiResult<Json<Vec<SourceView>>> {
    let all = sources::list(&state.store).await?;
    Ok(Json(all.into_iter().map(SourceView::from).collect()))
}

/// The protocol of a feed whose creator did not name one, from its URL's scheme (`scheme` as validated by
/// [`create_source`]): the catalogue's own vocabulary for the common cases (`websocket`, `https-poll`), the scheme
/// itself otherwise. Server-Sent Events cannot be told from a plain HTTP URL, so `sse` must be given explicitly.
pub fn default_protocol(scheme: &str) -> String {
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "ws" | "wss" => "websocket".into(),
        "http" | "https" => format!("{scheme}-poll"),
        _ => scheme,
    }
}

fn field(value: &str, name: &str, max: usize) -> Result<String, Error> {
    let v = value.trim();
    // The length limit counts what was sent, surrounding spaces included, as the API document states it.
    if v.is_empty() || value.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Error::unprocessable(format!(
            "{name} must be 1–{max} printable characters"
        )));
    }
    Ok(v.to_owned())
}

/// Adds a feed (analyst).
#[utoipa::path(post, path = "/api/sources", tag = "sources", request_body = NewSource, security(("bearer" = [])),
    responses((status = 201, body = SourceView), (status = 401), (status = 403), (status = 409, description = "Source already exists"),
        (status = 422)))]
pub async fn create_source(
    State(state): State<AppState>,
    Analyst(_caller): Analyst,
    ApiJson(body): ApiJson<NewSource>,
) -> ApiResult<(StatusCode, Json<SourceView>)> {
    let id = match body.id.as_deref() {
        Some(raw) => {
            let id = field(raw, "id", 100)?;
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(Error::unprocessable(
                    "id may contain only letters, digits, '-', '_' and '.'",
                ));
            }
            id
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let url = field(&body.url, "url", 2048)?;
    let Some(scheme) = url.split_once("://").and_then(|(scheme, rest)| {
        (!scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !rest.is_empty())
        .then_some(scheme)
    }) else {
        return Err(Error::unprocessable(
            "url must be an absolute URL such as https://host/path",
        ));
    };
    let protocol = match body.protocol.as_deref() {
        Some(p) => field(p, "protocol", 50)?,
        None => field(&default_protocol(scheme), "protocol", 50)?,
    };
    let source = Source {
        id,
        name: field(&body.name, "name", 200)?,
        kind: field(&body.kind, "type", 100)?,
        url,
        protocol,
        description: body.description.trim().chars().take(2000).collect(),
        active: body.active.unwrap_or(true),
        created_at: now_ms(),
    };
    match sources::insert(&state.store, &source).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(SourceView::from(source)))),
        Err(StoreError::Conflict(_)) => Err(Error::Conflict("Source already exists".into())),
        Err(e) => Err(e.into()),
    }
}

/// Removes a feed (analyst).
#[utoipa::path(delete, path = "/api/sources/{id}", tag = "sources",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,100}$", description = "A catalogue id or a generated UUID")),
    security(("bearer" = [])), responses((status = 204), (status = 401), (status = 403), (status = 404, description = "Source not found")))]
pub async fn delete_source(
    State(state): State<AppState>,
    Analyst(_caller): Analyst,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if sources::delete(&state.store, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found("Source not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::default_protocol;

    #[test]
    fn protocol_defaults_follow_the_scheme() {
        assert_eq!(default_protocol("wss"), "websocket");
        assert_eq!(default_protocol("WS"), "websocket");
        assert_eq!(default_protocol("https"), "https-poll");
        assert_eq!(default_protocol("http"), "http-poll");
        assert_eq!(default_protocol("mqtt"), "mqtt");
    }
}
