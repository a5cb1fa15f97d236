//! End-to-end test support: the real application, on a random loopback port, over a throw-away database, and the
//! one request helper every crate's tests use ([`Api`]).
//!
//! ```ignore
//! for app in TestApp::all(|state| my_feature::MyFeature::new(config.clone()).router(state)).await {
//!     let (_, token) = app.user_with_role("ana", Role::Analyst).await;
//!     let (status, body) = app.api().get("/health").await;
//!     let (status, body) = app.api_as(&token).post("/api/things", &json!({"name": "x"})).await;
//!     let thing: Thing = app.api_as(&token).get_json("/api/things/1").await;
//!     app.check_roles(&[RoleCase::get("/api/things", Role::Viewer)], &tokens).await;
//! }
//! ```

use std::net::SocketAddr;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use vigil_store::testing::TestDb;

use crate::{AppState, HttpConfig, Role};

/// A running server. Dropping it stops the server and removes its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    /// `"sqlite"` or `"postgres"`, for assertion messages.
    pub label: &'static str,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    _db: TestDb,
}

impl TestApp {
    /// Starts the application with `features` over `db`.
    pub async fn start(
        db: TestDb,
        features: impl FnOnce(&AppState) -> OpenApiRouter<AppState>,
    ) -> TestApp {
        Self::start_with(db, HttpConfig::for_tests(), features).await
    }

    /// Like [`TestApp::start`], with a custom core configuration.
    pub async fn start_with(
        db: TestDb,
        config: HttpConfig,
        features: impl FnOnce(&AppState) -> OpenApiRouter<AppState>,
    ) -> TestApp {
        let secret = config
            .jwt_secret
            .clone()
            .unwrap_or_else(|| "test-secret-test-secret-test-secret!".into());
        let state = AppState::new(db.store.clone(), config, secret.as_bytes());
        let app = crate::app::build(state.clone(), features(&state));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve::serve(
            listener,
            app,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let label = db.label;
        TestApp {
            addr,
            state,
            client: reqwest::Client::new(),
            label,
            server,
            shutdown: tx,
            _db: db,
        }
    }

    /// One app per available backend: SQLite always, PostgreSQL when `TEST_DATABASE_URL` is set.
    pub async fn all(features: impl Fn(&AppState) -> OpenApiRouter<AppState>) -> Vec<TestApp> {
        let mut apps = Vec::new();
        for db in TestDb::all().await {
            apps.push(TestApp::start(db, &features).await);
        }
        apps
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests without credentials.
    pub fn api(&self) -> Api<'_> {
        Api {
            app: self,
            token: None,
        }
    }

    /// Requests with `Authorization: Bearer {token}`.
    pub fn api_as<'a>(&'a self, token: &'a str) -> Api<'a> {
        self.api_with(Some(token))
    }

    /// [`TestApp::api_as`] when there is a token, [`TestApp::api`] when there is none.
    pub fn api_with<'a>(&'a self, token: Option<&'a str>) -> Api<'a> {
        Api { app: self, token }
    }

    /// Walks a role matrix: every case is refused with 401 without a token and with a malformed one, then each of
    /// `tokens` is allowed (2xx) when its role is at least the case's minimum and refused with a 403 `{"detail"}`
    /// otherwise.
    pub async fn check_roles(&self, cases: &[RoleCase], tokens: &[(Role, &str)]) {
        for case in cases {
            let RoleCase {
                method, path, body, ..
            } = case;
            let label = self.label;
            let (s, v) = self.api().send(method.clone(), path, body.as_ref()).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{label} {method} {path} anonymous: {v}"
            );
            let (s, _) = self
                .api_as("not-a-token")
                .send(method.clone(), path, body.as_ref())
                .await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{label} {method} {path} bad token"
            );
            for (role, token) in tokens {
                let (s, v) = self
                    .api_as(token)
                    .send(method.clone(), path, body.as_ref())
                    .await;
                if *role >= case.min {
                    assert!(s.is_success(), "{label} {method} {path} as {role}: {s} {v}");
                } else {
                    assert_eq!(
                        s,
                        StatusCode::FORBIDDEN,
                        "{label} {method} {path} as {role}: {v}"
                    );
                    assert!(
                        v["detail"].is_string(),
                        "{label} {method} {path} as {role}: {v}"
                    );
                }
            }
        }
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Creates an active account with `role` directly in the database and returns `(user_id, access_token)`.
    pub async fn user_with_role(&self, username: &str, role: Role) -> (String, String) {
        let id = uuid::Uuid::new_v4().to_string();
        let hash = crate::password::hash("Test-password-1!").expect("hash");
        vigil_store::users::insert(
            &self.state.store,
            &vigil_store::users::NewUser {
                id: id.clone(),
                username: username.to_owned(),
                email: format!("{username}@example.com"),
                password_hash: hash,
                full_name: None,
                organization: None,
                role,
                is_verified: true,
                created_at: vigil_store::time::now_ms(),
            },
        )
        .await
        .expect("insert a test user");
        let token = self
            .state
            .tokens
            .issue(&id, username, role, 0)
            .expect("issue a token");
        (id, token)
    }

    /// Stops the server gracefully and waits for it (background jobs included).
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.server.await;
    }
}

/// One row of a role matrix for [`TestApp::check_roles`]: a request and the least role allowed to make it.
#[derive(Debug, Clone)]
pub struct RoleCase {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    pub min: Role,
}

impl RoleCase {
    pub fn get(path: impl Into<String>, min: Role) -> Self {
        Self::new(Method::GET, path, None, min)
    }

    pub fn post(path: impl Into<String>, body: Value, min: Role) -> Self {
        Self::new(Method::POST, path, Some(body), min)
    }

    pub fn put(path: impl Into<String>, body: Value, min: Role) -> Self {
        Self::new(Method::PUT, path, Some(body), min)
    }

    pub fn delete(path: impl Into<String>, min: Role) -> Self {
        Self::new(Method::DELETE, path, None, min)
    }

    pub fn new(method: Method, path: impl Into<String>, body: Option<Value>, min: Role) -> Self {
        RoleCase {
            method,
            path: path.into(),
            body,
            min,
        }
    }
}

/// Requests to one [`TestApp`], anonymous or as one bearer token. Bodies are sent as JSON; answers come back as
/// `(status, body)` with the body decoded as JSON when it is JSON, as a JSON string when it is other text, and
/// `null` when it is empty. A request that cannot be sent at all fails the test.
#[derive(Clone, Copy)]
pub struct Api<'a> {
    app: &'a TestApp,
    token: Option<&'a str>,
}

impl Api<'_> {
    /// A request builder with the credentials applied, for what the shortcuts do not cover (headers, forms, raw
    /// bodies, streaming).
    pub fn request(self, method: Method, path: &str) -> RequestBuilder {
        let r = self.app.client.request(method, self.app.url(path));
        match self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn send(
        self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.request(method.clone(), path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let response = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        decode(response).await
    }

    pub async fn get(self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// `GET path`, which must succeed, decoded as `T`.
    pub async fn get_json<T: DeserializeOwned>(self, path: &str) -> T {
        let (status, body) = self.get(path).await;
        assert!(status.is_success(), "GET {path}: {status} {body}");
        serde_json::from_value(body)
            .unwrap_or_else(|e| panic!("GET {path}: not the expected shape: {e}"))
    }
}

/// `(status, body)` of a response, the body decoded as described on [`Api`].
pub async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}
