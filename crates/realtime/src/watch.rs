//! Per-stream analysis feeds: every analysis of one stream, for the people watching that stream (the console's
//! stream detail, over `GET /api/realtime/stream?stream=`).
//!
//! A feed exists only while someone watches: the engine asks [`Watchers::is_watched`] before a batch and
//! serialises the messages on the analysis thread only then, so an unwatched stream pays one map lookup per
//! batch. Each feed is a bounded ring (`tokio::sync::broadcast`, `--stream-subscriber-queue` messages) that
//! never waits for its receivers: a watcher that falls behind is told how many analyses it missed and goes on.
//! Process-local: a watcher sees the analyses of the events this replica analyses.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::hub::Shared;

/// The per-stream feeds of this process.
pub struct Watchers {
    capacity: usize,
    feeds: Mutex<HashMap<String, broadcast::Sender<Shared>>>,
}

impl Watchers {
    /// `capacity`: analyses a watcher may fall behind before it misses some.
    pub fn new(capacity: usize) -> Self {
        Watchers {
            capacity: capacity.max(1),
            feeds: Mutex::new(HashMap::new()),
        }
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Shared>>> {
        match self.feeds.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A receiver of every analysis of `stream` from now on.
    pub fn watch(&self, stream: &str) -> broadcast::Receiver<Shared> {
        let mut feeds = self.feeds();
        // Feeds whose watchers all left are forgotten here and in `sender`, so the map holds watched streams only.
        feeds.retain(|_, tx| tx.receiver_count() > 0);
        if let Some(tx) = feeds.get(stream) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        feeds.insert(stream.to_owned(), tx);
        rx
    }

    /// Whether anyone watches `stream` now.
    pub fn is_watched(&self, stream: &str) -> bool {
        self.feeds()
            .get(stream)
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Publishes `messages` (in order) to `stream`'s watchers; never waits.
    pub fn publish(&self, stream: &str, messages: Vec<Shared>) {
        let mut feeds = self.feeds();
        let Some(tx) = feeds.get(stream) else {
            return;
        };
        if tx.receiver_count() == 0 {
            feeds.remove(stream);
            return;
        }
        for m in messages {
            // An error only means the last watcher left meanwhile.
            let _ = tx.send(m);
        }
    }

    /// Streams with at least one watcher.
    pub fn watched_streams(&self) -> usize {
        self.feeds()
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }
}

/// One analysis as a watcher receives it: `{"value":…,"timestamp":…,"analysis":…}` (the event's value and
/// client time, null without one, and the whole analysis result or the buffering status).
pub fn message(value: f64, timestamp_ms: Option<i64>, analysis: &str) -> Shared {
    let value = serde_json::to_string(&value).unwrap_or_else(|_| "null".into());
    let ts = timestamp_ms.map_or_else(|| "null".into(), |t| t.to_string());
    Shared::from(format!(
        "{{\"value\":{value},\"timestamp\":{ts},\"analysis\":{analysis}}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn feeds_exist_while_watched_and_never_block() {
        let w = Watchers::new(2);
        assert!(!w.is_watched("a"));
        w.publish("a", vec![Arc::from("lost")]);
        let mut rx = w.watch("a");
        assert!(w.is_watched("a") && !w.is_watched("b"));
        w.publish("b", vec![Arc::from("other stream")]);
        w.publish("a", vec![Arc::from("1"), Arc::from("2"), Arc::from("3")]);
        // Three into a ring of two: the watcher learns it missed one, then reads on.
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
        assert_eq!(rx.recv().await.as_deref().ok(), Some("2"));
        assert_eq!(rx.recv().await.as_deref().ok(), Some("3"));
        drop(rx);
        assert!(!w.is_watched("a"));
        w.publish("a", vec![Arc::from("x")]);
        assert_eq!(w.watched_streams(), 0);
    }

    #[test]
    fn messages_are_json() {
        let m = message(1.5, Some(7), "{\"status\":\"buffering\",\"count\":1}");
        let v: serde_json::Value = serde_json::from_str(&m).expect("json");
        assert_eq!(v["value"], 1.5);
        assert_eq!(v["timestamp"], 7);
        assert_eq!(v["analysis"]["count"], 1);
        let m = message(2.0, None, "{}");
        let v: serde_json::Value = serde_json::from_str(&m).expect("json");
        assert!(v["timestamp"].is_null());
    }
}
