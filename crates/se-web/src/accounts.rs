//! Password hashing and the accounts created at start-up.

use std::net::SocketAddr;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use rand::distr::{Alphanumeric, SampleString};
use se_store::{NewUser, Role, Store, StoreError};

use crate::error::WebError;

/// Minimum length of a password chosen by a person, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Maximum password length, in characters; it bounds the hashing work one request can cause.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Length of a generated password; 20 alphanumeric characters carry about 119 bits.
pub const GENERATED_PASSWORD_CHARS: usize = 20;

pub const ADMIN_USERNAME: &str = "admin";
pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo";

/// Hashes a password with Argon2id and default parameters into a PHC string.
/// This takes tens of milliseconds, so async code calls it through `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| error.to_string())
}

/// Checks a password against a PHC string; a malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Runs one verification against a fixed hash, so that a login for an unknown
/// user costs as much time as one for a known user.
pub(crate) fn verify_dummy(password: &str) {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    let hash = DUMMY_HASH.get_or_init(|| {
        hash_password(&generate_password()).unwrap_or_else(|error| {
            tracing::error!(%error, "failed to prepare the timing-equalizing password hash");
            String::new()
        })
    });
    let _ = verify_password(password, hash);
}

/// Generates a random alphanumeric password of [`GENERATED_PASSWORD_CHARS`].
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_PASSWORD_CHARS)
}

async fn hash_off_thread(password: String) -> Result<String, WebError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|error| WebError::PasswordHash(error.to_string()))?
        .map_err(WebError::PasswordHash)
}

/// Creates the `admin` account when the store has no user at all.
///
/// Uses `initial_password` when given (at least [`MIN_PASSWORD_CHARS`]),
/// otherwise generates one and flags it for change at first login. Returns the
/// password when the account was created, so the caller can print it once;
/// returns `None` when users already exist.
pub async fn ensure_admin(
    store: &dyn Store,
    initial_password: Option<String>,
) -> Result<Option<String>, WebError> {
    let count = store
        .count_users()
        .await
        .map_err(|source| WebError::Store {
            operation: "count users",
            source,
        })?;
    if count > 0 {
        return Ok(None);
    }
    if let Some(password) = &initial_password {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(WebError::InitialPasswordTooShort {
                min: MIN_PASSWORD_CHARS,
            });
        }
    }
    let generated = initial_password.is_none();
    let password = initial_password.unwrap_or_else(generate_password);
    let new_user = NewUser {
        username: ADMIN_USERNAME.to_owned(),
        password_hash: hash_off_thread(password.clone()).await?,
        role: Role::Admin,
        must_change_password: generated,
    };
    match store.create_user(&new_user).await {
        Ok(_) => {
            tracing::info!(
                username = ADMIN_USERNAME,
                generated,
                "created the first admin account"
            );
            Ok(Some(password))
        }
        // Another process created it between the count and the insert.
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(source) => Err(WebError::Store {
            operation: "create the admin account",
            source,
        }),
    }
}

/// Creates the `demo` account (password `demo`, building-owner role) for a
/// local trial. Refuses unless `listen` is a loopback address, because the
/// password is public. Returns whether the account was created now.
pub async fn ensure_demo_account(store: &dyn Store, listen: SocketAddr) -> Result<bool, WebError> {
    if !listen.ip().is_loopback() {
        return Err(WebError::DemoNotLoopback { addr: listen });
    }
    let existing = store
        .user_by_name(DEMO_USERNAME)
        .await
        .map_err(|source| WebError::Store {
            operation: "look up the demo account",
            source,
        })?;
    if existing.is_some() {
        return Ok(false);
    }
    let new_user = NewUser {
        username: DEMO_USERNAME.to_owned(),
        password_hash: hash_off_thread(DEMO_PASSWORD.to_owned()).await?,
        role: Role::BuildingOwner,
        must_change_password: false,
    };
    match store.create_user(&new_user).await {
        Ok(_) => {
            tracing::warn!(username = DEMO_USERNAME, %listen, "created the demo account with a public password; use it for local trials only");
            Ok(true)
        }
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(source) => Err(WebError::Store {
            operation: "create the demo account",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify_accepts_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &hash));
    }

    #[test]
    fn verify_rejects_other_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(!verify_password("wrong horse", &hash));
    }

    #[test]
    fn verify_rejects_malformed_hash() {
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn generated_password_is_long_alphanumeric() {
        let password = generate_password();
        assert_eq!(password.chars().count(), GENERATED_PASSWORD_CHARS);
        assert!(
            password.chars().all(|c| c.is_ascii_alphanumeric()),
            "{password}"
        );
    }
}
