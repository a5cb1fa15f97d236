//! `/api/users`: the admin listing, reading one account (self or admin), partial update, delete.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vigil_http::auth::{Admin, Viewer};
use vigil_http::{ApiJson, ApiResult, AppState, AuthUser, Error, Role};
use vigil_store::tokens;
use vigil_store::users::{self, UserPatch};

use crate::accounts::{self, Service, UserView};
use crate::policy;

type Svc = State<Arc<Service>>;

const NOT_FOUND: &str = "User not found";
const NOT_ALLOWED: &str = "Not enough permissions";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub data: Vec<UserView>,
    pub page: i64,
    pub limit: i64,
    pub total: i64,
}

/// Every account, oldest first, one page at a time (admin).
#[utoipa::path(get, path = "/api/users", tag = "users", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = UserPage), (status = 401), (status = 403), (status = 422)))]
pub async fn list_users(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<UserPage>> {
    let Query(q) = query.map_err(|e| Error::unprocessable(e.body_text()))?;
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(20);
    if page < 1 {
        return Err(Error::unprocessable("page must be at least 1"));
    }
    if !(1..=100).contains(&limit) {
        return Err(Error::unprocessable("limit must be between 1 and 100"));
    }
    let offset = (page - 1).saturating_mul(limit);
    let (rows, total) = users::list(&state.store, offset, limit).await?;
    let data = rows
        .iter()
        .map(UserView::of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(UserPage {
        data,
        page,
        limit,
        total,
    }))
}

/// Only the account itself or an admin may touch an account. Others get 403 whether or not the id exists.
fn self_or_admin(who: &AuthUser, id: &str) -> Result<(), Error> {
    if who.id == id || who.role >= Role::Admin {
        Ok(())
    } else {
        Err(Error::Forbidden(NOT_ALLOWED.into()))
    }
}

/// One account (self or admin).
#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])), responses((status = 200, body = UserView), (status = 401), (status = 403), (status = 404)))]
pub async fn get_user(
    State(state): State<AppState>,
    Viewer(who): Viewer,
    Path(id): Path<String>,
) -> ApiResult<Json<UserView>> {
    self_or_admin(&who, &id)?;
    let user = users::by_id(&state.store, &id)
        .await?
        .ok_or_else(|| Error::not_found(NOT_FOUND))?;
    Ok(Json(UserView::of(&user)?))
}

/// A partial update: absent fields stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct UserUpdate {
    #[schema(pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]{3,50}$")]
    pub username: Option<String>,
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    /// A new password (policy applies; every session of the account is signed out).
    #[schema(pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[!-/:-@\[-`{-~]).{8,128}$")]
    pub password: Option<String>,
    /// Required with `password` when changing one's own password, so a stolen access token cannot take the
    /// account over; an admin resetting someone else's password does not need it.
    pub current_password: Option<String>,
    /// Admin only.
    pub role: Option<Role>,
    /// Admin only.
    pub is_active: Option<bool>,
}

/// Updates an account (self or admin; `role` and `is_active` by an admin only).
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, format = Uuid)), request_body = UserUpdate,
    security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 400, description = "Duplicate email/username or last admin"),
        (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn update_user(
    State(state): State<AppState>,
    State(svc): Svc,
    Viewer(who): Viewer,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserUpdate>,
) -> ApiResult<Json<UserView>> {
    self_or_admin(&who, &id)?;
    if (body.role.is_some() || body.is_active.is_some()) && who.role < Role::Admin {
        return Err(Error::Forbidden(
            "Only an admin can change roles or deactivate accounts".into(),
        ));
    }
    let current = users::by_id(&state.store, &id)
        .await?
        .ok_or_else(|| Error::not_found(NOT_FOUND))?;
    let username = body
        .username
        .as_deref()
        .map(policy::username)
        .transpose()
        .map_err(|e| Error::unprocessable(e.to_string()))?;
    let email = body
        .email
        .as_deref()
        .map(policy::email)
        .transpose()
        .map_err(|e| Error::unprocessable(e.to_string()))?
        .filter(|e| *e != current.email);
    if let Some(p) = &body.password {
        policy::password(p, &svc.config).map_err(|e| Error::unprocessable(e.to_string()))?;
        if who.id == id {
            let given = body.current_password.clone().ok_or_else(|| {
                Error::unprocessable("current_password is required to change your password")
            })?;
            let verdict =
                vigil_http::password::verify_async(given, current.password_hash.clone()).await?;
            if !verdict.is_valid() {
                return Err(Error::BadRequest("Current password is incorrect".into()));
            }
        }
    }
    let losing_admin = current.role == "admin"
        && current.is_active
        && (body.role.is_some_and(|r| r != Role::Admin) || body.is_active == Some(false));
    if losing_admin && users::active_admins(&state.store).await? <= 1 {
        return Err(Error::BadRequest(
            "Cannot remove the last active admin".into(),
        ));
    }
    // Hash before writing: the write itself stays one short statement.
    let password_hash = match body.password {
        Some(p) => Some(vigil_http::password::hash_async(p).await?),
        None => None,
    };
    let revoke_sessions = password_hash.is_some() || body.is_active == Some(false);
    let patch = UserPatch {
        username,
        is_verified: email.as_ref().map(|_| false),
        email,
        full_name: accounts::clean(body.full_name),
        organization: accounts::clean(body.organization),
        role: body.role.map(|r| r.as_str().to_owned()),
        is_active: body.is_active,
        password_hash,
    };
    let changed_email = patch.email.is_some();
    let updated = users::update(&state.store, &id, &patch)
        .await
        .map_err(accounts::conflict_to_400)?
        .ok_or_else(|| Error::not_found(NOT_FOUND))?;
    if revoke_sessions {
        tokens::end_sessions(&state.store, &id).await?;
    }
    if changed_email {
        svc.send_verification(&state, &updated).await?;
    }
    Ok(Json(UserView::of(&updated)?))
}

/// Deletes an account and everything it owns (admin; not one's own account).
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = String, Path, format = Uuid)),
    security(("bearer" = [])), responses((status = 204), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if who.id == id {
        return Err(Error::BadRequest(
            "You cannot delete your own account".into(),
        ));
    }
    if users::delete(&state.store, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(NOT_FOUND))
    }
}
