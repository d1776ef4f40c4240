//! Accounts under `/api/v1/users` (admin only): the list of accounts,
//! creating building owners and admins, and the sites each owner owns.
//!
//! A new account must change its password at first login, whether the admin
//! chose it or the server generated it, so only the account holder has the
//! password in use.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use se_store::{NewUser, Role, User};
use serde::{Deserialize, Serialize};

use crate::accounts::{generate_password, hash_password};
use crate::auth::{validate_new_password, AdminUser};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::sites::site_id;
use crate::WebState;

/// Longest accepted username, in characters.
const MAX_USERNAME_CHARS: usize = 64;

/// One account in the admin's list, without the password hash.
#[derive(Serialize)]
pub(crate) struct UserView {
    id: i64,
    username: String,
    role: Role,
    must_change_password: bool,
    /// Ids of the sites a building owner owns; empty for an admin, who has access to every site.
    sites: Vec<String>,
}

async fn view(state: &WebState, user: User) -> Result<UserView, ApiError> {
    let sites = match user.role {
        Role::Admin => Vec::new(),
        Role::BuildingOwner => state.store.sites_of_user(user.id).await?.into_iter().map(|site| site.id).collect(),
    };
    Ok(UserView { id: user.id, username: user.username, role: user.role, must_change_password: user.must_change_password, sites })
}

/// `GET /api/v1/users`: every account, ordered by id.
pub(crate) async fn list(State(state): State<WebState>, AdminUser(_admin): AdminUser) -> Result<Json<Vec<UserView>>, ApiError> {
    let mut views = Vec::new();
    for user in state.store.list_users().await? {
        views.push(view(&state, user).await?);
    }
    Ok(Json(views))
}

/// Checks a username: 1 to 64 ASCII letters, digits, dots, dashes or
/// underscores, so it reads the same in logs, URLs and on every keyboard.
fn username(value: &str) -> Result<String, ApiError> {
    let valid = !value.is_empty()
        && value.chars().count() <= MAX_USERNAME_CHARS
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(ApiError::InvalidUsername { value: value.to_owned() })
    }
}

fn role(value: &str) -> Result<Role, ApiError> {
    Role::from_code(value).ok_or_else(|| ApiError::InvalidRole { value: value.to_owned() })
}

/// Checks that every id is a valid, existing site, and removes repeats.
async fn existing_sites(state: &WebState, ids: &[String]) -> Result<Vec<String>, ApiError> {
    let mut sites: Vec<String> = Vec::new();
    for id in ids {
        let id = site_id(id)?;
        if state.store.site(&id).await?.is_none() {
            return Err(ApiError::SiteNotFound { value: id });
        }
        if !sites.contains(&id) {
            sites.push(id);
        }
    }
    Ok(sites)
}

/// Hashes the first password of an account: the one the admin chose, after
/// the length check, or a generated one, which is returned so that the
/// response can show it once.
async fn first_password(chosen: Option<String>) -> Result<(String, Option<String>), ApiError> {
    if let Some(password) = &chosen {
        validate_new_password(password)?;
    }
    let generated = chosen.is_none().then(generate_password);
    let password = chosen.or_else(|| generated.clone()).unwrap_or_default();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|error| ApiError::Internal(format!("password hashing task failed: {error}")))?
        .map_err(ApiError::Internal)?;
    Ok((password_hash, generated))
}

/// Body of `POST /api/v1/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserBody {
    username: String,
    role: String,
    #[serde(default)]
    sites: Vec<String>,
    /// A first password for the account; the server generates one when it is missing.
    password: Option<String>,
}

/// Response of `POST /api/v1/users`.
#[derive(Serialize)]
pub(crate) struct CreatedUser {
    #[serde(flatten)]
    user: UserView,
    /// The generated first password, shown only in this response; `null` when the admin chose it.
    generated_password: Option<String>,
}

/// `POST /api/v1/users`: creates an account, which must change its password
/// at first login. 201 with the account and, when the server generated the
/// password, that password.
pub(crate) async fn create(
    State(state): State<WebState>,
    AdminUser(admin): AdminUser,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let username = username(&body.username)?;
    let role = role(&body.role)?;
    if role == Role::Admin && !body.sites.is_empty() {
        return Err(ApiError::AdminSites);
    }
    let sites = existing_sites(&state, &body.sites).await?;
    if state.store.user_by_name(&username).await?.is_some() {
        return Err(ApiError::UsernameTaken { value: username });
    }

    let (password_hash, generated) = first_password(body.password).await?;
    let user = state
        .store
        .create_user(&NewUser { username: username.clone(), password_hash, role, must_change_password: true })
        .await
        .map_err(|error| match error {
            // Another request created the same name in between.
            se_store::StoreError::Conflict { .. } => ApiError::UsernameTaken { value: username.clone() },
            other => ApiError::Store(other),
        })?;
    for site in &sites {
        state.store.set_site_owner(site, user.id, true).await?;
    }
    tracing::info!(username = %user.username, role = role.code(), sites = ?sites, by = %admin.username, "account created");
    let user = view(&state, user).await?;
    Ok((StatusCode::CREATED, Json(CreatedUser { user, generated_password: generated })))
}

/// Body of `PUT /api/v1/users/{username}/sites`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SitesBody {
    sites: Vec<String>,
}

/// `PUT /api/v1/users/{username}/sites`: replaces the sites a building owner
/// owns; an empty list removes every site.
pub(crate) async fn put_sites(
    State(state): State<WebState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SitesBody>,
) -> Result<Json<UserView>, ApiError> {
    let user = state.store.user_by_name(&name).await?.ok_or(ApiError::UserNotFound { value: name })?;
    if user.role == Role::Admin {
        return Err(ApiError::AdminSites);
    }
    let requested = existing_sites(&state, &body.sites).await?;
    let owned: Vec<String> = state.store.sites_of_user(user.id).await?.into_iter().map(|site| site.id).collect();
    for site in owned.iter().filter(|site| !requested.contains(site)) {
        state.store.set_site_owner(site, user.id, false).await?;
    }
    for site in requested.iter().filter(|site| !owned.contains(site)) {
        state.store.set_site_owner(site, user.id, true).await?;
    }
    tracing::info!(username = %user.username, sites = ?requested, by = %admin.username, "owned sites changed");
    Ok(Json(view(&state, user).await?))
}

/// Body of `POST /api/v1/users/{username}/password`: `{}` has the server
/// generate the new password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetBody {
    password: Option<String>,
}

/// Response of a password reset.
#[derive(Serialize)]
pub(crate) struct ResetPassword {
    username: String,
    /// The generated password, shown only in this response; `null` when the admin chose it.
    generated_password: Option<String>,
}

/// `POST /api/v1/users/{username}/password`: replaces a forgotten password.
/// The user must change it at the next login, and their sessions end.
pub(crate) async fn reset_password(
    State(state): State<WebState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<Json<ResetPassword>, ApiError> {
    let user = state.store.user_by_name(&name).await?.ok_or(ApiError::UserNotFound { value: name })?;
    let (password_hash, generated) = first_password(body.password).await?;
    state.store.reset_password(user.id, &password_hash).await?;
    tracing::info!(username = %user.username, by = %admin.username, "password reset by an admin");
    Ok(Json(ResetPassword { username: user.username, generated_password: generated }))
}

/// `DELETE /api/v1/users/{username}`: deletes an account, its sessions and
/// its site ownerships. An admin cannot delete their own account, so the
/// server always keeps one admin.
pub(crate) async fn delete(
    State(state): State<WebState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = state.store.user_by_name(&name).await?.ok_or(ApiError::UserNotFound { value: name })?;
    // The caller is an admin, so refusing self-deletion keeps one admin.
    if user.id == admin.id {
        return Err(ApiError::CannotDeleteSelf);
    }
    state.store.delete_user(user.id).await?;
    tracing::info!(username = %user.username, by = %admin.username, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        for good in ["owner", "a", "marie.dupont", "site_2-owner", &"x".repeat(64)] {
            assert_eq!(username(good).ok().as_deref(), Some(good), "{good}");
        }
        for bad in ["", "two words", "é", "a/b", &"x".repeat(65)] {
            assert!(matches!(username(bad), Err(ApiError::InvalidUsername { .. })), "{bad}");
        }
    }

    #[test]
    fn role_codes() {
        assert_eq!(role("building_owner").ok(), Some(Role::BuildingOwner));
        assert_eq!(role("admin").ok(), Some(Role::Admin));
        assert!(matches!(role("owner"), Err(ApiError::InvalidRole { .. })));
    }
}
