//! `/api/auth/*`: registration, the three login shapes, me, refresh rotation and logout.

use crate::helpers::{PASSWORD, apps, lax_limits, login_form, register};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_http::testing::TestApp;
use vigil_http::{HttpConfig, Role};

/// Hardening attacks, kept: a NUL in a credential or a profile field is a 422 on both backends (PostgreSQL used to
/// answer 500), and an oversized login body is a 413 like every other body.
#[tokio::test]
async fn nul_in_credentials_and_oversized_login_are_refused() {
    for app in apps(lax_limits()).await {
        let (s, _) = register(&app, "nadia", "nadia@example.com").await;
        assert_eq!(s, StatusCode::CREATED, "{}", app.label);
        let r = login_form(&app, "nad\u{0}ia", PASSWORD).await;
        assert_eq!(
            r.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "form {}",
            app.label
        );
        let (s, v) = app
            .api()
            .post(
                "/api/auth/login",
                &json!({"username": "nadia\u{0}", "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "json {}: {v}",
            app.label
        );
        let (s, v) = app
            .api()
            .post(
                "/api/auth/register",
                &json!({"username": "eve", "email": "eve@example.com", "password": PASSWORD,
                        "full_name": "E\u{0}ve"}),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "register {}: {v}",
            app.label
        );
        let r = login_form(&app, "nadia", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "the account still works");
        let huge = "x".repeat(17 * 1024 * 1024);
        let r = app
            .client
            .post(app.url("/api/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username=nadia&password={huge}"))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{}", app.label);
        app.stop().await;
    }
}

/// Every auth body goes through the one body reader: a multipart login and a logout body over the limit are a 413
/// in the `{"detail"}` shape, like the form and JSON logins (the multipart login used to answer 422, the logout a
/// plain-text 413). A small limit keeps the whole body in the socket buffer, so the server's early answer is read.
#[tokio::test]
async fn oversized_multipart_login_and_logout_are_413_with_detail() {
    for db in vigil_store::testing::TestDb::all().await {
        let config = HttpConfig {
            max_body_bytes: 4096,
            ..HttpConfig::for_tests()
        };
        let app = TestApp::start_with(db, config, |state| {
            vigil_accounts::Accounts::new(lax_limits()).router(state)
        })
        .await;
        let l = app.label;
        let (_, viewer) = app.user_with_role("olga", Role::Viewer).await;
        let form = reqwest::multipart::Form::new()
            .text("username", "olga")
            .text("password", "x".repeat(16 * 1024));
        let r = app
            .api()
            .request(Method::POST, "/api/auth/login")
            .multipart(form)
            .send()
            .await
            .expect("multipart login");
        let (s, b) = vigil_http::testing::decode(r).await;
        assert_eq!(
            s,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{l}: multipart login: {b}"
        );
        assert!(b["detail"].is_string(), "{l}: {b}");
        let huge = json!({"refresh_token": "x".repeat(16 * 1024)});
        let (s, b) = app.api_as(&viewer).post("/api/auth/logout", &huge).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{l}: logout: {b}");
        assert!(b["detail"].is_string(), "{l}: {b}");
        let (s, b) = app.api_as(&viewer).get("/api/auth/me").await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: the refused logout ended nothing: {b}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn register_login_me_refresh_logout() {
    for app in apps(lax_limits()).await {
        registration(&app).await;
        let json_login = logins(&app).await;
        me_and_refresh(&app, &json_login).await;
        logout_one_session(&app).await;
        logout_everywhere(&app).await;
        app.stop().await;
    }
}

/// Register: 201 and a viewer whatever the body asks; duplicates and the input policy.
async fn registration(app: &TestApp) {
    let l = app.label;
    // Register: 201, viewer whatever the body asks, unverified.
    let body = json!({"username": "ada", "email": "Ada@Example.com", "password": PASSWORD,
        "full_name": "Ada Lovelace", "organization": "Analytical", "role": "admin"});
    let (s, reg) = app.api().post("/api/auth/register", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{l}: {reg}");
    assert_eq!(reg["token_type"], "bearer");
    assert_eq!(reg["user"]["role"], "viewer", "{l}");
    assert_eq!(reg["user"]["email"], "ada@example.com");
    assert_eq!(reg["user"]["is_verified"], false);
    assert_eq!(reg["user"]["full_name"], "Ada Lovelace");
    let keys: Vec<_> = reg["user"]
        .as_object()
        .expect("user")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys.len(), 7, "{keys:?}");

    // Duplicates and policy.
    let (s, b) = register(app, "ada2", "ADA@example.com").await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Email already registered")),
        "{l}"
    );
    let (s, b) = register(app, "ada", "other@example.com").await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Username already taken")),
        "{l}"
    );
    for (u, e, p) in [
        ("ab", "x@example.com", PASSWORD),
        ("abc", "not-an-email", PASSWORD),
        ("abc", "x@example.com", "weakpass"),
    ] {
        let (s, b) = app
            .api()
            .post(
                "/api/auth/register",
                &json!({"username": u, "email": e, "password": p}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l} {u} {e} {p}: {b}");
    }
    let (s, _) = app
        .api()
        .post("/api/auth/register", &json!({"username": "abc"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Login as a form, as JSON and as multipart; failures are 401 with `WWW-Authenticate`. Returns the JSON login.
async fn logins(app: &TestApp) -> Value {
    let l = app.label;
    // Login: form by username, JSON by email; failures are 401 with WWW-Authenticate.
    let r = login_form(app, "ada", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK, "{l}");
    let form_login: Value = r.json().await.expect("json");
    assert_eq!(form_login["user"]["username"], "ada");
    let (s, json_login) = app
        .api()
        .post(
            "/api/auth/login",
            &json!({"username": "ADA@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: {json_login}");
    // Multipart, as `curl -F` sends it (the reference's README example).
    let form = reqwest::multipart::Form::new()
        .text("username", "ada")
        .text("password", PASSWORD);
    let r = app
        .client
        .post(app.url("/api/auth/login"))
        .multipart(form)
        .send()
        .await
        .expect("multipart");
    assert_eq!(r.status(), StatusCode::OK, "{l}: multipart login");
    let form = reqwest::multipart::Form::new().text("username", "ada");
    let r = app
        .client
        .post(app.url("/api/auth/login"))
        .multipart(form)
        .send()
        .await
        .expect("multipart");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for (u, p) in [
        ("ada", "Wrong!pass1"),
        ("nobody", PASSWORD),
        ("' OR '1'='1", "' OR '1'='1"),
    ] {
        let r = login_form(app, u, p).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{l} {u}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let b: Value = r.json().await.expect("json");
        assert_eq!(b["detail"], "Invalid credentials");
    }
    json_login
}

/// `/api/auth/me` and refresh rotation, with the JSON login of [`logins`].
async fn me_and_refresh(app: &TestApp, json_login: &Value) {
    let l = app.label;
    // Me.
    let access = json_login["access_token"].as_str().expect("access");
    let (s, me) = app.api_as(access).get("/api/auth/me").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["username"], "ada");
    assert!(
        me["last_login"].is_string(),
        "{l}: login updates last_login: {me}"
    );
    assert!(me["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(me.get("password_hash").is_none());
    assert_eq!(
        app.api().get("/api/auth/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.api_as("garbage").get("/api/auth/me").await.0,
        StatusCode::UNAUTHORIZED
    );

    // Refresh rotates; replaying the old token fails and revokes the family.
    let old = json_login["refresh_token"].as_str().expect("refresh");
    let (s, pair) = app
        .api()
        .post("/api/auth/refresh", &json!({"refresh_token": old}))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: {pair}");
    assert_eq!(pair["token_type"], "bearer");
    let new = pair["refresh_token"].as_str().expect("new refresh");
    assert_ne!(new, old);
    let (s, b) = app
        .api()
        .post("/api/auth/refresh", &json!({"refresh_token": old}))
        .await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Invalid refresh token"))
    );
    let (s, _) = app
        .api()
        .post("/api/auth/refresh", &json!({"refresh_token": new}))
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "{l}: a replay revokes every session of the account"
    );
    let (s, _) = app
        .api()
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": "x' OR 1=1 --"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Logout with a refresh token ends that session only.
async fn logout_one_session(app: &TestApp) {
    let l = app.label;
    // Logout revokes the given refresh token. Presenting it afterwards (a second tab, a retry) is refused and
    // is not taken for a stolen copy: the account's other sessions live on.
    let other: Value = login_form(app, "ada", PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let r = login_form(app, "ada", PASSWORD).await;
    let session: Value = r.json().await.expect("json");
    let (access, refresh) = (
        session["access_token"].as_str().expect("a"),
        session["refresh_token"].as_str().expect("r"),
    );
    let (s, _) = app
        .api()
        .post("/api/auth/logout", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "logout needs a signed-in caller"
    );
    let (s, b) = app
        .api_as(access)
        .post("/api/auth/logout", &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: {b}");
    for _ in 0..2 {
        let (s, b) = app
            .api()
            .post("/api/auth/refresh", &json!({"refresh_token": refresh}))
            .await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Invalid refresh token")),
            "{l}"
        );
    }
    let (s, _) = app
        .api_with(other["access_token"].as_str())
        .get("/api/auth/me")
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "{l}: a logged-out refresh token presented again does not end the other sessions"
    );
    let (s, b) = app
        .api()
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "{l}: the other session still refreshes: {b}"
    );
    let (s, b) = app.api_as(access).get("/api/auth/me").await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Token has been revoked")),
        "{l}: the logged-out access token stops working at once"
    );
}

/// Logout without a body ends every session; then SQL injection in stored fields.
async fn logout_everywhere(app: &TestApp) {
    let l = app.label;
    // Logout without a body ends every session: other access tokens die too, new logins work.
    let first: Value = login_form(app, "ada", PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let second: Value = login_form(app, "ada", PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let first_access = first["access_token"].as_str().expect("a");
    let second_access = second["access_token"].as_str().expect("a");
    let (s, _) = app.api_as(second_access).get("/api/auth/me").await;
    assert_eq!(s, StatusCode::OK, "{l}");
    let (s, b) = app
        .api_as(first_access)
        .send(Method::POST, "/api/auth/logout", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: {b}");
    for token in [first_access, second_access] {
        let (s, _) = app.api_as(token).get("/api/auth/me").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}: logout everywhere");
    }
    let (s, _) = app
        .api()
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": second["refresh_token"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}");
    let again: Value = login_form(app, "ada", PASSWORD)
        .await
        .json()
        .await
        .expect("json");
    let (s, _) = app
        .api_with(again["access_token"].as_str())
        .get("/api/auth/me")
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: a new login after logout works");

    // SQL injection in stored fields is inert: stored literally, table intact.
    let (s, b) = register(app, "x');DROP_TABLE_users;--", "inj@example.com").await;
    assert_eq!(s, StatusCode::CREATED, "{l}: {b}");
    assert_eq!(b["user"]["username"], "x');DROP_TABLE_users;--");
    assert_eq!(
        login_form(app, "ada", PASSWORD).await.status(),
        StatusCode::OK
    );
}
