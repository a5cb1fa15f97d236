//! Webhook signatures, so a receiver can tell Vigil's POSTs from anyone else's and refuse replays.
//!
//! With `WEBHOOK_SECRET` set, every delivery carries
//! - `X-Vigil-Timestamp`: Unix seconds when the attempt was signed;
//! - `X-Vigil-Signature`: `sha256=` and the lower-case hex HMAC-SHA256, keyed with the secret, of
//!   `"{timestamp}.{body}"`;
//! - `X-Vigil-Delivery`: one id per delivery, the same on every retry, so a receiver can drop duplicates.
//!
//! A receiver recomputes the HMAC over the raw body, compares in constant time, and rejects timestamps older than
//! a few minutes. Without a secret, only the delivery id is sent.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";
pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
pub const DELIVERY_HEADER: &str = "x-vigil-delivery";

/// The key webhooks are signed with. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Arc<[u8]>);

impl WebhookSecret {
    /// `None` for an empty secret: an empty key would sign, but prove nothing.
    pub fn new(secret: &str) -> Option<WebhookSecret> {
        (!secret.is_empty()).then(|| WebhookSecret(Arc::from(secret.as_bytes())))
    }

    /// The `X-Vigil-Signature` value for `body` sent at `timestamp` (Unix seconds).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let digest = self.mac_of(timestamp, body).finalize().into_bytes();
        format!("sha256={}", hex::encode(digest))
    }

    /// Whether `signature` is this secret's signature of `body` at `timestamp` (constant-time comparison). What a
    /// receiver does; here for tests and for receivers written in Rust.
    pub fn verify(&self, timestamp: i64, body: &[u8], signature: &str) -> bool {
        let Some(digest) = signature
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        self.mac_of(timestamp, body).verify_slice(&digest).is_ok()
    }

    /// The HMAC state after `"{timestamp}.{body}"`: exactly what is signed.
    fn mac_of(&self, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the error case cannot happen for it.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_bind_body_and_time() {
        let key = WebhookSecret::new("s3cret").expect("key");
        let sig = key.sign(1_700_000_000, br#"{"id":"a"}"#);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(key.verify(1_700_000_000, br#"{"id":"a"}"#, &sig));
        assert!(
            !key.verify(1_700_000_001, br#"{"id":"a"}"#, &sig),
            "time is signed"
        );
        assert!(
            !key.verify(1_700_000_000, br#"{"id":"b"}"#, &sig),
            "body is signed"
        );
        let other = WebhookSecret::new("other").expect("key");
        assert!(!other.verify(1_700_000_000, br#"{"id":"a"}"#, &sig));
        assert!(!key.verify(1_700_000_000, br#"{"id":"a"}"#, "sha256=zz"));
        assert_eq!(WebhookSecret::new(""), None);
        assert_eq!(format!("{key:?}"), "WebhookSecret(…)");
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key = "key", "0.The quick brown fox jumps over the lazy dog"), computed independently with
        // Python's hmac module.
        let key = WebhookSecret::new("key").expect("key");
        assert_eq!(
            key.sign(0, b"The quick brown fox jumps over the lazy dog"),
            "sha256=8511f28f7a1949f0c42772b447d68b2daf760f5f0439a20a17e3b4e7cd395763"
        );
    }
}
