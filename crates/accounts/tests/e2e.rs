//! End-to-end over HTTP: the real application on a random port, once per backend (SQLite always, PostgreSQL when
//! TEST_DATABASE_URL is set). Mail goes to an in-test SMTP server, so the verification and reset links are the ones
//! a user would receive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use vigil_accounts::AccountsConfig;
use vigil_http::Role;
use vigil_http::auth::TokenKeys;
use vigil_http::testing::TestApp;

const PASSWORD: &str = "Str0ng!password";
const YEAR: u64 = 365 * 86_400;

/// A minimal SMTP server that accepts every message and keeps its text.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<String>>>);

impl Inbox {
    async fn start() -> (Inbox, u16) {
        let inbox = Inbox::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let keep = inbox.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 test ESMTP\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 test\r\n",
                            "DATA" => {
                                let _ = w.write_all(b"354 go ahead\r\n").await;
                                let mut message = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    message.push_str(&l);
                                    message.push_str("\r\n");
                                }
                                keep.0.lock().expect("inbox").push(message);
                                b"250 queued\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        (inbox, port)
    }

    /// Waits for a message to `to` whose text contains `marker` and returns the token of its link.
    async fn token_for(&self, to: &str, marker: &str) -> String {
        for _ in 0..200 {
            let found = self.0.lock().expect("inbox").iter().rev().find_map(|m| {
                // Undo quoted-printable soft breaks and escapes, whichever transfer encoding was chosen.
                let text = m.replace("=\r\n", "").replace("=3D", "=");
                (text.contains(&format!("To: {to}")) && text.contains(marker)).then(|| {
                    let at = text.find("token=").map(|i| i + 6).unwrap_or(0);
                    text[at..]
                        .chars()
                        .take_while(char::is_ascii_hexdigit)
                        .collect::<String>()
                })
            });
            if let Some(t) = found.filter(|t| t.len() == 64) {
                self.0.lock().expect("inbox").clear();
                return t;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no mail to {to} containing {marker}");
    }
}

fn lax_limits() -> AccountsConfig {
    AccountsConfig {
        login_rate_limit: 1000,
        register_rate_limit: 1000,
        forgot_rate_limit: 1000,
        api_rate_limit: 10_000,
        ..AccountsConfig::default()
    }
}

async fn apps(config: AccountsConfig) -> Vec<TestApp> {
    TestApp::all(move |state| vigil_accounts::Accounts::new(config.clone()).router(state)).await
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn register(app: &TestApp, username: &str, email: &str) -> (StatusCode, Value) {
    let body = json!({"username": username, "email": email, "password": PASSWORD});
    call(app, Method::POST, "/api/auth/register", None, Some(body)).await
}

async fn login_form(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/login"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("login")
}

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
        let (s, v) = call(
            &app,
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "nadia\u{0}", "password": PASSWORD})),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "json {}: {v}",
            app.label
        );
        let (s, v) = call(
            &app,
            Method::POST,
            "/api/auth/register",
            None,
            Some(
                json!({"username": "eve", "email": "eve@example.com", "password": PASSWORD,
                        "full_name": "E\u{0}ve"}),
            ),
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

#[tokio::test]
async fn register_login_me_refresh_logout() {
    for app in apps(lax_limits()).await {
        let l = app.label;
        // Register: 201, viewer whatever the body asks, unverified.
        let body = json!({"username": "ada", "email": "Ada@Example.com", "password": PASSWORD,
            "full_name": "Ada Lovelace", "organization": "Analytical", "role": "admin"});
        let (s, reg) = call(&app, Method::POST, "/api/auth/register", None, Some(body)).await;
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
        let (s, b) = register(&app, "ada2", "ADA@example.com").await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Email already registered")),
            "{l}"
        );
        let (s, b) = register(&app, "ada", "other@example.com").await;
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
            let (s, b) = call(
                &app,
                Method::POST,
                "/api/auth/register",
                None,
                Some(json!({"username": u, "email": e, "password": p})),
            )
            .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l} {u} {e} {p}: {b}");
        }
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/register",
            None,
            Some(json!({"username": "abc"})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

        // Login: form by username, JSON by email; failures are 401 with WWW-Authenticate.
        let r = login_form(&app, "ada", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        let form_login: Value = r.json().await.expect("json");
        assert_eq!(form_login["user"]["username"], "ada");
        let (s, json_login) = call(
            &app,
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "ADA@example.com", "password": PASSWORD})),
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
            let r = login_form(&app, u, p).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{l} {u}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let b: Value = r.json().await.expect("json");
            assert_eq!(b["detail"], "Invalid credentials");
        }

        // Me.
        let access = json_login["access_token"].as_str().expect("access");
        let (s, me) = call(&app, Method::GET, "/api/auth/me", Some(access), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(me["username"], "ada");
        assert!(
            me["last_login"].is_string(),
            "{l}: login updates last_login: {me}"
        );
        assert!(me["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(me.get("password_hash").is_none());
        assert_eq!(
            call(&app, Method::GET, "/api/auth/me", None, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, Method::GET, "/api/auth/me", Some("garbage"), None)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );

        // Refresh rotates; replaying the old token fails and revokes the family.
        let old = json_login["refresh_token"].as_str().expect("refresh");
        let (s, pair) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": old})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: {pair}");
        assert_eq!(pair["token_type"], "bearer");
        let new = pair["refresh_token"].as_str().expect("new refresh");
        assert_ne!(new, old);
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": old})),
        )
        .await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Invalid refresh token"))
        );
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": new})),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{l}: a replay revokes every session of the account"
        );
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": "x' OR 1=1 --"})),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);

        // Logout revokes the given refresh token. Presenting it afterwards (a second tab, a retry) is refused and
        // is not taken for a stolen copy: the account's other sessions live on.
        let other: Value = login_form(&app, "ada", PASSWORD)
            .await
            .json()
            .await
            .expect("json");
        let r = login_form(&app, "ada", PASSWORD).await;
        let session: Value = r.json().await.expect("json");
        let (access, refresh) = (
            session["access_token"].as_str().expect("a"),
            session["refresh_token"].as_str().expect("r"),
        );
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/logout",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "logout needs a signed-in caller"
        );
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/auth/logout",
            Some(access),
            Some(json!({"refresh_token": refresh})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: {b}");
        for _ in 0..2 {
            let (s, b) = call(
                &app,
                Method::POST,
                "/api/auth/refresh",
                None,
                Some(json!({"refresh_token": refresh})),
            )
            .await;
            assert_eq!(
                (s, b["detail"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("Invalid refresh token")),
                "{l}"
            );
        }
        let (s, _) = call(
            &app,
            Method::GET,
            "/api/auth/me",
            other["access_token"].as_str(),
            None,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: a logged-out refresh token presented again does not end the other sessions"
        );
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": other["refresh_token"]})),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: the other session still refreshes: {b}"
        );
        let (s, b) = call(&app, Method::GET, "/api/auth/me", Some(access), None).await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Token has been revoked")),
            "{l}: the logged-out access token stops working at once"
        );

        // Logout without a body ends every session: other access tokens die too, new logins work.
        let first: Value = login_form(&app, "ada", PASSWORD)
            .await
            .json()
            .await
            .expect("json");
        let second: Value = login_form(&app, "ada", PASSWORD)
            .await
            .json()
            .await
            .expect("json");
        let first_access = first["access_token"].as_str().expect("a");
        let second_access = second["access_token"].as_str().expect("a");
        let (s, _) = call(&app, Method::GET, "/api/auth/me", Some(second_access), None).await;
        assert_eq!(s, StatusCode::OK, "{l}");
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/auth/logout",
            Some(first_access),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: {b}");
        for token in [first_access, second_access] {
            let (s, _) = call(&app, Method::GET, "/api/auth/me", Some(token), None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}: logout everywhere");
        }
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": second["refresh_token"]})),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{l}");
        let again: Value = login_form(&app, "ada", PASSWORD)
            .await
            .json()
            .await
            .expect("json");
        let (s, _) = call(
            &app,
            Method::GET,
            "/api/auth/me",
            again["access_token"].as_str(),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: a new login after logout works");

        // SQL injection in stored fields is inert: stored literally, table intact.
        let (s, b) = register(&app, "x');DROP_TABLE_users;--", "inj@example.com").await;
        assert_eq!(s, StatusCode::CREATED, "{l}: {b}");
        assert_eq!(b["user"]["username"], "x');DROP_TABLE_users;--");
        assert_eq!(
            login_form(&app, "ada", PASSWORD).await.status(),
            StatusCode::OK
        );
        app.stop().await;
    }
}

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
        let l = app.label;
        let (s, reg) = register(&app, "grace", "grace@example.com").await;
        assert_eq!(s, StatusCode::CREATED, "{l}");
        let old_refresh = reg["refresh_token"].as_str().expect("refresh").to_owned();
        let old_access = reg["access_token"].as_str().expect("access").to_owned();

        // Verification link from the mail.
        let token = inbox.token_for("grace@example.com", "verify-email").await;
        let (s, b) = call(
            &app,
            Method::GET,
            &format!("/api/auth/verify-email?token={token}"),
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: {b}");
        let (s, _) = call(
            &app,
            Method::GET,
            &format!("/api/auth/verify-email?token={token}"),
            None,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{l}: single use");
        assert_eq!(
            call(&app, Method::GET, "/api/auth/verify-email", None, None)
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let access = reg["access_token"].as_str().expect("access");
        assert_eq!(
            call(&app, Method::GET, "/api/auth/me", Some(access), None)
                .await
                .1["is_verified"],
            true
        );

        // Forgot: the same answer for known and unknown addresses; mail only for the known one.
        let (s1, known) = call(
            &app,
            Method::POST,
            "/api/auth/forgot-password",
            None,
            Some(json!({"email": "grace@example.com"})),
        )
        .await;
        let (s2, unknown) = call(
            &app,
            Method::POST,
            "/api/auth/forgot-password",
            None,
            Some(json!({"email": "nobody@example.com"})),
        )
        .await;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
        assert_eq!(known, unknown);
        let token = inbox.token_for("grace@example.com", "reset-password").await;
        let (s, v) = call(
            &app,
            Method::GET,
            &format!("/api/auth/verify-reset-token/{token}"),
            None,
            None,
        )
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
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/reset-password",
            None,
            Some(json!({"token": token, "new_password": "weak"})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let new_password = "N3w!password";
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/auth/reset-password",
            None,
            Some(json!({"token": token, "new_password": new_password})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: {b}");
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/auth/reset-password",
            None,
            Some(json!({"token": token, "new_password": "An0ther!pass"})),
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
        let (s, v) = call(
            &app,
            Method::GET,
            &format!("/api/auth/verify-reset-token/{token}"),
            None,
            None,
        )
        .await;
        assert_eq!(
            (s, v),
            (StatusCode::OK, json!({"valid": false, "email": null}))
        );
        assert_eq!(
            login_form(&app, "grace", PASSWORD).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            login_form(&app, "grace", new_password).await.status(),
            StatusCode::OK
        );
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": old_refresh})),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{l}: a reset signs out every session"
        );
        let (s, _) = call(&app, Method::GET, "/api/auth/me", Some(&old_access), None).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{l}: access tokens from before the reset stop working too"
        );

        // Expiry: a token past its time is refused, by verify-reset-token and by reset-password.
        call(
            &app,
            Method::POST,
            "/api/auth/forgot-password",
            None,
            Some(json!({"email": "grace@example.com"})),
        )
        .await;
        let token = inbox.token_for("grace@example.com", "reset-password").await;
        vigil_store::sqlx::query("UPDATE auth_tokens SET expires_at = $1 WHERE purpose = 'reset_password' AND used_at IS NULL")
            .bind(vigil_store::time::now_ms() - 1)
            .execute(app.state.store.pool())
            .await
            .expect("expire");
        let (_, v) = call(
            &app,
            Method::GET,
            &format!("/api/auth/verify-reset-token/{token}"),
            None,
            None,
        )
        .await;
        assert_eq!(v["valid"], false, "{l}");
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/reset-password",
            None,
            Some(json!({"token": token, "new_password": "An0ther!pass"})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{l}: expired");
        let (s, _) = call(
            &app,
            Method::POST,
            "/api/auth/reset-password",
            None,
            Some(json!({"token": "' OR 1=1 --", "new_password": "An0ther!pass"})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        app.stop().await;
    }
}

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
        let l = app.label;
        let (viewer_id, viewer) = app.user_with_role("vera", Role::Viewer).await;
        let (analyst_id, analyst) = app.user_with_role("anna", Role::Analyst).await;
        let (admin_id, admin) = app.user_with_role("root", Role::Admin).await;
        let (victim_id, _) = app.user_with_role("vic", Role::Viewer).await;
        let (v, a, r) = (
            Some(viewer.as_str()),
            Some(analyst.as_str()),
            Some(admin.as_str()),
        );
        let expect = |who: &str, s: StatusCode, want: StatusCode, what: &str| {
            assert_eq!(s, want, "{l}: {who} {what}")
        };

        // Users listing: admin only.
        for (who, t, want) in [
            ("none", None, 401),
            ("viewer", v, 403),
            ("analyst", a, 403),
            ("admin", r, 200),
        ] {
            let s = call(&app, Method::GET, "/api/users", t, None).await.0;
            expect(
                who,
                s,
                StatusCode::from_u16(want).expect("status"),
                "GET /api/users",
            );
        }
        let (_, page) = call(&app, Method::GET, "/api/users?page=1&limit=2", r, None).await;
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
            call(&app, Method::GET, "/api/users?limit=101", r, None)
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            call(&app, Method::GET, "/api/users?page=0", r, None)
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );

        // One user: self or admin.
        let other = format!("/api/users/{victim_id}");
        expect(
            "viewer",
            call(&app, Method::GET, &other, v, None).await.0,
            StatusCode::FORBIDDEN,
            "GET other",
        );
        expect(
            "analyst",
            call(&app, Method::GET, &other, a, None).await.0,
            StatusCode::FORBIDDEN,
            "GET other",
        );
        expect(
            "admin",
            call(&app, Method::GET, &other, r, None).await.0,
            StatusCode::OK,
            "GET other",
        );
        expect(
            "self",
            call(
                &app,
                Method::GET,
                &format!("/api/users/{viewer_id}"),
                v,
                None,
            )
            .await
            .0,
            StatusCode::OK,
            "GET self",
        );
        let (s, b) = call(&app, Method::GET, "/api/users/missing", r, None).await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::NOT_FOUND, Some("User not found"))
        );

        // Updates: self edits profile, never its role; admin changes roles, effective at once.
        let me = format!("/api/users/{viewer_id}");
        let (s, b) = call(
            &app,
            Method::PUT,
            &me,
            v,
            Some(json!({"full_name": "Vera V", "organization": "SOC"})),
        )
        .await;
        assert_eq!(
            (s, b["full_name"].as_str(), b["role"].as_str()),
            (StatusCode::OK, Some("Vera V"), Some("viewer")),
            "{l}: {b}"
        );
        expect(
            "viewer",
            call(&app, Method::PUT, &me, v, Some(json!({"role": "admin"})))
                .await
                .0,
            StatusCode::FORBIDDEN,
            "self-promotion",
        );
        expect(
            "analyst",
            call(
                &app,
                Method::PUT,
                &other,
                a,
                Some(json!({"full_name": "x"})),
            )
            .await
            .0,
            StatusCode::FORBIDDEN,
            "PUT other",
        );
        let (s, b) = call(
            &app,
            Method::PUT,
            &me,
            v,
            Some(json!({"email": "anna@example.com"})),
        )
        .await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::BAD_REQUEST, Some("Email already registered")),
            "{l}"
        );
        expect(
            "viewer",
            call(&app, Method::PUT, &me, v, Some(json!({"password": "weak"})))
                .await
                .0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak pw",
        );
        // Changing one's own password needs the current one.
        let change = json!({"password": "Chang3d!pass", "current_password": "Wrong!pass1"});
        let (s, b) = call(&app, Method::PUT, &me, v, Some(change)).await;
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
            call(&app, Method::PUT, &me, v, Some(change)).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let change = json!({"password": "Chang3d!pass", "current_password": "Test-password-1!"});
        assert_eq!(
            call(&app, Method::PUT, &me, v, Some(change)).await.0,
            StatusCode::OK,
            "{l}"
        );
        assert_eq!(
            call(&app, Method::GET, "/api/auth/me", v, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{l}: a password change ends every session, the caller's too"
        );
        let relogin = login_form(&app, "vera", "Chang3d!pass").await;
        assert_eq!(relogin.status(), StatusCode::OK, "{l}");
        let session: Value = relogin.json().await.expect("json");
        let v = session["access_token"].as_str();
        expect(
            "viewer",
            call(
                &app,
                Method::POST,
                "/api/sources",
                v,
                Some(json!({"name": "n", "type": "t", "url": "https://x.io", "protocol": "sse"})),
            )
            .await
            .0,
            StatusCode::FORBIDDEN,
            "POST source before promotion",
        );
        let (s, b) = call(&app, Method::PUT, &me, r, Some(json!({"role": "analyst"}))).await;
        assert_eq!(
            (s, b["role"].as_str()),
            (StatusCode::OK, Some("analyst")),
            "{l}"
        );
        let (s, _) = call(&app, Method::POST, "/api/sources", v, Some(json!({"id": "promoted", "name": "n", "type": "t", "url": "https://x.io", "protocol": "sse"}))).await;
        assert_eq!(
            s,
            StatusCode::CREATED,
            "{l}: the role comes from the database, not the token"
        );
        let (s, b) = call(
            &app,
            Method::PUT,
            &format!("/api/users/{admin_id}"),
            r,
            Some(json!({"role": "viewer"})),
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

        // Sources: read for everyone (no token needed), write for analysts.
        let source = json!({"id": "usgs", "name": "USGS", "type": "seismic", "url": "https://earthquake.usgs.gov/feed", "protocol": "https-poll"});
        expect(
            "none",
            call(&app, Method::GET, "/api/sources", None, None).await.0,
            StatusCode::OK,
            "GET sources",
        );
        expect(
            "viewer",
            call(&app, Method::GET, "/api/sources/", r, None).await.0,
            StatusCode::OK,
            "GET sources/",
        );
        let (s, b) = call(&app, Method::POST, "/api/sources", a, Some(source.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{l}: {b}");
        assert_eq!(
            b,
            json!({"id": "usgs", "name": "USGS", "type": "seismic", "url": "https://earthquake.usgs.gov/feed", "protocol": "https-poll", "description": "", "active": true})
        );
        expect(
            "analyst",
            call(&app, Method::POST, "/api/sources", a, Some(source))
                .await
                .0,
            StatusCode::CONFLICT,
            "duplicate source",
        );
        expect(
            "analyst",
            call(
                &app,
                Method::POST,
                "/api/sources",
                a,
                Some(json!({"name": "n", "type": "t", "url": "nope", "protocol": "p"})),
            )
            .await
            .0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad url",
        );
        // No protocol: derived from the URL's scheme (the dashboard's form has no protocol field).
        let (s, b) = call(
            &app,
            Method::POST,
            "/api/sources",
            a,
            Some(json!({"id": "jet", "name": "Jetstream", "type": "social", "url": "wss://jetstream.example/subscribe"})),
        )
        .await;
        assert_eq!(
            (s, b["protocol"].as_str()),
            (StatusCode::CREATED, Some("websocket")),
            "{l}: {b}"
        );
        let (s, b) = call(&app, Method::POST, "/api/sources", a, Some(json!({"id": "blank", "name": "n", "type": "t", "url": "https://x.io", "protocol": " "}))).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{l}: an empty protocol is still refused: {b}"
        );
        let (_, list) = call(&app, Method::GET, "/api/sources", None, None).await;
        assert_eq!(list.as_array().map(Vec::len), Some(3), "{l}: {list}");
        expect(
            "analyst",
            call(&app, Method::DELETE, "/api/sources/jet", a, None)
                .await
                .0,
            StatusCode::NO_CONTENT,
            "DELETE source",
        );
        let (_, viewer2) = app.user_with_role("vince", Role::Viewer).await;
        expect(
            "viewer",
            call(
                &app,
                Method::DELETE,
                "/api/sources/usgs",
                Some(&viewer2),
                None,
            )
            .await
            .0,
            StatusCode::FORBIDDEN,
            "DELETE source",
        );
        expect(
            "analyst",
            call(&app, Method::DELETE, "/api/sources/usgs", a, None)
                .await
                .0,
            StatusCode::NO_CONTENT,
            "DELETE source",
        );
        let (s, b) = call(&app, Method::DELETE, "/api/sources/usgs", a, None).await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::NOT_FOUND, Some("Source not found"))
        );

        // Deletes: admin only, never oneself.
        expect(
            "viewer",
            call(&app, Method::DELETE, &other, Some(&viewer2), None)
                .await
                .0,
            StatusCode::FORBIDDEN,
            "DELETE user",
        );
        expect(
            "analyst",
            call(&app, Method::DELETE, &other, a, None).await.0,
            StatusCode::FORBIDDEN,
            "DELETE user",
        );
        expect(
            "admin",
            call(
                &app,
                Method::DELETE,
                &format!("/api/users/{admin_id}"),
                r,
                None,
            )
            .await
            .0,
            StatusCode::BAD_REQUEST,
            "DELETE self",
        );
        expect(
            "admin",
            call(&app, Method::DELETE, &other, r, None).await.0,
            StatusCode::NO_CONTENT,
            "DELETE user",
        );
        expect(
            "admin",
            call(&app, Method::DELETE, &other, r, None).await.0,
            StatusCode::NOT_FOUND,
            "DELETE user again",
        );

        // Tampered tokens: a changed role claim, another secret, alg none, expiry.
        let promoted = forge(&analyst, |p| p.replace("\"analyst\"", "\"admin\""));
        expect(
            "forged",
            call(&app, Method::GET, "/api/users", Some(&promoted), None)
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "changed role",
        );
        let foreign = TokenKeys::new(b"another-secret-another-secret-!!!", 3600)
            .issue(&admin_id, "root", Role::Admin, 0)
            .expect("issue");
        expect(
            "foreign",
            call(&app, Method::GET, "/api/auth/me", Some(&foreign), None)
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "wrong signature",
        );
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = admin.split('.').nth(1).expect("payload");
        expect(
            "none",
            call(
                &app,
                Method::GET,
                "/api/auth/me",
                Some(&format!("{header}.{payload}.")),
                None,
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED,
            "alg none",
        );
        let secret = "test-secret-test-secret-test-secret!";
        let expired = TokenKeys::new(secret.as_bytes(), -5)
            .issue(&admin_id, "root", Role::Admin, 0)
            .expect("issue");
        let (s, b) = call(&app, Method::GET, "/api/auth/me", Some(&expired), None).await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Token has expired")),
            "{l}"
        );
        // A correctly signed token claiming admin for an analyst account: the database role decides.
        let claims_admin = TokenKeys::new(secret.as_bytes(), 3600)
            .issue(&analyst_id, "anna", Role::Admin, 0)
            .expect("issue");
        expect(
            "analyst-as-admin",
            call(&app, Method::GET, "/api/users", Some(&claims_admin), None)
                .await
                .0,
            StatusCode::FORBIDDEN,
            "role from db",
        );
        // Deactivated accounts lose access at once.
        let (_, updated) = call(
            &app,
            Method::PUT,
            &format!("/api/users/{analyst_id}"),
            r,
            Some(json!({"is_active": false})),
        )
        .await;
        assert_eq!(
            updated["is_active"], false,
            "{l}: the answer says so: {updated}"
        );
        expect(
            "deactivated",
            call(&app, Method::GET, "/api/auth/me", a, None).await.0,
            StatusCode::UNAUTHORIZED,
            "inactive",
        );
        let r = login_form(&app, "anna", "Test-password-1!").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{l}: inactive login");
        app.stop().await;
    }
}

#[tokio::test]
async fn rate_limits_trip_with_retry_after() {
    let config = AccountsConfig {
        login_rate_limit: 2,
        register_rate_limit: 1,
        forgot_rate_limit: 1,
        api_rate_limit: 15,
        // Windows are aligned to the epoch; year-long ones keep a boundary from falling inside the test.
        login_rate_window_secs: YEAR,
        register_rate_window_secs: YEAR,
        forgot_rate_window_secs: YEAR,
        api_rate_window_secs: YEAR,
        ..AccountsConfig::default()
    };
    for app in apps(config).await {
        let l = app.label;
        for _ in 0..2 {
            assert_eq!(
                login_form(&app, "mallory", "Guess!ng1").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let r = login_form(&app, "mallory", "Guess!ng1").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{l}");
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=YEAR).contains(&wait), "{wait}");
        // Per account: another account from the same address is not affected.
        assert_eq!(
            login_form(&app, "someone-else", "Guess!ng1").await.status(),
            StatusCode::UNAUTHORIZED
        );

        assert_eq!(
            register(&app, "first", "first@example.com").await.0,
            StatusCode::CREATED,
            "{l}"
        );
        let (s, b) = register(&app, "second", "second@example.com").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{l}: {b}");
        // One bucket per account, whether its username or its email is typed.
        for login in ["first", "FIRST@example.com"] {
            assert_eq!(
                login_form(&app, login, "Guess!ng1").await.status(),
                StatusCode::UNAUTHORIZED,
                "{l}"
            );
        }
        let r = login_form(&app, "first@example.com", "Guess!ng1").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{l}");

        let forgot = || {
            call(
                &app,
                Method::POST,
                "/api/auth/forgot-password",
                None,
                Some(json!({"email": "a@example.com"})),
            )
        };
        assert_eq!(forgot().await.0, StatusCode::OK);
        assert_eq!(forgot().await.0, StatusCode::TOO_MANY_REQUESTS);

        // The public catalogue listing is outside the general limit: any number of reads, no token.
        for _ in 0..20 {
            assert_eq!(
                call(&app, Method::GET, "/api/sources", None, None).await.0,
                StatusCode::OK,
                "{l}"
            );
        }
        // The general limit: 15 per window across every other route of the router, 11 used above.
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(call(&app, Method::GET, "/api/auth/me", None, None).await.0);
        }
        assert_eq!(
            statuses[..4],
            [StatusCode::UNAUTHORIZED; 4],
            "{l}: {statuses:?}"
        );
        assert_eq!(
            statuses[4],
            StatusCode::TOO_MANY_REQUESTS,
            "{l}: {statuses:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn first_admin_from_configuration_and_catalogue() {
    let config = AccountsConfig {
        admin_email: Some("Boss@Example.com".into()),
        admin_password: Some("B00tstrap!pw".into()),
        admin_username: "boss".into(),
        ..lax_limits()
    };
    for app in apps(config.clone()).await {
        let l = app.label;
        vigil_accounts::bootstrap_admin(&app.state, &config)
            .await
            .expect("bootstrap");
        // A second start (or a second replica) leaves it alone.
        vigil_accounts::bootstrap_admin(&app.state, &config)
            .await
            .expect("again");
        let r = login_form(&app, "boss@example.com", "B00tstrap!pw").await;
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        let b: Value = r.json().await.expect("json");
        assert_eq!(
            (
                b["user"]["role"].as_str(),
                b["user"]["is_verified"].as_bool()
            ),
            (Some("admin"), Some(true))
        );
        let weak = AccountsConfig {
            admin_email: Some("other@example.com".into()),
            admin_password: Some("weak".into()),
            ..config.clone()
        };
        assert!(
            vigil_accounts::bootstrap_admin(&app.state, &weak)
                .await
                .is_err(),
            "{l}: a weak admin password refuses to start"
        );

        let (added, total) = vigil_accounts::catalog::load_catalog(&app.state.store)
            .await
            .expect("catalog");
        assert_eq!(added, total);
        let token = b["access_token"].as_str().expect("token");
        let (s, list) = call(&app, Method::GET, "/api/sources", Some(token), None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            list.as_array()
                .is_some_and(|a| a.iter().any(|s| s["id"] == "wikipedia-recentchange")),
            "{l}"
        );

        let doc = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .text()
            .await
            .expect("text");
        for path in [
            "/api/auth/login",
            "/api/auth/verify-reset-token/{token}",
            "/api/users/{id}",
            "/api/sources/{id}",
        ] {
            assert!(
                doc.contains(path),
                "{path} missing from the OpenAPI document"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn expired_rows_are_purged_periodically() {
    let config = AccountsConfig {
        token_purge_interval_secs: 1,
        ..lax_limits()
    };
    for app in apps(config).await {
        let l = app.label;
        let (user_id, token) = app.user_with_role("pat", Role::Viewer).await;
        let pool = app.state.store.pool();
        let now = vigil_store::time::now_ms();
        // One expired and one live row in each table the purge looks after.
        for (sql, live_expiry) in [
            (
                "INSERT INTO refresh_tokens (token_hash, user_id, expires_at, revoked, created_at) \
                 VALUES ($1, $2, $3, 0, 0)",
                now + 3_600_000,
            ),
            (
                "INSERT INTO auth_tokens (token_hash, user_id, purpose, expires_at, used_at, created_at) \
                 VALUES ($1, $2, 'reset_password', $3, NULL, 0)",
                now + 3_600_000,
            ),
            (
                "INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3)",
                now + 3_600_000,
            ),
        ] {
            for (key, expires_at) in [("old", now - 1), ("live", live_expiry)] {
                vigil_store::sqlx::query(sql)
                    .bind(format!("{key}-{user_id}"))
                    .bind(&user_id)
                    .bind(expires_at)
                    .execute(pool)
                    .await
                    .expect("insert");
            }
        }
        vigil_store::sqlx::query(
            "INSERT INTO rate_limits (bucket, window_start, hits, expires_at) VALUES ('x', 0, 1, $1)",
        )
        .bind(now - 1)
        .execute(pool)
        .await
        .expect("insert");

        let count = |table: &'static str| async move {
            let (n,): (i64,) = vigil_store::sqlx::query_as(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
            ))
            .fetch_one(pool)
            .await
            .expect("count");
            n
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = count("refresh_tokens").await
                + count("auth_tokens").await
                + count("revoked_access_tokens").await
                + count("rate_limits").await;
            if left == 3 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{l}: {left} rows left, expected the 3 live ones"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (s, _) = call(&app, Method::GET, "/api/auth/me", Some(&token), None).await;
        assert_eq!(s, StatusCode::OK, "{l}: live sessions are untouched");
        app.stop().await;
    }
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
        let (_, me) = call(&app, Method::GET, "/api/auth/me", Some(&access), None).await;
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
        let (_, me) = call(&app, Method::GET, "/api/auth/me", Some(&access), None).await;
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
