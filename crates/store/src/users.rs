//! TopoForge accounts: the `users` table.
//!
//! Emails are stored lower-cased (the caller normalises them) and both emails and usernames are unique, enforced
//! by the database so that two replicas registering the same name at once cannot both succeed: a losing insert
//! comes back as [`StoreError::Conflict`] naming the column.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// What an account may do. Each role includes the powers of those below it. Stored as its lower-case name in
/// `users.role` (a CHECK constraint keeps the column to these three); the API shows it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Analyst,
    Admin,
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Viewer => 0,
            Role::Analyst => 1,
            Role::Admin => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "analyst" => Ok(Role::Analyst),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, analyst or admin"
            )),
        }
    }
}

/// One account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    pub role: Role,
    pub is_verified: bool,
    pub is_active: bool,
    pub created_at: i64,
    pub last_login: Option<i64>,
    /// Copied into access tokens; incremented to invalidate every token issued before (see `tokens::end_sessions`).
    pub session_generation: i64,
}

/// An account about to be created; the caller picks the id and has already hashed the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    pub role: Role,
    pub is_verified: bool,
    pub created_at: i64,
}

/// A partial update: `None` leaves the column as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub username: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub organization: Option<String>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
    pub is_verified: Option<bool>,
    pub password_hash: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    username: String,
    email: String,
    password_hash: String,
    full_name: Option<String>,
    organization: Option<String>,
    role: String,
    is_verified: i64,
    is_active: i64,
    created_at: i64,
    last_login: Option<i64>,
    session_generation: i64,
}

const COLUMNS: &str = "id, username, email, password_hash, full_name, organization, role, is_verified, \
     is_active, created_at, last_login, session_generation";

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: r.id,
            username: r.username,
            email: r.email,
            password_hash: r.password_hash,
            full_name: r.full_name,
            organization: r.organization,
            role: parse_role(&r.role)?,
            is_verified: r.is_verified != 0,
            is_active: r.is_active != 0,
            created_at: r.created_at,
            last_login: r.last_login,
            session_generation: r.session_generation,
        })
    }
}

/// A stored role; the CHECK constraint makes anything else a corrupted row.
fn parse_role(stored: &str) -> Result<Role, StoreError> {
    stored.parse().map_err(StoreError::Invalid)
}

/// Which unique column a conflict was about, from the engine's message (both engines name the column).
pub fn conflict_column(err: &StoreError) -> Option<&'static str> {
    match err {
        StoreError::Conflict(msg) if msg.contains("email") => Some("email"),
        StoreError::Conflict(msg) if msg.contains("username") => Some("username"),
        _ => None,
    }
}

/// Creates the account; a taken username or email is [`StoreError::Conflict`] (see [`conflict_column`]).
pub async fn insert(store: &Store, user: &NewUser) -> Result<User, StoreError> {
    sqlx::query(&format!(
        "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(&user.id)
    .bind(&user.username)
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(&user.full_name)
    .bind(&user.organization)
    .bind(user.role.as_str())
    .bind(i64::from(user.is_verified))
    .bind(1_i64)
    .bind(user.created_at)
    .bind(None::<i64>)
    .bind(0_i64)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(User {
        id: user.id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        password_hash: user.password_hash.clone(),
        full_name: user.full_name.clone(),
        organization: user.organization.clone(),
        role: user.role,
        is_verified: user.is_verified,
        is_active: true,
        created_at: user.created_at,
        last_login: None,
        session_generation: 0,
    })
}

pub async fn by_id(store: &Store, id: &str) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    row.map(User::try_from).transpose()
}

/// The account whose username is `login` or whose email is `login` lower-cased (login accepts either).
pub async fn by_login(store: &Store, login: &str) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE username = $1 OR email = $2 ORDER BY created_at LIMIT 1"
    ))
    .bind(login)
    .bind(login.to_lowercase())
    .fetch_optional(store.pool())
    .await?;
    row.map(User::try_from).transpose()
}

/// The account with this (already lower-cased) email.
pub async fn by_email(store: &Store, email: &str) -> Result<Option<User>, StoreError> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(store.pool())
            .await?;
    row.map(User::try_from).transpose()
}

pub async fn username_taken(store: &Store, username: &str) -> Result<bool, StoreError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.is_some())
}

/// One page of accounts, oldest first (a stable order for paging), and the total count.
pub async fn list(store: &Store, offset: i64, limit: i64) -> Result<(Vec<User>, i64), StoreError> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(store.pool())
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM users")
        .fetch_one(store.pool())
        .await?;
    let users = rows
        .into_iter()
        .map(User::try_from)
        .collect::<Result<_, _>>()?;
    Ok((users, total))
}

/// Applies `patch` in one statement; `None` when there is no such account.
pub async fn update(
    store: &Store,
    id: &str,
    patch: &UserPatch,
) -> Result<Option<User>, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET username = COALESCE($1, username), email = COALESCE($2, email), \
         full_name = COALESCE($3, full_name), organization = COALESCE($4, organization), \
         role = COALESCE($5, role), is_active = COALESCE($6, is_active), \
         is_verified = COALESCE($7, is_verified), password_hash = COALESCE($8, password_hash) \
         WHERE id = $9",
    )
    .bind(&patch.username)
    .bind(&patch.email)
    .bind(&patch.full_name)
    .bind(&patch.organization)
    .bind(patch.role.map(Role::as_str))
    .bind(patch.is_active.map(i64::from))
    .bind(patch.is_verified.map(i64::from))
    .bind(&patch.password_hash)
    .bind(id)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    by_id(store, id).await
}

/// Records a successful login.
pub async fn touch_login(store: &Store, id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET last_login = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Deletes the account (its tokens and alert configs go with it, by foreign-key cascade); false if none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// What a credential's check needs to know about its account, read in one statement: the account now (name,
/// role, whether it is active, its session generation) and whether the token id `jti` was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub username: String,
    pub role: Role,
    pub is_active: bool,
    pub session_generation: i64,
    pub token_revoked: bool,
}

/// The account `user_id` as [`Session`] sees it, with the revocation of `jti`; `None` when there is no such account.
pub async fn session(
    store: &Store,
    user_id: &str,
    jti: &str,
) -> Result<Option<Session>, StoreError> {
    let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT u.username, u.role, u.is_active, u.session_generation, \
         (SELECT CAST(COUNT(*) AS BIGINT) FROM revoked_access_tokens r WHERE r.jti = $2) \
         FROM users u WHERE u.id = $1",
    )
    .bind(user_id)
    .bind(jti)
    .fetch_optional(store.pool())
    .await?;
    row.map(|(username, role, active, generation, revoked)| {
        Ok(Session {
            username,
            role: parse_role(&role)?,
            is_active: active != 0,
            session_generation: generation,
            token_revoked: revoked != 0,
        })
    })
    .transpose()
}

/// How many active admins exist (guards against removing the last one).
pub async fn active_admins(store: &Store) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM users WHERE role = 'admin' AND is_active = 1",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    fn new_user(id: &str, username: &str, email: &str) -> NewUser {
        NewUser {
            id: id.into(),
            username: username.into(),
            email: email.into(),
            password_hash: "h".into(),
            full_name: None,
            organization: Some("org".into()),
            role: Role::Viewer,
            is_verified: false,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn insert_find_update_delete() {
        for db in TestDb::all().await {
            let s = &db.store;
            insert(s, &new_user("u1", "ada", "ada@example.com"))
                .await
                .expect("insert");
            let err = insert(s, &new_user("u2", "ada", "other@example.com"))
                .await
                .expect_err("dup username");
            assert_eq!(conflict_column(&err), Some("username"), "{}", db.label);
            let err = insert(s, &new_user("u3", "bob", "ada@example.com"))
                .await
                .expect_err("dup email");
            assert_eq!(conflict_column(&err), Some("email"), "{}", db.label);

            assert_eq!(
                by_login(s, "ada").await.expect("q").map(|u| u.id),
                Some("u1".into())
            );
            assert_eq!(
                by_login(s, "ADA@example.com")
                    .await
                    .expect("q")
                    .map(|u| u.id),
                Some("u1".into())
            );
            assert!(by_login(s, "' OR '1'='1").await.expect("q").is_none());

            let patch = UserPatch {
                role: Some(Role::Analyst),
                full_name: Some("Ada L".into()),
                ..UserPatch::default()
            };
            let u = update(s, "u1", &patch)
                .await
                .expect("update")
                .expect("found");
            assert_eq!(
                (u.role.as_str(), u.full_name.as_deref()),
                ("analyst", Some("Ada L"))
            );
            assert_eq!(u.organization.as_deref(), Some("org"), "untouched");
            assert!(update(s, "nope", &patch).await.expect("update").is_none());

            touch_login(s, "u1", 99).await.expect("touch");
            assert_eq!(
                by_id(s, "u1").await.expect("q").and_then(|u| u.last_login),
                Some(99)
            );
            let (page, total) = list(s, 0, 10).await.expect("list");
            assert_eq!((page.len(), total), (1, 1));
            assert_eq!(active_admins(s).await.expect("admins"), 0);
            assert!(delete(s, "u1").await.expect("delete"));
            assert!(!delete(s, "u1").await.expect("delete again"));
        }
    }

    #[tokio::test]
    async fn session_reads_the_account_and_the_token_revocation_together() {
        for db in TestDb::all().await {
            let s = &db.store;
            insert(s, &new_user("u1", "ada", "ada@example.com"))
                .await
                .expect("insert");
            let live = session(s, "u1", "jti-1").await.expect("q").expect("found");
            assert_eq!(
                live,
                Session {
                    username: "ada".into(),
                    role: Role::Viewer,
                    is_active: true,
                    session_generation: 0,
                    token_revoked: false,
                },
                "{}",
                db.label
            );
            crate::tokens::revoke_access(s, "jti-1", "u1", i64::MAX)
                .await
                .expect("revoke");
            crate::tokens::end_sessions(s, "u1").await.expect("end");
            let patch = UserPatch {
                role: Some(Role::Admin),
                is_active: Some(false),
                ..UserPatch::default()
            };
            update(s, "u1", &patch).await.expect("update");
            let after = session(s, "u1", "jti-1").await.expect("q").expect("found");
            assert_eq!(
                (
                    after.role,
                    after.is_active,
                    after.session_generation,
                    after.token_revoked
                ),
                (Role::Admin, false, 1, true),
                "{}",
                db.label
            );
            assert!(
                !session(s, "u1", "jti-2")
                    .await
                    .expect("q")
                    .expect("found")
                    .token_revoked
            );
            assert_eq!(session(s, "nobody", "jti-1").await.expect("q"), None);
        }
    }
}
