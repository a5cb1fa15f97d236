//! Mailed links: email verification (API and page) and password reset, through an in-test SMTP server.

use crate::helpers::{Inbox, PASSWORD, apps, lax_limits, login_form, register};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_accounts::AccountsConfig;
use vigil_http::testing::TestApp;

#[tokio::test]
async fn email_verification_and_password_reset() {
    let (inbox, port) = Inbox::start().await;
    let config = AccountsConfig {
        mail_server: Some("127.0.0.1".into()),
        mail_port: port,
        mail_starttls: false,
        mail_from: "TopoForge <no-reply@example.com>".into(),
        ..lax_limits()
    };
    for app in apps(config).await {
        let (s, reg) = register(&app, "grace", "grace@example.com").await;
        assert_eq!(s, StatusCode::CREATED, "{}", app.label);
        let old_refresh = reg["refresh_token"].as_str().expect("refresh").to_owned();
        let old_access = reg["access_token"].as_str().expect("access").to_owned();
        let new_password = "N3w!password";

        verification(&app, &inbox, &reg).await;
        forgot_and_reset(&app, &inbox, &old_access, &old_refresh, new_password).await;
        expiry(&app, &inbox).await;
        app.stop().await;
    }
}

/// The verification link from the mail verifies the address.
async fn verification(app: &TestApp, inbox: &Inbox, reg: &Value) {
    let l = app.label;
    // Verification link from the mail.
    let token = inbox.token_for("grace@example.com", "verify-email").await;
    let (s, b) = app
        .api()
        .get(&format!("/api/auth/verify-email?token={token}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: {b}");
    let (s, _) = app
        .api()
        .get(&format!("/api/auth/verify-email?token={token}"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{l}: single use");
    assert_eq!(
        app.api().get("/api/auth/verify-email").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let access = reg["access_token"].as_str().expect("access");
    assert_eq!(
        app.api_as(access).get("/api/auth/me").await.1["is_verified"],
        true
    );
}

/// Forgot-password answers alike for known and unknown addresses; the mailed token resets once, under the policy.
async fn forgot_and_reset(
    app: &TestApp,
    inbox: &Inbox,
    old_access: &str,
    old_refresh: &str,
    new_password: &str,
) {
    let l = app.label;
    // Forgot: the same answer for known and unknown addresses; mail only for the known one.
    let (s1, known) = app
        .api()
        .post(
            "/api/auth/forgot-password",
            &json!({"email": "grace@example.com"}),
        )
        .await;
    let (s2, unknown) = app
        .api()
        .post(
            "/api/auth/forgot-password",
            &json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(known, unknown);
    let token = inbox.token_for("grace@example.com", "reset-password").await;
    let (s, v) = app
        .api()
        .get(&format!("/api/auth/verify-reset-token/{token}"))
        .await;
    assert_eq!(
        (s, &v),
        (
            StatusCode::OK,
            &json!({"valid": true, "email": "grace@example.com"})
        ),
        "{l}"
    );

    // Reset: policy, success, single use.
    let (s, _) = app
        .api()
        .post(
            "/api/auth/reset-password",
            &json!({"token": token, "new_password": "weak"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b) = app
        .api()
        .post(
            "/api/auth/reset-password",
            &json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{l}: {b}");
    let (s, b) = app
        .api()
        .post(
            "/api/auth/reset-password",
            &json!({"token": token, "new_password": "An0ther!pass"}),
        )
        .await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("Invalid or expired reset token")
        ),
        "{l}: reuse"
    );
    let (s, v) = app
        .api()
        .get(&format!("/api/auth/verify-reset-token/{token}"))
        .await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, json!({"valid": false, "email": null}))
    );
    assert_eq!(
        login_form(app, "grace", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_form(app, "grace", new_password).await.status(),
        StatusCode::OK
    );
    let (s, _) = app
        .api()
        .post("/api/auth/refresh", &json!({"refresh_token": old_refresh}))
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "{l}: a reset signs out every session"
    );
    let (s, _) = app.api_as(old_access).get("/api/auth/me").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "{l}: access tokens from before the reset stop working too"
    );
}

/// A reset token past its time is refused, by verify-reset-token and by reset-password.
async fn expiry(app: &TestApp, inbox: &Inbox) {
    let l = app.label;
    // Expiry: a token past its time is refused, by verify-reset-token and by reset-password.
    app.api()
        .post(
            "/api/auth/forgot-password",
            &json!({"email": "grace@example.com"}),
        )
        .await;
    let token = inbox.token_for("grace@example.com", "reset-password").await;
    vigil_store::testing::expire_mailed_tokens(
        &app.state.store,
        vigil_store::tokens::Purpose::ResetPassword,
        vigil_store::time::now_ms() - 1,
    )
    .await;
    let (_, v) = app
        .api()
        .get(&format!("/api/auth/verify-reset-token/{token}"))
        .await;
    assert_eq!(v["valid"], false, "{l}");
    let (s, _) = app
        .api()
        .post(
            "/api/auth/reset-password",
            &json!({"token": token, "new_password": "An0ther!pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{l}: expired");
    let (s, _) = app
        .api()
        .post(
            "/api/auth/reset-password",
            &json!({"token": "' OR 1=1 --", "new_password": "An0ther!pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// The mailed verification link opens a page (not the JSON route); opening it, as a mail scanner's prefetch does,
/// uses nothing; the page's button verifies, once.
#[tokio::test]
async fn verification_link_opens_a_page_that_prefetching_does_not_consume() {
    let (inbox, port) = Inbox::start().await;
    let config = AccountsConfig {
        mail_server: Some("127.0.0.1".into()),
        mail_port: port,
        mail_starttls: false,
        mail_from: "TopoForge <no-reply@example.com>".into(),
        ..lax_limits()
    };
    for app in apps(config).await {
        let l = app.label;
        let (s, reg) = register(&app, "hedy", "hedy@example.com").await;
        assert_eq!(s, StatusCode::CREATED, "{l}");
        let access = reg["access_token"].as_str().expect("access").to_owned();
        // The test configuration's PUBLIC_URL is the default, so the link names this server's page.
        let token = inbox
            .token_for("hedy@example.com", "/verify-email?token=")
            .await;
        let page = format!("/verify-email?token={token}");
        for _ in 0..3 {
            let r = app.client.get(app.url(&page)).send().await.expect("page");
            assert_eq!(r.status(), StatusCode::OK, "{l}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .expect("ascii")
                    .starts_with("text/html")
            );
            assert_eq!(r.headers()["cache-control"], "no-store");
            assert_eq!(r.headers()["referrer-policy"], "no-referrer");
            let html = r.text().await.expect("html");
            assert!(html.contains("method=\"post\""), "{l}: {html}");
            assert!(html.contains(&token), "{l}");
        }
        let (_, me) = app.api_as(&access).get("/api/auth/me").await;
        assert_eq!(
            me["is_verified"], false,
            "{l}: opening the link verifies nothing"
        );

        let confirm = |t: String| {
            app.client
                .post(app.url("/verify-email"))
                .form(&[("token", t)])
                .send()
        };
        let r = confirm(token.clone()).await.expect("confirm");
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        assert!(r.text().await.expect("html").contains("verified"));
        let (_, me) = app.api_as(&access).get("/api/auth/me").await;
        assert_eq!(me["is_verified"], true, "{l}");
        let r = confirm(token.clone()).await.expect("again");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{l}: single use");
        assert!(r.text().await.expect("html").contains("invalid"));

        // Hostile input is escaped, never executed; missing tokens are a 400 page.
        let r = app
            .client
            .get(app.url("/verify-email?token=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"))
            .send()
            .await
            .expect("page");
        let html = r.text().await.expect("html");
        assert!(!html.contains("<script>"), "{l}: {html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;"), "{l}: {html}");
        let r = app
            .client
            .get(app.url("/verify-email"))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{l}");
        let r = app
            .client
            .post(app.url("/verify-email"))
            .body("garbage")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{l}");
        app.stop().await;
    }

    // EMAIL_VERIFY_URL sends the link to another page (the dashboard's), query strings kept.
    let (inbox, port) = Inbox::start().await;
    let config = AccountsConfig {
        mail_server: Some("127.0.0.1".into()),
        mail_port: port,
        mail_starttls: false,
        mail_from: "TopoForge <no-reply@example.com>".into(),
        email_verify_url: Some("https://dash.example/#/verify?lang=en".into()),
        ..lax_limits()
    };
    for app in apps(config).await {
        let (s, _) = register(&app, "ida", "ida@example.com").await;
        assert_eq!(s, StatusCode::CREATED);
        let token = inbox
            .token_for(
                "ida@example.com",
                "https://dash.example/#/verify?lang=en&token=",
            )
            .await;
        assert_eq!(token.len(), 64);
        app.stop().await;
    }
}
