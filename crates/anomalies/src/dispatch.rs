//! Alert delivery: which configs an anomaly fires, webhook POSTs in the background, and whose sockets get a `websocket` alert.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use vigil_http::AppState;
use vigil_store::alert_configs;
use vigil_store::anomalies::Anomaly;

use crate::alerts::Channel;
use crate::doc::AnomalyDoc;
use crate::egress;
use crate::signing::{self, WebhookSecret};

/// How webhooks are delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// Per attempt, connect to last byte.
    pub timeout: Duration,
    /// Attempts per delivery, the first included (≥ 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles per retry, capped at `max_backoff`, then jittered to 50–100 %.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// Deliveries queued or in progress at once; more are dropped (and counted).
    pub queue: usize,
    /// Deliver to loopback, private, link-local and other non-public addresses too (see [`crate::egress`]).
    pub allow_private: bool,
    /// Signs every delivery when set (see [`crate::signing`]).
    pub secret: Option<WebhookSecret>,
}

impl DeliveryPolicy {
    /// The wait after failed attempt `attempt` (1-based): exponential, capped, with "equal jitter" so that
    /// receivers that fail together are not retried in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(2_u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ms)
        })
    }
}

/// Where `websocket` alert channels are delivered. The stream sockets belong to the realtime crate, which
/// registers itself with [`AlertDispatcher::set_socket_alerts`]; without one (a process serving no stream
/// sockets) such channels have nobody to reach.
pub trait SocketAlerts: Send + Sync + 'static {
    /// Delivers `anomaly` to the open stream sockets of `users` (sorted, de-duplicated).
    fn deliver(&self, state: &AppState, anomaly: &Anomaly, users: Vec<String>);
}

struct Inner {
    /// `None` only if the HTTP client could not be built (no TLS roots, …): deliveries then fail and are counted.
    client: Option<reqwest::Client>,
    sockets: std::sync::OnceLock<Arc<dyn SocketAlerts>>,
    policy: DeliveryPolicy,
    running: Arc<Semaphore>,
    queued: Arc<Semaphore>,
}

/// Fires alert configs for stored anomalies. Cheap to clone; clones share one queue and one concurrency limit.
#[derive(Clone)]
pub struct AlertDispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AlertDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertDispatcher")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl AlertDispatcher {
    pub fn new(policy: DeliveryPolicy) -> AlertDispatcher {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(policy.timeout)
            .timeout(policy.timeout)
            // A webhook answers for itself: following redirects would let it bounce our POST elsewhere (and past
            // the egress guard).
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve and connect for us, out of the guard's sight.
            .no_proxy()
            .user_agent(concat!(
                "vigil/",
                env!("CARGO_PKG_VERSION"),
                " alert-webhook"
            ));
        if !policy.allow_private {
            builder = builder.dns_resolver(Arc::new(egress::PublicResolver));
        }
        let client = builder
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "webhook client unavailable; webhook alerts will fail"))
            .ok();
        AlertDispatcher {
            inner: Arc::new(Inner {
                client,
                sockets: std::sync::OnceLock::new(),
                running: Arc::new(Semaphore::new(policy.concurrency.max(1))),
                queued: Arc::new(Semaphore::new(policy.queue.max(1))),
                policy,
            }),
        }
    }

    pub fn policy(&self) -> &DeliveryPolicy {
        &self.inner.policy
    }

    /// Registers where `websocket` channels go (once per dispatcher; later calls are ignored and say so).
    pub fn set_socket_alerts(&self, sink: Arc<dyn SocketAlerts>) -> bool {
        self.inner.sockets.set(sink).is_ok()
    }

    /// [`fire`](Self::fire), then delivers to the `websocket` channels' users through the registered
    /// [`SocketAlerts`] (nothing when none is registered).
    pub async fn fire_and_deliver(&self, state: &AppState, anomaly: &Anomaly) {
        let users = self.fire(state, anomaly).await;
        if users.is_empty() {
            return;
        }
        match self.inner.sockets.get() {
            Some(sink) => sink.deliver(state, anomaly, users),
            None => tracing::debug!(
                anomaly = %anomaly.id,
                users = users.len(),
                "websocket alerts fired but this process serves no stream sockets"
            ),
        }
    }

    /// Fires every active config whose threshold the anomaly's score reaches.
    ///
    /// Webhook channels are queued as background tasks (`state.spawn`, so graceful shutdown waits for them, and they
    /// stop retrying when shutdown begins); this returns as soon as the configs are read. The result is the sorted,
    /// de-duplicated ids of the users whose firing configs have the `websocket` channel, for the caller to deliver to.
    /// A database error is logged and yields no alerts: alerting never fails the caller's write.
    pub async fn fire(&self, state: &AppState, anomaly: &Anomaly) -> Vec<String> {
        let configs = match alert_configs::firing_for(&state.store, anomaly.anomaly_score).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, anomaly = %anomaly.id, "could not read alert configs; no alerts sent");
                metrics::counter!("alert_lookup_failures_total").increment(1);
                return Vec::new();
            }
        };
        let mut sockets = BTreeSet::new();
        let mut body: Option<Bytes> = None;
        for config in configs {
            for raw in &config.notification_channels {
                match Channel::parse(raw) {
                    Ok(Channel::Websocket) => {
                        sockets.insert(config.user_id.clone());
                    }
                    Ok(Channel::Webhook(url)) => {
                        let payload = match &body {
                            Some(b) => b.clone(),
                            None => match serde_json::to_vec(&AnomalyDoc::from(anomaly)) {
                                Ok(v) => body.insert(Bytes::from(v)).clone(),
                                Err(e) => {
                                    tracing::error!(error = %e, "anomaly did not serialise; webhooks skipped");
                                    continue;
                                }
                            },
                        };
                        let job = Job {
                            config_id: config.id.clone(),
                            user_id: config.user_id.clone(),
                            anomaly_id: anomaly.id.clone(),
                        };
                        self.schedule(state, url, payload, job);
                    }
                    // Channels are validated on write; a bad one here came from elsewhere (an import, old data).
                    Err(e) => {
                        tracing::warn!(config = %config.id, error = %e, "skipping an invalid channel")
                    }
                }
            }
        }
        sockets.into_iter().collect()
    }

    fn schedule(&self, state: &AppState, url: reqwest::Url, body: Bytes, job: Job) {
        let Ok(slot) = self.inner.queued.clone().try_acquire_owned() else {
            tracing::warn!(url = %url, "webhook queue full; delivery dropped");
            metrics::counter!("alert_webhook_deliveries_total", "outcome" => "dropped")
                .increment(1);
            return;
        };
        let inner = self.inner.clone();
        let shutdown = state.shutdown.clone();
        let store = state.store.clone();
        state.spawn(async move {
            let started = vigil_store::time::now_ms();
            let report = deliver(&inner, &url, body, &shutdown).await;
            drop(slot);
            metrics::counter!("alert_webhook_deliveries_total", "outcome" => report.outcome)
                .increment(1);
            record(&store, &url, job, started, &report).await;
        });
    }
}

/// Whom a webhook delivery is for (for its history row).
struct Job {
    config_id: String,
    user_id: String,
    anomaly_id: String,
}

/// How a delivery ended.
struct Report {
    outcome: &'static str,
    attempts: u32,
    last_status: Option<u16>,
    error: Option<String>,
}

impl Report {
    fn ended(outcome: &'static str, attempts: u32) -> Report {
        Report {
            outcome,
            attempts,
            last_status: None,
            error: None,
        }
    }
}

/// Days of delivery history kept; older rows are purged now and then by the writers.
const HISTORY_DAYS: i64 = 30;
/// One in this many history writes also purges the rows past [`HISTORY_DAYS`] (cheap with the time index).
const PURGE_EVERY: u64 = 64;

/// Where a webhook went, as the history shows it: scheme, host, port and path only, since receivers often carry
/// a secret in the query or the user info.
pub fn shown_target(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// Stores a finished delivery in the history (`alert_deliveries`); a failure is logged, never retried: the
/// delivery itself is done.
async fn record(
    store: &vigil_store::Store,
    url: &reqwest::Url,
    job: Job,
    started: i64,
    report: &Report,
) {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = vigil_store::time::now_ms();
    let row = vigil_store::alert_deliveries::Delivery {
        id: uuid::Uuid::new_v4().to_string(),
        config_id: job.config_id,
        user_id: job.user_id,
        anomaly_id: job.anomaly_id,
        channel: "webhook".into(),
        target: shown_target(url),
        outcome: report.outcome.into(),
        attempts: i64::from(report.attempts),
        last_status: report.last_status.map(i64::from),
        error: report.error.clone(),
        created_at: started,
        finished_at: now,
    };
    if let Err(e) = vigil_store::alert_deliveries::record(store, &row).await {
        tracing::warn!(error = %e, "could not store an alert delivery in the history");
    }
    if WRITES
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(PURGE_EVERY)
    {
        let cutoff = now - HISTORY_DAYS * 86_400_000;
        if let Err(e) = vigil_store::alert_deliveries::purge_before(store, cutoff).await {
            tracing::warn!(error = %e, "could not purge old alert deliveries");
        }
    }
}

/// Runs one delivery to completion; returns how it ended.
async fn deliver(
    inner: &Inner,
    url: &reqwest::Url,
    body: Bytes,
    shutdown: &CancellationToken,
) -> Report {
    let Some(client) = &inner.client else {
        return Report {
            error: Some("no HTTP client (TLS setup failed)".into()),
            ..Report::ended("failed", 0)
        };
    };
    let policy = &inner.policy;
    if !policy.allow_private
        && let Err(e) = egress::check_url(url)
    {
        tracing::warn!(url = %url, error = %e, "webhook refused");
        return Report {
            error: Some(e.to_string()),
            ..Report::ended("refused", 0)
        };
    }
    let delivery_id = uuid::Uuid::new_v4().to_string();
    let mut last_status = None;
    let mut error = None;
    let mut attempts = 0;
    for attempt in 1..=policy.max_attempts.max(1) {
        let permit = tokio::select! {
            p = inner.running.clone().acquire_owned() => p,
            () = shutdown.cancelled() => return Report { last_status, error, ..Report::ended("abandoned", attempts) },
        };
        let Ok(_permit) = permit else {
            return Report {
                last_status,
                error,
                ..Report::ended("failed", attempts)
            };
        };
        attempts = attempt;
        metrics::counter!("alert_webhook_attempts_total").increment(1);
        let mut request = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signing::DELIVERY_HEADER, &delivery_id);
        if let Some(secret) = &policy.secret {
            // Signed per attempt, so a retry's timestamp is fresh for the receiver's replay window.
            let now = vigil_store::time::now_ms() / 1000;
            request = request
                .header(signing::TIMESTAMP_HEADER, now)
                .header(signing::SIGNATURE_HEADER, secret.sign(now, &body));
        }
        let sent = request.body(body.clone()).send().await;
        drop(_permit);
        match sent {
            Ok(r) if r.status().is_success() => {
                return Report {
                    last_status: Some(r.status().as_u16()),
                    ..Report::ended("delivered", attempt)
                };
            }
            Ok(r) => {
                tracing::debug!(url = %url, attempt, status = %r.status(), "webhook refused");
                last_status = Some(r.status().as_u16());
                error = Some(format!("answered {}", r.status()));
            }
            Err(e) if egress::refused_by_guard(&e) => {
                // The name resolves to internal addresses only: retrying would not change that soon.
                tracing::warn!(url = %url, error = %e, "webhook refused: not a public address");
                return Report {
                    error: Some("not a public address".into()),
                    ..Report::ended("refused", attempt)
                };
            }
            Err(e) => {
                tracing::debug!(url = %url, attempt, error = %e, "webhook failed");
                last_status = None;
                error = Some(if e.is_timeout() {
                    "timed out".into()
                } else if e.is_connect() {
                    "could not connect".into()
                } else {
                    "request failed".into()
                });
            }
        }
        if attempt < policy.max_attempts {
            tokio::select! {
                () = tokio::time::sleep(policy.backoff(attempt)) => {}
                () = shutdown.cancelled() => return Report { last_status, error, ..Report::ended("abandoned", attempts) },
            }
        }
    }
    tracing::warn!(url = %url, attempts = policy.max_attempts, "webhook delivery failed");
    Report {
        last_status,
        error,
        ..Report::ended("failed", attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            timeout: Duration::from_secs(1),
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            concurrency: 1,
            queue: 1,
            allow_private: false,
            secret: None,
        }
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let p = policy();
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = p.backoff(3);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d10 = p.backoff(10);
            assert!(
                d10 >= Duration::from_millis(500) && d10 <= Duration::from_millis(1000),
                "{d10:?}"
            );
        }
        assert!(p.backoff(u32::MAX) <= Duration::from_millis(1000));
        let zero = DeliveryPolicy {
            base_backoff: Duration::ZERO,
            ..policy()
        };
        assert_eq!(zero.backoff(2), Duration::ZERO);
    }
}
