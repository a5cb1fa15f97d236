//! End-to-end test support: the real application, on a random loopback port, over a throw-away database.
//!
//! ```ignore
//! for app in TestApp::all(|state| my_feature::MyFeature::new(config.clone()).router(state)).await {
//!     let r = app.client.get(app.url("/health")).send().await?;
//! }
//! ```

use std::net::SocketAddr;

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

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Creates an active account with `role` directly in the database and returns `(user_id, access_token)`.
    pub async fn user_with_role(&self, username: &str, role: Role) -> (String, String) {
        let id = uuid::Uuid::new_v4().to_string();
        let hash = crate::password::hash("Test-password-1!").expect("hash");
        vigil_store::sqlx::query(
            "INSERT INTO users (id, username, email, password_hash, role, is_verified, is_active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(username)
        .bind(format!("{username}@example.com"))
        .bind(hash)
        .bind(role.as_str())
        .bind(1_i64)
        .bind(1_i64)
        .bind(vigil_store::time::now_ms())
        .execute(self.state.store.pool())
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
