//! Refresh tokens and single-use mailed tokens (email verification, password reset).
//!
//! Only hashes reach this module: the caller hashes the random token it hands out, so a copy of the database does
//! not let anyone sign in. Every "use" is one conditional `UPDATE … RETURNING`, so a token is consumed at most once
//! even when two replicas receive it at the same moment.

use crate::{Store, StoreError};

/// What a mailed token is for (the `purpose` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

/// `refresh_tokens.revoked`: 0 live; [`ROTATED`] used once to obtain a new pair; [`ENDED`] revoked by a logout
/// or by ending the account's sessions. Only a rotated token coming back is a theft signal: its legitimate holder
/// has the successor, so someone else kept a copy. A logged-out token coming back is an ordinary stale client
/// (a second tab, a retry) and is simply refused. (Rows written before this distinction have 1 for both.)
pub const ROTATED: i64 = 1;
/// See [`ROTATED`].
pub const ENDED: i64 = 2;

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid: it is now revoked, and the caller issues a new one for this user.
    Rotated { user_id: String },
    /// Known and already rotated: a replay of a used token, a sign that it was stolen.
    Replayed { user_id: String },
    /// Known but ended by a logout (or by ending every session): refused, nothing else happens.
    Ended,
    /// Unknown or expired.
    Invalid,
}

pub async fn insert_refresh(
    store: &Store,
    token_hash: &str,
    user_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, expires_at, revoked, created_at) \
         VALUES ($1, $2, $3, 0, $4)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .bind(now)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(())
}

/// Revokes the token if it is live and says whose it was (see [`RefreshUse`]).
pub async fn use_refresh(
    store: &Store,
    token_hash: &str,
    now: i64,
) -> Result<RefreshUse, StoreError> {
    let rotated: Option<(String,)> = sqlx::query_as(
        "UPDATE refresh_tokens SET revoked = $3 \
         WHERE token_hash = $1 AND revoked = 0 AND expires_at > $2 RETURNING user_id",
    )
    .bind(token_hash)
    .bind(now)
    .bind(ROTATED)
    .fetch_optional(store.pool())
    .await?;
    if let Some((user_id,)) = rotated {
        return Ok(RefreshUse::Rotated { user_id });
    }
    let revoked: Option<(String, i64)> = sqlx::query_as(
        "SELECT user_id, revoked FROM refresh_tokens WHERE token_hash = $1 AND revoked <> 0",
    )
    .bind(token_hash)
    .fetch_optional(store.pool())
    .await?;
    Ok(match revoked {
        Some((user_id, ROTATED)) => RefreshUse::Replayed { user_id },
        Some(_) => RefreshUse::Ended,
        None => RefreshUse::Invalid,
    })
}

/// Revokes one of `user_id`'s refresh tokens; false when it was not theirs or not live.
pub async fn revoke_refresh(
    store: &Store,
    token_hash: &str,
    user_id: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked = $3 WHERE token_hash = $1 AND user_id = $2 AND revoked = 0",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(ENDED)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends every session of the account (logout everywhere, password change or reset, a replayed refresh token):
/// revokes its refresh tokens and increments its session generation, so access tokens issued before stop working
/// too. Returns how many refresh tokens were live.
pub async fn end_sessions(store: &Store, user_id: &str) -> Result<u64, StoreError> {
    let mut tx = store.pool().begin().await?;
    let done =
        sqlx::query("UPDATE refresh_tokens SET revoked = $2 WHERE user_id = $1 AND revoked = 0")
            .bind(user_id)
            .bind(ENDED)
            .execute(&mut *tx)
            .await?;
    sqlx::query("UPDATE users SET session_generation = session_generation + 1 WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Revokes one access token (by its `jti`) until `expires_at`, when it would have stopped working anyway.
/// Revoking it twice is harmless.
pub async fn revoke_access(
    store: &Store,
    jti: &str,
    user_id: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(user_id)
    .bind(expires_at)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(())
}

pub async fn insert_mailed(
    store: &Store,
    token_hash: &str,
    user_id: &str,
    purpose: Purpose,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO auth_tokens (token_hash, user_id, purpose, expires_at, used_at, created_at) \
         VALUES ($1, $2, $3, $4, NULL, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(expires_at)
    .bind(now)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(())
}

/// Marks a live (unused, unexpired) token used and returns its user; `None` for anything else.
pub async fn consume_mailed(
    store: &Store,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sqlx::query_as(
        "UPDATE auth_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
    )
    .bind(now)
    .bind(token_hash)
    .bind(purpose.as_str())
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|(u,)| u))
}

/// The email of the account a live token belongs to, without using the token up.
pub async fn peek_mailed(
    store: &Store,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT u.email FROM auth_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND t.expires_at > $3",
    )
    .bind(token_hash)
    .bind(purpose.as_str())
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|(e,)| e))
}

/// Uses up every live token of the account for `purpose` (a reset makes older reset links worthless).
pub async fn expire_mailed(
    store: &Store,
    user_id: &str,
    purpose: Purpose,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE auth_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL")
        .bind(now)
        .bind(user_id)
        .bind(purpose.as_str())
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Deletes token rows that can no longer matter: expired refresh and mailed tokens, and revocations of access
/// tokens that have expired anyway. Run at start and periodically; each statement is idempotent, so replicas
/// doing it at the same time only repeat work.
pub async fn purge_expired(store: &Store, now: i64) -> Result<u64, StoreError> {
    let mut purged = 0;
    for table in ["refresh_tokens", "auth_tokens", "revoked_access_tokens"] {
        let done = sqlx::query(&format!("DELETE FROM {table} WHERE expires_at <= $1"))
            .bind(now)
            .execute(store.pool())
            .await?;
        purged += done.rows_affected();
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;
    use crate::users::{self, NewUser};

    async fn seed(store: &Store) {
        users::insert(
            store,
            &NewUser {
                id: "u1".into(),
                username: "ada".into(),
                email: "ada@example.com".into(),
                password_hash: "h".into(),
                full_name: None,
                organization: None,
                role: crate::users::Role::Viewer,
                is_verified: false,
                created_at: 0,
            },
        )
        .await
        .expect("user");
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_once() {
        for db in TestDb::all().await {
            let s = &db.store;
            seed(s).await;
            insert_refresh(s, "r1", "u1", 1000, 0)
                .await
                .expect("insert");
            assert_eq!(
                use_refresh(s, "r1", 10).await.expect("use"),
                RefreshUse::Rotated {
                    user_id: "u1".into()
                }
            );
            assert_eq!(
                use_refresh(s, "r1", 11).await.expect("reuse"),
                RefreshUse::Replayed {
                    user_id: "u1".into()
                }
            );
            insert_refresh(s, "r2", "u1", 1000, 0)
                .await
                .expect("insert");
            assert_eq!(
                use_refresh(s, "r2", 1000).await.expect("expired"),
                RefreshUse::Invalid
            );
            assert_eq!(
                use_refresh(s, "nope", 0).await.expect("unknown"),
                RefreshUse::Invalid
            );
            insert_refresh(s, "r3", "u1", 1000, 0)
                .await
                .expect("insert");
            assert!(
                !revoke_refresh(s, "r3", "someone-else")
                    .await
                    .expect("revoke")
            );
            // Logged out, then presented: refused without being taken for a stolen copy.
            insert_refresh(s, "r4", "u1", 1000, 0)
                .await
                .expect("insert");
            assert!(revoke_refresh(s, "r4", "u1").await.expect("logout"));
            assert_eq!(
                use_refresh(s, "r4", 12).await.expect("logged out"),
                RefreshUse::Ended,
                "{}",
                db.label
            );
            assert_eq!(end_sessions(s, "u1").await.expect("all"), 2, "{}", db.label);
            assert_eq!(
                use_refresh(s, "r3", 13).await.expect("ended"),
                RefreshUse::Ended,
                "{}: ending every session is not a rotation",
                db.label
            );
            assert_eq!(
                use_refresh(s, "r1", 13).await.expect("still a replay"),
                RefreshUse::Replayed {
                    user_id: "u1".into()
                },
                "{}: a rotated token stays a replay after the sessions end",
                db.label
            );
            let user = users::by_id(s, "u1").await.expect("read").expect("user");
            assert_eq!(user.session_generation, 1, "{}", db.label);
            revoke_access(s, "j1", "u1", 1500).await.expect("revoke");
            revoke_access(s, "j1", "u1", 1500)
                .await
                .expect("twice is harmless");
            revoke_access(s, "j2", "u1", 5000).await.expect("revoke");
            assert_eq!(purge_expired(s, 2000).await.expect("purge"), 5);
            let (left,): (i64,) =
                sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM revoked_access_tokens")
                    .fetch_one(s.pool())
                    .await
                    .expect("count");
            assert_eq!(left, 1, "{}: the unexpired revocation stays", db.label);
        }
    }

    #[tokio::test]
    async fn mailed_tokens_are_single_use_and_expire() {
        for db in TestDb::all().await {
            let s = &db.store;
            seed(s).await;
            let p = Purpose::ResetPassword;
            insert_mailed(s, "t1", "u1", p, 100, 0)
                .await
                .expect("insert");
            assert_eq!(
                peek_mailed(s, "t1", p, 50).await.expect("peek"),
                Some("ada@example.com".into())
            );
            assert_eq!(
                peek_mailed(s, "t1", Purpose::VerifyEmail, 50)
                    .await
                    .expect("peek"),
                None
            );
            assert_eq!(
                consume_mailed(s, "t1", p, 50).await.expect("use"),
                Some("u1".into())
            );
            assert_eq!(consume_mailed(s, "t1", p, 51).await.expect("reuse"), None);
            insert_mailed(s, "t2", "u1", p, 100, 0)
                .await
                .expect("insert");
            assert_eq!(
                consume_mailed(s, "t2", p, 100).await.expect("expired"),
                None
            );
            insert_mailed(s, "t3", "u1", p, 100, 0)
                .await
                .expect("insert");
            expire_mailed(s, "u1", p, 10).await.expect("expire");
            assert_eq!(
                consume_mailed(s, "t3", p, 20).await.expect("after expire"),
                None
            );
        }
    }
}
