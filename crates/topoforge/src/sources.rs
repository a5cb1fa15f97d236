//! `/api/sources`: the catalogue of event feeds (read: any signed-in user; write: analysts).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vigil_http::auth::{Analyst, Viewer};
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

/// A new feed. Without an `id`, one is generated.
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
    #[schema(
        max_length = 50,
        pattern = r"^ *[^\x00-\x20\x7f-\x9f\s]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f\s])? *$"
    )]
    pub protocol: String,
    #[serde(default)]
    pub description: String,
    pub active: Option<bool>,
}

/// Every feed in the catalogue, by name.
#[utoipa::path(get, path = "/api/sources", tag = "sources", security(("bearer" = [])),
    responses((status = 200, body = [SourceView]), (status = 401)))]
pub async fn list_sources(
    State(state): State<AppState>,
    Viewer(_caller): Viewer,
) -> ApiResult<Json<Vec<SourceView>>> {
    let all = sources::list(&state.store).await?;
    Ok(Json(all.into_iter().map(SourceView::from).collect()))
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
    if !url.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !rest.is_empty()
    }) {
        return Err(Error::unprocessable(
            "url must be an absolute URL such as https://host/path",
        ));
    }
    let source = Source {
        id,
        name: field(&body.name, "name", 200)?,
        kind: field(&body.kind, "type", 100)?,
        url,
        protocol: field(&body.protocol, "protocol", 50)?,
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
