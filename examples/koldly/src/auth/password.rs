//! Argon2id password hashing on the blocking pool, and the password policy.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
    password_hash::{SaltString, rand_core::OsRng},
};

use crate::{config::Argon2Params, error::ApiError};

/// Hashes and verifies passwords with argon2id; cloning is cheap.
#[derive(Clone)]
pub struct Passwords {
    argon2: Arc<Argon2<'static>>,
    /// A hash of a random password, verified against when the account is unknown
    /// so that every failed login costs the same time.
    dummy_hash: Arc<str>,
    /// One permit per core: hashes beyond that only time-slice the same cores,
    /// while each holds its own `m_cost` buffer (19 MiB with OWASP's costs), so
    /// they wait for a permit instead (the soak's memory bound relies on it).
    permits: Arc<tokio::sync::Semaphore>,
}

/// The longest password accepted (hashing cost stays bounded).
pub const MAX_PASSWORD_LEN: usize = 256;

impl Passwords {
    /// A hasher with these costs.
    pub fn new(params: Argon2Params) -> Result<Self, argon2::Error> {
        let params = Params::new(params.m_cost, params.t_cost, params.p_cost, None)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let dummy_hash = argon2
            .hash_password(b"dummy password for unknown accounts", &salt)
            .map_err(|_| argon2::Error::AlgorithmInvalid)?
            .to_string();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2: Arc::new(argon2),
            dummy_hash: dummy_hash.into(),
            permits: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    /// Hashes `password` (PHC string) on the blocking pool.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let argon2 = self.argon2.clone();
        let permit = self.permit().await;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| ApiError::internal("password hashing task failed", e))?
        .map_err(|e| ApiError::internal("password hashing failed", e))
    }

    /// Whether `password` matches `hash`; with no hash, verifies against a dummy
    /// (and fails) so the time taken does not tell whether the account exists.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let argon2 = self.argon2.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let permit = self.permit().await;
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash)
                .map(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        known && matched
    }

    /// A hashing slot, held by the blocking task until its hash is done (even
    /// when the request that asked for it is gone).
    async fn permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// The policy: 10 to 256 characters with at least one letter and one digit.
pub fn check_policy(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < 10 {
        return Err(ApiError::validation(
            "password must be at least 10 characters long",
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::validation(
            "password must be at most 256 bytes long",
        ));
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(ApiError::validation(
            "password must contain a letter and a digit",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("short1").is_err());
        assert!(check_policy("longenoughbutnodigit").is_err());
        assert!(check_policy("1234567890123").is_err());
        assert!(check_policy(&format!("a1{}", "x".repeat(300))).is_err());
        assert!(check_policy("correct horse 9").is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(Argon2Params::TESTING).unwrap();
        let h = p.hash("correct horse 9".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("correct horse 9".into(), Some(h.clone())).await);
        assert!(!p.verify("wrong horse 9".into(), Some(h)).await);
        assert!(
            !p.verify("dummy password for unknown accounts".into(), None)
                .await
        );
    }
}
