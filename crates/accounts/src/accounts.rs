//! The account operations that the HTTP routes, the first-start bootstrap and `vigil user create` share.

use serde::Serialize;
use vigil_http::{AppState, Error, Role};
use vigil_store::Store;
use vigil_store::time::{format_ts, now_ms};
use vigil_store::tokens::{self, Purpose};
use vigil_store::users::{self, NewUser, User};

use crate::mail::Mailer;
use crate::{AccountsConfig, policy};

pub(crate) const EMAIL_TAKEN: &str = "Email already registered";
pub(crate) const USERNAME_TAKEN: &str = "Username already taken";

/// Process-wide pieces of the accounts API, shared by its handlers as typed router state (`State<Arc<Service>>`).
#[derive(Debug)]
pub struct Service {
    pub config: AccountsConfig,
    pub mailer: Mailer,
    /// `<PUBLIC_URL>` without a trailing slash, for links in mail.
    pub public_url: String,
}

impl Service {
    /// Builds the service; an unusable mail configuration falls back to logging (and `bootstrap_admin`, which
    /// the server runs at start, refuses it outright).
    pub fn new(state: &AppState, config: AccountsConfig) -> Service {
        let mailer = Mailer::from_config(&config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "mail is misconfigured; logging mail instead of sending it");
            Mailer::Log
        });
        Service {
            config,
            mailer,
            public_url: state.config.public_url.trim_end_matches('/').to_owned(),
        }
    }

    fn reset_link(&self, token: &str) -> String {
        let base = self
            .config
            .password_reset_url
            .clone()
            .unwrap_or_else(|| format!("{}/reset-password", self.public_url));
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}token={token}")
    }

    /// The verification page's link: `EMAIL_VERIFY_URL`, or this server's own page (`verify_page`), never the
    /// JSON route (a person clicking it would see raw JSON, and a mail scanner's prefetch would use the token).
    pub(crate) fn verify_link(&self, token: &str) -> String {
        let base = self
            .config
            .email_verify_url
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.public_url, crate::verify_page::PATH));
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}token={token}")
    }

    /// Mints a random single-use token for `purpose`, stores only its hash with an expiry `ttl_ms` from now, and
    /// returns the token itself for the mailed link.
    async fn store_mailed_token(
        state: &AppState,
        user: &User,
        purpose: Purpose,
        ttl_ms: i64,
    ) -> Result<String, Error> {
        let token = policy::new_token();
        let now = now_ms();
        tokens::insert_mailed(
            &state.store,
            &policy::token_hash(&token),
            &user.id,
            purpose,
            now.saturating_add(ttl_ms),
            now,
        )
        .await?;
        Ok(token)
    }

    /// Stores a fresh email-verification token and mails its link in the background.
    pub async fn send_verification(&self, state: &AppState, user: &User) -> Result<(), Error> {
        let token = Self::store_mailed_token(
            state,
            user,
            Purpose::VerifyEmail,
            self.config.verify_ttl_ms(),
        )
        .await?;
        let body = format!(
            "Hello {},\r\n\r\nConfirm your email address for TopoForge by opening this link:\r\n{}\r\n\r\n\
             The link is valid for {} hours.\r\n",
            user.username,
            self.verify_link(&token),
            self.config.verify_token_expire_hours
        );
        self.mail_later(
            state,
            &user.email,
            "Verify your TopoForge email address",
            body,
        );
        Ok(())
    }

    /// Stores a fresh password-reset token and mails its link in the background.
    pub async fn send_reset(&self, state: &AppState, user: &User) -> Result<(), Error> {
        let token = Self::store_mailed_token(
            state,
            user,
            Purpose::ResetPassword,
            self.config.reset_ttl_ms(),
        )
        .await?;
        let body = format!(
            "Hello {},\r\n\r\nSomeone (hopefully you) asked to reset your TopoForge password. Open this link to \
             choose a new one:\r\n{}\r\n\r\nThe link works once and expires in {} minutes. If you did not ask, \
             ignore this message.\r\n",
            user.username,
            self.reset_link(&token),
            self.config.reset_token_expire_minutes
        );
        self.mail_later(state, &user.email, "Reset your TopoForge password", body);
        Ok(())
    }

    fn mail_later(&self, state: &AppState, to: &str, subject: &'static str, body: String) {
        let mailer = self.mailer.clone();
        let to = to.to_owned();
        state.spawn(async move { mailer.send(&to, subject, body).await });
    }

    /// A new access token and a new stored refresh token for `user`.
    pub async fn issue_pair(&self, state: &AppState, user: &User) -> Result<TokenPair, Error> {
        let access_token =
            state
                .tokens
                .issue(&user.id, &user.username, user.role, user.session_generation)?;
        let refresh_token = policy::new_token();
        let now = now_ms();
        tokens::insert_refresh(
            &state.store,
            &policy::token_hash(&refresh_token),
            &user.id,
            now.saturating_add(self.config.refresh_ttl_ms()),
            now,
        )
        .await?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            token_type: "bearer".into(),
        })
    }
}

/// What a new account is made from (before validation).
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub email: String,
    pub password: String,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    pub role: Role,
    pub is_verified: bool,
}

/// Validates, hashes (before touching the database) and stores a new account. Duplicate email or username is a
/// 400 with the contract's message; a policy violation is a 422.
pub async fn create_account(
    store: &Store,
    config: &AccountsConfig,
    new: NewAccount,
) -> Result<User, Error> {
    let username = policy::username(&new.username)?;
    let email = policy::email(&new.email)?;
    policy::password(&new.password, config)?;
    if users::by_email(store, &email).await?.is_some() {
        return Err(Error::BadRequest(EMAIL_TAKEN.into()));
    }
    if users::username_taken(store, &username).await? {
        return Err(Error::BadRequest(USERNAME_TAKEN.into()));
    }
    let password_hash = vigil_http::password::hash_async(new.password).await?;
    let row = NewUser {
        id: uuid::Uuid::new_v4().to_string(),
        username,
        email,
        password_hash,
        full_name: clean(new.full_name),
        organization: clean(new.organization),
        role: new.role,
        is_verified: new.is_verified,
        created_at: now_ms(),
    };
    // The checks above give the friendly answer; the unique constraints decide races between replicas.
    users::insert(store, &row).await.map_err(conflict_to_400)
}

/// Maps a unique-constraint conflict on users to the contract's 400 messages.
pub(crate) fn conflict_to_400(e: vigil_store::StoreError) -> Error {
    match users::conflict_column(&e) {
        Some("email") => Error::BadRequest(EMAIL_TAKEN.into()),
        Some(_) => Error::BadRequest(USERNAME_TAKEN.into()),
        None => Error::Store(e),
    }
}

/// Trims optional free text; empty becomes absent.
pub(crate) fn clean(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Deletes rows that can no longer matter: expired tokens and revocations ([`tokens::purge_expired`]) and ended
/// rate-limit windows; then refreshes the planner statistics. Idempotent, so every replica may run it.
pub async fn purge(state: &AppState) -> Result<u64, vigil_store::StoreError> {
    let now = now_ms();
    let tokens = tokens::purge_expired(&state.store, now).await?;
    let windows = vigil_store::rate_limits::purge_ended(&state.store, now).await?;
    // The same cadence suits the planner statistics of the growing tables (the anomaly log above all).
    state.store.refresh_planner_stats().await?;
    Ok(tokens + windows)
}

/// Runs [`purge`] every `interval_secs` until shutdown (never, when 0). A failed purge is logged and retried at
/// the next tick: it only delays housekeeping.
pub(crate) fn spawn_purges(state: &AppState, interval_secs: u64) {
    if interval_secs == 0 {
        return;
    }
    let state = state.clone();
    let period = std::time::Duration::from_secs(interval_secs);
    let shutdown = state.shutdown.clone();
    state.clone().spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match purge(&state).await {
                Ok(0) => {}
                Ok(purged) => {
                    metrics::counter!("topoforge_purged_rows_total").increment(purged);
                    tracing::info!(purged, "purged expired tokens and rate-limit windows");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging expired tokens failed; retrying later")
                }
            }
        }
    });
}

/// Creates the first admin from `ADMIN_EMAIL`/`ADMIN_PASSWORD` when no account has that email yet; also checks
/// the mail configuration and runs a [`purge`]. The server calls this once at start and refuses to start
/// when it fails (a weak admin password, a bad `MAIL_FROM`).
pub async fn bootstrap_admin(state: &AppState, config: &AccountsConfig) -> anyhow::Result<()> {
    Mailer::from_config(config)?;
    let purged = purge(state).await?;
    if purged > 0 {
        tracing::info!(purged, "purged expired tokens and rate-limit windows");
    }
    let (email, password) = match (
        config.admin_email.as_deref(),
        config.admin_password.as_deref(),
    ) {
        (Some(e), Some(p)) if !e.is_empty() && !p.is_empty() => (e, p),
        (None, None) => return Ok(()),
        _ => {
            tracing::warn!(
                "ADMIN_EMAIL and ADMIN_PASSWORD must both be set to create the first admin; skipping"
            );
            return Ok(());
        }
    };
    let normalised = policy::email(email).map_err(|e| anyhow::anyhow!("ADMIN_EMAIL: {e}"))?;
    if users::by_email(&state.store, &normalised).await?.is_some() {
        tracing::debug!(email = %normalised, "the configured admin already exists");
        return Ok(());
    }
    let created = create_account(
        &state.store,
        config,
        NewAccount {
            username: config.admin_username.clone(),
            email: normalised.clone(),
            password: password.to_owned(),
            full_name: None,
            organization: None,
            role: Role::Admin,
            is_verified: true,
        },
    )
    .await;
    match created {
        Ok(user) => {
            tracing::info!(username = %user.username, email = %user.email, "created the first admin from ADMIN_EMAIL");
            Ok(())
        }
        // Another replica starting at the same moment created it first.
        Err(Error::BadRequest(m)) if m == EMAIL_TAKEN => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "creating the admin from ADMIN_EMAIL/ADMIN_PASSWORD: {e}"
        )),
    }
}

/// An access token and its refresh token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `"bearer"`.
    pub token_type: String,
}

/// The account as register and login return it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserBrief {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    pub role: Role,
    pub is_verified: bool,
}

/// The account as `/api/auth/me` and `/api/users` return it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    pub role: Role,
    pub is_verified: bool,
    /// `false` once an admin deactivated the account (it cannot sign in; its sessions ended).
    pub is_active: bool,
    /// ISO 8601, UTC.
    pub created_at: String,
    pub last_login: Option<String>,
}

/// Register and login answers: a token pair plus the account.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub user: UserBrief,
}

impl AuthResponse {
    pub fn new(pair: TokenPair, user: &User) -> AuthResponse {
        AuthResponse {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: pair.token_type,
            user: UserBrief::of(user),
        }
    }
}

impl UserBrief {
    pub fn of(u: &User) -> UserBrief {
        UserBrief {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            organization: u.organization.clone(),
            role: u.role,
            is_verified: u.is_verified,
        }
    }
}

impl UserView {
    pub fn of(u: &User) -> UserView {
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            organization: u.organization.clone(),
            role: u.role,
            is_verified: u.is_verified,
            is_active: u.is_active,
            created_at: format_ts(u.created_at),
            last_login: u.last_login.map(format_ts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ts(1_768_204_800_123), "2026-01-12T08:00:00.123Z");
    }

    #[test]
    fn clean_trims_and_drops_empty() {
        assert_eq!(clean(Some("  a ".into())), Some("a".into()));
        assert_eq!(clean(Some("   ".into())), None);
        assert_eq!(clean(None), None);
    }
}
