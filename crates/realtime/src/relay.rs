//! Cross-replica fan-out over PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! Replicas are stateless and share one PostgreSQL database, but subscribers (WebSocket `subscribe`, SSE, the
//! `websocket` alert channel) hold sockets on one replica each. So every replica announces what it published
//! locally on the channel [`CHANNEL`], and every replica listens there and republishes what *other* replicas
//! announced to its own sockets. With SQLite there is one process, nothing to relay, and the relay is not started.
//!
//! * **Payload limit.** `NOTIFY` payloads must stay under 8000 bytes, and an analysis (persistence diagrams,
//!   landscapes) is larger. Notifications therefore carry anomaly ids only, packed into an [`Envelope`] (several
//!   per notification under load, split to stay under [`MAX_PAYLOAD`]); a listener reads each row it needs from
//!   `anomalies`. Ids are announced after the row is committed, so the read always finds it (unless an admin
//!   deleted it in between, which is logged and skipped).
//! * **Identical messages.** Local and relayed messages are built by the same functions from the same stored
//!   row ([`crate::messages::broadcast_text`], [`crate::messages::alert_text`]); serde_json's `float_roundtrip`
//!   (enabled in this crate) makes the numbers read back from the row print exactly as they were written.
//! * **Exactly once.** Each process announces with a random origin id and ignores its own announcements: its
//!   local subscribers were served directly.
//! * **Never in the way.** Announcing is a bounded `try_send` to one sender task (a full queue drops the
//!   announcement, counted and logged); the listener reads rows only when someone here would receive them.
//! * **Reconnects.** A lost listener connection is re-established with exponential backoff (100 ms to 30 s), each
//!   failure logged. Announcements made while it was down are not replayed (like any live broadcast; the
//!   anomaly log keeps every row), and the gap is logged and counted.
//!
//! Metrics: `topoforge_relay_notifications_total{direction}` (`sent` / `received`),
//! `topoforge_relay_dropped_total{reason}`, `topoforge_relay_reconnects_total`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use vigil_http::AppState;
use vigil_store::anomalies::{self, Anomaly};
use vigil_store::sqlx;
use vigil_store::sqlx::postgres::PgListener;

use crate::hub::Hub;

/// The notification channel (per database, so all replicas of one deployment share it).
pub const CHANNEL: &str = "vigil_realtime";

/// Largest payload sent; PostgreSQL refuses 8000 bytes and more.
pub const MAX_PAYLOAD: usize = 7900;

/// Announcements waiting for the sender task; beyond this they are dropped (the database is not keeping up).
const QUEUE: usize = 4096;

/// Announcements packed into one notification at most (a bound on the work per notification).
const MAX_BATCH: usize = 512;

/// Rows read concurrently by a listener.
const READ_CONCURRENCY: usize = 8;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One thing a replica published to its local sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Item {
    /// The anomaly with this id went to the broadcast (`{"type":"anomaly"}` on subscribed sockets, SSE).
    Anomaly(String),
    /// The anomaly with this id fired `websocket` alert configs of these users. `opening`: the alert announced an
    /// incident's opening, so the receiving replica shows the row as it was when it opened (open, one event)
    /// whatever it has grown into since; otherwise the row as read.
    Alert {
        id: String,
        users: Vec<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        opening: bool,
    },
}

/// One notification's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The announcing process.
    pub origin: String,
    /// In publication order.
    pub items: Vec<Item>,
}

/// The announcing half, held by [`crate::Realtime`] once started.
pub(crate) struct Relay {
    tx: mpsc::Sender<Item>,
    listening: Arc<AtomicBool>,
}

impl Relay {
    /// Starts the sender and listener tasks when the store is PostgreSQL; `None` otherwise.
    pub(crate) fn start(app: &AppState, hub: Arc<Hub>) -> Option<Relay> {
        if app.store.backend() != vigil_store::Backend::Postgres {
            return None;
        }
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let listening = Arc::new(AtomicBool::new(false));
        app.spawn(send_loop(app.clone(), origin.clone(), rx));
        app.spawn(listen_loop(app.clone(), hub, origin, listening.clone()));
        Some(Relay { tx, listening })
    }

    /// Queues an announcement for the other replicas. Never waits.
    pub(crate) fn announce(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("topoforge_relay_dropped_total", "reason" => "queue_full")
                    .increment(1);
                tracing::warn!("cross-replica announcement dropped: the relay queue is full");
            }
            // Shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Whether this replica is currently subscribed to the other replicas' announcements.
    pub(crate) fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Packs `items` (in order) into payloads of at most [`MAX_PAYLOAD`] bytes. An alert naming more users than fit in
/// one payload is split into several alerts of the same anomaly; an item that cannot fit at all is dropped
/// (logged) rather than sent broken.
pub fn pack(origin: &str, items: Vec<Item>) -> Vec<String> {
    let head = match serde_json::to_string(origin) {
        Ok(o) => format!("{{\"origin\":{o},\"items\":["),
        Err(_) => return Vec::new(),
    };
    let budget = MAX_PAYLOAD.saturating_sub(head.len() + 2);
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 0;
    let mut flush = |current: &mut Vec<String>, size: &mut usize| {
        if !current.is_empty() {
            out.push(format!("{head}{}]}}", current.join(",")));
            current.clear();
            *size = 0;
        }
    };
    for item in items.into_iter().flat_map(|i| split(i, budget)) {
        let Ok(text) = serde_json::to_string(&item) else {
            continue;
        };
        if text.len() > budget {
            metrics::counter!("topoforge_relay_dropped_total", "reason" => "too_large")
                .increment(1);
            tracing::warn!(
                bytes = text.len(),
                "cross-replica announcement too large for NOTIFY; dropped"
            );
            continue;
        }
        // One comma between items.
        if size + text.len() + usize::from(!current.is_empty()) > budget {
            flush(&mut current, &mut size);
        }
        size += text.len() + usize::from(!current.is_empty());
        current.push(text);
    }
    flush(&mut current, &mut size);
    out
}

/// Splits an alert whose user list would not fit in `budget` bytes into alerts of the same anomaly.
fn split(item: Item, budget: usize) -> Vec<Item> {
    let Item::Alert { id, users, opening } = item else {
        return vec![item];
    };
    let json_len = |s: &str| serde_json::to_string(s).map_or(usize::MAX / 4, |t| t.len());
    // `{"alert":{"id":…,"users":[…],"opening":true}}` around the users.
    let fixed = json_len(&id) + 27 + 15;
    let mut out = Vec::new();
    let mut chunk: Vec<String> = Vec::new();
    let mut size = fixed;
    for u in users {
        let len = json_len(&u) + 1;
        if size + len > budget && !chunk.is_empty() {
            out.push(Item::Alert {
                id: id.clone(),
                users: std::mem::take(&mut chunk),
                opening,
            });
            size = fixed;
        }
        size += len;
        chunk.push(u);
    }
    if !chunk.is_empty() {
        out.push(Item::Alert {
            id,
            users: chunk,
            opening,
        });
    }
    out
}

async fn send_loop(app: AppState, origin: String, mut rx: mpsc::Receiver<Item>) {
    loop {
        let first = tokio::select! {
            item = rx.recv() => item,
            () = app.shutdown.cancelled() => {
                // Announce what is already queued, then stop: shutdown waits for this task.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        for payload in pack(&origin, items) {
            notify(&app, &payload).await;
        }
    }
}

async fn notify(app: &AppState, payload: &str) {
    // `pg_notify` returns `void`, which the `Any` driver cannot decode; the outer count gives it a type it can.
    let sent = sqlx::query("SELECT COUNT(*) FROM (SELECT pg_notify($1, $2)) AS sent")
        .bind(CHANNEL)
        .bind(payload)
        .execute(app.store.pool())
        .await;
    match sent {
        Ok(_) => {
            metrics::counter!("topoforge_relay_notifications_total", "direction" => "sent")
                .increment(1);
        }
        Err(e) => {
            metrics::counter!("topoforge_relay_dropped_total", "reason" => "notify_failed")
                .increment(1);
            tracing::warn!(error = %e, "cross-replica announcement failed; other replicas miss it");
        }
    }
}

async fn listen_loop(app: AppState, hub: Arc<Hub>, origin: String, listening: Arc<AtomicBool>) {
    let url = app.store.pool().connect_options().database_url.to_string();
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = tokio::select! {
            r = subscribe(&url) => r,
            () = app.shutdown.cancelled() => return,
        };
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot listen for other replicas' anomalies");
                if !pause(&app, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        listening.store(true, Ordering::Release);
        tracing::info!(channel = CHANNEL, "listening for other replicas' anomalies");
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                () = app.shutdown.cancelled() => {
                    listening.store(false, Ordering::Release);
                    return;
                }
            };
            match next {
                Ok(Some(n)) => {
                    backoff = BACKOFF_MIN;
                    metrics::counter!("topoforge_relay_notifications_total", "direction" => "received")
                        .increment(1);
                    deliver(&app, &hub, &origin, n.payload()).await;
                }
                Ok(None) => {
                    // sqlx reconnected (and re-subscribed) before returning.
                    metrics::counter!("topoforge_relay_reconnects_total").increment(1);
                    tracing::warn!(
                        "relay connection lost and re-established; other replicas' anomalies announced meanwhile were missed"
                    );
                }
                Err(e) => {
                    listening.store(false, Ordering::Release);
                    metrics::counter!("topoforge_relay_reconnects_total").increment(1);
                    tracing::warn!(error = %e, retry_in = ?backoff, "relay connection failed; reconnecting");
                    if !pause(&app, &mut backoff).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

async fn subscribe(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect(url).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}

/// Sleeps for `backoff` (then doubles it, capped); `false` when shutdown began meanwhile.
async fn pause(app: &AppState, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = app.shutdown.cancelled() => false,
    }
}

/// Republishes another replica's announcements to this replica's sockets.
async fn deliver(app: &AppState, hub: &Hub, origin: &str, payload: &str) {
    let envelope: Envelope = match serde_json::from_str(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring an unreadable cross-replica announcement");
            return;
        }
    };
    if envelope.origin == origin {
        return;
    }
    // Read only the rows someone here will receive.
    let broadcast = hub.subscribers() > 0;
    let mut wanted: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for item in &envelope.items {
        let id = match item {
            Item::Anomaly(id) if broadcast => id,
            Item::Alert { id, users, .. } if users.iter().any(|u| hub.has_sockets(u)) => id,
            _ => continue,
        };
        if seen.insert(id.as_str()) {
            wanted.push(id.clone());
        }
    }
    if wanted.is_empty() {
        return;
    }
    let store = app.store.clone();
    let read: Vec<(String, Result<Option<Anomaly>, _>)> = futures_util::stream::iter(wanted)
        .map(move |id| {
            let store = store.clone();
            async move {
                let row = anomalies::get(&store, &id).await;
                (id, row)
            }
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut rows: HashMap<String, Anomaly> = HashMap::with_capacity(read.len());
    for (id, row) in read {
        match row {
            Ok(Some(a)) => {
                rows.insert(id, a);
            }
            Ok(None) => tracing::debug!(%id, "announced anomaly is gone (deleted); skipped"),
            Err(e) => {
                metrics::counter!("topoforge_relay_dropped_total", "reason" => "read_failed")
                    .increment(1);
                tracing::warn!(%id, error = %e, "could not read an announced anomaly; skipped");
            }
        }
    }
    for item in &envelope.items {
        match item {
            Item::Anomaly(id) => {
                if let Some(text) = rows
                    .get(id.as_str())
                    .and_then(crate::messages::broadcast_text)
                {
                    hub.publish(text);
                }
            }
            Item::Alert { id, users, opening } => {
                let Some(row) = rows.get(id.as_str()) else {
                    continue;
                };
                let opened;
                let row = if *opening {
                    opened = crate::messages::as_opened(row);
                    &opened
                } else {
                    row
                };
                let Some(text) = crate::messages::alert_text(row) else {
                    continue;
                };
                for user in users {
                    hub.deliver_to_user(user, &text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(payloads: &[String]) -> Vec<Item> {
        payloads
            .iter()
            .flat_map(|p| {
                assert!(p.len() <= MAX_PAYLOAD, "{} bytes", p.len());
                let e: Envelope = serde_json::from_str(p).expect("valid envelope");
                assert_eq!(e.origin, "me");
                e.items
            })
            .collect()
    }

    #[test]
    fn small_batches_share_one_payload_in_order() {
        let items = vec![
            Item::Anomaly("a".into()),
            Item::Alert {
                id: "a".into(),
                users: vec!["u1".into(), "u2".into()],
                opening: false,
            },
            Item::Anomaly("b".into()),
        ];
        let payloads = pack("me", items.clone());
        assert_eq!(payloads.len(), 1);
        assert_eq!(unpack(&payloads), items);
    }

    #[test]
    fn large_batches_are_split_under_the_notify_limit() {
        let items: Vec<Item> = (0..1000)
            .map(|i| Item::Anomaly(format!("{i:036}")))
            .collect();
        let payloads = pack("me", items.clone());
        assert!(payloads.len() > 1);
        assert_eq!(unpack(&payloads), items);
    }

    #[test]
    fn alerts_for_many_users_are_split_by_user() {
        let users: Vec<String> = (0..1000).map(|i| format!("user-{i:031}")).collect();
        let item = Item::Alert {
            id: "x".repeat(36),
            users: users.clone(),
            opening: true,
        };
        let payloads = pack("me", vec![Item::Anomaly("first".into()), item]);
        assert!(payloads.len() > 4);
        let got = unpack(&payloads);
        assert_eq!(got[0], Item::Anomaly("first".into()));
        let mut back = Vec::new();
        for i in &got[1..] {
            match i {
                Item::Alert { id, users, opening } => {
                    assert_eq!(id, &"x".repeat(36));
                    assert!(opening);
                    back.extend(users.iter().cloned());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, users);
    }

    #[test]
    fn an_item_that_cannot_fit_is_dropped_not_sent_broken() {
        let payloads = pack(
            "me",
            vec![
                Item::Anomaly("y".repeat(MAX_PAYLOAD)),
                Item::Anomaly("ok".into()),
            ],
        );
        assert_eq!(unpack(&payloads), vec![Item::Anomaly("ok".into())]);
    }
}
