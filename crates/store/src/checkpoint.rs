//! SQLite WAL checkpoints, off the request path.
//!
//! In WAL mode every commit appends to `vigil.db-wal`; a checkpoint copies those pages back into the database file
//! and, with `synchronous = NORMAL`, fsyncs it. Left to SQLite, the checkpoint runs inside whichever commit crosses
//! the WAL threshold (1000 pages by default), so about one write in a few hundred waited for an fsync: that was the
//! p99 of a WebSocket round trip (4.8 ms against 1.5 ms without it). Here a task with its own connection runs a
//! `PASSIVE` checkpoint every [`INTERVAL`]; it runs beside the pool's connection, whose writes keep appending to the
//! WAL meanwhile. The pool's connection keeps a much higher automatic threshold ([`FALLBACK_PAGES`]) as a safety
//! net, so the WAL stays bounded even if this task cannot run.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Connection};

/// How often the background task checkpoints.
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);

/// WAL pages after which a commit on the pool's connection checkpoints by itself (about 40 MB): only reached if
/// the background task is not keeping up or could not start.
pub(crate) const FALLBACK_PAGES: u32 = 10_000;

/// Starts the checkpointer for the database at `url` (a `sqlite:` URL); it stops when `pool` is closed. An
/// in-memory database has nothing to checkpoint and a second connection would not even see it, so none starts.
pub(crate) fn spawn(url: &str, pool: AnyPool) {
    if crate::store::is_in_memory(url) {
        return;
    }
    let options = match SqliteConnectOptions::from_str(url) {
        Ok(o) => o.log_statements(tracing::log::LevelFilter::Trace),
        Err(e) => {
            tracing::warn!(error = %e, "no background WAL checkpoints: bad SQLite URL");
            return;
        }
    };
    tokio::spawn(async move {
        let mut conn = match options.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "no background WAL checkpoints: could not open a second connection");
                return;
            }
        };
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if pool.is_closed() {
                break;
            }
            // PASSIVE never waits for or blocks the pool's connection; what it cannot copy now, the next tick does.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await
            {
                tracing::debug!(error = %e, "WAL checkpoint failed; retrying at the next tick");
            }
        }
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the checkpoint connection");
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::testing::TestDb;

    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background() {
        let db = TestDb::sqlite().await;
        let pool = db.store.pool();
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(pool)
            .await
            .expect("table");
        for _ in 0..200 {
            sqlx::query("INSERT INTO filler (b) VALUES (zeroblob(8192))")
                .execute(pool)
                .await
                .expect("insert");
        }
        // About 600 WAL pages, well under the fallback threshold, and nothing here checkpoints: the pages reach
        // the database file only if the background task copies them there.
        let file = db.url.trim_start_matches("sqlite://").to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if len > 200 * 8192 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{file} is still {len} bytes"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
