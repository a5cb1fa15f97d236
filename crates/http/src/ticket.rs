//! Signed download tickets: short-lived links for what a browser fetches without an `Authorization` header
//! (`window.open(url)` for an export cannot carry a bearer token).
//!
//! A signed-in client asks for a link (e.g. `POST /api/anomalies/export/link?format=csv&…`); the server answers
//! with the same URL plus `ticket=…`, which anyone holding it can open until it expires. The ticket is
//! `base64url(payload) "." base64url(HMAC-SHA256)`, where the payload names the session (user id, access-token
//! `jti`, session generation) and the expiry, and the MAC covers a purpose and the request's other query
//! parameters ([`canonical_query`]), so a ticket cannot be moved to another route or another filter.
//!
//! Why this and not the access token in the query string: a URL ends up in browser history, proxies and logs; a
//! ticket there is worth one download for a minute, a bearer token the whole account for a day.
//!
//! Redeeming checks the MAC (constant time) and the expiry, then runs the same database check as every bearer
//! request ([`AuthUser::from_session`]): a logout of the token the link was made with, logout everywhere, a
//! password change, deactivation or a demotion take effect on outstanding links at once. The key is derived from
//! `JWT_SECRET` (HMAC with a fixed label, so it never signs anything a JWT could be confused with), so every
//! replica redeems every other replica's links.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{AppState, AuthUser, Error};

/// Query parameters that carry credentials: never part of what a ticket binds, and redacted from access logs.
pub const CREDENTIAL_PARAMS: &[&str] = &["ticket", "token", "access_token", "refresh_token"];

const INVALID: &str = "Invalid or expired download link";

/// The derived key tickets are signed with. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct TicketKey([u8; 32]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(…)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    sub: String,
    jti: String,
    #[serde(rename = "gen")]
    generation: i64,
    /// Expiry, Unix ms.
    exp: i64,
}

impl TicketKey {
    /// The ticket key of a deployment whose JWT secret is `secret`.
    pub fn derive(secret: &[u8]) -> TicketKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"vigil download ticket key v1");
        TicketKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, purpose: &str, payload_b64: &str, bound: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        // Length-prefixed fields: no choice of purpose and query can produce another's bytes.
        for part in [purpose, payload_b64, bound] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// A ticket for `who`'s session, for `purpose` and the canonical query `bound`, valid until `expires_at` (Unix
    /// ms; callers cap it at the access token's own expiry).
    pub fn issue(&self, who: &AuthUser, purpose: &str, bound: &str, expires_at: i64) -> String {
        let payload = Payload {
            sub: who.id.clone(),
            jti: who.token_id.clone(),
            generation: who.session_generation,
            exp: expires_at,
        };
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let payload_b64 = URL_SAFE_NO_PAD.encode(json);
        let sig = self
            .mac(purpose, &payload_b64, bound)
            .finalize()
            .into_bytes();
        format!("{payload_b64}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The session a ticket names, when its signature matches `purpose` and `bound` and it has not expired at
    /// `now` (Unix ms). Says nothing yet about whether the session is still live: see [`redeem`].
    fn open(&self, ticket: &str, purpose: &str, bound: &str, now: i64) -> Result<Payload, Error> {
        let refuse = || Error::Unauthorized(INVALID.into());
        let (payload_b64, sig_b64) = ticket.split_once('.').ok_or_else(refuse)?;
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| refuse())?;
        self.mac(purpose, payload_b64, bound)
            .verify_slice(&sig)
            .map_err(|_| refuse())?;
        let json = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| refuse())?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| refuse())?;
        if payload.exp <= now {
            return Err(refuse());
        }
        Ok(payload)
    }
}

/// The caller a ticket stands for, checked as a bearer token is: signature, expiry, then the account and session
/// in the database (role from the database). 401 for anything that does not check out.
pub async fn redeem(
    state: &AppState,
    ticket: &str,
    purpose: &str,
    bound: &str,
) -> Result<AuthUser, Error> {
    let now = vigil_store::time::now_ms();
    let p = state
        .tokens
        .ticket_key()
        .open(ticket, purpose, bound, now)?;
    AuthUser::from_session(state, &p.sub, &p.jti, p.generation, p.exp).await
}

/// A query string in a canonical form for binding: its pairs decoded, the credential parameters
/// ([`CREDENTIAL_PARAMS`]) and empty values dropped, sorted, re-encoded. `format=csv&source=a` and
/// `source=a&format=csv&ticket=…` bind the same. An undecodable query binds as itself.
pub fn canonical_query(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    let Ok(mut pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(raw) else {
        return raw.to_owned();
    };
    pairs.retain(|(k, v)| !v.is_empty() && !CREDENTIAL_PARAMS.contains(&k.as_str()));
    pairs.sort();
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// The (decoded) value of the first `name` parameter of a query string.
pub fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `raw` with the values of [`CREDENTIAL_PARAMS`] replaced by `[redacted]`, for logs. Other parameters are kept
/// byte for byte.
pub fn redact_query(raw: &str) -> String {
    raw.split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            // Keys are compared decoded enough to catch `%74oken`: any escape in a key is suspicious; redact.
            let decoded: String = serde_urlencoded::from_str::<Vec<(String, String)>>(pair)
                .ok()
                .and_then(|v| v.into_iter().next().map(|(k, _)| k))
                .unwrap_or_else(|| key.to_owned());
            if CREDENTIAL_PARAMS.contains(&decoded.as_str()) {
                format!("{key}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn who() -> AuthUser {
        AuthUser {
            id: "u1".into(),
            username: "ada".into(),
            role: Role::Viewer,
            token_id: "j1".into(),
            token_expires_at: 10_000,
            session_generation: 3,
        }
    }

    #[test]
    fn tickets_bind_purpose_query_and_time() {
        let key = TicketKey::derive(b"secret");
        let t = key.issue(&who(), "export", "format=csv", 1_000);
        let p = key.open(&t, "export", "format=csv", 999).expect("valid");
        assert_eq!(
            (p.sub.as_str(), p.jti.as_str(), p.generation),
            ("u1", "j1", 3)
        );
        assert!(
            key.open(&t, "export", "format=csv", 1_000).is_err(),
            "expired"
        );
        assert!(key.open(&t, "other", "format=csv", 0).is_err(), "purpose");
        assert!(key.open(&t, "export", "format=json", 0).is_err(), "query");
        assert!(
            TicketKey::derive(b"other")
                .open(&t, "export", "format=csv", 0)
                .is_err(),
            "key"
        );
        // A payload edited to another user, with the old signature.
        let (_, sig) = t.split_once('.').expect("dot");
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","jti":"j1","gen":3,"exp":1000}"#);
        assert!(
            key.open(&format!("{forged}.{sig}"), "export", "format=csv", 0)
                .is_err()
        );
        for junk in ["", ".", "a.b", "no-dot", "%%%.%%%"] {
            assert!(key.open(junk, "export", "", 0).is_err(), "{junk:?}");
        }
        assert_eq!(format!("{key:?}"), "TicketKey(…)");
    }

    #[test]
    fn canonical_queries_ignore_order_credentials_and_empty_values() {
        assert_eq!(
            canonical_query(Some("source=a%20b&format=csv&ticket=x&token=y&risk_level=")),
            "format=csv&source=a+b"
        );
        assert_eq!(
            canonical_query(Some("format=csv&source=a+b")),
            "format=csv&source=a+b"
        );
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn credentials_are_redacted_from_logged_queries() {
        assert_eq!(
            redact_query("format=csv&ticket=abc.def&token=eyJ&x=1&%74oken=zz&refresh_token=r"),
            "format=csv&ticket=[redacted]&token=[redacted]&x=1&%74oken=[redacted]&refresh_token=[redacted]"
        );
        assert_eq!(redact_query("a=1"), "a=1");
    }
}
