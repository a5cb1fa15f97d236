//! `GET /api/maxidom/profiles` (admin): every enrolled profile at a glance, for the console's MaxiDOM page —
//! readiness progress, model version and last training, lockouts, and the current run's recent scores.
//!
//! "Recent scores" are the payloads of the profile's current run (at most `RUN_WINDOW`, 10, that voted), read
//! from the run state every `/score` already stores (`maxidom_runs`): each payload's own calibrated score
//! (`payload_score`, Φ(z)), and the share of them below the anomaly threshold α. Nothing is added to the
//! `/score` path for this page; a run ends with a password check, a reset or a pause of more than 10 minutes,
//! so an idle profile shows its last run.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vigil_biometrics::lifecycle::Progress;
use vigil_biometrics::model::TrainParams;
use vigil_biometrics::sequential::{Run, normal_cdf};
use vigil_http::auth::Admin;
use vigil_http::axum::Json;
use vigil_http::axum::extract::State;
use vigil_http::{ApiQuery, ApiResult, AppState, Error};
use vigil_store::maxidom;
use vigil_store::time::now_ms;

use crate::Maxidom;
use crate::service::counts_of;

/// `?page=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-based page (default 1).
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<i64>,
    /// Profiles per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One profile's line.
#[derive(Debug, Serialize, PartialEq)]
pub struct ProfileLine {
    pub profile_id: String,
    /// Whether a password is set (enrolled through the extension).
    pub enrolled: bool,
    /// Unix ms.
    pub created_at: i64,
    pub progress: Progress,
    pub model_active: bool,
    pub model_version: i64,
    /// Unix ms of the active model's training.
    pub model_trained_at: Option<i64>,
    /// Unix ms of the last retraining.
    pub last_retrained_at: Option<i64>,
    pub training_in_progress: bool,
    pub vectors_stored: i64,
    pub pool_size: i64,
    /// Failed password checks in the current window.
    pub failed_attempts: i64,
    /// Unix ms until which password checks are refused (429), while locked.
    pub locked_until: Option<i64>,
    /// The current run's payload scores (oldest first), each payload's own calibrated score 0–1.
    pub recent_scores: Vec<f64>,
    /// Share of `recent_scores` below the anomaly threshold; `null` without scores.
    pub anomaly_rate: Option<f64>,
    /// Unix ms of the last stored run state (the last `/score` of the run).
    pub last_scored_at: Option<i64>,
}

/// One page of profiles.
#[derive(Debug, Serialize)]
pub struct ProfilePage {
    pub total: i64,
    pub page: i64,
    pub limit: i64,
    /// The anomaly threshold the rates are computed with (scores below it are flagged).
    pub alpha: f64,
    pub data: Vec<ProfileLine>,
}

/// A run's payload scores and their flagged share (pure, for tests).
pub fn run_scores(state: Option<&[u8]>, alpha: f64) -> (Vec<f64>, Option<f64>) {
    let Some(run) = state.and_then(Run::from_bytes) else {
        return (Vec::new(), None);
    };
    let scores: Vec<f64> = run.z.iter().map(|&z| normal_cdf(z)).collect();
    if scores.is_empty() {
        return (scores, None);
    }
    let flagged = scores.iter().filter(|&&p| p < alpha).count();
    let rate = flagged as f64 / scores.len() as f64;
    (scores, Some(rate))
}

/// Enrolled MaxiDOM profiles, newest first: readiness, model, lockout and the current run's scores. Admin.
#[utoipa::path(get, path = "/api/maxidom/profiles", tag = "maxidom", security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "`{total, page, limit, alpha, data: [{profile_id, enrolled, created_at, progress, model_active, model_version, model_trained_at, last_retrained_at, training_in_progress, vectors_stored, pool_size, failed_attempts, locked_until, recent_scores, anomaly_rate, last_scored_at}]}`", body = serde_json::Value),
        (status = 401, description = "Not authenticated"),
        (status = 403, description = "Not an admin"),
        (status = 422, description = "`page` or `limit` out of range"),
    ))]
pub async fn profiles(
    State(state): State<AppState>,
    State(svc): State<Arc<Maxidom>>,
    Admin(_admin): Admin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ProfilePage>> {
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(50);
    if !(1..=1_000_000).contains(&page) {
        return Err(Error::unprocessable("page must be 1 to 1000000"));
    }
    if !(1..=maxidom::MAX_PROFILES_LISTED).contains(&limit) {
        return Err(Error::unprocessable("limit must be 1 to 200"));
    }
    let (total, rows) = maxidom::list_profiles(&state.store, limit, (page - 1) * limit).await?;
    let now = now_ms();
    let ttl_ms = i64::try_from(svc.config.claim_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let alpha = TrainParams::default().alpha;
    let quotas = svc.config.quotas();
    let data = rows
        .into_iter()
        .map(|r| {
            let p = r.profile;
            let (recent_scores, anomaly_rate) = run_scores(r.run_state.as_deref(), alpha);
            ProfileLine {
                enrolled: p.password_hash.is_some(),
                created_at: p.created_at,
                progress: counts_of(p.counts).progress(&quotas),
                model_active: p.model_active,
                model_version: p.model_version,
                model_trained_at: p.model_trained_at,
                last_retrained_at: p.last_retrained_at,
                training_in_progress: p.training_claim.is_some()
                    && p.training_claimed_at
                        .is_some_and(|t| now.saturating_sub(t) < ttl_ms),
                vectors_stored: p.counts.total,
                pool_size: p.pool_count,
                failed_attempts: p.failed_attempts,
                locked_until: p.locked_until.filter(|&t| t > now),
                recent_scores,
                anomaly_rate,
                last_scored_at: r.run_updated_at,
                profile_id: p.profile_id,
            }
        })
        .collect();
    Ok(Json(ProfilePage {
        total,
        page,
        limit,
        alpha,
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_scores_are_payload_p_values_and_their_flagged_share() {
        assert_eq!(run_scores(None, 0.05), (Vec::new(), None));
        assert_eq!(run_scores(Some(b"not a run"), 0.05), (Vec::new(), None));
        let run = Run {
            last_event_ms: Some(1.0),
            z: vec![0.0, -3.0, 1.0, -2.0],
            w: vec![1.0, 2.0, 0.5, 1.0],
        };
        let (scores, rate) = run_scores(Some(&run.to_bytes()), 0.05);
        assert_eq!(scores.len(), 4);
        assert!((scores[0] - 0.5).abs() < 1e-9);
        // Φ(−3) ≈ 0.00135 and Φ(−2) ≈ 0.0228 are below 0.05: half the run is flagged.
        assert_eq!(rate, Some(0.5));
    }
}
