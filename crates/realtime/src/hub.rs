//! Fan-out to the people watching: the anomaly broadcast (WebSocket subscribers and SSE clients) and the
//! registry of open sockets per user (the `websocket` alert channel).
//!
//! Nothing here can slow ingestion: the broadcast is a bounded ring (`tokio::sync::broadcast`) that never waits
//! for receivers — a receiver that falls more than the ring's capacity behind is told how much it missed and is
//! disconnected with a logged reason — and per-socket alert queues are bounded and filled with `try_send`, a full
//! queue dropping the alert (counted and logged).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

/// A message already serialised to JSON text, shared by every receiver.
pub type Shared = Arc<str>;

/// A user's open sockets: (registration id, alert queue).
type Sockets = Vec<(u64, mpsc::Sender<Shared>)>;

/// The fan-out hub.
pub struct Hub {
    anomalies: broadcast::Sender<Shared>,
    sockets: Mutex<HashMap<String, Sockets>>,
    next_id: AtomicU64,
    socket_queue: usize,
}

/// Removes a socket from the registry when dropped, so a client that disconnects frees its entry.
pub struct Registration {
    hub: Arc<Hub>,
    user: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = match self.hub.sockets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(list) = map.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.user);
            }
        }
    }
}

impl Hub {
    /// `capacity`: messages a broadcast receiver may fall behind before it is dropped; `socket_queue`: alerts
    /// buffered per socket.
    pub fn new(capacity: usize, socket_queue: usize) -> Self {
        let (anomalies, _) = broadcast::channel(capacity.max(1));
        Hub {
            anomalies,
            sockets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            socket_queue: socket_queue.max(1),
        }
    }

    /// Publishes an anomaly (the analysis result as JSON) to every subscriber. Never waits.
    pub fn publish(&self, result_json: Shared) {
        // An error only means nobody is listening.
        let _ = self.anomalies.send(result_json);
    }

    /// A receiver of the anomaly broadcast.
    pub fn subscribe(&self) -> broadcast::Receiver<Shared> {
        self.anomalies.subscribe()
    }

    /// Current number of broadcast receivers.
    pub fn subscribers(&self) -> usize {
        self.anomalies.receiver_count()
    }

    /// Registers a socket of `user` for `websocket` alerts; they arrive on the returned receiver.
    pub fn register(self: &Arc<Self>, user: &str) -> (Registration, mpsc::Receiver<Shared>) {
        let (tx, rx) = mpsc::channel(self.socket_queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut map = match self.sockets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.entry(user.to_owned()).or_default().push((id, tx));
        (
            Registration {
                hub: self.clone(),
                user: user.to_owned(),
                id,
            },
            rx,
        )
    }

    /// Delivers `message` to every open socket of `user` on this replica; returns how many got it.
    pub fn deliver_to_user(&self, user: &str, message: &Shared) -> usize {
        let senders: Vec<mpsc::Sender<Shared>> = {
            let map = match self.sockets.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            map.get(user)
                .map(|l| l.iter().map(|(_, s)| s.clone()).collect())
                .unwrap_or_default()
        };
        let mut delivered = 0;
        for s in senders {
            match s.try_send(message.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("topoforge_alert_pushes_dropped_total").increment(1);
                    tracing::warn!(%user, "socket alert dropped: the socket's queue is full (slow consumer)");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }

    /// Whether `user` has a socket registered for `websocket` alerts on this replica.
    pub fn has_sockets(&self, user: &str) -> bool {
        self.sockets
            .lock()
            .map(|m| m.contains_key(user))
            .unwrap_or(false)
    }

    /// Number of sockets registered for `websocket` alerts.
    pub fn registered_sockets(&self) -> usize {
        self.sockets
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registrations_are_freed_on_drop() {
        let hub = Arc::new(Hub::new(4, 2));
        let (reg, mut rx) = hub.register("u");
        let (reg2, _rx2) = hub.register("u");
        assert_eq!(hub.registered_sockets(), 2);
        assert_eq!(hub.deliver_to_user("u", &Arc::from("x")), 2);
        assert_eq!(rx.recv().await.as_deref(), Some("x"));
        drop(reg);
        drop(reg2);
        assert_eq!(hub.registered_sockets(), 0);
        assert_eq!(hub.deliver_to_user("u", &Arc::from("x")), 0);
    }

    #[tokio::test]
    async fn full_socket_queues_drop_instead_of_blocking() {
        let hub = Arc::new(Hub::new(4, 1));
        let (_reg, _rx) = hub.register("u");
        assert_eq!(hub.deliver_to_user("u", &Arc::from("1")), 1);
        assert_eq!(hub.deliver_to_user("u", &Arc::from("2")), 0);
    }

    #[tokio::test]
    async fn slow_broadcast_receivers_lag_and_publishers_never_wait() {
        let hub = Hub::new(2, 1);
        let mut rx = hub.subscribe();
        for i in 0..5 {
            hub.publish(Arc::from(i.to_string()));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
    }
}
