//! `/api/users`: the role matrix of every accounts route, and token tampering.

use crate::helpers::{apps, lax_limits, login_form};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_http::Role;
use vigil_http::auth::TokenKeys;
use vigil_http::testing::TestApp;

fn forge(token: &str, edit: impl Fn(&str) -> String) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("utf8");
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(edit(&payload)),
        parts[2]
    )
}

#[tokio::test]
async fn role_matrix_and_token_tampering() {
    for app in apps(lax_limits()).await {
        let (viewer_id, viewer) = app.user_with_role("vera", Role::Viewer).await;
        let (analyst_id, analyst) = app.user_with_role("anna", Role::Analyst).await;
        let (admin_id, admin) = app.user_with_role("root", Role::Admin).await;
        let (victim_id, _) = app.user_with_role("vic", Role::Viewer).await;
        let cast = Cast {
            l: app.label,
            viewer_id,
            viewer,
            analyst_id,
            analyst,
            admin_id,
            admin,
            victim_id,
        };
        listing(&app, &cast).await;
        one_user(&app, &cast).await;
        updates(&app, &cast).await;
        let viewer2 = sources(&app, &cast).await;
        deletes(&app, &cast, &viewer2).await;
        tampering(&app, &cast).await;
        app.stop().await;
    }
}

/// The accounts of the role matrix: ids and access tokens.
struct Cast {
    l: &'static str,
    viewer_id: String,
    viewer: String,
    analyst_id: String,
    analyst: String,
    admin_id: String,
    admin: String,
    victim_id: String,
}

fn expect(l: &str, who: &str, s: StatusCode, want: StatusCode, what: &str) {
    assert_eq!(s, want, "{l}: {who} {what}")
}

/// Users listing: admin only.
async fn listing(app: &TestApp, c: &Cast) {
    let Cast { l, .. } = c;
    let v = Some(c.viewer.as_str());
    let a = Some(c.analyst.as_str());
    let r = Some(c.admin.as_str());
    // Users listing: admin only.
    for (who, t, want) in [
        ("none", None, 401),
        ("viewer", v, 403),
        ("analyst", a, 403),
        ("admin", r, 200),
    ] {
        let s = app.api_with(t).get("/api/users").await.0;
        expect(
            l,
            who,
            s,
            StatusCode::from_u16(want).expect("status"),
            "GET /api/users",
        );
    }
    let (_, page) = app.api_with(r).get("/api/users?page=1&limit=2").await;
    assert_eq!(
        (
            page["total"].as_i64(),
            page["data"].as_array().map(Vec::len),
            page["limit"].as_i64()
        ),
        (Some(4), Some(2), Some(2)),
        "{l}"
    );
    assert_eq!(
        app.api_with(r).get("/api/users?limit=101").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.api_with(r).get("/api/users?page=0").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// One user: self or admin.
async fn one_user(app: &TestApp, c: &Cast) {
    let Cast {
        l,
        viewer_id,
        victim_id,
        ..
    } = c;
    let v = Some(c.viewer.as_str());
    let a = Some(c.analyst.as_str());
    let r = Some(c.admin.as_str());
    let other = format!("/api/users/{victim_id}");
    // One user: self or admin.
    expect(
        l,
        "viewer",
        app.api_with(v).get(&other).await.0,
        StatusCode::FORBIDDEN,
        "GET other",
    );
    expect(
        l,
        "analyst",
        app.api_with(a).get(&other).await.0,
        StatusCode::FORBIDDEN,
        "GET other",
    );
    expect(
        l,
        "admin",
        app.api_with(r).get(&other).await.0,
        StatusCode::OK,
        "GET other",
    );
    expect(
        l,
        "self",
        app.api_with(v)
            .get(&format!("/api/users/{viewer_id}"))
            .await
            .0,
        StatusCode::OK,
        "GET self",
    );
    let (s, b) = app.api_with(r).get("/api/users/missing").await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("User not found"))
    );
}

/// Updates: self edits profile, never its role; admin changes roles, effective at once.
async fn updates(app: &TestApp, c: &Cast) {
    profile_edits(app, c).await;
    let viewer = password_change(app, c).await;
    role_changes(app, c, &viewer).await;
}

/// Step: the viewer edits their own profile but not their role, an analyst cannot edit another user, a taken
/// email and a weak password are refused.
async fn profile_edits(app: &TestApp, c: &Cast) {
    let Cast {
        l,
        viewer_id,
        victim_id,
        ..
    } = c;
    let v = Some(c.viewer.as_str());
    let a = Some(c.analyst.as_str());
    let other = format!("/api/users/{victim_id}");
    let me = format!("/api/users/{viewer_id}");
    let (s, b) = app
        .api_with(v)
        .put(&me, &json!({"full_name": "Vera V", "organization": "SOC"}))
        .await;
    assert_eq!(
        (s, b["full_name"].as_str(), b["role"].as_str()),
        (StatusCode::OK, Some("Vera V"), Some("viewer")),
        "{l}: {b}"
    );
    expect(
        l,
        "viewer",
        app.api_with(v).put(&me, &json!({"role": "admin"})).await.0,
        StatusCode::FORBIDDEN,
        "self-promotion",
    );
    expect(
        l,
        "analyst",
        app.api_with(a)
            .put(&other, &json!({"full_name": "x"}))
            .await
            .0,
        StatusCode::FORBIDDEN,
        "PUT other",
    );
    let (s, b) = app
        .api_with(v)
        .put(&me, &json!({"email": "anna@example.com"}))
        .await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Email already registered")),
        "{l}"
    );
    expect(
        l,
        "viewer",
        app.api_with(v)
            .put(&me, &json!({"password": "weak"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak pw",
    );
}

/// Step: changing one's own password needs the current one and ends every session; returns the viewer's new
/// access token (after logging in with the new password).
async fn password_change(app: &TestApp, c: &Cast) -> String {
    let Cast { l, viewer_id, .. } = c;
    let v = Some(c.viewer.as_str());
    let me = format!("/api/users/{viewer_id}");
    // Changing one's own password needs the current one.
    let change = json!({"password": "Chang3d!pass", "current_password": "Wrong!pass1"});
    let (s, b) = app.api_with(v).put(&me, &change).await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("Current password is incorrect")
        ),
        "{l}"
    );
    let change = json!({"password": "Chang3d!pass"});
    assert_eq!(
        app.api_with(v).put(&me, &change).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let change = json!({"password": "Chang3d!pass", "current_password": "Test-password-1!"});
    assert_eq!(
        app.api_with(v).put(&me, &change).await.0,
        StatusCode::OK,
        "{l}"
    );
    assert_eq!(
        app.api_with(v).get("/api/auth/me").await.0,
        StatusCode::UNAUTHORIZED,
        "{l}: a password change ends every session, the caller's too"
    );
    let relogin = login_form(app, "vera", "Chang3d!pass").await;
    assert_eq!(relogin.status(), StatusCode::OK, "{l}");
    let session: Value = relogin.json().await.expect("json");
    session["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// Step: a role change by an admin takes effect at once (the role comes from the database, not the token), and
/// the last active admin cannot be demoted. `viewer` is the viewer's current access token.
async fn role_changes(app: &TestApp, c: &Cast, viewer: &str) {
    let Cast {
        l,
        viewer_id,
        admin_id,
        ..
    } = c;
    let v = Some(viewer);
    let r = Some(c.admin.as_str());
    let me = format!("/api/users/{viewer_id}");
    expect(
        l,
        "viewer",
        app.api_with(v)
            .post(
                "/api/sources",
                &json!({"name": "n", "type": "t", "url": "https://x.io", "protocol": "sse"}),
            )
            .await
            .0,
        StatusCode::FORBIDDEN,
        "POST source before promotion",
    );
    let (s, b) = app.api_with(r).put(&me, &json!({"role": "analyst"})).await;
    assert_eq!(
        (s, b["role"].as_str()),
        (StatusCode::OK, Some("analyst")),
        "{l}"
    );
    let (s, _) = app.api_with(v).post("/api/sources", &json!({"id": "promoted", "name": "n", "type": "t", "url": "https://x.io", "protocol": "sse"})).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "{l}: the role comes from the database, not the token"
    );
    let (s, b) = app
        .api_with(r)
        .put(
            &format!("/api/users/{admin_id}"),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("Cannot remove the last active admin")
        ),
        "{l}"
    );
}

/// Sources: read for everyone (no token needed), write for analysts.
async fn sources(app: &TestApp, c: &Cast) -> String {
    let Cast { l, .. } = c;
    let a = Some(c.analyst.as_str());
    let r = Some(c.admin.as_str());
    // Sources: read for everyone (no token needed), write for analysts.
    let source = json!({"id": "usgs", "name": "USGS", "type": "seismic", "url": "https://earthquake.usgs.gov/feed", "protocol": "https-poll"});
    expect(
        l,
        "none",
        app.api().get("/api/sources").await.0,
        StatusCode::OK,
        "GET sources",
    );
    expect(
        l,
        "viewer",
        app.api_with(r).get("/api/sources/").await.0,
        StatusCode::OK,
        "GET sources/",
    );
    let (s, b) = app.api_with(a).post("/api/sources", &source.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{l}: {b}");
    assert_eq!(
        b,
        json!({"id": "usgs", "name": "USGS", "type": "seismic", "url": "https://earthquake.usgs.gov/feed", "protocol": "https-poll", "description": "", "active": true})
    );
    expect(
        l,
        "analyst",
        app.api_with(a).post("/api/sources", &source).await.0,
        StatusCode::CONFLICT,
        "duplicate source",
    );
    expect(
        l,
        "analyst",
        app.api_with(a)
            .post(
                "/api/sources",
                &json!({"name": "n", "type": "t", "url": "nope", "protocol": "p"}),
            )
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad url",
    );
    // No protocol: derived from the URL's scheme (the dashboard's form has no protocol field).
    let (s, b) = app.api_with(a).post("/api/sources", &json!({"id": "jet", "name": "Jetstream", "type": "social", "url": "wss://jetstream.example/subscribe"}))
    .await;
    assert_eq!(
        (s, b["protocol"].as_str()),
        (StatusCode::CREATED, Some("websocket")),
        "{l}: {b}"
    );
    let (s, b) = app.api_with(a).post("/api/sources", &json!({"id": "blank", "name": "n", "type": "t", "url": "https://x.io", "protocol": " "})).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{l}: an empty protocol is still refused: {b}"
    );
    let (_, list) = app.api().get("/api/sources").await;
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{l}: {list}");
    expect(
        l,
        "analyst",
        app.api_with(a).delete("/api/sources/jet").await.0,
        StatusCode::NO_CONTENT,
        "DELETE source",
    );
    let (_, viewer2) = app.user_with_role("vince", Role::Viewer).await;
    expect(
        l,
        "viewer",
        app.api_as(&viewer2).delete("/api/sources/usgs").await.0,
        StatusCode::FORBIDDEN,
        "DELETE source",
    );
    expect(
        l,
        "analyst",
        app.api_with(a).delete("/api/sources/usgs").await.0,
        StatusCode::NO_CONTENT,
        "DELETE source",
    );
    let (s, b) = app.api_with(a).delete("/api/sources/usgs").await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("Source not found"))
    );
    viewer2
}

/// Deletes: admin only, never oneself.
async fn deletes(app: &TestApp, c: &Cast, viewer2: &str) {
    let Cast {
        l,
        admin_id,
        victim_id,
        ..
    } = c;
    let a = Some(c.analyst.as_str());
    let r = Some(c.admin.as_str());
    let other = format!("/api/users/{victim_id}");
    // Deletes: admin only, never oneself.
    expect(
        l,
        "viewer",
        app.api_as(viewer2).delete(&other).await.0,
        StatusCode::FORBIDDEN,
        "DELETE user",
    );
    expect(
        l,
        "analyst",
        app.api_with(a).delete(&other).await.0,
        StatusCode::FORBIDDEN,
        "DELETE user",
    );
    expect(
        l,
        "admin",
        app.api_with(r)
            .delete(&format!("/api/users/{admin_id}"))
            .await
            .0,
        StatusCode::BAD_REQUEST,
        "DELETE self",
    );
    expect(
        l,
        "admin",
        app.api_with(r).delete(&other).await.0,
        StatusCode::NO_CONTENT,
        "DELETE user",
    );
    expect(
        l,
        "admin",
        app.api_with(r).delete(&other).await.0,
        StatusCode::NOT_FOUND,
        "DELETE user again",
    );
}

/// Tampered tokens, a database role above the token's claim, deactivation.
async fn tampering(app: &TestApp, c: &Cast) {
    let Cast {
        l,
        analyst_id,
        admin_id,
        ..
    } = c;
    let a = Some(c.analyst.as_str());
    let r = Some(c.admin.as_str());
    let analyst = &c.analyst;
    let admin = &c.admin;
    // Tampered tokens: a changed role claim, another secret, alg none, expiry.
    let promoted = forge(analyst, |p| p.replace("\"analyst\"", "\"admin\""));
    expect(
        l,
        "forged",
        app.api_as(&promoted).get("/api/users").await.0,
        StatusCode::UNAUTHORIZED,
        "changed role",
    );
    let foreign = TokenKeys::new(b"another-secret-another-secret-!!!", 3600)
        .issue(admin_id, "root", Role::Admin, 0)
        .expect("issue");
    expect(
        l,
        "foreign",
        app.api_as(&foreign).get("/api/auth/me").await.0,
        StatusCode::UNAUTHORIZED,
        "wrong signature",
    );
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = admin.split('.').nth(1).expect("payload");
    expect(
        l,
        "none",
        app.api_as(&format!("{header}.{payload}."))
            .get("/api/auth/me")
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "alg none",
    );
    let secret = "test-secret-test-secret-test-secret!";
    let expired = TokenKeys::new(secret.as_bytes(), -5)
        .issue(admin_id, "root", Role::Admin, 0)
        .expect("issue");
    let (s, b) = app.api_as(&expired).get("/api/auth/me").await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Token has expired")),
        "{l}"
    );
    // A correctly signed token claiming admin for an analyst account: the database role decides.
    let claims_admin = TokenKeys::new(secret.as_bytes(), 3600)
        .issue(analyst_id, "anna", Role::Admin, 0)
        .expect("issue");
    expect(
        l,
        "analyst-as-admin",
        app.api_as(&claims_admin).get("/api/users").await.0,
        StatusCode::FORBIDDEN,
        "role from db",
    );
    // Deactivated accounts lose access at once.
    let (_, updated) = app
        .api_with(r)
        .put(
            &format!("/api/users/{analyst_id}"),
            &json!({"is_active": false}),
        )
        .await;
    assert_eq!(
        updated["is_active"], false,
        "{l}: the answer says so: {updated}"
    );
    expect(
        l,
        "deactivated",
        app.api_with(a).get("/api/auth/me").await.0,
        StatusCode::UNAUTHORIZED,
        "inactive",
    );
    let r = login_form(app, "anna", "Test-password-1!").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{l}: inactive login");
}
