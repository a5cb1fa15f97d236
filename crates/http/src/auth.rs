//! Who is calling: JWT access tokens and the role extractors that guard every TopoForge route.
//!
//! Tokens are HS256 JWTs with the standard `sub`, `iat`, `exp`, `jti` claims plus `role`, `username` and `gen` (the
//! account's session generation). Only HS256 is accepted (so `alg: none` and algorithm-confusion tokens fail), every
//! claim is required, and no leeway is granted.
//!
//! A valid signature is not the end of it: the extractors load the user by id in one query and take the role **from
//! the database**, so an account that an admin deleted, disabled or demoted loses its powers at once rather than when
//! its token expires. The same query refuses a token whose `jti` was revoked by logout, or whose `gen` is older than
//! the account's (every session ended: logout everywhere, password change or reset).

use std::fmt;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
pub use vigil_store::Role;

use crate::{AppState, Error};

/// The claims inside an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub role: Role,
    pub username: String,
    /// Unique per token, so logout can revoke exactly this one.
    pub jti: String,
    /// The account's session generation when the token was issued.
    #[serde(rename = "gen")]
    pub generation: i64,
}

/// Signs and checks access tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Signs download tickets ([`crate::ticket`]); derived from the same secret.
    ticket_key: crate::ticket::TicketKey,
    /// Access-token lifetime in seconds.
    pub access_ttl_secs: i64,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("access_ttl_secs", &self.access_ttl_secs)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ticket_key: crate::ticket::TicketKey::derive(secret),
            access_ttl_secs,
        }
    }

    /// The key of download tickets ([`crate::ticket`]).
    pub fn ticket_key(&self) -> &crate::ticket::TicketKey {
        &self.ticket_key
    }

    /// A signed access token for this user, valid from now for `access_ttl_secs`. `generation` is the account's
    /// current session generation (`users.session_generation`).
    pub fn issue(
        &self,
        user_id: &str,
        username: &str,
        role: Role,
        generation: i64,
    ) -> Result<String, Error> {
        let now = vigil_store::time::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_owned(),
            iat: now,
            exp: now + self.access_ttl_secs,
            role,
            username: username.to_owned(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            generation,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::internal)
    }

    /// The claims of a token whose signature, algorithm and expiry check out.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Error::Unauthorized("Token has expired".into())
                }
                _ => Error::Unauthorized("Could not validate credentials".into()),
            })
    }
}

/// The authenticated caller, as the database knows them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
    pub username: String,
    pub role: Role,
    /// The presented token's id and expiry (Unix ms), for revoking it at logout.
    pub token_id: String,
    pub token_expires_at: i64,
    /// The session generation the token was issued in (equal to the account's, or the token was refused).
    pub session_generation: i64,
}

impl AuthUser {
    /// Refuses with 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), Error> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "This action requires the {role} role."
            )))
        }
    }

    /// Resolves a bearer token to a live account whose sessions it still belongs to.
    pub async fn from_token(state: &AppState, token: &str) -> Result<AuthUser, Error> {
        let claims = state.tokens.verify(token)?;
        Self::from_session(
            state,
            &claims.sub,
            &claims.jti,
            claims.generation,
            claims.exp.saturating_mul(1000),
        )
        .await
    }

    /// The live account behind a session that a verified credential (an access token, a download ticket) names:
    /// user `sub`, token id `jti`, session generation `generation`, valid until `expires_at` (Unix ms). Refused
    /// when the account is gone or disabled, the token was revoked, or the account's sessions were ended since.
    pub async fn from_session(
        state: &AppState,
        sub: &str,
        jti: &str,
        generation: i64,
        expires_at: i64,
    ) -> Result<AuthUser, Error> {
        match vigil_store::users::session(&state.store, sub, jti).await? {
            Some(session) if session.is_active => {
                if session.token_revoked || session.session_generation != generation {
                    return Err(Error::Unauthorized("Token has been revoked".into()));
                }
                Ok(AuthUser {
                    id: sub.to_owned(),
                    username: session.username,
                    role: session.role,
                    token_id: jti.to_owned(),
                    token_expires_at: expires_at,
                    session_generation: generation,
                })
            }
            _ => Err(Error::Unauthorized("Could not validate credentials".into())),
        }
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let state = AppState::from_ref(state);
        let token =
            bearer_token(parts).ok_or_else(|| Error::Unauthorized("Not authenticated".into()))?;
        AuthUser::from_token(&state, token).await
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub AuthUser);

        impl<S> FromRequestParts<S> for $name
        where
            AppState: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = Error;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
                let user = AuthUser::from_request_parts(parts, state).await?;
                user.require($role)?;
                Ok($name(user))
            }
        }
    };
}

role_extractor!(
    /// Any signed-in account (viewer or above).
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// An analyst or admin.
    Analyst,
    Role::Analyst
);
role_extractor!(
    /// An admin.
    Admin,
    Role::Admin
);

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef", 3600)
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Analyst && Role::Analyst < Role::Admin);
        assert_eq!("analyst".parse::<Role>(), Ok(Role::Analyst));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn issued_tokens_verify() {
        let k = keys();
        let token = k.issue("u1", "ada", Role::Analyst, 3).expect("issue");
        let claims = k.verify(&token).expect("verify");
        assert_eq!(
            (claims.sub.as_str(), claims.role, claims.username.as_str()),
            ("u1", Role::Analyst, "ada")
        );
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(claims.generation, 3);
        let again = k.issue("u1", "ada", Role::Analyst, 3).expect("issue");
        assert_ne!(
            k.verify(&again).expect("verify").jti,
            claims.jti,
            "every token has its own id"
        );
    }

    #[test]
    fn tampered_tokens_are_rejected() {
        let k = keys();
        let token = k.issue("u1", "ada", Role::Viewer, 0).expect("issue");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Promote ourselves to admin without re-signing.
        let payload = URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64");
        let forged = String::from_utf8(payload)
            .expect("utf8")
            .replace("\"viewer\"", "\"admin\"");
        parts[1] = URL_SAFE_NO_PAD.encode(forged);
        assert!(k.verify(&parts.join(".")).is_err());
        // A different secret.
        let other = TokenKeys::new(b"another-secret-another-secret-!!", 3600);
        assert!(other.verify(&token).is_err());
        // alg: none.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(k.verify(&format!("{header}.{}.", parts[1])).is_err());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let k = TokenKeys::new(b"0123456789abcdef0123456789abcdef", -10);
        let token = k.issue("u1", "ada", Role::Admin, 0).expect("issue");
        let err = k.verify(&token).expect_err("expired");
        assert_eq!(err.to_string(), "Token has expired");
    }
}
