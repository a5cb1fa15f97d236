//! PostgreSQL `LISTEN`/`NOTIFY`: how replicas announce things to each other (`vigil-realtime`'s relay uses it
//! for the anomaly broadcast). SQLite is one process and has no such mechanism: nothing here works on it, and
//! callers do not start listeners there.
//!
//! A listener holds its own connection outside the pool (a pooled connection would be returned, and its
//! subscription lost, after each statement), opened from the pool's URL.

use sqlx::postgres::PgListener;

use crate::{Store, StoreError};

/// Sends `payload` to every session listening on `channel` (PostgreSQL refuses payloads of 8000 bytes or more).
/// Delivered when the statement commits, i.e. at once: it runs on its own.
pub async fn notify(store: &Store, channel: &str, payload: &str) -> Result<(), StoreError> {
    // `pg_notify` returns `void`, which the `Any` driver cannot decode; the outer count gives it a type it can.
    sqlx::query("SELECT COUNT(*) FROM (SELECT pg_notify($1, $2)) AS sent")
        .bind(channel)
        .bind(payload)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A connection subscribed to one channel.
pub struct Listener {
    inner: PgListener,
}

/// What [`Listener::next`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A notification's payload.
    Payload(String),
    /// The connection was lost and has been re-established and re-subscribed; notifications sent meanwhile were
    /// missed.
    Reconnected,
}

/// Opens a connection to the store's database and subscribes it to `channel`.
pub async fn listen(store: &Store, channel: &str) -> Result<Listener, StoreError> {
    let url = store.pool().connect_options().database_url.to_string();
    let mut inner = PgListener::connect(&url).await?;
    inner.listen(channel).await?;
    Ok(Listener { inner })
}

impl Listener {
    /// Waits for the next notification. An error means the connection failed and could not be re-established
    /// at once: drop the listener and [`listen`] again later.
    pub async fn next(&mut self) -> Result<Notice, StoreError> {
        Ok(match self.inner.try_recv().await? {
            Some(n) => Notice::Payload(n.payload().to_owned()),
            None => Notice::Reconnected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    #[tokio::test]
    async fn a_notification_reaches_a_listener_on_postgres() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let mut listener = listen(&db.store, "vigil_notify_test")
            .await
            .expect("listen");
        notify(&db.store, "vigil_notify_test", "hello")
            .await
            .expect("notify");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
            .await
            .expect("in time")
            .expect("received");
        assert_eq!(got, Notice::Payload("hello".into()));
    }
}
