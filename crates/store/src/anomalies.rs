//! The anomaly log: what the stream pipeline flags and what analysts record by hand.
//!
//! This module holds the rows and the writes every producer shares, plus the analyst API's reads: filtered
//! listing with a total, statistics computed by the database, and keyset-paged export. Filters are always bound
//! parameters; listing order is `ts` descending then `id`, which the `anomalies_ts` index serves.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::args::{Arg, Args};
use crate::{Store, StoreError, time::now_ms};

/// One stored anomaly, as the API returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub id: String,
    /// The event's time, Unix ms.
    pub ts: i64,
    pub source_type: String,
    pub event_data: Value,
    pub betti: [i64; 3],
    pub anomaly_score: f64,
    pub is_anomaly: bool,
    pub risk_level: String,
    pub entropy: Option<f64>,
    pub metadata: Value,
    pub created_by: Option<String>,
    pub created_at: i64,
    /// For a pipeline incident (see [`crate::incidents`]): events from its first to its last anomalous event.
    /// `None` for anomalies recorded by hand.
    pub event_count: Option<i64>,
    /// For a closed incident: Unix ms of its last anomalous event.
    pub ended_at: Option<i64>,
    /// Whether this is an incident that is still open.
    pub incident_open: bool,
}

/// An anomaly about to be stored; the store assigns `id` and `created_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnomaly {
    pub ts: i64,
    pub source_type: String,
    pub event_data: Value,
    pub betti: [i64; 3],
    pub anomaly_score: f64,
    pub is_anomaly: bool,
    pub risk_level: String,
    pub entropy: Option<f64>,
    pub metadata: Value,
    pub created_by: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AnomalyRow {
    id: String,
    ts: i64,
    source_type: String,
    event_data: String,
    betti_h0: i64,
    betti_h1: i64,
    betti_h2: i64,
    anomaly_score: f64,
    is_anomaly: i64,
    risk_level: String,
    entropy: Option<f64>,
    metadata: String,
    created_by: Option<String>,
    created_at: i64,
    event_count: Option<i64>,
    ended_at: Option<i64>,
    incident_open: Option<i64>,
}

/// The columns every new row is written with, in [`AnomalyRow`]'s order (a macro so that `concat!` can build the
/// other lists and statements from it at compile time).
macro_rules! written_columns {
    () => {
        "id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, is_anomaly, risk_level, \
         entropy, metadata, created_by, created_at"
    };
}

/// See [`written_columns`].
const WRITTEN_COLUMNS: &str = written_columns!();

/// The column list every anomaly query selects, in [`AnomalyRow`]'s order: the written columns, then the
/// incident columns that only pipeline incidents set (`crate::incidents`).
pub(crate) const COLUMNS: &str =
    concat!(written_columns!(), ", event_count, ended_at, incident_open");

impl TryFrom<AnomalyRow> for Anomaly {
    type Error = StoreError;

    fn try_from(r: AnomalyRow) -> Result<Self, StoreError> {
        Ok(Anomaly {
            id: r.id,
            ts: r.ts,
            source_type: r.source_type,
            event_data: serde_json::from_str(&r.event_data)?,
            betti: [r.betti_h0, r.betti_h1, r.betti_h2],
            anomaly_score: r.anomaly_score,
            is_anomaly: r.is_anomaly != 0,
            risk_level: r.risk_level,
            entropy: r.entropy,
            metadata: serde_json::from_str(&r.metadata)?,
            created_by: r.created_by,
            created_at: r.created_at,
            event_count: r.event_count,
            ended_at: r.ended_at,
            incident_open: r.incident_open == Some(1),
        })
    }
}

/// Whether statements that bind an `Option<f64>` (here `entropy`) may be cached per connection: they may not.
///
/// sqlx 0.8's `Any` driver declares a NULL `f64` parameter to PostgreSQL as `float4` (its `Real`/`Double` arms
/// are swapped in `any/arguments.rs`). A statement first prepared with a NULL there stays cached with a `float4`
/// parameter, and every later non-NULL `f64` on that connection is refused ("incorrect binary data format"), so
/// the pipeline's anomalies, which always carry entropy, were lost once a manual one without it had been stored.
/// Unnamed statements are parsed with the types of each call's own values. NULL `i64` and text binds are typed
/// correctly and stay cached.
const NULLABLE_FLOAT_STATEMENTS_CACHED: bool = false;

/// Stores `new` and returns it with its id.
pub async fn insert(store: &Store, new: &NewAnomaly) -> Result<Anomaly, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let created_at = now_ms();
    sqlx::query(concat!(
        "INSERT INTO anomalies (",
        written_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .persistent(NULLABLE_FLOAT_STATEMENTS_CACHED)
    .bind(&id)
    .bind(new.ts)
    .bind(&new.source_type)
    .bind(new.event_data.to_string())
    .bind(new.betti[0])
    .bind(new.betti[1])
    .bind(new.betti[2])
    .bind(new.anomaly_score)
    .bind(i64::from(new.is_anomaly))
    .bind(&new.risk_level)
    .bind(new.entropy)
    .bind(new.metadata.to_string())
    .bind(&new.created_by)
    .bind(created_at)
    .execute(store.pool())
    .await?;
    Ok(Anomaly {
        id,
        ts: new.ts,
        source_type: new.source_type.clone(),
        event_data: new.event_data.clone(),
        betti: new.betti,
        anomaly_score: new.anomaly_score,
        is_anomaly: new.is_anomaly,
        risk_level: new.risk_level.clone(),
        entropy: new.entropy,
        metadata: new.metadata.clone(),
        created_by: new.created_by.clone(),
        created_at,
        event_count: None,
        ended_at: None,
        incident_open: false,
    })
}

/// The anomaly with this id, if any.
pub async fn get(store: &Store, id: &str) -> Result<Option<Anomaly>, StoreError> {
    let row: Option<AnomalyRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM anomalies WHERE id = $1"))
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    row.map(Anomaly::try_from).transpose()
}

/// Deletes one anomaly; `false` when there was none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM anomalies WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Narrows listings, statistics and exports. Every field is optional; present ones are combined with AND.
///
/// The SQL is assembled from fixed column names only; every value travels as a bound parameter, so nothing a
/// client sends can change the statement's shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Inclusive lower bound on `ts`, Unix ms.
    pub start_ms: Option<i64>,
    /// Inclusive upper bound on `ts`, Unix ms.
    pub end_ms: Option<i64>,
    pub source: Option<String>,
    pub is_anomaly: Option<bool>,
    pub risk_level: Option<String>,
    /// Inclusive lower bound on `anomaly_score`.
    pub min_score: Option<f64>,
}

/// A WHERE clause under construction: conditions joined by AND, with `$N` numbered in push order.
#[derive(Debug, Default)]
struct Clause {
    conditions: Vec<String>,
    args: Args<'static>,
}

impl Clause {
    /// The next placeholder, `$N`, for `arg`.
    fn placeholder(&mut self, arg: Arg<'static>) -> String {
        self.args.placeholder(arg)
    }

    fn push(&mut self, column_op: &str, arg: Arg<'static>) {
        let p = self.placeholder(arg);
        self.conditions.push(format!("{column_op} {p}"));
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

impl Filter {
    /// The filter over `anomalies`.
    fn clause(&self) -> Clause {
        let mut c = Clause::default();
        if let Some(v) = self.start_ms {
            c.push("ts >=", Arg::Int(v));
        }
        if let Some(v) = self.end_ms {
            c.push("ts <=", Arg::Int(v));
        }
        self.push_grouping_columns(&mut c);
        if let Some(v) = self.min_score {
            c.push("anomaly_score >=", Arg::Real(v));
        }
        c
    }

    /// The conditions on the columns `anomalies` shares with its hourly rollup `anomaly_counts` (see
    /// [`rollup_clause`]): the one place that maps those fields to columns.
    fn push_grouping_columns(&self, c: &mut Clause) {
        if let Some(v) = &self.source {
            c.push("source_type =", Arg::Text(v.clone().into()));
        }
        if let Some(v) = self.is_anomaly {
            c.push("is_anomaly =", Arg::Int(i64::from(v)));
        }
        if let Some(v) = &self.risk_level {
            c.push("risk_level =", Arg::Text(v.clone().into()));
        }
    }
}

/// One page of a listing plus the number of rows the filter matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<Anomaly>,
    pub total: i64,
}

/// The largest page a listing returns; the API's own limit (100) is lower.
pub const MAX_PAGE: i64 = 1000;

/// Rows matching `filter`, newest first (ties by id), skipping `offset` and returning at most `limit`
/// (clamped to 1..=[`MAX_PAGE`]); `total` counts every match.
pub async fn list(
    store: &Store,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> Result<Page, StoreError> {
    let mut clause = filter.clause();
    let where_sql = clause.sql();
    let total = count(store, filter).await?;
    let lim = clause.placeholder(Arg::Int(limit.clamp(1, MAX_PAGE)));
    let off = clause.placeholder(Arg::Int(offset.max(0)));
    let rows_sql = format!(
        "SELECT {COLUMNS} FROM anomalies {where_sql} ORDER BY ts DESC, id LIMIT {lim} OFFSET {off}"
    );
    let rows: Vec<AnomalyRow> = clause
        .args
        .bind(sqlx::query_as(&rows_sql))
        .fetch_all(store.pool())
        .await?;
    let rows = rows
        .into_iter()
        .map(Anomaly::try_from)
        .collect::<Result<_, _>>()?;
    Ok(Page { rows, total })
}

/// Where an export page ends: the last row's `(ts, id)`. The next page starts strictly after it in the listing
/// order (`ts` descending, then `id` ascending), which the `anomalies_ts` index serves directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub id: String,
}

/// One keyset page of an export: up to `limit` rows after `after` (from the newest when `None`).
///
/// Each page is its own short query, so no cursor or connection stays open while a client reads slowly (SQLite
/// has a single pooled connection that every request shares).
pub async fn export_page(
    store: &Store,
    filter: &Filter,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<Anomaly>, StoreError> {
    let mut clause = filter.clause();
    if let Some(c) = after {
        let ts = clause.placeholder(Arg::Int(c.ts));
        let ts_again = clause.placeholder(Arg::Int(c.ts));
        let id = clause.placeholder(Arg::Text(c.id.clone().into()));
        clause
            .conditions
            // `ts <= a` is the index range; the OR only sorts out the rows sharing ts = a. (The plain
            // `ts < a OR (ts = a AND id > b)` form is not a range to either planner: each page rescans from the top.)
            .push(format!("ts <= {ts} AND (ts < {ts_again} OR id > {id})"));
    }
    let where_sql = clause.sql();
    let lim = clause.placeholder(Arg::Int(limit.clamp(1, MAX_PAGE)));
    let sql =
        format!("SELECT {COLUMNS} FROM anomalies {where_sql} ORDER BY ts DESC, id LIMIT {lim}");
    let rows: Vec<AnomalyRow> = clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_all(store.pool())
        .await?;
    rows.into_iter().map(Anomaly::try_from).collect()
}

/// Aggregates over the rows a filter matches, all computed by the database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    pub total: i64,
    pub by_source: BTreeMap<String, i64>,
    pub by_risk: BTreeMap<String, i64>,
    /// The timeline's bucket width in ms (see [`bucket_width_ms`]); 0 when nothing matched.
    pub bucket_ms: i64,
    /// `(bucket start in Unix ms, count)`, ascending; empty buckets are omitted.
    pub timeline: Vec<(i64, i64)>,
}

/// Timeline bucket widths, smallest first: 1 min, 5 min, 15 min, 1 h, 6 h, 1 day, 7 days, 30 days.
const BUCKET_LADDER_MS: [i64; 8] = [
    60_000,
    300_000,
    900_000,
    3_600_000,
    21_600_000,
    86_400_000,
    604_800_000,
    2_592_000_000,
];

/// At most this many buckets span the range unless even the widest width cannot manage it.
pub const MAX_BUCKETS: i64 = 100;

/// The timeline width for a range of `span_ms`: the smallest ladder width (1 min … 30 days) that covers the
/// span in at most [`MAX_BUCKETS`] buckets, else 30 days.
pub fn bucket_width_ms(span_ms: i64) -> i64 {
    let span = span_ms.max(0);
    BUCKET_LADDER_MS
        .iter()
        .copied()
        .find(|w| span / w < MAX_BUCKETS)
        .unwrap_or(BUCKET_LADDER_MS[BUCKET_LADDER_MS.len() - 1])
}

const HOUR_MS: i64 = 3_600_000;

/// How a filter splits into whole hours the rollup answers (`first <= hour < end_excl`, open where the filter is)
/// and edge ranges of partial hours that `anomalies` answers.
struct RollupSplit {
    first: Option<i64>,
    end_excl: Option<i64>,
    edges: Vec<Filter>,
}

impl RollupSplit {
    /// `None` when the rollup cannot help: a `min_score` filter (not in the rollup) or a range within one hour.
    fn of(filter: &Filter) -> Option<RollupSplit> {
        if filter.min_score.is_some() {
            return None;
        }
        let first = filter.start_ms.map(ceil_hour);
        let end_excl = filter.end_ms.map(|e| floor_hour(e.saturating_add(1)));
        if let (Some(a), Some(b)) = (first, end_excl)
            && a >= b
        {
            return None;
        }
        let mut edges = Vec::new();
        if let (Some(s), Some(f)) = (filter.start_ms, first)
            && s < f
        {
            edges.push(Filter {
                start_ms: Some(s),
                end_ms: Some(f - 1),
                ..filter.clone()
            });
        }
        if let (Some(e), Some(x)) = (filter.end_ms, end_excl)
            && x <= e
        {
            edges.push(Filter {
                start_ms: Some(x),
                end_ms: Some(e),
                ..filter.clone()
            });
        }
        Some(RollupSplit {
            first,
            end_excl,
            edges,
        })
    }
}

/// How many rows `filter` matches: from the rollup plus edge counts when it can express the filter, else a
/// `COUNT(*)` over `anomalies` (index-assisted where a filtered column leads an index).
pub async fn count(store: &Store, filter: &Filter) -> Result<i64, StoreError> {
    let Some(split) = RollupSplit::of(filter) else {
        return count_scan(store, filter).await;
    };
    let clause = rollup_clause(filter, split.first, split.end_excl);
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM anomaly_counts {}",
        clause.sql()
    );
    let (mut total,): (i64,) = clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_one(store.pool())
        .await?;
    for edge in &split.edges {
        total += count_scan(store, edge).await?;
    }
    Ok(total)
}

/// `COUNT(*)` over `anomalies` alone.
pub async fn count_scan(store: &Store, filter: &Filter) -> Result<i64, StoreError> {
    let clause = filter.clause();
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM anomalies {}",
        clause.sql()
    );
    let (total,): (i64,) = clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_one(store.pool())
        .await?;
    Ok(total)
}

/// `(source_type, risk_level, count, min ts, max ts)` groups.
type Groups = Vec<(String, String, i64, i64, i64)>;

/// Totals, counts by source and by risk level, and a timeline over the rows `filter` matches.
///
/// Whole hours come from the `anomaly_counts` rollup (migration 0006, kept exact by triggers), so the cost grows
/// with the number of hours and sources, not rows; only the partial hours at the edges of an explicit range are
/// counted from `anomalies` (a short range scan of the covering index `anomalies_stats_ts`). A `min_score` filter,
/// which the rollup cannot express, and ranges shorter than an hour scan `anomalies` instead. Both paths give the
/// same answer (a test checks this). The bucket width follows the filter's range, or the matched rows' exact
/// range when a bound is open.
pub async fn stats(store: &Store, filter: &Filter) -> Result<Stats, StoreError> {
    let Some(RollupSplit {
        first,
        end_excl,
        edges,
    }) = RollupSplit::of(filter)
    else {
        return stats_scan(store, filter).await;
    };

    let mut out = Stats::default();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut groups = rollup_groups(store, filter, first, end_excl).await?;
    // The rollup knows hours; the matched rows' exact first and last times come from those two hours' rows.
    if let (Some(min_hour), Some(max_hour)) = (
        groups.iter().map(|g| g.3).min(),
        groups.iter().map(|g| g.4).max(),
    ) {
        for g in &mut groups {
            g.3 = i64::MAX;
            g.4 = i64::MIN;
        }
        let exact = |from: i64| Filter {
            start_ms: Some(from),
            end_ms: Some(from.saturating_add(HOUR_MS - 1)),
            ..filter.clone()
        };
        let (a, b) = (exact(min_hour), exact(max_hour));
        for g in raw_groups(store, &a)
            .await?
            .into_iter()
            .chain(raw_groups(store, &b).await?)
        {
            lo = lo.min(g.3);
            hi = hi.max(g.4);
        }
    }
    for f in &edges {
        groups.extend(raw_groups(store, f).await?);
    }
    for (source, risk, n, min_ts, max_ts) in groups {
        if n == 0 {
            continue;
        }
        out.total += n;
        *out.by_source.entry(source).or_default() += n;
        *out.by_risk.entry(risk).or_default() += n;
        lo = lo.min(min_ts);
        hi = hi.max(max_ts);
    }
    if out.total == 0 {
        return Ok(Stats::default());
    }
    let lo = filter.start_ms.unwrap_or(lo);
    let hi = filter.end_ms.unwrap_or(hi);
    out.bucket_ms = bucket_width_ms(hi.saturating_sub(lo));
    if out.bucket_ms % HOUR_MS != 0 {
        // Sub-hour buckets: the range is at most ~25 hours, which the covering index scans quickly.
        out.timeline = raw_timeline(store, filter, out.bucket_ms).await?;
        return Ok(out);
    }
    // Hour-multiple widths: every hour lies wholly in one bucket, so rollup hours and edge rows add up.
    let mut timeline: BTreeMap<i64, i64> = BTreeMap::new();
    for (bucket, n) in rollup_timeline(store, filter, first, end_excl, out.bucket_ms).await? {
        *timeline.entry(bucket).or_default() += n;
    }
    for f in &edges {
        for (bucket, n) in raw_timeline(store, f, out.bucket_ms).await? {
            *timeline.entry(bucket).or_default() += n;
        }
    }
    out.timeline = timeline.into_iter().filter(|(_, n)| *n > 0).collect();
    Ok(out)
}

fn floor_hour(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS).saturating_mul(HOUR_MS)
}

fn ceil_hour(ts: i64) -> i64 {
    let f = floor_hour(ts);
    if f == ts {
        f
    } else {
        f.saturating_add(HOUR_MS)
    }
}

/// The rollup's WHERE clause: the filter's grouping columns plus `first <= hour < end_excl` (its time bounds are
/// the caller's whole hours; a `min_score` filter never reaches the rollup, see [`RollupSplit::of`]).
fn rollup_clause(filter: &Filter, first: Option<i64>, end_excl: Option<i64>) -> Clause {
    let mut c = Clause::default();
    c.conditions.push("n > 0".to_owned());
    if let Some(v) = first {
        c.push("hour >=", Arg::Int(v));
    }
    if let Some(v) = end_excl {
        c.push("hour <", Arg::Int(v));
    }
    filter.push_grouping_columns(&mut c);
    c
}

/// Groups from the rollup; the min/max columns are hours, not row times.
async fn rollup_groups(
    store: &Store,
    filter: &Filter,
    first: Option<i64>,
    end_excl: Option<i64>,
) -> Result<Groups, StoreError> {
    let clause = rollup_clause(filter, first, end_excl);
    let sql = format!(
        "SELECT source_type, risk_level, CAST(SUM(n) AS BIGINT), MIN(hour), MAX(hour) FROM anomaly_counts {} \
         GROUP BY source_type, risk_level",
        clause.sql()
    );
    Ok(clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_all(store.pool())
        .await?)
}

async fn rollup_timeline(
    store: &Store,
    filter: &Filter,
    first: Option<i64>,
    end_excl: Option<i64>,
    width: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut clause = rollup_clause(filter, first, end_excl);
    let where_sql = clause.sql();
    let w = clause.placeholder(Arg::Int(width));
    let sql = format!(
        "SELECT (hour - (((hour % {w}) + {w}) % {w})) AS bucket, CAST(SUM(n) AS BIGINT) FROM anomaly_counts \
         {where_sql} GROUP BY 1 ORDER BY 1"
    );
    Ok(clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_all(store.pool())
        .await?)
}

async fn raw_groups(store: &Store, filter: &Filter) -> Result<Groups, StoreError> {
    let clause = filter.clause();
    let sql = format!(
        "SELECT source_type, risk_level, CAST(COUNT(*) AS BIGINT), MIN(ts), MAX(ts) FROM anomalies {} \
         GROUP BY source_type, risk_level",
        clause.sql()
    );
    Ok(clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_all(store.pool())
        .await?)
}

async fn raw_timeline(
    store: &Store,
    filter: &Filter,
    width: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut clause = filter.clause();
    let where_sql = clause.sql();
    let w = clause.placeholder(Arg::Int(width));
    // Floor division for times before 1970 too: integer division truncates toward zero on both engines.
    let sql = format!(
        "SELECT (ts - (((ts % {w}) + {w}) % {w})) AS bucket, CAST(COUNT(*) AS BIGINT) FROM anomalies {where_sql} \
         GROUP BY 1 ORDER BY 1"
    );
    Ok(clause
        .args
        .bind(sqlx::query_as(&sql))
        .fetch_all(store.pool())
        .await?)
}

/// [`stats`] by scanning `anomalies` alone (two grouped scans of the covering index): the path for filters the
/// rollup cannot express, and the reference the rollup path is tested against.
pub async fn stats_scan(store: &Store, filter: &Filter) -> Result<Stats, StoreError> {
    let mut out = Stats::default();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (source, risk, n, min_ts, max_ts) in raw_groups(store, filter).await? {
        out.total += n;
        *out.by_source.entry(source).or_default() += n;
        *out.by_risk.entry(risk).or_default() += n;
        lo = lo.min(min_ts);
        hi = hi.max(max_ts);
    }
    if out.total == 0 {
        return Ok(out);
    }
    let lo = filter.start_ms.unwrap_or(lo);
    let hi = filter.end_ms.unwrap_or(hi);
    out.bucket_ms = bucket_width_ms(hi.saturating_sub(lo));
    out.timeline = raw_timeline(store, filter, out.bucket_ms).await?;
    Ok(out)
}

/// Rows per multi-row INSERT statement: [`WRITTEN_COUNT`] parameters each stays under both engines' parameter limits.
const INSERT_CHUNK: usize = 500;

/// How many columns [`WRITTEN_COLUMNS`] names (checked by a test).
const WRITTEN_COUNT: usize = 14;

/// Stores many anomalies in one transaction with multi-row INSERTs (bulk imports, benchmarks); returns their ids
/// in input order.
pub async fn insert_many(store: &Store, rows: &[NewAnomaly]) -> Result<Vec<String>, StoreError> {
    let created_at = now_ms();
    let ids: Vec<String> = rows
        .iter()
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let mut tx = store.pool().begin().await?;
    for (chunk, chunk_ids) in rows.chunks(INSERT_CHUNK).zip(ids.chunks(INSERT_CHUNK)) {
        let mut sql = format!("INSERT INTO anomalies ({WRITTEN_COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let b = i * WRITTEN_COUNT;
            sql.push('(');
            for k in 1..=WRITTEN_COUNT {
                if k > 1 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", b + k));
            }
            sql.push(')');
        }
        let mut q = sqlx::query(&sql).persistent(NULLABLE_FLOAT_STATEMENTS_CACHED);
        for (new, id) in chunk.iter().zip(chunk_ids) {
            q = q
                .bind(id.clone())
                .bind(new.ts)
                .bind(new.source_type.clone())
                .bind(new.event_data.to_string())
                .bind(new.betti[0])
                .bind(new.betti[1])
                .bind(new.betti[2])
                .bind(new.anomaly_score)
                .bind(i64::from(new.is_anomaly))
                .bind(new.risk_level.clone())
                .bind(new.entropy)
                .bind(new.metadata.to_string())
                .bind(new.created_by.clone())
                .bind(created_at);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::TestDb;

    #[test]
    fn column_lists_agree() {
        assert_eq!(WRITTEN_COLUMNS.split(',').count(), WRITTEN_COUNT);
        assert!(COLUMNS.starts_with(WRITTEN_COLUMNS));
        assert_eq!(COLUMNS.split(',').count(), WRITTEN_COUNT + 3);
    }

    #[tokio::test]
    async fn planner_statistics_steer_min_score_counts_to_the_score_index() {
        let db = TestDb::sqlite().await;
        let s = &db.store;
        sqlx::query(
            "INSERT INTO anomalies (id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
             is_anomaly, risk_level, entropy, metadata, created_by, created_at) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
             SELECT 'a' || i, i * 1000, 'source-' || (i % 8), '{}', 1, 0, 0, ((i * 7919) % 1000) / 1000.0, 0, \
             'Low', NULL, '{}', NULL, 0 FROM n",
        )
        .execute(s.pool())
        .await
        .expect("load");
        s.refresh_planner_stats().await.expect("optimize");
        let filter = Filter {
            source: Some("source-3".into()),
            min_score: Some(0.9),
            ..Filter::default()
        };
        let clause = filter.clause();
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM anomalies {}",
            clause.sql()
        );
        let plan: Vec<(i64, i64, i64, String)> = clause
            .args
            .bind(sqlx::query_as(&sql))
            .fetch_all(s.pool())
            .await
            .expect("plan");
        assert!(
            plan.iter().any(|row| row.3.contains("anomalies_score")),
            "{plan:?}"
        );
        let expected = (1..=20_000_i64)
            .filter(|i| i % 8 == 3 && (i * 7919) % 1000 >= 900)
            .count();
        assert_eq!(
            count(s, &filter).await.expect("count"),
            i64::try_from(expected).expect("small")
        );
    }

    fn sample(score: f64) -> NewAnomaly {
        NewAnomaly {
            ts: 1_767_225_600_000,
            source_type: "netflow".into(),
            event_data: json!({"value": 3.5, "host": "db-1"}),
            betti: [1, 2, 0],
            anomaly_score: score,
            is_anomaly: true,
            risk_level: "High".into(),
            entropy: Some(1.25),
            metadata: json!({"scores": {"total": 71.0}}),
            created_by: None,
        }
    }

    #[tokio::test]
    async fn insert_get_delete_round_trip_on_every_backend() {
        for db in TestDb::all().await {
            let stored = insert(&db.store, &sample(0.71)).await.expect("insert");
            let fetched = get(&db.store, &stored.id)
                .await
                .expect("get")
                .expect("present");
            assert_eq!(fetched, stored, "{}", db.label);
            assert!(
                delete(&db.store, &stored.id).await.expect("delete"),
                "{}",
                db.label
            );
            assert!(
                !delete(&db.store, &stored.id).await.expect("delete again"),
                "{}",
                db.label
            );
            assert_eq!(
                get(&db.store, &stored.id).await.expect("get"),
                None,
                "{}",
                db.label
            );
        }
    }

    #[tokio::test]
    async fn data_survives_reopening_the_database() {
        let db = TestDb::sqlite().await;
        let stored = insert(&db.store, &sample(0.9)).await.expect("insert");
        db.store.close().await;
        let reopened = Store::connect(&db.url, &crate::StoreOptions::default())
            .await
            .expect("reopen");
        assert_eq!(get(&reopened, &stored.id).await.expect("get"), Some(stored));
    }

    #[tokio::test]
    async fn a_second_instance_on_the_same_database_sees_the_same_rows() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let replica = Store::connect(&db.url, &crate::StoreOptions::default())
            .await
            .expect("second instance");
        let stored = insert(&db.store, &sample(0.42))
            .await
            .expect("insert through the first");
        assert_eq!(
            get(&replica, &stored.id)
                .await
                .expect("get through the second"),
            Some(stored)
        );
        replica.close().await;
    }

    fn at(ts: i64, source: &str, risk: &str, score: f64, flag: bool) -> NewAnomaly {
        NewAnomaly {
            ts,
            source_type: source.into(),
            risk_level: risk.into(),
            anomaly_score: score,
            is_anomaly: flag,
            ..sample(score)
        }
    }

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn fixture() -> Vec<NewAnomaly> {
        vec![
            NewAnomaly {
                entropy: None,
                ..at(T0, "netflow", "Low", 0.1, false)
            },
            at(T0 + 60_000, "netflow", "High", 0.6, true),
            at(T0 + 120_000, "dns", "Critical", 0.9, true),
            at(T0 + 3_600_000, "dns", "Medium", 0.3, false),
            at(T0 + 7_200_000, "auth", "High", 0.7, true),
        ]
    }

    /// The defect this guards: on PostgreSQL, once a connection had stored an anomaly without entropy, every later
    /// insert with entropy on that connection failed, so the pipeline's anomalies were lost. One connection makes
    /// every statement below meet the same statement cache, in both orders, for both insert paths.
    #[tokio::test]
    async fn null_and_present_entropy_mix_on_one_connection() {
        for db in TestDb::all().await {
            let one = db.single_connection().await;
            let s = &one.store;
            let none = || NewAnomaly {
                entropy: None,
                ..sample(0.4)
            };
            let mut expected = Vec::new();
            for new in [none(), sample(0.5), none(), sample(0.6)] {
                let id = insert(s, &new).await.expect("single insert").id;
                expected.push((id, new.entropy));
            }
            for batch in [
                vec![none(), none()],
                vec![sample(0.7), none()],
                vec![sample(0.8), sample(0.9)],
                vec![none(), sample(0.3)],
            ] {
                let ids = insert_many(s, &batch).await.expect("multi-row insert");
                expected.extend(ids.into_iter().zip(batch.iter().map(|n| n.entropy)));
            }
            for (id, entropy) in &expected {
                let stored = get(s, id).await.expect("get").expect("stored");
                assert_eq!(stored.entropy, *entropy, "{}", db.label);
            }
            drop(one);
        }
    }

    #[tokio::test]
    async fn list_filters_pages_and_counts() {
        for db in TestDb::all().await {
            insert_many(&db.store, &fixture()).await.expect("insert");
            // The same statements again, with and without NULLs in other positions.
            let mut extra = vec![
                insert(
                    &db.store,
                    &NewAnomaly {
                        entropy: None,
                        ..sample(0.2)
                    },
                )
                .await
                .expect("null entropy")
                .id,
                insert(&db.store, &sample(0.2)).await.expect("entropy").id,
            ];
            extra.extend(
                insert_many(
                    &db.store,
                    &[
                        sample(0.3),
                        NewAnomaly {
                            entropy: None,
                            ..sample(0.3)
                        },
                    ],
                )
                .await
                .expect("mixed"),
            );
            assert_eq!(
                get(&db.store, &extra[0])
                    .await
                    .expect("get")
                    .map(|a| a.entropy),
                Some(None)
            );
            assert_eq!(
                get(&db.store, &extra[3])
                    .await
                    .expect("get")
                    .map(|a| a.entropy),
                Some(None)
            );
            for id in &extra {
                assert!(delete(&db.store, id).await.expect("clean up"));
            }
            let all = list(&db.store, &Filter::default(), 0, 2)
                .await
                .expect("list");
            assert_eq!(all.total, 5, "{}", db.label);
            assert_eq!(
                all.rows.iter().map(|a| a.ts).collect::<Vec<_>>(),
                vec![T0 + 7_200_000, T0 + 3_600_000],
                "{}",
                db.label
            );
            let second = list(&db.store, &Filter::default(), 4, 2)
                .await
                .expect("page 3");
            assert_eq!(second.rows.len(), 1);
            let f = Filter {
                start_ms: Some(T0 + 60_000),
                end_ms: Some(T0 + 3_600_000),
                is_anomaly: Some(true),
                min_score: Some(0.5),
                ..Filter::default()
            };
            let page = list(&db.store, &f, 0, 10).await.expect("filtered");
            assert_eq!(page.total, 2, "{}", db.label);
            assert!(
                page.rows
                    .iter()
                    .all(|a| a.is_anomaly && a.anomaly_score >= 0.5)
            );
            let f = Filter {
                source: Some("dns".into()),
                risk_level: Some("Medium".into()),
                ..Filter::default()
            };
            assert_eq!(
                list(&db.store, &f, 0, 10).await.expect("by source").total,
                1
            );
            // A value shaped like SQL is just a value.
            let f = Filter {
                source: Some("x' OR '1'='1".into()),
                ..Filter::default()
            };
            assert_eq!(list(&db.store, &f, 0, 10).await.expect("inert").total, 0);
        }
    }

    #[tokio::test]
    async fn stats_group_in_the_database() {
        for db in TestDb::all().await {
            insert_many(&db.store, &fixture()).await.expect("insert");
            let s = stats(&db.store, &Filter::default()).await.expect("stats");
            assert_eq!(s.total, 5);
            assert_eq!(s.by_source.get("dns"), Some(&2), "{}", db.label);
            assert_eq!(s.by_risk.get("High"), Some(&2));
            // The data spans two hours: one-minute buckets fit in 100 buckets? No (121), so five-minute ones.
            assert_eq!(s.bucket_ms, 300_000);
            assert_eq!(
                s.timeline,
                vec![(T0, 3), (T0 + 3_600_000, 1), (T0 + 7_200_000, 1)],
                "{}",
                db.label
            );
            let f = Filter {
                is_anomaly: Some(true),
                ..Filter::default()
            };
            let s = stats(&db.store, &f).await.expect("filtered stats");
            assert_eq!(s.total, 3);
            assert_eq!(s.by_risk.get("Low"), None);
            let empty = stats(
                &db.store,
                &Filter {
                    source: Some("none".into()),
                    ..Filter::default()
                },
            )
            .await
            .expect("empty");
            assert_eq!(empty, Stats::default());
        }
    }

    #[tokio::test]
    async fn export_pages_cover_every_row_once_in_order() {
        for db in TestDb::all().await {
            // Ties on ts exercise the id tie-break of the keyset.
            let rows: Vec<NewAnomaly> = (0..23)
                .map(|i| at(T0 + (i / 3) * 1000, "s", "Low", 0.1, false))
                .collect();
            insert_many(&db.store, &rows).await.expect("insert");
            let mut seen = Vec::new();
            let mut cursor: Option<Cursor> = None;
            loop {
                let page = export_page(&db.store, &Filter::default(), cursor.as_ref(), 5)
                    .await
                    .expect("page");
                let Some(last) = page.last() else { break };
                cursor = Some(Cursor {
                    ts: last.ts,
                    id: last.id.clone(),
                });
                seen.extend(page.into_iter().map(|a| (a.ts, a.id)));
            }
            assert_eq!(seen.len(), 23, "{}", db.label);
            let mut sorted = seen.clone();
            sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            assert_eq!(seen, sorted, "{}", db.label);
        }
    }

    #[test]
    fn bucket_widths_follow_the_range() {
        assert_eq!(bucket_width_ms(0), 60_000);
        assert_eq!(bucket_width_ms(99 * 60_000), 60_000);
        assert_eq!(bucket_width_ms(100 * 60_000), 300_000);
        assert_eq!(bucket_width_ms(30 * 86_400_000), 86_400_000);
        assert_eq!(bucket_width_ms(20 * 86_400_000), 21_600_000);
        assert_eq!(bucket_width_ms(i64::MAX), 2_592_000_000);
        assert_eq!(bucket_width_ms(-5), 60_000);
    }

    #[tokio::test]
    async fn rollup_stats_equal_a_full_scan() {
        for db in TestDb::all().await {
            // 400 rows over ~3 days with uneven times, including rows before 1970 and exactly on hour marks.
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let mut rows: Vec<NewAnomaly> = (0..400)
                .map(|i| {
                    let ts = T0 + (next() % (3 * 86_400_000)) as i64 - 3_600_000;
                    let score = (next() % 100) as f64 / 100.0;
                    let risk = ["Low", "Medium", "High", "Critical"][(next() % 4) as usize];
                    at(ts, ["a", "b", "c"][i % 3], risk, score, next() % 2 == 0)
                })
                .collect();
            rows.push(at(T0, "a", "Low", 0.5, true));
            rows.push(at(T0 + HOUR_MS - 1, "a", "Low", 0.5, true));
            rows.push(at(-HOUR_MS - 5, "b", "High", 0.5, false));
            rows.push(at(-1, "b", "High", 0.5, false));
            let ids = insert_many(&db.store, &rows).await.expect("insert");
            // Deletes must come off the rollup.
            for id in ids.iter().step_by(7) {
                delete(&db.store, id).await.expect("delete");
            }
            let filters = [
                Filter::default(),
                Filter {
                    source: Some("a".into()),
                    ..Filter::default()
                },
                Filter {
                    is_anomaly: Some(true),
                    risk_level: Some("High".into()),
                    ..Filter::default()
                },
                Filter {
                    start_ms: Some(T0 + 1234),
                    ..Filter::default()
                },
                Filter {
                    end_ms: Some(T0 + 86_400_000 + 17),
                    ..Filter::default()
                },
                Filter {
                    start_ms: Some(T0 + 1234),
                    end_ms: Some(T0 + 2 * 86_400_000 + 99),
                    ..Filter::default()
                },
                Filter {
                    start_ms: Some(T0),
                    end_ms: Some(T0 + 2 * HOUR_MS - 1),
                    ..Filter::default()
                },
                Filter {
                    start_ms: Some(T0 + 60_000),
                    end_ms: Some(T0 + 120_000),
                    ..Filter::default()
                },
                Filter {
                    start_ms: Some(T0 + 30 * 60_000),
                    end_ms: Some(T0 + 100 * 60_000),
                    source: Some("b".into()),
                    ..Filter::default()
                },
                Filter {
                    end_ms: Some(0),
                    ..Filter::default()
                },
                Filter {
                    start_ms: Some(T0 + 10 * 86_400_000),
                    ..Filter::default()
                },
            ];
            for f in &filters {
                let fast = stats(&db.store, f).await.expect("rollup stats");
                let slow = stats_scan(&db.store, f).await.expect("scan stats");
                assert_eq!(fast, slow, "{}: {f:?}", db.label);
                assert_eq!(
                    count(&db.store, f).await.expect("count"),
                    count_scan(&db.store, f).await.expect("count scan"),
                    "{}: {f:?}",
                    db.label
                );
                assert_eq!(
                    slow.total,
                    count_scan(&db.store, f).await.expect("count scan")
                );
            }
            let all = stats(&db.store, &Filter::default()).await.expect("stats");
            assert_eq!(
                all.total,
                (rows.len() - ids.iter().step_by(7).count()) as i64
            );
        }
    }
}
