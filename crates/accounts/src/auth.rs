//! `/api/auth/*`: register, login, me, refresh, logout, email verification and password reset.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vigil_http::auth::Viewer;
use vigil_http::password::{self, Verification};
use vigil_http::{ApiJson, ApiResult, AppState, ClientIp, Error, RawBody, Role};
use vigil_store::time::now_ms;
use vigil_store::tokens::{self, Purpose, RefreshUse};
use vigil_store::users::{self, UserPatch};

use crate::accounts::{self, AuthResponse, NewAccount, Service, TokenPair, UserView};
use crate::policy;
use crate::ratelimit::{self, Limit};

type Svc = State<Arc<Service>>;

const INVALID_CREDENTIALS: &str = "Invalid credentials";
const INVALID_REFRESH: &str = "Invalid refresh token";
const FORGOT_ANSWER: &str = "If the email is registered, a password reset link has been sent.";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RegisterBody {
    /// 3–50 characters; no `@`, spaces or control characters.
    #[schema(pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]{3,50}$")]
    pub username: String,
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// At least 8 characters (`PASSWORD_MIN_LENGTH`), at most 128, with an upper-case letter, a lower-case letter,
    /// a digit and a symbol (`PASSWORD_REQUIRE_CLASSES`).
    #[schema(pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[!-/:-@\[-`{-~]).{8,128}$")]
    pub password: String,
    pub full_name: Option<String>,
    pub organization: Option<String>,
}

/// Creates a `viewer` account (a `role` in the body is ignored) and signs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterBody,
    responses((status = 201, body = AuthResponse), (status = 400, description = "Email already registered / Username already taken"),
        (status = 422, description = "Invalid username, email or password"), (status = 429, description = "Too many registrations")))]
pub async fn register(
    State(state): State<AppState>,
    State(svc): Svc,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterBody>,
) -> ApiResult<(StatusCode, Json<AuthResponse>)> {
    let c = &svc.config;
    ratelimit::hit(
        &state,
        &format!("register:{ip}"),
        Limit::new(c.register_rate_limit, c.register_rate_window_secs),
        "Too many registration attempts. Try again later.",
    )
    .await?;
    let user = accounts::create_account(
        &state.store,
        c,
        NewAccount {
            username: body.username,
            email: body.email,
            password: body.password,
            full_name: body.full_name,
            organization: body.organization,
            role: Role::Viewer,
            is_verified: false,
        },
    )
    .await?;
    svc.send_verification(&state, &user).await?;
    let pair = svc.issue_pair(&state, &user).await?;
    metrics::counter!("topoforge_registrations_total").increment(1);
    Ok((StatusCode::CREATED, Json(AuthResponse::new(pair, &user)?)))
}

/// Login credentials: `username` (the username or the email) and `password`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

/// The login body as an OAuth2 password-flow form (`application/x-www-form-urlencoded`) or as JSON.
pub struct LoginForm(pub LoginBody);

impl<S: Send + Sync> FromRequest<S> for LoginForm {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            // `curl -F username=… -F password=…`, as the reference's README shows.
            return multipart_login(req, state)
                .await
                .and_then(refuse_nul)
                .map(LoginForm);
        }
        let is_json = content_type.contains("json");
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        let body = if is_json {
            vigil_http::parse_json::<LoginBody>(&bytes)?
        } else {
            serde_urlencoded::from_bytes::<LoginBody>(&bytes)
                .map_err(|e| Error::unprocessable(format!("Invalid form: {e}")))?
        };
        refuse_nul(body).map(LoginForm)
    }
}

/// A NUL character (`%00` in a form) in a credential: refused as the JSON reader refuses `\u0000`, since no
/// stored username, email or password can hold one (PostgreSQL text cannot).
fn refuse_nul(body: LoginBody) -> Result<LoginBody, Error> {
    if body.username.contains('\0') || body.password.contains('\0') {
        return Err(Error::unprocessable(
            "Invalid form: a NUL character is not allowed in a credential",
        ));
    }
    Ok(body)
}

async fn multipart_login<S: Send + Sync>(req: Request, state: &S) -> Result<LoginBody, Error> {
    let bad = |e: MultipartError| Error::unprocessable(format!("Invalid form: {}", e.body_text()));
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|e| Error::unprocessable(format!("Invalid form: {}", e.body_text())))?;
    let (mut username, mut password) = (None, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let slot = match field.name() {
            Some("username") => &mut username,
            Some("password") => &mut password,
            _ => continue,
        };
        *slot = Some(field.text().await.map_err(bad)?);
    }
    match (username, password) {
        (Some(username), Some(password)) => Ok(LoginBody { username, password }),
        (None, _) => Err(Error::unprocessable(
            "Invalid form: missing field `username`",
        )),
        (_, None) => Err(Error::unprocessable(
            "Invalid form: missing field `password`",
        )),
    }
}

/// A hash to verify against when the account does not exist, so that both answers take as long.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| password::hash(&policy::new_token()).unwrap_or_default())
}

/// Signs in with a username or email and a password (OAuth2 password flow form, or JSON).
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body(content = LoginBody, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = AuthResponse), (status = 401, description = "Invalid credentials"),
        (status = 403, description = "Account is disabled"), (status = 413, description = "Body too large"),
        (status = 422, description = "Missing or malformed username or password"),
        (status = 429, description = "Too many attempts")))]
pub async fn login(
    State(state): State<AppState>,
    State(svc): Svc,
    ClientIp(ip): ClientIp,
    LoginForm(body): LoginForm,
) -> ApiResult<Json<AuthResponse>> {
    let c = &svc.config;
    let found = users::by_login(&state.store, body.username.trim()).await?;
    // One bucket per account, whichever of its username or email is typed (separate buckets gave twice the
    // guesses); names that match no account get their own, so probing them is throttled too.
    let account: String = match &found {
        Some(user) => format!("id:{}", user.id),
        None => body
            .username
            .trim()
            .to_lowercase()
            .chars()
            .take(254)
            .collect(),
    };
    ratelimit::hit(
        &state,
        &format!("login:{account}:{ip}"),
        Limit::new(c.login_rate_limit, c.login_rate_window_secs),
        "Too many login attempts. Try again later.",
    )
    .await?;
    let stored = found
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
    let verdict = password::verify_async(body.password.clone(), stored).await?;
    let (Some(user), Verification::Valid { rehash }) = (found, verdict) else {
        metrics::counter!("topoforge_logins_total", "outcome" => "failure").increment(1);
        return Err(Error::Unauthorized(INVALID_CREDENTIALS.into()));
    };
    if !user.is_active {
        return Err(Error::Forbidden("Account is disabled".into()));
    }
    if rehash {
        // A bcrypt hash from the reference (or older Argon2 parameters): upgrade it now that we know the password.
        let upgraded = password::hash_async(body.password).await?;
        let patch = UserPatch {
            password_hash: Some(upgraded),
            ..UserPatch::default()
        };
        users::update(&state.store, &user.id, &patch).await?;
    }
    let now = now_ms();
    users::touch_login(&state.store, &user.id, now).await?;
    let pair = svc.issue_pair(&state, &user).await?;
    metrics::counter!("topoforge_logins_total", "outcome" => "success").increment(1);
    Ok(Json(AuthResponse::new(pair, &user)?))
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, description = "Not signed in")))]
pub async fn me(State(state): State<AppState>, Viewer(who): Viewer) -> ApiResult<Json<UserView>> {
    let user = users::by_id(&state.store, &who.id)
        .await?
        .ok_or_else(|| Error::Unauthorized("Could not validate credentials".into()))?;
    Ok(Json(UserView::of(&user)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new pair; the old refresh token stops working. Presenting an already rotated
/// token revokes every session of the account (it was copied by someone); a token that a logout revoked is only
/// refused (401).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = TokenPair), (status = 401, description = "Invalid refresh token"),
        (status = 422, description = "Malformed body")))]
pub async fn refresh(
    State(state): State<AppState>,
    State(svc): Svc,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<Json<TokenPair>> {
    let hash = policy::token_hash(&body.refresh_token);
    let user_id = match tokens::use_refresh(&state.store, &hash, now_ms()).await? {
        RefreshUse::Rotated { user_id } => user_id,
        RefreshUse::Replayed { user_id } => {
            let revoked = tokens::end_sessions(&state.store, &user_id).await?;
            tracing::warn!(
                user_id,
                revoked,
                "a rotated refresh token was replayed; revoked the account's sessions"
            );
            return Err(Error::Unauthorized(INVALID_REFRESH.into()));
        }
        // Logged out (or every session ended): refused, and not a theft signal; see `tokens::ROTATED`.
        RefreshUse::Ended | RefreshUse::Invalid => {
            return Err(Error::Unauthorized(INVALID_REFRESH.into()));
        }
    };
    let user = users::by_id(&state.store, &user_id)
        .await?
        .filter(|u| u.is_active)
        .ok_or_else(|| Error::Unauthorized(INVALID_REFRESH.into()))?;
    Ok(Json(svc.issue_pair(&state, &user).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct LogoutBody {
    pub refresh_token: Option<String>,
}

/// Revokes the calling access token and the given refresh token; with no body, ends every session of the account
/// (all refresh tokens and all access tokens issued so far).
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    request_body(content = Option<LogoutBody>, description = "Optional: without a body every session of the account ends"),
    responses((status = 200, description = r#"{"message": "Successfully logged out"}"#),
        (status = 401, description = "Not signed in"), (status = 422, description = "Malformed body")))]
pub async fn logout(
    State(state): State<AppState>,
    Viewer(who): Viewer,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // No body, or JSON `null` (no value), ends every session; an object names the refresh token to revoke.
    let blank = std::str::from_utf8(&body).is_ok_and(|t| matches!(t.trim(), "" | "null"));
    let body: LogoutBody = if blank {
        LogoutBody::default()
    } else {
        vigil_http::parse_json(&body)?
    };
    // The access token that made this call stops working now, not when it expires.
    tokens::revoke_access(&state.store, &who.token_id, &who.id, who.token_expires_at).await?;
    match body.refresh_token {
        Some(t) => {
            tokens::revoke_refresh(&state.store, &policy::token_hash(&t), &who.id).await?;
        }
        None => {
            tokens::end_sessions(&state.store, &who.id).await?;
        }
    }
    Ok(Json(json!({"message": "Successfully logged out"})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    pub token: String,
}

/// Confirms an email address with the token mailed at registration (for a client's own verification page; the
/// mailed link opens the server's page `/verify-email` unless `EMAIL_VERIFY_URL` says otherwise).
#[utoipa::path(get, path = "/api/auth/verify-email", tag = "auth", params(TokenQuery),
    responses((status = 200, description = r#"{"message": "Email verified successfully"}"#),
        (status = 400, description = "Invalid or expired verification token"),
        (status = 422, description = "Missing token")))]
pub async fn verify_email(
    State(state): State<AppState>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) =
        query.map_err(|_| Error::unprocessable("Query parameter 'token' is required"))?;
    if !crate::verify_page::verify(&state, &q.token).await? {
        return Err(Error::BadRequest(
            "Invalid or expired verification token".into(),
        ));
    }
    Ok(Json(json!({"message": "Email verified successfully"})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ForgotBody {
    pub email: String,
}

/// Mails a reset link when the address belongs to an active account; answers the same either way.
#[utoipa::path(post, path = "/api/auth/forgot-password", tag = "auth", request_body = ForgotBody,
    responses((status = 200, description = "Always the same message"), (status = 422, description = "Malformed body"),
        (status = 429, description = "Too many requests")))]
pub async fn forgot_password(
    State(state): State<AppState>,
    State(svc): Svc,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ForgotBody>,
) -> ApiResult<Json<Value>> {
    let c = &svc.config;
    ratelimit::hit(
        &state,
        &format!("forgot:{ip}"),
        Limit::new(c.forgot_rate_limit, c.forgot_rate_window_secs),
        "Too many password reset requests. Try again later.",
    )
    .await?;
    if let Ok(email) = policy::email(&body.email) {
        if let Some(user) = users::by_email(&state.store, &email)
            .await?
            .filter(|u| u.is_active)
        {
            svc.send_reset(&state, &user).await?;
        }
    }
    Ok(Json(json!({"message": FORGOT_ANSWER})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResetBody {
    pub token: String,
    /// The password policy of registration.
    #[schema(pattern = r"^(?=.*[A-Z])(?=.*[a-z])(?=.*[0-9])(?=.*[!-/:-@\[-`{-~]).{8,128}$")]
    pub new_password: String,
}

/// Sets a new password with a mailed reset token (once; it expires after RESET_TOKEN_EXPIRE_MINUTES). Every
/// session of the account is signed out.
#[utoipa::path(post, path = "/api/auth/reset-password", tag = "auth", request_body = ResetBody,
    responses((status = 200, description = r#"{"message": "Password has been reset successfully"}"#),
        (status = 400, description = "Invalid or expired reset token"), (status = 422, description = "Weak password")))]
pub async fn reset_password(
    State(state): State<AppState>,
    State(svc): Svc,
    ApiJson(body): ApiJson<ResetBody>,
) -> ApiResult<Json<Value>> {
    const INVALID: &str = "Invalid or expired reset token";
    policy::password(&body.new_password, &svc.config)
        .map_err(|e| Error::unprocessable(e.to_string()))?;
    let hash = policy::token_hash(&body.token);
    // A cheap look first, so that garbage tokens never cost a password hash.
    if tokens::peek_mailed(&state.store, &hash, Purpose::ResetPassword, now_ms())
        .await?
        .is_none()
    {
        return Err(Error::BadRequest(INVALID.into()));
    }
    let password_hash = password::hash_async(body.new_password).await?;
    let now = now_ms();
    let Some(user_id) =
        tokens::consume_mailed(&state.store, &hash, Purpose::ResetPassword, now).await?
    else {
        return Err(Error::BadRequest(INVALID.into()));
    };
    let patch = UserPatch {
        password_hash: Some(password_hash),
        ..UserPatch::default()
    };
    users::update(&state.store, &user_id, &patch).await?;
    tokens::expire_mailed(&state.store, &user_id, Purpose::ResetPassword, now).await?;
    tokens::end_sessions(&state.store, &user_id).await?;
    Ok(Json(
        json!({"message": "Password has been reset successfully"}),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetTokenState {
    pub valid: bool,
    pub email: Option<String>,
}

/// Whether a reset token is still usable (without using it), and for which address.
#[utoipa::path(get, path = "/api/auth/verify-reset-token/{token}", tag = "auth",
    params(("token" = String, Path)), responses((status = 200, body = ResetTokenState)))]
pub async fn verify_reset_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> ApiResult<Json<ResetTokenState>> {
    let email = tokens::peek_mailed(
        &state.store,
        &policy::token_hash(&token),
        Purpose::ResetPassword,
        now_ms(),
    )
    .await?;
    Ok(Json(ResetTokenState {
        valid: email.is_some(),
        email,
    }))
}
