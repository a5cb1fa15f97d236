//! TopoForge's anomaly log over HTTP, its alert configurations, and alert delivery.
//!
//! Routes (all require a signed-in account, by bearer token or, for the export, a signed link's ticket; roles are
//! checked against the database on every request):
//!
//! | Route | Role | |
//! |---|---|---|
//! | `GET /api/anomalies` | viewer | filters `start_date`, `end_date`, `source`, `is_anomaly`, `risk_level`, `min_score`; `page` (1-based), `limit` (1–100, default 20); newest first; `{data, page, limit, total}` |
//! | `POST /api/anomalies` | analyst | 201 with the stored document; fires the alert configs |
//! | `GET /api/anomalies/stats` | viewer | same filters; totals, by source, by risk level, timeline — all grouped by the database |
//! | `GET /api/anomalies/export?format=csv\|json` | viewer | every matching row, streamed; a `ticket` from the link route stands in for the bearer header |
//! | `POST /api/anomalies/export/link?format=…&<filters>` | viewer | a signed link to that export, for browser downloads (`EXPORT_LINK_TTL_SECS`, 60 s) |
//! | `GET /api/anomalies/{id}` | viewer | |
//! | `DELETE /api/anomalies/{id}` | admin | 204 |
//! | `GET, POST /api/alerts`, `GET, PUT, DELETE /api/alerts/{id}` | analyst | an analyst sees and edits their own configs; an admin all |
//!
//! Invariants:
//! * Filters reach SQL only as bound parameters (see `vigil_store::anomalies::Filter`); the statement text is built
//!   from fixed column names.
//! * Exports page through the database by keyset `(ts, id)`, one short query per page, so memory stays flat and no
//!   connection is held while the client reads (SQLite has one pooled connection).
//! * Alert delivery never blocks or fails the caller: [`AlertDispatcher::fire`] only reads the firing configs and
//!   queues webhook POSTs as background tasks (bounded queue, bounded concurrency, per-attempt timeout, exponential
//!   backoff with jitter); a full queue drops the delivery and counts it rather than growing without bound.
//! * Webhooks reach public addresses only unless `WEBHOOK_ALLOW_PRIVATE` is set ([`egress`]): checked when a config is
//!   written (IP literals, `localhost`) and enforced at connect time by the client's resolver (names).
//! * Every delivery carries an `X-Vigil-Delivery` id (the same on retries); with `WEBHOOK_SECRET` it is also signed
//!   ([`signing`]: HMAC-SHA256 over timestamp and body).
//! * Stream incidents (issue #13) are rows of the log like any anomaly: the stream pipeline writes one row per
//!   incident (consecutive anomalous events of a stream; see `vigil_realtime::incident`), updated as it grows, and
//!   its document adds `incident_id` (= `id`), `status` (`open` | `closed`), `event_count` and, once closed,
//!   `ended_at`; `timestamp` is its start and the score, risk level, Betti numbers, event and analysis are its peak's.
//!   Listing, statistics and exports therefore count incidents, not events. Webhook payloads are these documents:
//!   one POST when an incident opens (`status: open`, `event_count: 1`) and one when it closes (`status: closed`,
//!   the final peak and count), each signed like any delivery; receivers tell them apart by `status`.
//! * The timeline bucket width is chosen from the filter's time range (or the matched rows' range when a bound is
//!   open): the smallest of 1 min, 5 min, 15 min, 1 h, 6 h, 1 day, 7 days, 30 days giving at most 100 buckets.

mod alerts;
mod dispatch;
mod doc;
pub mod egress;
mod export;
mod routes;
pub mod signing;
pub mod svg;

// `routes!` expands to `axum::…` paths; this crate's axum is vigil-http's re-export.
use std::sync::Arc;
use std::time::Duration;
use vigil_http::axum;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_http::AppState;
use vigil_http::axum::extract::FromRef;

pub use alerts::{AlertConfigDoc, Channel, CreateAlertConfig, UpdateAlertConfig};
pub use dispatch::{AlertDispatcher, DeliveryPolicy, SocketAlerts};
pub use doc::{
    AnomalyDoc, AnomalyList, CreateAnomaly, StatsDoc, TimelineBucket, format_ts, parse_ts,
};

/// Settings of the anomaly API and of webhook delivery (flattened into `vigil serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct AnomaliesConfig {
    /// Seconds one webhook attempt may take (connect + response) before it counts as failed.
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECS", default_value_t = defaults::WEBHOOK_TIMEOUT_SECS)]
    pub webhook_timeout_secs: f64,
    /// Attempts per webhook delivery, the first included.
    #[arg(long, env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = defaults::WEBHOOK_MAX_ATTEMPTS)]
    pub webhook_max_attempts: u32,
    /// Delay before the first retry in ms; it doubles per retry (with jitter) up to 30 s.
    #[arg(long, env = "WEBHOOK_BACKOFF_MS", default_value_t = defaults::WEBHOOK_BACKOFF_MS)]
    pub webhook_backoff_ms: u64,
    /// Webhook POSTs in flight at once, process-wide.
    #[arg(long, env = "WEBHOOK_CONCURRENCY", default_value_t = defaults::WEBHOOK_CONCURRENCY)]
    pub webhook_concurrency: usize,
    /// Deliveries that may wait (queued or retrying); beyond this new deliveries are dropped and counted.
    #[arg(long, env = "WEBHOOK_QUEUE", default_value_t = defaults::WEBHOOK_QUEUE)]
    pub webhook_queue: usize,
    /// Allow webhooks to loopback, private and link-local addresses (off: only public addresses, against SSRF).
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", default_value_t = defaults::WEBHOOK_ALLOW_PRIVATE, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Signs every webhook (HMAC-SHA256 in `X-Vigil-Signature` over `"{X-Vigil-Timestamp}.{body}"`) when set.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Rows fetched per export page (each page is one short keyset query).
    #[arg(long, env = "EXPORT_PAGE_ROWS", default_value_t = defaults::EXPORT_PAGE_ROWS)]
    pub export_page_rows: i64,
    /// Seconds a signed export link (`POST /api/anomalies/export/link`) works (1–3600).
    #[arg(long, env = "EXPORT_LINK_TTL_SECS", default_value_t = defaults::EXPORT_LINK_TTL_SECS)]
    pub export_link_ttl_secs: u64,
}

/// The default of every setting, shared by the command line (`default_value_t`) and `Default`.
pub mod defaults {
    pub const WEBHOOK_TIMEOUT_SECS: f64 = 5.0;
    pub const WEBHOOK_MAX_ATTEMPTS: u32 = 4;
    pub const WEBHOOK_BACKOFF_MS: u64 = 500;
    pub const WEBHOOK_CONCURRENCY: usize = 8;
    pub const WEBHOOK_QUEUE: usize = 1000;
    pub const WEBHOOK_ALLOW_PRIVATE: bool = false;
    pub const EXPORT_PAGE_ROWS: i64 = 1000;
    pub const EXPORT_LINK_TTL_SECS: u64 = 60;
}

impl Default for AnomaliesConfig {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        AnomaliesConfig {
            webhook_timeout_secs: defaults::WEBHOOK_TIMEOUT_SECS,
            webhook_max_attempts: defaults::WEBHOOK_MAX_ATTEMPTS,
            webhook_backoff_ms: defaults::WEBHOOK_BACKOFF_MS,
            webhook_concurrency: defaults::WEBHOOK_CONCURRENCY,
            webhook_queue: defaults::WEBHOOK_QUEUE,
            webhook_allow_private: defaults::WEBHOOK_ALLOW_PRIVATE,
            webhook_secret: None,
            export_page_rows: defaults::EXPORT_PAGE_ROWS,
            export_link_ttl_secs: defaults::EXPORT_LINK_TTL_SECS,
        }
    }
}

impl AnomaliesConfig {
    /// The delivery policy these settings describe (out-of-range values are clamped to something workable).
    pub fn delivery_policy(&self) -> DeliveryPolicy {
        let timeout = if self.webhook_timeout_secs.is_finite() && self.webhook_timeout_secs > 0.0 {
            Duration::from_secs_f64(self.webhook_timeout_secs.min(300.0))
        } else {
            Duration::from_secs(5)
        };
        DeliveryPolicy {
            timeout,
            max_attempts: self.webhook_max_attempts.clamp(1, 20),
            base_backoff: Duration::from_millis(self.webhook_backoff_ms),
            max_backoff: Duration::from_secs(30),
            concurrency: self.webhook_concurrency.max(1),
            queue: self.webhook_queue.max(1),
            allow_private: self.webhook_allow_private,
            secret: self
                .webhook_secret
                .as_deref()
                .and_then(signing::WebhookSecret::new),
        }
    }
}

/// Per-router settings the handlers read.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub export_page_rows: i64,
    pub export_link_ttl_ms: i64,
}

/// The anomaly log's side of the process: its settings and the one [`AlertDispatcher`] that delivers every alert
/// (the stream pipeline shares it through [`Anomalies::dispatcher`], so webhook delivery has one queue, one
/// concurrency limit and the configured secret and timeouts). Cheap to clone.
///
/// Wiring, as for every feature crate: `Anomalies::new(&config)`, then [`Anomalies::router`].
#[derive(Clone)]
pub struct Anomalies {
    settings: Arc<Settings>,
    dispatcher: AlertDispatcher,
}

impl Anomalies {
    /// Builds the dispatcher from `config`'s delivery settings (`WEBHOOK_*`).
    pub fn new(config: &AnomaliesConfig) -> Self {
        Anomalies {
            settings: Arc::new(Settings {
                export_page_rows: config
                    .export_page_rows
                    .clamp(1, vigil_store::anomalies::MAX_PAGE),
                export_link_ttl_ms: i64::try_from(
                    config.export_link_ttl_secs.clamp(1, 3600) * 1000,
                )
                .unwrap_or(60_000),
            }),
            dispatcher: AlertDispatcher::new(config.delivery_policy()),
        }
    }

    /// The process's alert dispatcher (for the stream pipeline and for tests).
    pub fn dispatcher(&self) -> &AlertDispatcher {
        &self.dispatcher
    }

    /// The anomaly and alert-config routes, bound to `state` and to this side's settings and dispatcher.
    pub fn router(self, state: &AppState) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(routes!(routes::list, routes::create))
            .routes(routes!(routes::stats))
            .routes(routes!(export::export))
            .routes(routes!(export::export_link))
            .routes(routes!(routes::get_one, routes::delete_one))
            .routes(routes!(svg::diagram_svg))
            .routes(routes!(alerts::list, alerts::create))
            .routes(routes!(alerts::deliveries))
            .routes(routes!(alerts::get_one, alerts::update, alerts::delete_one))
            .with_state(RouterState {
                app: state.clone(),
                settings: self.settings,
                dispatcher: self.dispatcher,
            })
    }
}

/// What the handlers extract with `State<…>`: a handler asking for anything else does not compile.
#[derive(Clone)]
struct RouterState {
    app: AppState,
    settings: Arc<Settings>,
    dispatcher: AlertDispatcher,
}

impl FromRef<RouterState> for AppState {
    fn from_ref(s: &RouterState) -> Self {
        s.app.clone()
    }
}

impl FromRef<RouterState> for Arc<Settings> {
    fn from_ref(s: &RouterState) -> Self {
        s.settings.clone()
    }
}

impl FromRef<RouterState> for AlertDispatcher {
    fn from_ref(s: &RouterState) -> Self {
        s.dispatcher.clone()
    }
}
