use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vigil_store::Store;

use crate::HttpConfig;
use crate::auth::TokenKeys;

/// What every handler can reach. Cheap to clone. Holds no domain state: features keep theirs in the database
/// (so replicas agree) and, where they need process-local parts such as socket registries, in their routers'
/// own typed state (which reaches this through `FromRef`).
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<TokenKeys>,
    pub config: Arc<HttpConfig>,
    /// Background work (training, webhook delivery) that graceful shutdown waits for. Spawn with [`AppState::spawn`].
    pub tasks: TaskTracker,
    /// Cancelled when the server begins shutting down; long-lived connections (WebSocket, SSE) end on it.
    pub shutdown: CancellationToken,
    /// Components a feature reports on `/health` besides the database (e.g. the NATS ingest connection).
    pub health: Arc<crate::health::HealthComponents>,
}

impl AppState {
    pub fn new(store: Store, config: HttpConfig, jwt_secret: &[u8]) -> Self {
        let tokens = TokenKeys::new(
            jwt_secret,
            config.access_token_expire_minutes.saturating_mul(60),
        );
        AppState {
            store,
            tokens: Arc::new(tokens),
            config: Arc::new(config),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            health: Arc::default(),
        }
    }

    /// Runs `job` in the background; shutdown waits for it to finish.
    pub fn spawn<F>(&self, job: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(job)
    }
}
