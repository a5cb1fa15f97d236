//! Password hashing: Argon2id for every new hash; bcrypt hashes imported from the Python originals still verify and
//! are flagged for an upgrade. Both checks compare in constant time (the hash crates do).
//!
//! Hashing is deliberately slow (tens of milliseconds), so the async wrappers run it on the blocking pool rather than
//! stall a runtime worker.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::Error;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Invalid,
    /// The password matches; `rehash` is true when the stored hash is not Argon2id with today's parameters.
    Valid {
        rehash: bool,
    },
}

impl Verification {
    pub fn is_valid(self) -> bool {
        matches!(self, Verification::Valid { .. })
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's first recommended configuration: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password as an Argon2id PHC string.
pub fn hash(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

/// Checks `password` against a stored Argon2 PHC string or bcrypt hash. Unknown formats never verify.
pub fn verify(password: &str, stored: &str) -> Verification {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verification::Valid { rehash: true },
            _ => Verification::Invalid,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verification::Invalid;
    };
    if argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verification::Invalid;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed)
            .map(|p| p.m_cost() == 19 * 1024 && p.t_cost() == 2)
            .unwrap_or(false);
    Verification::Valid { rehash: !current }
}

/// [`hash`] on the blocking pool.
pub async fn hash_async(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(Error::internal)?
}

/// [`verify`] on the blocking pool.
pub async fn verify_async(password: String, stored: String) -> Result<Verification, Error> {
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .map_err(Error::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(
            verify("correct horse", &h),
            Verification::Valid { rehash: false }
        );
        assert_eq!(verify("wrong horse", &h), Verification::Invalid);
    }

    #[test]
    fn bcrypt_verifies_and_asks_for_rehash() {
        let h = bcrypt::hash("legacy-pass", 4).expect("bcrypt");
        assert_eq!(
            verify("legacy-pass", &h),
            Verification::Valid { rehash: true }
        );
        assert_eq!(verify("nope", &h), Verification::Invalid);
        let as_2a = h.replacen("$2b$", "$2a$", 1);
        assert!(verify("legacy-pass", &as_2a).is_valid());
    }

    #[test]
    fn garbage_never_verifies() {
        assert_eq!(verify("", ""), Verification::Invalid);
        assert_eq!(verify("x", "plaintext"), Verification::Invalid);
        assert_eq!(verify("x", "$argon2id$broken"), Verification::Invalid);
    }
}
