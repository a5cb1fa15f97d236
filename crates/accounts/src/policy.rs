//! What a valid username, email and password look like, and the random tokens handed to users.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::AccountsConfig;

/// Why an input was refused; rendered as the 422 `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("Username must be between 3 and 50 characters")]
    UsernameLength,
    #[error("Username may not contain '@', spaces or control characters")]
    UsernameChars,
    #[error("Invalid email address")]
    Email,
    #[error("Password must be at least {0} characters long")]
    PasswordLength(usize),
    #[error(
        "Password must contain an upper-case letter, a lower-case letter, a digit and a symbol"
    )]
    PasswordClasses,
    #[error("Password must be at most 128 characters long")]
    PasswordTooLong,
}

/// A refused input is the client's to fix: a 422 whose `detail` is the policy's message.
impl From<PolicyError> for vigil_http::Error {
    fn from(e: PolicyError) -> Self {
        vigil_http::Error::unprocessable(e.to_string())
    }
}

/// A username: 3–50 characters, no whitespace or control characters, and no `@` (so that a username can never
/// be mistaken for someone else's email at login, where either is accepted).
pub fn username(raw: &str) -> Result<String, PolicyError> {
    let n = raw.chars().count();
    if !(3..=50).contains(&n) {
        return Err(PolicyError::UsernameLength);
    }
    if raw
        .chars()
        .any(|c| c == '@' || c.is_whitespace() || c.is_control())
    {
        return Err(PolicyError::UsernameChars);
    }
    Ok(raw.to_owned())
}

/// An email address, lower-cased: one `@`, a non-empty local part, a dotted domain of sensible labels.
pub fn email(raw: &str) -> Result<String, PolicyError> {
    let e = raw.trim().to_lowercase();
    if e.len() > 254 || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PolicyError::Email);
    }
    let Some((local, domain)) = e.split_once('@') else {
        return Err(PolicyError::Email);
    };
    let labels_ok = domain.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    });
    if local.is_empty() || local.len() > 64 || !domain.contains('.') || !labels_ok {
        return Err(PolicyError::Email);
    }
    if local.contains(['<', '>', '"', ',', ';', '(', ')', '[', ']', '\\']) {
        return Err(PolicyError::Email);
    }
    Ok(e)
}

/// The password policy: at least `password_min_length` characters (and at most 128, which bounds hashing work)
/// with upper case, lower case, a digit and a symbol when `password_require_classes` is on.
pub fn password(raw: &str, cfg: &AccountsConfig) -> Result<(), PolicyError> {
    let n = raw.chars().count();
    if n < cfg.password_min_length {
        return Err(PolicyError::PasswordLength(cfg.password_min_length));
    }
    if n > 128 {
        return Err(PolicyError::PasswordTooLong);
    }
    if cfg.password_require_classes {
        let upper = raw.chars().any(char::is_uppercase);
        let lower = raw.chars().any(char::is_lowercase);
        let digit = raw.chars().any(|c| c.is_ascii_digit());
        let symbol = raw
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace());
        if !(upper && lower && digit && symbol) {
            return Err(PolicyError::PasswordClasses);
        }
    }
    Ok(())
}

/// A fresh bearer secret: 32 random bytes from the OS generator, hex-encoded (URL-safe as is).
pub fn new_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the database keeps of a token: its SHA-256, hex. The token has 256 bits of entropy, so a fast hash is
/// enough (no salt or stretching needed, unlike passwords).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username("ada"), Ok("ada".into()));
        assert_eq!(username("ab"), Err(PolicyError::UsernameLength));
        assert_eq!(username(&"x".repeat(51)), Err(PolicyError::UsernameLength));
        assert!(username(&"é".repeat(50)).is_ok(), "characters, not bytes");
        assert_eq!(username("a@b.c"), Err(PolicyError::UsernameChars));
        assert_eq!(username("a b c"), Err(PolicyError::UsernameChars));
    }

    #[test]
    fn emails() {
        assert_eq!(email(" Ada@Example.COM "), Ok("ada@example.com".into()));
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.io",
            "ada@localhost",
            "a@b..c",
            "a b@c.io",
            "a@-b.io",
            "<a>@b.io",
        ] {
            assert_eq!(email(bad), Err(PolicyError::Email), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        let cfg = AccountsConfig::default();
        assert!(password("Str0ng!pw", &cfg).is_ok());
        assert_eq!(password("S0!a", &cfg), Err(PolicyError::PasswordLength(8)));
        assert_eq!(
            password("alllower1!", &cfg),
            Err(PolicyError::PasswordClasses)
        );
        assert_eq!(
            password("ALLUPPER1!", &cfg),
            Err(PolicyError::PasswordClasses)
        );
        assert_eq!(
            password("NoDigits!!", &cfg),
            Err(PolicyError::PasswordClasses)
        );
        assert_eq!(
            password("NoSymbol11", &cfg),
            Err(PolicyError::PasswordClasses)
        );
        assert_eq!(
            password(&format!("Aa1!{}", "x".repeat(125)), &cfg),
            Err(PolicyError::PasswordTooLong)
        );
        let lax = AccountsConfig {
            password_require_classes: false,
            ..cfg
        };
        assert!(password("alllowercase", &lax).is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
