//! `/api/alerts`: alert configurations. An analyst manages their own; an admin sees and edits everyone's.
//! Someone else's config answers 404, the same as a missing one, so ids do not leak who has configs.

use serde::{Deserialize, Serialize};
use vigil_http::auth::{Analyst, AuthUser};
use vigil_http::axum::extract::{Path, State};
use vigil_http::axum::http::StatusCode;
use vigil_http::{ApiJson, ApiQuery, ApiResult, AppState, Error, Role};
use vigil_store::alert_configs::{self, AlertConfig, AlertConfigPatch, NewAlertConfig};

use crate::dispatch::AlertDispatcher;
use crate::egress;

const NOT_FOUND: &str = "Alert config not found";
const MAX_CHANNELS: usize = 16;
const MAX_URL_LEN: usize = 2048;

/// An alert configuration as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertConfigDoc {
    pub id: String,
    pub user_id: String,
    /// Fires for anomalies whose score is at least this (0–1).
    pub threshold: f64,
    /// `webhook:<http(s) url>` or `websocket`.
    pub notification_channels: Vec<String>,
    pub is_active: bool,
}

impl From<AlertConfig> for AlertConfigDoc {
    fn from(c: AlertConfig) -> Self {
        AlertConfigDoc {
            id: c.id,
            user_id: c.user_id,
            threshold: c.threshold,
            notification_channels: c.notification_channels,
            is_active: c.is_active,
        }
    }
}

/// One notification channel as the document states it: `websocket`, or `webhook:` and an http(s) URL whose host
/// is a name (the server also takes public IP literals; private ones and `localhost` are refused with 422).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
#[schema(
    pattern = r"^\s*(websocket|webhook:https?://[a-z]{1,20}(\.[a-z]{1,20}){0,3}\.(com|org|net|example)(/[^\s\x00-\x1f\x7f-\x9f]*)?)\s*$"
)]
pub struct ChannelDoc(String);

/// `POST /api/alerts`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlertConfig {
    /// Fires for anomalies whose score is at least this.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub threshold: f64,
    #[schema(value_type = Vec<ChannelDoc>, min_items = 1, max_items = 16)]
    pub notification_channels: Vec<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
}

fn yes() -> bool {
    true
}

/// `PUT /api/alerts/{id}`: only the fields present change.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAlertConfig {
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub threshold: Option<f64>,
    #[schema(value_type = Option<Vec<ChannelDoc>>, min_items = 1, max_items = 16)]
    pub notification_channels: Option<Vec<String>>,
    pub is_active: Option<bool>,
}

/// A notification channel, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// POST the anomaly JSON to this http(s) URL.
    Webhook(reqwest::Url),
    /// Deliver to the owner's open stream sockets.
    Websocket,
}

impl Channel {
    /// Parses `webhook:<http(s) url>` or `websocket`; the error says what is wrong.
    pub fn parse(raw: &str) -> Result<Channel, String> {
        let raw = raw.trim();
        if raw == "websocket" {
            return Ok(Channel::Websocket);
        }
        let Some(url) = raw.strip_prefix("webhook:") else {
            return Err(format!(
                "{raw:?}: expected \"websocket\" or \"webhook:<http(s) URL>\""
            ));
        };
        // The URL parser drops tabs and newlines inside a URL (as browsers do); a stored channel must be exactly
        // the address that is called, so any space or control character inside is refused instead.
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{url:?}: a webhook URL contains no spaces or control characters"
            ));
        }
        if url.len() > MAX_URL_LEN {
            return Err(format!("webhook URL longer than {MAX_URL_LEN} characters"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?}: not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none_or(str::is_empty)
        {
            return Err(format!(
                "{url:?}: webhooks must be http(s) URLs with a host"
            ));
        }
        Ok(Channel::Webhook(parsed))
    }
}

fn check_threshold(t: f64) -> Result<f64, Error> {
    if t.is_finite() && (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(Error::unprocessable("threshold: must be between 0 and 1"))
    }
}

/// Validates and normalises a channel list (trimmed, duplicates removed, order kept). Unless `allow_private`,
/// webhooks to non-public IP literals and `localhost` are refused here, where the analyst sees why; names are
/// checked again when delivering (see [`crate::egress`]).
fn check_channels(list: Vec<String>, allow_private: bool) -> Result<Vec<String>, Error> {
    if list.is_empty() || list.len() > MAX_CHANNELS {
        return Err(Error::unprocessable(format!(
            "notification_channels: give 1 to {MAX_CHANNELS} channels"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let channel = Channel::parse(raw)
            .map_err(|e| Error::unprocessable(format!("notification_channels[{i}]: {e}")))?;
        if let Channel::Webhook(url) = &channel
            && !allow_private
        {
            egress::check_url(url)
                .map_err(|e| Error::unprocessable(format!("notification_channels[{i}]: {e}")))?;
        }
        let norm = raw.trim().to_owned();
        if !out.contains(&norm) {
            out.push(norm);
        }
    }
    Ok(out)
}

/// The config if the caller may see it: its owner, or an admin.
async fn visible(state: &AppState, user: &AuthUser, id: &str) -> Result<AlertConfig, Error> {
    match alert_configs::get(&state.store, id).await? {
        Some(c) if c.user_id == user.id || user.role == Role::Admin => Ok(c),
        _ => Err(Error::not_found(NOT_FOUND)),
    }
}

/// The caller's alert configs (an admin: everyone's).
#[utoipa::path(get, path = "/api/alerts", tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Alert configs", body = [AlertConfigDoc]),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Analyst(user): Analyst,
) -> ApiResult<ApiJson<Vec<AlertConfigDoc>>> {
    let owner = (user.role != Role::Admin).then_some(user.id.as_str());
    let configs = alert_configs::list(&state.store, owner).await?;
    Ok(ApiJson(
        configs.into_iter().map(AlertConfigDoc::from).collect(),
    ))
}

/// One finished webhook delivery, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryDoc {
    pub id: String,
    pub config_id: String,
    pub user_id: String,
    pub anomaly_id: String,
    /// `webhook`.
    pub channel: String,
    /// The webhook URL without its query or credentials.
    pub target: String,
    /// `delivered`, `failed` (every attempt failed), `refused` (not a public address), `abandoned` (server
    /// shutting down).
    pub outcome: String,
    pub attempts: i64,
    /// HTTP status of the last answer, if any.
    pub last_status: Option<i64>,
    /// Why the last attempt failed, in a few words.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub finished_at: i64,
}

/// `?limit=` of the delivery history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Newest deliveries to return, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// Recent webhook deliveries of the caller's alert configs (an admin: everyone's), newest first, with their
/// outcome. Kept 30 days.
#[utoipa::path(get, path = "/api/alerts/deliveries", tag = "alerts",
    security(("bearer" = [])),
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries, newest first", body = [DeliveryDoc]),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
        (status = 422, description = "`limit` out of range"),
    ))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Analyst(user): Analyst,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<ApiJson<Vec<DeliveryDoc>>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::unprocessable("limit must be 1 to 500"));
    }
    let owner = (user.role != Role::Admin).then_some(user.id.as_str());
    let rows = vigil_store::alert_deliveries::recent(&state.store, owner, limit).await?;
    Ok(ApiJson(
        rows.into_iter()
            .map(|d| DeliveryDoc {
                id: d.id,
                config_id: d.config_id,
                user_id: d.user_id,
                anomaly_id: d.anomaly_id,
                channel: d.channel,
                target: d.target,
                outcome: d.outcome,
                attempts: d.attempts,
                last_status: d.last_status,
                error: d.error,
                created_at: d.created_at,
                finished_at: d.finished_at,
            })
            .collect(),
    ))
}

/// Create an alert config owned by the caller.
#[utoipa::path(post, path = "/api/alerts", tag = "alerts",
    request_body = CreateAlertConfig,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = AlertConfigDoc),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
        (status = 422, description = "Invalid threshold or channel"),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Analyst(user): Analyst,
    State(dispatcher): State<AlertDispatcher>,
    ApiJson(body): ApiJson<CreateAlertConfig>,
) -> ApiResult<(StatusCode, ApiJson<AlertConfigDoc>)> {
    let new = NewAlertConfig {
        user_id: user.id,
        threshold: check_threshold(body.threshold)?,
        notification_channels: check_channels(
            body.notification_channels,
            dispatcher.policy().allow_private,
        )?,
        is_active: body.is_active,
    };
    let created = alert_configs::create(&state.store, &new).await?;
    Ok((StatusCode::CREATED, ApiJson(created.into())))
}

/// One alert config.
#[utoipa::path(get, path = "/api/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Alert config id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The config", body = AlertConfigDoc),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
        (status = 404, description = "No such config (or not yours)"),
    ))]
pub(crate) async fn get_one(
    State(state): State<AppState>,
    Analyst(user): Analyst,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<AlertConfigDoc>> {
    Ok(ApiJson(visible(&state, &user, &id).await?.into()))
}

/// Change an alert config; fields left out keep their values.
#[utoipa::path(put, path = "/api/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Alert config id")),
    request_body = UpdateAlertConfig,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = AlertConfigDoc),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
        (status = 404, description = "No such config (or not yours)"),
        (status = 422, description = "Invalid threshold or channel"),
    ))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Analyst(user): Analyst,
    Path(id): Path<String>,
    State(dispatcher): State<AlertDispatcher>,
    ApiJson(body): ApiJson<UpdateAlertConfig>,
) -> ApiResult<ApiJson<AlertConfigDoc>> {
    let patch = AlertConfigPatch {
        threshold: body.threshold.map(check_threshold).transpose()?,
        notification_channels: body
            .notification_channels
            .map(|c| check_channels(c, dispatcher.policy().allow_private))
            .transpose()?,
        is_active: body.is_active,
    };
    visible(&state, &user, &id).await?;
    let updated = alert_configs::update(&state.store, &id, &patch)
        .await?
        .ok_or_else(|| Error::not_found(NOT_FOUND))?;
    Ok(ApiJson(updated.into()))
}

/// Delete an alert config.
#[utoipa::path(delete, path = "/api/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Alert config id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not signed in"),
        (status = 403, description = "Needs the analyst role"),
        (status = 404, description = "No such config (or not yours)"),
    ))]
pub(crate) async fn delete_one(
    State(state): State<AppState>,
    Analyst(user): Analyst,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    visible(&state, &user, &id).await?;
    if alert_configs::delete(&state.store, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(NOT_FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_strictly() {
        assert_eq!(Channel::parse("websocket"), Ok(Channel::Websocket));
        assert!(matches!(
            Channel::parse("webhook:https://hooks.example.com/x?y=1"),
            Ok(Channel::Webhook(_))
        ));
        for bad in [
            "email:a@b.c",
            // The URL parser would drop the tab and newline and call another address than the one stored.
            "webhook:http://ji.org/a\t\u{b}\r\n*",
            "webhook:http://ji.org/a b",
            "webhook:",
            "webhook:ftp://h/x",
            "webhook:file:///etc/passwd",
            "webhook:http://",
            "WebSocket",
        ] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_lists_are_checked_and_deduplicated() {
        assert_eq!(
            check_channels(
                vec![
                    "websocket".into(),
                    " websocket ".into(),
                    "webhook:http://h/x".into()
                ],
                false
            )
            .expect("valid"),
            vec!["websocket", "webhook:http://h/x"]
        );
        assert!(check_channels(vec![], false).is_err());
        let err = check_channels(vec!["websocket".into(), "sms".into()], false).expect_err("bad");
        assert!(
            err.to_string().starts_with("notification_channels[1]"),
            "{err}"
        );
        let internal = vec!["webhook:http://169.254.169.254/latest/meta-data".to_owned()];
        let err = check_channels(internal.clone(), false).expect_err("metadata service");
        assert!(err.to_string().contains("not a public address"), "{err}");
        assert!(
            check_channels(internal, true).is_ok(),
            "allowed when the operator says so"
        );
        assert!(
            check_threshold(1.01).is_err()
                && check_threshold(f64::NAN).is_err()
                && check_threshold(0.0).is_ok()
        );
    }
}
