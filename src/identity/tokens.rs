//! Personal API tokens: 256 random bits behind a prefix that secret
//! scanners can recognise; only their SHA-256 is ever stored.

use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Every personal token starts with this, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "obt_";

/// A token just made: shown once, then only its hash exists.
pub struct IssuedToken {
    pub token: SecretString,
    pub sha256: String,
}

/// Makes a new personal token.
pub fn issue_token() -> IssuedToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let sha256 = hash_token(&token);
    IssuedToken {
        token: SecretString::from(token),
        sha256,
    }
}

/// The stored form of a token: its SHA-256, in hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_stored_hashed() {
        let a = issue_token();
        let b = issue_token();
        let text = a.token.expose_secret();
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(text.len(), TOKEN_PREFIX.len() + 64, "256 bits in hex");
        assert_ne!(text, b.token.expose_secret());
        assert_eq!(a.sha256, hash_token(text));
        assert!(!a.sha256.contains(&text[TOKEN_PREFIX.len()..]));
        assert!(
            format!("{:?}", a.token).contains("REDACTED")
                || !format!("{:?}", a.token).contains(text)
        );
    }
}
