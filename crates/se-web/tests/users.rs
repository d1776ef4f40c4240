//! Account routes against a real server on loopback and a real SQLite
//! store: an admin creates building owners, gives them sites, and the
//! owners see only those sites after changing their first password.

mod common;

use common::{TestServer, OWNER_PASSWORD};
use reqwest::StatusCode;
use se_store::Store;
use serde_json::{json, Value};

async fn start() -> TestServer {
    let (dir, store) = common::store_with_admin().await;
    for id in ["mine", "theirs"] {
        store.upsert_site(&common::site(id)).await.unwrap();
    }
    TestServer::serve(dir, store).await
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn site_ids(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|site| site["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn created_owner_changes_password_then_sees_own_sites() {
    let server = start().await;
    let admin = server.admin().await;

    let (status, created) = send(admin.post(server.url("/api/v1/users")).json(&json!({"username": "marie", "role": "building_owner", "sites": ["mine"]}))).await;

    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["role"], "building_owner");
    assert_eq!(created["sites"], json!(["mine"]));
    assert_eq!(created["must_change_password"], true);
    assert!(created.get("password_hash").is_none(), "{created}");
    let password = created["generated_password"].as_str().unwrap().to_owned();
    assert!(password.chars().count() >= 16, "{password}");

    // The generated password opens a session that must change it first.
    let owner = server.login("marie", &password).await;
    let (status, body) = send(owner.get(server.url("/api/v1/sites"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "password_change_required");
    let change = json!({"current_password": password, "new_password": "marie-own-password-1"});
    let (status, body) = send(owner.post(server.url("/api/v1/auth/password")).json(&change)).await;
    assert!(status.is_success(), "{status} {body}");

    let (status, sites) = send(owner.get(server.url("/api/v1/sites"))).await;
    assert_eq!(status, StatusCode::OK, "{sites}");
    assert_eq!(site_ids(&sites), vec!["mine"]);
    let (status, _) = send(owner.get(server.url("/api/v1/sites/theirs"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, users) = send(admin.get(server.url("/api/v1/users"))).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|user| user["username"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["admin", "marie"]);
    assert_eq!(users[1]["must_change_password"], false);
    assert_eq!(users[0]["sites"], json!([]), "an admin owns no sites: it sees them all");
}

#[tokio::test]
async fn chosen_password_still_changes_at_first_login() {
    let server = start().await;
    let admin = server.admin().await;
    let body = json!({"username": "karim", "role": "building_owner", "password": OWNER_PASSWORD});

    let (status, created) = send(admin.post(server.url("/api/v1/users")).json(&body)).await;

    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["generated_password"], Value::Null);
    assert_eq!(created["sites"], json!([]));
    let owner = server.login("karim", OWNER_PASSWORD).await;
    let (status, body) = send(owner.get(server.url("/api/v1/devices"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "password_change_required");
}

#[tokio::test]
async fn owned_sites_are_replaced() {
    let server = start().await;
    let admin = server.admin().await;
    let body = json!({"username": "lea", "role": "building_owner", "sites": ["mine"], "password": OWNER_PASSWORD});
    let (status, _) = send(admin.post(server.url("/api/v1/users")).json(&body)).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, changed) = send(admin.put(server.url("/api/v1/users/lea/sites")).json(&json!({"sites": ["theirs", "theirs"]}))).await;

    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["sites"], json!(["theirs"]));
    let user = server.store.user_by_name("lea").await.unwrap().unwrap();
    let owned: Vec<String> = server.store.sites_of_user(user.id).await.unwrap().into_iter().map(|site| site.id).collect();
    assert_eq!(owned, vec!["theirs".to_owned()]);

    let (status, cleared) = send(admin.put(server.url("/api/v1/users/lea/sites")).json(&json!({"sites": []}))).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["sites"], json!([]));
}

#[tokio::test]
async fn bad_accounts_named_with_the_fix() {
    let server = start().await;
    let admin = server.admin().await;
    let create = |body: Value| admin.post(server.url("/api/v1/users")).header("Accept-Language", "fr").json(&body);

    let cases = [
        (json!({"username": "two words", "role": "building_owner"}), StatusCode::BAD_REQUEST, "invalid_username", "\"two words\""),
        (json!({"username": "sam", "role": "owner"}), StatusCode::BAD_REQUEST, "invalid_role", "building_owner"),
        (json!({"username": "sam", "role": "building_owner", "sites": ["nowhere"]}), StatusCode::NOT_FOUND, "site_not_found", "\"nowhere\""),
        (json!({"username": "sam", "role": "admin", "sites": ["mine"]}), StatusCode::BAD_REQUEST, "admin_sites", "building_owner"),
        (json!({"username": "sam", "role": "building_owner", "password": "short"}), StatusCode::BAD_REQUEST, "password_too_short", "10"),
        (json!({"username": "admin", "role": "admin"}), StatusCode::CONFLICT, "username_taken", "\"admin\""),
        (json!({"username": "sam", "role": "building_owner", "site": ["mine"]}), StatusCode::BAD_REQUEST, "invalid_json", "site"),
    ];
    for (body, want_status, want_code, named) in cases {
        let (status, answer) = send(create(body.clone())).await;
        assert_eq!(status, want_status, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], want_code, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: the message names {named}: {message}");
    }
    // None of the rejected bodies created an account.
    assert!(server.store.user_by_name("sam").await.unwrap().is_none());

    let (status, answer) = send(admin.put(server.url("/api/v1/users/nobody/sites")).json(&json!({"sites": []}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "user_not_found");
    let (status, answer) = send(admin.put(server.url("/api/v1/users/admin/sites")).json(&json!({"sites": ["mine"]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "admin_sites");
}

#[tokio::test]
async fn owners_cannot_manage_accounts() {
    let server = start().await;
    common::add_owner(&server.store, "owner", &["mine"]).await;
    let owner = server.login("owner", OWNER_PASSWORD).await;

    let (status, answer) = send(owner.post(server.url("/api/v1/users")).json(&json!({"username": "friend", "role": "admin"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = send(owner.put(server.url("/api/v1/users/owner/sites")).json(&json!({"sites": ["mine", "theirs"]}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(server.store.user_by_name("friend").await.unwrap().is_none());
    let user = server.store.user_by_name("owner").await.unwrap().unwrap();
    assert_eq!(server.store.sites_of_user(user.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn reset_password_ends_sessions_and_forces_change() {
    let server = start().await;
    common::add_owner(&server.store, "lea", &["mine"]).await;
    let owner = server.login("lea", OWNER_PASSWORD).await;
    let admin = server.admin().await;

    let (status, reset) = send(admin.post(server.url("/api/v1/users/lea/password")).json(&json!({}))).await;

    assert_eq!(status, StatusCode::OK, "{reset}");
    let password = reset["generated_password"].as_str().unwrap().to_owned();
    assert!(password.chars().count() >= 16, "{password}");
    let (status, _) = send(owner.get(server.url("/api/v1/sites"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old session ended");
    let old = reqwest::Client::new().post(server.url("/api/v1/auth/login")).json(&json!({"username": "lea", "password": OWNER_PASSWORD})).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "the old password no longer works");
    let fresh = server.login("lea", &password).await;
    let (status, body) = send(fresh.get(server.url("/api/v1/sites"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "password_change_required");

    let (status, body) = send(admin.post(server.url("/api/v1/users/lea/password")).json(&json!({"password": "short"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "password_too_short");
}

#[tokio::test]
async fn delete_keeps_one_admin() {
    let server = start().await;
    common::add_owner(&server.store, "lea", &["mine"]).await;
    let admin = server.admin().await;

    let (status, _) = send(admin.delete(server.url("/api/v1/users/lea"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(server.store.user_by_name("lea").await.unwrap().is_none());
    let (status, body) = send(admin.delete(server.url("/api/v1/users/lea"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "user_not_found");

    let (status, body) = send(admin.delete(server.url("/api/v1/users/admin")).header("Accept-Language", "fr")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "cannot_delete_self");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("Un administrateur ne peut pas"), "{body}");

    // With two admins, one may delete the other.
    let (status, created) = send(admin.post(server.url("/api/v1/users")).json(&json!({"username": "root2", "role": "admin", "password": "root2-password-1"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = send(admin.delete(server.url("/api/v1/users/root2"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "one admin remains");
    assert!(server.store.user_by_name("admin").await.unwrap().is_some());
}
