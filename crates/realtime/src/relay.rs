//! Cross-replica fan-out over PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! Replicas are stateless and share one PostgreSQL database, but subscribers (WebSocket `subscribe`, SSE, the
//! `websocket` alert channel, a stream's watchers) hold sockets on one replica each. So every replica announces
//! what it published locally on the channel [`CHANNEL`], and every replica listens there and republishes what
//! *other* replicas announced to its own sockets. With SQLite there is one process, nothing to relay, and the
//! relay is not started.
//!
//! Per-stream feeds (`?stream=` watchers) ride the same channel ([`crate::watch`] has the protocol): replicas
//! announce which streams they have watchers for ([`Item::Watching`], refreshed every
//! [`crate::watch::PRESENCE_INTERVAL`], asked for with [`Item::Hello`] when a replica starts listening), and the
//! replica that stores a batch of a stream watched elsewhere announces each analysis as a compact message with
//! its position ([`Item::Watch`]; carried whole, so the listener reads no row). A stream nobody watches anywhere
//! costs ingestion nothing here, and its analyses are never announced.
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
//!   announcement, counted and logged); watch messages may fill only three quarters of the queue
//!   (`reason="watch_backlog"` beyond), so a burst of analyses never crowds out anomalies; the listener reads rows
//!   only when someone here would receive them.
//! * **Reconnects.** A lost listener connection is re-established with exponential backoff (100 ms to 30 s), each
//!   failure logged. Announcements made while it was down are not replayed (like any live broadcast; the
//!   anomaly log keeps every row), and the gap is logged and counted.
//!
//! The SQL of both ends (`pg_notify`, `LISTEN`) is in `vigil_store::notify`, like all of the service's SQL.
//!
//! Metrics: `topoforge_relay_notifications_total{direction}` (`sent` / `received`),
//! `topoforge_relay_dropped_total{reason}`, `topoforge_relay_reconnects_total`, and the watch feeds' (see
//! [`crate::watch`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use vigil_http::AppState;
use vigil_store::anomalies::{self, Anomaly};
use vigil_store::notify::{self, Notice};

use crate::hub::{Hub, Shared};
use crate::watch::{Position, Watchers};

/// The notification channel (per database, so all replicas of one deployment share it).
pub const CHANNEL: &str = "vigil_realtime";

/// Largest payload sent; PostgreSQL refuses 8000 bytes and more.
pub const MAX_PAYLOAD: usize = 7900;

/// Announcements waiting for the sender task; beyond this they are dropped (the database is not keeping up).
const QUEUE: usize = 4096;

/// Free places in the queue below which watch messages are dropped, kept for anomalies, alerts and presence.
const WATCH_RESERVE: usize = QUEUE / 4;

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
    /// The announcing replica has watchers for these streams (see [`crate::watch`]).
    Watching(Vec<String>),
    /// The announcing replica just started listening: replicas with watchers announce them now.
    Hello,
    /// One analysis of a stream watched elsewhere: its position and the compact watcher message.
    Watch {
        stream: String,
        version: i64,
        ordinal: u64,
        message: RawJson,
    },
}

/// A JSON text carried as is inside an envelope (not re-escaped as a string).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(pub Box<RawValue>);

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for RawJson {}

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
    /// Starts the sender, listener and presence tasks when the store is PostgreSQL, and connects `watchers` to
    /// them; `None` otherwise.
    pub(crate) fn start(app: &AppState, hub: Arc<Hub>, watchers: Arc<Watchers>) -> Option<Relay> {
        if app.store.backend() != vigil_store::Backend::Postgres {
            return None;
        }
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let listening = Arc::new(AtomicBool::new(false));
        let out = tx.clone();
        watchers.set_outbox(Box::new(move |stream: &str, pos: Position, m: &Shared| {
            announce_watch(&out, stream, pos, m)
        }));
        app.spawn(send_loop(app.clone(), origin.clone(), rx));
        app.spawn(presence_loop(app.clone(), watchers.clone(), tx.clone()));
        let receiving = Receiving {
            hub,
            watchers,
            origin,
            hello: tx.clone(),
        };
        app.spawn(listen_loop(app.clone(), receiving, listening.clone()));
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

/// Queues one compact watch message; `false` when it was dropped (the queue is too full to spare the place).
fn announce_watch(tx: &mpsc::Sender<Item>, stream: &str, pos: Position, message: &Shared) -> bool {
    if tx.capacity() <= WATCH_RESERVE {
        metrics::counter!("topoforge_relay_dropped_total", "reason" => "watch_backlog")
            .increment(1);
        tracing::debug!(%stream, "watch message not relayed: the relay queue is backed up");
        return false;
    }
    let message = match RawValue::from_string(message.to_string()) {
        Ok(m) => RawJson(m),
        Err(e) => {
            tracing::error!(%stream, error = %e, "watch message is not JSON; not relayed");
            return false;
        }
    };
    let item = Item::Watch {
        stream: stream.to_owned(),
        version: pos.version,
        ordinal: pos.ordinal,
        message,
    };
    match tx.try_send(item) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::counter!("topoforge_relay_dropped_total", "reason" => "queue_full")
                .increment(1);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Announces the streams watched here: when one gets its first watcher or another replica asks, and every
/// [`crate::watch::PRESENCE_INTERVAL`] while any is watched.
async fn presence_loop(app: AppState, watchers: Arc<Watchers>, tx: mpsc::Sender<Item>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(crate::watch::PRESENCE_INTERVAL) => {}
            () = watchers.changed() => {}
            () = app.shutdown.cancelled() => return,
        }
        let streams = watchers.watched();
        if streams.is_empty() {
            continue;
        }
        if tx.try_send(Item::Watching(streams)).is_err() {
            metrics::counter!("topoforge_relay_dropped_total", "reason" => "queue_full")
                .increment(1);
            tracing::warn!("watch presence not announced: the relay queue is full");
        }
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

/// Splits an alert whose user list, or a presence whose stream list, would not fit in `budget` bytes into
/// several items of the same kind.
fn split(item: Item, budget: usize) -> Vec<Item> {
    if let Item::Watching(streams) = item {
        return split_watching(streams, budget);
    }
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

fn split_watching(streams: Vec<String>, budget: usize) -> Vec<Item> {
    let json_len = |s: &str| serde_json::to_string(s).map_or(usize::MAX / 4, |t| t.len());
    // `{"watching":[…]}` around the names.
    let fixed = 15;
    let mut out = Vec::new();
    let mut chunk: Vec<String> = Vec::new();
    let mut size = fixed;
    for s in streams {
        let len = json_len(&s) + 1;
        if size + len > budget && !chunk.is_empty() {
            out.push(Item::Watching(std::mem::take(&mut chunk)));
            size = fixed;
        }
        size += len;
        chunk.push(s);
    }
    if !chunk.is_empty() {
        out.push(Item::Watching(chunk));
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
            announce(&app, &payload).await;
        }
    }
}

async fn announce(app: &AppState, payload: &str) {
    match notify::notify(&app.store, CHANNEL, payload).await {
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

/// What the listener delivers to, and how it asks for the other replicas' presence.
struct Receiving {
    hub: Arc<Hub>,
    watchers: Arc<Watchers>,
    origin: String,
    hello: mpsc::Sender<Item>,
}

impl Receiving {
    /// Asks the other replicas which streams they watch (announcements made while this one was not listening
    /// were missed).
    fn hello(&self) {
        if self.hello.try_send(Item::Hello).is_err() {
            metrics::counter!("topoforge_relay_dropped_total", "reason" => "queue_full")
                .increment(1);
        }
    }
}

async fn listen_loop(app: AppState, r: Receiving, listening: Arc<AtomicBool>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = tokio::select! {
            r = notify::listen(&app.store, CHANNEL) => r,
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
        r.hello();
        loop {
            let next = tokio::select! {
                n = listener.next() => n,
                () = app.shutdown.cancelled() => {
                    listening.store(false, Ordering::Release);
                    return;
                }
            };
            match next {
                Ok(Notice::Payload(payload)) => {
                    backoff = BACKOFF_MIN;
                    metrics::counter!("topoforge_relay_notifications_total", "direction" => "received")
                        .increment(1);
                    deliver(&app, &r, &payload).await;
                }
                Ok(Notice::Reconnected) => {
                    metrics::counter!("topoforge_relay_reconnects_total").increment(1);
                    r.hello();
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
async fn deliver(app: &AppState, r: &Receiving, payload: &str) {
    let (hub, origin) = (&*r.hub, r.origin.as_str());
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
    deliver_watch(&r.watchers, &envelope.items);
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
            Item::Watching(_) | Item::Hello | Item::Watch { .. } => {}
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

/// The presence and watch items of one envelope: interest noted, analyses delivered to the feeds here (in
/// order; a feed drops positions it already passed).
fn deliver_watch(watchers: &Watchers, items: &[Item]) {
    for item in items {
        match item {
            Item::Watching(streams) => watchers.watched_elsewhere(streams),
            Item::Hello => watchers.announce_soon(),
            Item::Watch {
                stream,
                version,
                ordinal,
                message,
            } => {
                if !watchers.is_watched(stream) {
                    continue;
                }
                metrics::counter!("topoforge_watch_received_total").increment(1);
                let pos = Position {
                    version: *version,
                    ordinal: *ordinal,
                };
                watchers.publish(stream, [(pos, Shared::from(message.0.get()))]);
            }
            Item::Anomaly(_) | Item::Alert { .. } => {}
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
    fn watch_messages_travel_as_json_and_presence_is_split_by_stream() {
        let message = RawJson(
            RawValue::from_string(
                r#"{"value":1.5,"timestamp":null,"analysis":{"compact":true}}"#.into(),
            )
            .expect("json"),
        );
        let watch = Item::Watch {
            stream: "s".into(),
            version: 7,
            ordinal: 42,
            message,
        };
        let streams: Vec<String> = (0..500).map(|i| format!("stream-{i:040}")).collect();
        let payloads = pack(
            "me",
            vec![watch.clone(), Item::Hello, Item::Watching(streams.clone())],
        );
        // The message is embedded as JSON, not escaped into a string.
        assert!(
            payloads[0].contains(r#""message":{"value":1.5"#),
            "{}",
            payloads[0]
        );
        assert!(payloads.len() > 2);
        let got = unpack(&payloads);
        assert_eq!(got[..2], [watch, Item::Hello]);
        let mut back = Vec::new();
        for i in &got[2..] {
            match i {
                Item::Watching(s) => back.extend(s.iter().cloned()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, streams);
    }

    #[tokio::test]
    async fn relayed_watch_messages_reach_this_replicas_feeds_and_presence_is_noted() {
        let w = Watchers::new(8);
        let mut rx = w.watch("s");
        let msg = |o: u64| Item::Watch {
            stream: "s".into(),
            version: 3,
            ordinal: o,
            message: RawJson(RawValue::from_string(format!("{{\"n\":{o}}}")).expect("json")),
        };
        deliver_watch(
            &w,
            &[
                Item::Watching(vec!["t".into()]),
                msg(1),
                msg(2),
                msg(2),
                msg(4),
            ],
        );
        let mut got = Vec::new();
        while let Ok(d) = rx.try_recv() {
            got.push(d);
        }
        use crate::watch::Delivery;
        assert_eq!(
            got,
            vec![
                Delivery::Analysis(Shared::from(r#"{"n":1}"#)),
                Delivery::Analysis(Shared::from(r#"{"n":2}"#)),
                Delivery::Missed(1),
                Delivery::Analysis(Shared::from(r#"{"n":4}"#)),
            ]
        );
        // Interest in `t` is noted (it counts once a relay can reach it).
        w.set_outbox(Box::new(|_: &str, _: Position, _: &Shared| true));
        assert!(w.interest("t").remote && !w.interest("s").remote);
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
