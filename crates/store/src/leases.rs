//! Leases (`leases`, migration 0014): a named claim that one owner holds at a time, for a limited time, shared by
//! every replica. Callers namespace the names (`stream:<name>` for stream ownership, `nats:<name>` for the NATS
//! ingest) and pick the owner ids (one per replica process).
//!
//! Every change is one statement, so two replicas racing for a lease cannot both win: taking it is an
//! `INSERT … ON CONFLICT (name) DO UPDATE … WHERE <held by the same owner or expired> RETURNING …`, which PostgreSQL
//! evaluates against the row's latest committed version under the row lock, and SQLite runs under its single
//! writer.
//!
//! **Clock.** Expiry is computed from the *database's* clock inside each statement (`statement_timestamp()` on
//! PostgreSQL, `julianday('now')` on SQLite), never from the caller's, so replicas whose clocks disagree still agree
//! on who holds a lease and when it runs out. A returned [`Lease::expires_at`] is therefore on the database's
//! clock; a holder should renew well before it (a third of the TTL is the usual margin) rather than compare it
//! with its own clock.
//!
//! **Hand-over.** A replica waiting for a lease records itself with [`want`]; the holder finds such requests with
//! [`wanted`] (one query for all its leases) and passes the lease straight to the asker with [`hand_over`], so
//! nobody else slips in between. [`renew_all`] extends every lease of an owner in a namespace in one statement.
//!
//! **Fencing.** [`Lease::epoch`] grows every time the lease is taken anew (by another owner, or by the same owner
//! after it expired or was released); extending a live lease keeps it. A holder that stalled past its expiry holds
//! a stale epoch, so [`renew`] and [`release`] refuse it, and writes guarded by the epoch (or by their own version
//! check) cannot overwrite a newer holder's work.

use std::time::Duration;

use crate::{Backend, Store, StoreError};

/// A lease as stored: who holds `name`, under which fencing epoch, until when (Unix ms, database clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub epoch: i64,
    pub expires_at: i64,
}

/// The longest TTL honoured; longer ones are cut to it, which keeps `now + ttl` far from overflowing a BIGINT.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The database's current time in Unix ms, as an SQL expression. Both are constant within one statement.
fn db_now(store: &Store) -> &'static str {
    match store.backend() {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.min(MAX_TTL).as_millis()).unwrap_or(i64::MAX)
}

type Row = (String, String, i64, i64);

fn from_row((name, owner, epoch, expires_at): Row) -> Lease {
    Lease {
        name,
        owner,
        epoch,
        expires_at,
    }
}

/// Takes `name` for `owner` when it is free, expired, or already held by `owner` (then extends it to `ttl` from
/// now); `None` while another live owner holds it. The epoch grows unless a live lease of the same owner was
/// extended. Taking it anew clears any pending hand-over request.
pub async fn acquire(
    store: &Store,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> Result<Option<Lease>, StoreError> {
    let now = db_now(store);
    let sql = format!(
        "INSERT INTO leases (name, owner, epoch, expires_at) VALUES ($1, $2, 1, {now} + $3) \
         ON CONFLICT (name) DO UPDATE SET \
           epoch = CASE WHEN leases.owner = excluded.owner AND leases.expires_at >= {now} \
                   THEN leases.epoch ELSE leases.epoch + 1 END, \
           wanted_by = CASE WHEN leases.owner = excluded.owner AND leases.expires_at >= {now} \
                       THEN leases.wanted_by ELSE NULL END, \
           wanted_at = CASE WHEN leases.owner = excluded.owner AND leases.expires_at >= {now} \
                       THEN leases.wanted_at ELSE NULL END, \
           owner = excluded.owner, \
           expires_at = excluded.expires_at \
         WHERE leases.owner = excluded.owner OR leases.expires_at < {now} \
         RETURNING name, owner, epoch, expires_at"
    );
    let row: Option<Row> = sqlx::query_as(&sql)
        .bind(name)
        .bind(owner)
        .bind(ttl_ms(ttl))
        .fetch_optional(store.pool())
        .await?;
    Ok(row.map(from_row))
}

/// Extends a lease its holder still has (same owner and epoch, not expired) to `ttl` from now; `None` when it was
/// lost: it expired (and may have been taken by someone else meanwhile) or was released. A lost lease is taken
/// again with [`acquire`], which gives it a new epoch.
pub async fn renew(
    store: &Store,
    lease: &Lease,
    ttl: Duration,
) -> Result<Option<Lease>, StoreError> {
    let now = db_now(store);
    let sql = format!(
        "UPDATE leases SET expires_at = {now} + $4 \
         WHERE name = $1 AND owner = $2 AND epoch = $3 AND expires_at >= {now} \
         RETURNING name, owner, epoch, expires_at"
    );
    let row: Option<Row> = sqlx::query_as(&sql)
        .bind(&lease.name)
        .bind(&lease.owner)
        .bind(lease.epoch)
        .bind(ttl_ms(ttl))
        .fetch_optional(store.pool())
        .await?;
    Ok(row.map(from_row))
}

/// [`renew`] for every live lease of `owner` in the namespace `namespace` (a name prefix such as `stream:`, without
/// `%` or `_`) at once: one statement however many it holds. Returns the leases extended; a lease of the owner's
/// that is missing from the answer was lost.
pub async fn renew_all(
    store: &Store,
    owner: &str,
    namespace: &str,
    ttl: Duration,
) -> Result<Vec<Lease>, StoreError> {
    let now = db_now(store);
    let sql = format!(
        "UPDATE leases SET expires_at = {now} + $3 \
         WHERE owner = $1 AND name LIKE $2 AND expires_at >= {now} \
         RETURNING name, owner, epoch, expires_at"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(format!("{namespace}%"))
        .bind(ttl_ms(ttl))
        .fetch_all(store.pool())
        .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Gives the lease up at once, so the next [`acquire`] by anyone succeeds without waiting for the expiry. Does
/// nothing when it is no longer held by `lease.owner` under `lease.epoch` (someone else's lease is never ended).
/// The row stays (expired), so the epoch keeps growing across holders.
pub async fn release(store: &Store, lease: &Lease) -> Result<(), StoreError> {
    let now = db_now(store);
    let sql = format!(
        "UPDATE leases SET expires_at = {now} - 1 \
         WHERE name = $1 AND owner = $2 AND epoch = $3 AND expires_at >= {now}"
    );
    sqlx::query(&sql)
        .bind(&lease.name)
        .bind(&lease.owner)
        .bind(lease.epoch)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Who holds `name` now, or held it last: an expired or released lease is returned too, with its (past) expiry.
/// `None` when the lease was never taken. For waiters and the console.
pub async fn holder(store: &Store, name: &str) -> Result<Option<Lease>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as("SELECT name, owner, epoch, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.map(from_row))
}

/// Asks the live holder of `name` (someone other than `who`) to hand the lease over when convenient: records
/// `who` as its taker-in-waiting, replacing an earlier request. Does nothing when `who` holds it or nobody does.
/// The holder sees the request through [`wanted`] and passes the lease on with [`hand_over`].
pub async fn want(store: &Store, name: &str, who: &str) -> Result<(), StoreError> {
    let now = db_now(store);
    let sql = format!(
        "UPDATE leases SET wanted_by = $2, wanted_at = {now} \
         WHERE name = $1 AND owner <> $2 AND expires_at >= {now}"
    );
    sqlx::query(&sql)
        .bind(name)
        .bind(who)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The live leases of `owner` that another owner asked for within the last `fresh` (older requests are taken
/// as abandoned: the asker gave up or died).
pub async fn wanted(store: &Store, owner: &str, fresh: Duration) -> Result<Vec<Lease>, StoreError> {
    let now = db_now(store);
    let sql = format!(
        "SELECT name, owner, epoch, expires_at FROM leases \
         WHERE owner = $1 AND wanted_by IS NOT NULL AND expires_at >= {now} AND wanted_at >= {now} - $2"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(owner)
        .bind(ttl_ms(fresh))
        .fetch_all(store.pool())
        .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Passes a lease its holder still has straight to the owner that asked for it within the last `fresh`, for
/// `ttl` from now and under a new epoch, so the asker's next [`acquire`] finds it already its own and nobody
/// else can slip in between. Returns the new owner; `None` (nothing changed) when the lease is no longer held
/// under `lease.epoch` or nobody asked recently.
pub async fn hand_over(
    store: &Store,
    lease: &Lease,
    fresh: Duration,
    ttl: Duration,
) -> Result<Option<String>, StoreError> {
    let now = db_now(store);
    let sql = format!(
        "UPDATE leases SET owner = wanted_by, epoch = epoch + 1, expires_at = {now} + $5, \
           wanted_by = NULL, wanted_at = NULL \
         WHERE name = $1 AND owner = $2 AND epoch = $3 AND expires_at >= {now} \
           AND wanted_by IS NOT NULL AND wanted_at >= {now} - $4 \
         RETURNING owner"
    );
    let row: Option<(String,)> = sqlx::query_as(&sql)
        .bind(&lease.name)
        .bind(&lease.owner)
        .bind(lease.epoch)
        .bind(ttl_ms(fresh))
        .bind(ttl_ms(ttl))
        .fetch_optional(store.pool())
        .await?;
    Ok(row.map(|(owner,)| owner))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::TestDb;

    const LONG: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_millis(500);

    /// Sleeps until a lease taken with [`SHORT`] just before has expired (the database's clock is this machine's).
    async fn wait_past_short() {
        tokio::time::sleep(SHORT + Duration::from_millis(250)).await;
    }

    #[tokio::test]
    async fn two_owners_racing_for_a_free_lease_get_exactly_one_winner() {
        for db in TestDb::all().await {
            let store = Arc::new(db.store.clone());
            for round in 0..10 {
                let name = format!("stream:race-{round}");
                let tasks: Vec<_> = ["a", "b", "c", "d"]
                    .into_iter()
                    .map(|owner| {
                        let store = Arc::clone(&store);
                        let name = name.clone();
                        tokio::spawn(async move { acquire(&store, &name, owner, LONG).await })
                    })
                    .collect();
                let mut winners = Vec::new();
                for task in tasks {
                    if let Some(l) = task.await.unwrap().unwrap() {
                        winners.push(l);
                    }
                }
                assert_eq!(winners.len(), 1, "{}: {winners:?}", db.label);
                let held = holder(&store, &name).await.unwrap().unwrap();
                assert_eq!(held, winners[0], "{}", db.label);
                assert_eq!(held.epoch, 1, "{}", db.label);
            }
        }
    }

    #[tokio::test]
    async fn a_live_lease_is_refused_to_others_and_extended_for_its_owner() {
        for db in TestDb::all().await {
            let s = &db.store;
            assert_eq!(holder(s, "stream:x").await.unwrap(), None, "{}", db.label);
            let a = acquire(s, "stream:x", "a", LONG).await.unwrap().unwrap();
            assert_eq!((a.owner.as_str(), a.epoch), ("a", 1), "{}", db.label);
            let lead = a.expires_at - crate::time::now_ms();
            assert!(
                (50_000..=70_000).contains(&lead),
                "{}: expires in {lead} ms, TTL 60 s (database clock vs ours)",
                db.label
            );
            assert_eq!(
                acquire(s, "stream:x", "b", LONG).await.unwrap(),
                None,
                "{}",
                db.label
            );
            let again = acquire(s, "stream:x", "a", LONG).await.unwrap().unwrap();
            assert_eq!(again.epoch, 1, "{}: extending keeps the epoch", db.label);
            assert!(again.expires_at >= a.expires_at, "{}", db.label);
            // Another name is independent.
            let other = acquire(s, "nats:x", "b", LONG).await.unwrap().unwrap();
            assert_eq!(other.epoch, 1, "{}", db.label);
        }
    }

    #[tokio::test]
    async fn an_expired_lease_passes_to_the_next_owner_and_the_old_one_cannot_renew() {
        for db in TestDb::all().await {
            let s = &db.store;
            let a = acquire(s, "stream:y", "a", SHORT).await.unwrap().unwrap();
            let a = renew(s, &a, SHORT)
                .await
                .unwrap()
                .expect("renewed while live");
            assert_eq!(
                acquire(s, "stream:y", "b", LONG).await.unwrap(),
                None,
                "{}",
                db.label
            );
            wait_past_short().await;
            let b = acquire(s, "stream:y", "b", LONG)
                .await
                .unwrap()
                .expect("expired");
            assert_eq!((b.owner.as_str(), b.epoch), ("b", 2), "{}", db.label);
            assert_eq!(
                renew(s, &a, LONG).await.unwrap(),
                None,
                "{}: lost",
                db.label
            );
            release(s, &a).await.unwrap();
            assert_eq!(
                holder(s, "stream:y").await.unwrap(),
                Some(b.clone()),
                "{}: a stale release leaves the new holder alone",
                db.label
            );
            assert_eq!(
                acquire(s, "stream:y", "a", LONG).await.unwrap(),
                None,
                "{}",
                db.label
            );
        }
    }

    #[tokio::test]
    async fn an_expired_lease_is_not_renewed_even_if_nobody_took_it() {
        for db in TestDb::all().await {
            let s = &db.store;
            let a = acquire(s, "stream:z", "a", SHORT).await.unwrap().unwrap();
            wait_past_short().await;
            assert_eq!(renew(s, &a, LONG).await.unwrap(), None, "{}", db.label);
            let again = acquire(s, "stream:z", "a", LONG).await.unwrap().unwrap();
            assert_eq!(
                again.epoch, 2,
                "{}: retaken after expiry: new epoch",
                db.label
            );
        }
    }

    #[tokio::test]
    async fn release_frees_the_lease_at_once_and_epochs_only_grow() {
        for db in TestDb::all().await {
            let s = &db.store;
            let mut last = 0;
            for (i, owner) in ["a", "b", "a", "a", "c"].into_iter().enumerate() {
                let l = acquire(s, "stream:r", owner, LONG)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("{}: round {i} refused", db.label));
                assert!(
                    l.epoch > last,
                    "{}: epoch {} after {last}",
                    db.label,
                    l.epoch
                );
                last = l.epoch;
                release(s, &l).await.unwrap();
                assert_eq!(
                    renew(s, &l, LONG).await.unwrap(),
                    None,
                    "{}: released",
                    db.label
                );
                let after = holder(s, "stream:r").await.unwrap().unwrap();
                assert_eq!(
                    (after.owner.as_str(), after.epoch),
                    (owner, l.epoch),
                    "{}",
                    db.label
                );
                assert!(after.expires_at < l.expires_at, "{}", db.label);
            }
            assert_eq!(last, 5, "{}", db.label);
        }
    }

    #[tokio::test]
    async fn a_wanted_lease_is_handed_straight_to_the_asker() {
        for db in TestDb::all().await {
            let s = &db.store;
            let a = acquire(s, "stream:h", "a", LONG).await.unwrap().unwrap();
            assert!(
                wanted(s, "a", LONG).await.unwrap().is_empty(),
                "{}",
                db.label
            );
            want(s, "stream:h", "a").await.unwrap();
            assert!(
                wanted(s, "a", LONG).await.unwrap().is_empty(),
                "{}: the holder asking for its own lease is no request",
                db.label
            );
            want(s, "stream:h", "b").await.unwrap();
            let asked = wanted(s, "a", LONG).await.unwrap();
            assert_eq!(asked, vec![a.clone()], "{}", db.label);
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert!(
                wanted(s, "a", Duration::from_millis(10))
                    .await
                    .unwrap()
                    .is_empty(),
                "{}: a request older than `fresh` is ignored",
                db.label
            );
            let to = hand_over(s, &a, LONG, LONG).await.unwrap();
            assert_eq!(to.as_deref(), Some("b"), "{}", db.label);
            let b = acquire(s, "stream:h", "b", LONG)
                .await
                .unwrap()
                .expect("b's now");
            assert_eq!(
                b.epoch,
                a.epoch + 1,
                "{}: a new epoch for the new owner",
                db.label
            );
            assert_eq!(renew(s, &a, LONG).await.unwrap(), None, "{}", db.label);
            assert_eq!(
                hand_over(s, &a, LONG, LONG).await.unwrap(),
                None,
                "{}",
                db.label
            );
            assert!(
                wanted(s, "b", LONG).await.unwrap().is_empty(),
                "{}",
                db.label
            );
            // Nobody asking: nothing to hand over.
            assert_eq!(
                hand_over(s, &b, LONG, LONG).await.unwrap(),
                None,
                "{}",
                db.label
            );
            assert_eq!(
                holder(s, "stream:h").await.unwrap(),
                Some(b),
                "{}",
                db.label
            );
        }
    }

    #[tokio::test]
    async fn renew_all_extends_the_owners_live_leases_of_a_namespace_only() {
        for db in TestDb::all().await {
            let s = &db.store;
            let a1 = acquire(s, "stream:1", "a", SHORT).await.unwrap().unwrap();
            acquire(s, "stream:2", "a", SHORT).await.unwrap().unwrap();
            let gone = acquire(s, "stream:3", "a", SHORT).await.unwrap().unwrap();
            release(s, &gone).await.unwrap();
            acquire(s, "nats:1", "a", SHORT).await.unwrap().unwrap();
            acquire(s, "stream:4", "b", SHORT).await.unwrap().unwrap();
            let mut renewed = renew_all(s, "a", "stream:", LONG).await.unwrap();
            renewed.sort_by(|x, y| x.name.cmp(&y.name));
            let names: Vec<&str> = renewed.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, ["stream:1", "stream:2"], "{}", db.label);
            assert_eq!(renewed[0].epoch, a1.epoch, "{}", db.label);
            assert!(renewed[0].expires_at > a1.expires_at, "{}", db.label);
            wait_past_short().await;
            assert_eq!(
                acquire(s, "stream:1", "b", LONG).await.unwrap(),
                None,
                "{}",
                db.label
            );
            assert!(
                acquire(s, "nats:1", "b", LONG).await.unwrap().is_some(),
                "{}",
                db.label
            );
        }
    }
}
