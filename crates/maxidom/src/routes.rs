//! The HTTP routes, byte-compatible with the reference where the extension reads the response.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use vigil_biometrics::lifecycle::{Progress, TrainResponse};
use vigil_biometrics::model::Score;
use vigil_biometrics::{Payload, StoredVector};
use vigil_http::axum::Json;
use vigil_http::axum::body::Body;
use vigil_http::axum::extract::{FromRequest, Path, Request, State};
use vigil_http::axum::http::{StatusCode, header};
use vigil_http::axum::response::{IntoResponse, Response};
use vigil_http::password::{self, Verification};
use vigil_http::{ApiResult, AppState, Error, JsonBytes};
use vigil_store::maxidom::{self as db, Attempt};
use vigil_store::time::now_ms;

use crate::pool::PoolError;
use crate::service::{LoadError, Maxidom, counts_of, kinds_of};

pub(crate) const NOT_ENROLLED: &str = "User profile not found or not enrolled.";
const MODEL_NOT_FOUND: &str = "Model not found.";
const PASSWORD_MISSING: &str = "Password not provided.";
const BOTH_PASSWORDS: &str = "Both 'old_password' and 'new_password' are required.";
const WRONG_PASSWORD: &str = "Incorrect current password.";
const ALREADY_ENROLLED: &str = "Profile already enrolled.";
const TOO_MANY: &str = "Too many failed password attempts. Try again later.";

type Svc = State<Arc<Maxidom>>;

/// Accepts only canonical (lower-case, hyphenated) UUIDs: the id is a bearer capability and a file-system
/// name in the reference, so anything else is refused before it reaches storage.
pub fn canonical_profile_id(raw: &str) -> Result<String, Error> {
    match uuid::Uuid::try_parse(raw) {
        Ok(u) if u.hyphenated().to_string() == raw => Ok(raw.to_owned()),
        _ => Err(Error::unprocessable(
            "Invalid profile_id: expected a UUID such as 3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f.",
        )),
    }
}

/// A session payload body: parsed without path tracking on the hot path, and a 422 naming the field otherwise.
pub struct PayloadBody(pub Payload);

impl<S: Send + Sync> FromRequest<S> for PayloadBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        Payload::from_json(&bytes)
            .map(PayloadBody)
            .map_err(|e| Error::unprocessable(e.to_string()))
    }
}

/// A non-empty string member of a JSON object body; other members and other shapes are ignored.
fn string_field(body: &[u8], name: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .get(name)?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn retry_after_secs(until: i64, now: i64) -> u64 {
    u64::try_from((until - now).max(0))
        .unwrap_or(0)
        .div_ceil(1000)
        .max(1)
}

/// Charges a password attempt and checks it; upgrades the stored hash and clears failures on success.
async fn check_password(
    svc: &Maxidom,
    state: &AppState,
    profile_id: &str,
    password: String,
) -> ApiResult<bool> {
    let now = now_ms();
    let window_ms =
        i64::try_from(svc.config.lockout_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let attempt = db::charge_password_attempt(
        &state.store,
        profile_id,
        now,
        window_ms,
        i64::from(svc.config.lockout_failures),
    )
    .await?;
    let stored = match attempt {
        Attempt::NotEnrolled => return Err(Error::not_found(NOT_ENROLLED)),
        Attempt::Locked { until } => {
            metrics::counter!("maxidom_password_lockouts_total").increment(1);
            return Err(Error::TooManyRequests {
                detail: TOO_MANY.into(),
                retry_after_secs: retry_after_secs(until, now),
            });
        }
        Attempt::Proceed { password_hash } => password_hash,
    };
    match password::verify_async(password.clone(), stored).await? {
        Verification::Invalid => {
            metrics::counter!("maxidom_password_failures_total").increment(1);
            Ok(false)
        }
        Verification::Valid { rehash } => {
            let upgraded = if rehash {
                Some(password::hash_async(password).await?)
            } else {
                None
            };
            db::password_succeeded(&state.store, profile_id, upgraded.as_deref()).await?;
            // The owner just proved themselves: the evidence of the run before (which may be what raised
            // the prompt) is stale, and the next payload starts a new run.
            db::end_run(&state.store, profile_id).await?;
            Ok(true)
        }
    }
}

/// The enrollment answer; field order is the wire order.
#[derive(Serialize)]
pub struct Enrolled {
    status: &'static str,
    profile_id: String,
}

/// Enrolls a profile with its password (Argon2id).
#[utoipa::path(post, path = "/api/enroll/{profile_id}", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    request_body = crate::doc::PasswordBody,
    responses((status = 200, description = "Enrolled"), (status = 409, description = "Already enrolled"),
        (status = 422, description = "Password not provided or bad profile_id")))]
pub async fn enroll(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<Enrolled>> {
    let profile_id = canonical_profile_id(&raw)?;
    let password =
        string_field(&body, "password").ok_or_else(|| Error::unprocessable(PASSWORD_MISSING))?;
    // Cheap check first so a repeated enrollment does not cost a hash.
    if db::profile(&state.store, &profile_id)
        .await?
        .is_some_and(|p| p.password_hash.is_some())
    {
        return Err(Error::Conflict(ALREADY_ENROLLED.into()));
    }
    let hash = password::hash_async(password).await?;
    if !db::enroll(&state.store, &profile_id, &hash, now_ms()).await? {
        return Err(Error::Conflict(ALREADY_ENROLLED.into()));
    }
    Ok(Json(Enrolled {
        status: "enrollment successful",
        profile_id,
    }))
}

/// Checks the password after an anomaly. Guessing-protected: 429 with `Retry-After` after repeated failures.
#[utoipa::path(post, path = "/api/verify_password/{profile_id}", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    request_body = crate::doc::PasswordBody,
    responses((status = 200, description = r#"{"verified": bool}"#), (status = 404, description = "Not enrolled"),
        (status = 422, description = "Password not provided"), (status = 429, description = "Too many failures")))]
pub async fn verify_password(
    State(state): State<AppState>,
    State(svc): Svc,
    Path(raw): Path<String>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<Value>> {
    let profile_id = canonical_profile_id(&raw)?;
    let password =
        string_field(&body, "password").ok_or_else(|| Error::unprocessable(PASSWORD_MISSING))?;
    let verified = check_password(&svc, &state, &profile_id, password).await?;
    Ok(Json(serde_json::json!({ "verified": verified })))
}

/// Changes the password (the current one is checked under the same guessing protection).
#[utoipa::path(put, path = "/api/profile/{profile_id}/password", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    request_body = crate::doc::ChangePasswordBody,
    responses((status = 200, description = "Changed"), (status = 403, description = "Incorrect current password"),
        (status = 404, description = "Not enrolled"), (status = 422, description = "Missing field"),
        (status = 429, description = "Too many failures")))]
pub async fn change_password(
    State(state): State<AppState>,
    State(svc): Svc,
    Path(raw): Path<String>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Json<Value>> {
    let profile_id = canonical_profile_id(&raw)?;
    let (Some(old), Some(new)) = (
        string_field(&body, "old_password"),
        string_field(&body, "new_password"),
    ) else {
        return Err(Error::unprocessable(BOTH_PASSWORDS));
    };
    if !check_password(&svc, &state, &profile_id, old).await? {
        return Err(Error::Forbidden(WRONG_PASSWORD.into()));
    }
    let hash = password::hash_async(new).await?;
    if !db::set_password_hash(&state.store, &profile_id, &hash).await? {
        return Err(Error::not_found(NOT_ENROLLED));
    }
    Ok(Json(
        serde_json::json!({ "status": "password changed successfully" }),
    ))
}

/// Deletes the profile's behavioural data and models; the password stays.
#[utoipa::path(delete, path = "/api/reset_profile/{profile_id}", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    responses((status = 204, description = "Reset (also when there was nothing to reset)"),
        (status = 422, description = "Bad profile_id")))]
pub async fn reset_profile(
    State(state): State<AppState>,
    State(svc): Svc,
    Path(raw): Path<String>,
) -> ApiResult<StatusCode> {
    let profile_id = canonical_profile_id(&raw)?;
    db::reset(&state.store, &profile_id).await?;
    svc.evict(&profile_id);
    Ok(StatusCode::NO_CONTENT)
}

/// Stores one profiling session's features and reports readiness; starts training once ready.
#[utoipa::path(post, path = "/api/train/{profile_id}", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    request_body = crate::doc::PayloadDoc,
    responses((status = 200, description = "Progress object"), (status = 404, description = "Unknown profile"),
        (status = 422, description = "Invalid payload or profile_id")))]
pub async fn train(
    State(state): State<AppState>,
    State(svc): Svc,
    Path(raw): Path<String>,
    PayloadBody(payload): PayloadBody,
) -> ApiResult<Json<TrainResponse>> {
    let profile_id = canonical_profile_id(&raw)?;
    let vector = StoredVector::of(&payload);
    let vector_id = uuid::Uuid::new_v4().to_string();
    let after = db::add_vector(
        &state.store,
        &profile_id,
        &vector_id,
        &vector.to_values(),
        kinds_of(&vector.contract),
        now_ms(),
    )
    .await?
    .ok_or_else(|| Error::not_found(NOT_ENROLLED))?;
    metrics::counter!("maxidom_train_vectors_total").increment(1);
    let progress = counts_of(after.counts).progress(&svc.config.quotas());
    if after.model_active {
        svc.maybe_grow(&state, &profile_id, counts_of(after.counts))
            .await;
    } else if progress.is_ready {
        svc.maybe_start_training(&state, &profile_id).await?;
    }
    Ok(Json(TrainResponse::new(profile_id, progress)))
}

/// Scores a session against the profile's models; accepted sessions feed the retraining pool.
#[utoipa::path(post, path = "/api/score/{profile_id}", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    request_body = crate::doc::PayloadDoc,
    responses((status = 200, description = "Score object"), (status = 404, description = "Model not found."),
        (status = 422, description = "Invalid payload")))]
pub async fn score(
    State(state): State<AppState>,
    State(svc): Svc,
    Path(raw): Path<String>,
    PayloadBody(payload): PayloadBody,
) -> ApiResult<Json<Score>> {
    let profile_id = canonical_profile_id(&raw)?;
    let result = svc
        .score(&state, &profile_id, &payload)
        .await
        .map_err(|e| match e {
            LoadError::Store(e) | LoadError::Pool(PoolError::Store(e)) => Error::Store(e),
            LoadError::ModelChurn(_) => Error::Unavailable(e.to_string()),
            other => Error::internal(other),
        })?;
    let Some(result) = result else {
        // A ready profile can be without a model and without a live training: its training failed, or its process
        // died and the claim has expired. The extension keeps scoring, so this is where it gets retried at once
        // instead of at the next `/train` (one conditional UPDATE that matches nothing for an unready profile).
        if let Err(e) = svc.maybe_start_training(&state, &profile_id).await {
            tracing::warn!(profile_id, error = %e, "could not start a missing training");
        }
        return Err(Error::not_found(MODEL_NOT_FOUND));
    };
    metrics::counter!("maxidom_scores_total").increment(1);
    if result.is_anomaly {
        metrics::counter!("maxidom_anomalies_total").increment(1);
    }
    Ok(Json(result))
}

/// What a support engineer needs to know about a profile.
#[derive(Debug, Serialize, PartialEq)]
pub struct Status {
    pub profile_id: String,
    pub enrolled: bool,
    pub progress: Progress,
    pub model_active: bool,
    /// Grows with every training, also across resets.
    pub model_version: i64,
    /// Unix ms.
    pub model_trained_at: Option<i64>,
    /// Unix ms.
    pub last_retrained_at: Option<i64>,
    pub training_in_progress: bool,
    pub pool_size: i64,
    pub pool_required: usize,
    pub vectors_stored: i64,
    /// Unix ms until which verify_password answers 429, when locked.
    pub password_locked_until: Option<i64>,
}

/// Profile status: enrollment, readiness, model and pool (beyond the reference API).
#[utoipa::path(get, path = "/api/profile/{profile_id}/status", tag = "maxidom",
    params(("profile_id" = String, Path, format = Uuid, description = "Lower-case hyphenated UUID generated by the extension")),
    responses((status = 200, description = "Status"), (status = 404, description = "Unknown profile"),
        (status = 422, description = "Bad profile_id")))]
pub async fn status(
    State(state): State<AppState>,
    State(svc): Svc,
    Path(raw): Path<String>,
) -> ApiResult<Json<Status>> {
    let profile_id = canonical_profile_id(&raw)?;
    let p = db::profile(&state.store, &profile_id)
        .await?
        .ok_or_else(|| Error::not_found(NOT_ENROLLED))?;
    let now = now_ms();
    let claim_live = p.training_claimed_at.is_some_and(|t| {
        now.saturating_sub(t)
            < i64::try_from(svc.config.claim_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    });
    Ok(Json(Status {
        enrolled: p.password_hash.is_some(),
        progress: counts_of(p.counts).progress(&svc.config.quotas()),
        model_active: p.model_active,
        model_version: p.model_version,
        model_trained_at: p.model_trained_at,
        last_retrained_at: p.last_retrained_at,
        training_in_progress: p.training_claim.is_some() && claim_live,
        pool_size: p.pool_count,
        pool_required: svc.config.pool_size,
        vectors_stored: p.counts.total,
        password_locked_until: p.locked_until.filter(|&t| t > now),
        profile_id: p.profile_id,
    }))
}

/// The extension's self-update files, from the configured folder, where the extension's manifest points
/// (`update_url` = `<server>/static/update.xml`, which names `<server>/static/extension.crx`).
#[utoipa::path(get, path = "/static/{file}", tag = "maxidom",
    params(("file" = String, Path, description = "update.xml or extension.crx")),
    responses((status = 200, description = "The file"), (status = 404, description = "Not configured or missing")))]
pub async fn static_file_root(svc: Svc, file: Path<String>) -> Result<Response, Error> {
    serve_static(svc, file).await
}

/// The same files under `/api/static/` (where this service first served them, kept for existing setups).
#[utoipa::path(get, path = "/api/static/{file}", tag = "maxidom",
    params(("file" = String, Path, description = "update.xml or extension.crx")),
    responses((status = 200, description = "The file"), (status = 404, description = "Not configured or missing")))]
pub async fn static_file(svc: Svc, file: Path<String>) -> Result<Response, Error> {
    serve_static(svc, file).await
}

/// Only the two names the updater asks for, so the folder's other files (and `..`) are never reachable.
async fn serve_static(State(svc): Svc, Path(file): Path<String>) -> Result<Response, Error> {
    let content_type = match file.as_str() {
        "update.xml" => "application/xml",
        "extension.crx" => "application/x-chrome-extension",
        _ => return Err(Error::not_found("Not Found")),
    };
    let Some(dir) = svc.config.static_dir.as_ref() else {
        return Err(Error::not_found("Not Found"));
    };
    match tokio::fs::read(dir.join(&file)).await {
        Ok(bytes) => {
            Ok(([(header::CONTENT_TYPE, content_type)], Body::from(bytes)).into_response())
        }
        Err(_) => Err(Error::not_found("Not Found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_are_profile_ids() {
        let ok = "3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f";
        assert_eq!(canonical_profile_id(ok).unwrap(), ok);
        for bad in [
            "..",
            "",
            "3F1C2D9E-8A4B-4C5D-9E6F-0A1B2C3D4E5F",
            "3f1c2d9e8a4b4c5d9e6f0a1b2c3d4e5f",
            "{3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f}",
            "urn:uuid:3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f",
            "3f1c2d9e-8a4b-4c5d-9e6f-0a1b2c3d4e5f ",
            "../../etc/passwd",
        ] {
            let e = canonical_profile_id(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        }
    }

    #[test]
    fn string_fields_must_be_non_empty_strings() {
        assert_eq!(
            string_field(br#"{"password":"x","other":1}"#, "password").as_deref(),
            Some("x")
        );
        assert_eq!(string_field(br#"{"password":""}"#, "password"), None);
        assert_eq!(string_field(br#"{"password":12}"#, "password"), None);
        assert_eq!(string_field(br#"{"password":null}"#, "password"), None);
        assert_eq!(string_field(br#"{}"#, "password"), None);
        assert_eq!(string_field(br#"["password"]"#, "password"), None);
        assert_eq!(string_field(b"not json", "password"), None);
        assert_eq!(string_field(b"", "password"), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(10_000, 0), 10);
        assert_eq!(retry_after_secs(10_001, 0), 11);
        assert_eq!(retry_after_secs(5, 10), 1);
    }
}
