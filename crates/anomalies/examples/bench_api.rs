//! Latency of `GET /api/anomalies?limit=20` and `GET /api/anomalies/stats` over a large anomaly log, over HTTP,
//! on SQLite and (when `TEST_DATABASE_URL` names a PostgreSQL server) PostgreSQL.
//!
//! ```text
//! TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release -p vigil-anomalies --example bench_api -- [rows=1000000] [requests=200] [drop-index]
//! ```
//!
//! `drop-index`, when given, names an index to drop after loading: the same run measured with and without it is
//! the A/B that justifies keeping it.
//!
//! Loads `rows` synthetic anomalies (30 days in time order, 8 sources, uniform scores) with one server-side
//! INSERT … SELECT (rollup triggers firing per row), refreshes planner statistics, starts the real application on a loopback port, then times `requests` sequential
//! requests per query after a warm-up and prints p50/p90/p99/max in milliseconds.

use std::time::{Duration, Instant};

use vigil_http::Role;
use vigil_http::testing::TestApp;
use vigil_store::testing::TestDb;

const DAY_MS: i64 = 86_400_000;
const T_END: i64 = 1_768_204_800_000; // 2026-01-12T08:00:00Z

/// Loads `rows` rows in one INSERT … SELECT over a recursive CTE (both engines run it), in time order as a live
/// feed would write them: row i is i·(30 days / rows) before the end, of source `source-{i·7 mod 8}`, with a score
/// spread uniformly over [0, 1) by a multiplicative hash; the rollup triggers fire for every row as in production.
async fn load(db: &TestDb, rows: usize) -> Duration {
    let started = Instant::now();
    let step = (30 * DAY_MS) / i64::try_from(rows.max(1)).unwrap_or(i64::MAX);
    let sql = "INSERT INTO anomalies (id, ts, source_type, event_data, betti_h0, betti_h1, betti_h2, anomaly_score, \
         is_anomaly, risk_level, entropy, metadata, created_by, created_at) \
         WITH RECURSIVE n(i) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < $1), \
         g(i, score) AS (SELECT i, CAST((i * 7919) % 1000 AS DOUBLE PRECISION) / 1000.0 FROM n) \
         SELECT 'bench-' || CAST(i AS TEXT), $2 - i * $3, 'source-' || CAST((i * 7) % 8 AS TEXT), \
         '{\"value\": ' || CAST(i % 100 AS TEXT) || ', \"host\": \"h' || CAST(i % 50 AS TEXT) || '\"}', \
         1, i % 4, 0, score, CASE WHEN score > 0.65 THEN 1 ELSE 0 END, \
         CASE WHEN score > 0.8 THEN 'Critical' WHEN score > 0.5 THEN 'High' WHEN score > 0.2 THEN 'Medium' ELSE 'Low' END, \
         score * 3.0, '{\"scores\": {}}', NULL, 0 FROM g";
    if let Err(e) = vigil_store::sqlx::query(sql)
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .bind(T_END)
        .bind(step)
        .execute(db.store.pool())
        .await
    {
        eprintln!("load failed: {e}");
        std::process::exit(1);
    }
    let analyze = match db.label {
        "postgres" => "VACUUM ANALYZE",
        _ => "ANALYZE",
    };
    if let Err(e) = vigil_store::sqlx::query(analyze)
        .execute(db.store.pool())
        .await
    {
        eprintln!("{analyze} failed: {e}");
    }
    started.elapsed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn time_route(app: &TestApp, token: &str, path: &str, requests: usize) -> Vec<f64> {
    let url = app.url(path);
    let get = || async {
        let r = app.client.get(&url).bearer_auth(token).send().await;
        match r {
            Ok(r) if r.status().is_success() => r.bytes().await.map(|b| b.len()).unwrap_or(0),
            Ok(r) => {
                eprintln!("{path}: HTTP {}", r.status());
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        }
    };
    for _ in 0..requests.min(10) {
        get().await;
    }
    let mut ms = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        get().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let requests: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let drop_index = args.next();
    let mut dbs = vec![TestDb::sqlite().await];
    dbs.extend(TestDb::postgres().await);
    let last_day = format!(
        "/api/anomalies/stats?start_date={}",
        vigil_anomalies::format_ts(T_END - DAY_MS)
    );
    let routes = [
        "/api/anomalies?limit=20".to_owned(),
        "/api/anomalies?limit=20&page=50".to_owned(),
        "/api/anomalies?limit=20&source=source-3&min_score=0.9".to_owned(),
        "/api/anomalies?limit=20&min_score=0.5".to_owned(),
        "/api/anomalies/stats".to_owned(),
        "/api/anomalies/stats?is_anomaly=true".to_owned(),
        last_day,
    ];
    println!("rows={rows} requests={requests} (sequential, after 10 warm-up requests)");
    for db in dbs {
        let label = db.label;
        let load_time = load(&db, rows).await;
        println!(
            "{label}: loaded {rows} rows in {:.1} s",
            load_time.as_secs_f64()
        );
        if let Some(index) = &drop_index {
            let sql = format!("DROP INDEX {index}");
            if let Err(e) = vigil_store::sqlx::query(&sql)
                .execute(db.store.pool())
                .await
            {
                eprintln!("{sql}: {e}");
                std::process::exit(1);
            }
            println!("{label}: dropped index {index}");
        }
        let app = TestApp::start(db, |state| {
            vigil_anomalies::Anomalies::new(&vigil_anomalies::AnomaliesConfig::default())
                .router(state)
        })
        .await;
        let (_, token) = app.user_with_role("bench", Role::Viewer).await;
        for route in &routes {
            let ms = time_route(&app, &token, route, requests).await;
            println!(
                "{label:8} {route:60} p50 {:7.2} ms  p90 {:7.2}  p99 {:7.2}  max {:7.2}",
                percentile(&ms, 0.5),
                percentile(&ms, 0.9),
                percentile(&ms, 0.99),
                ms.last().copied().unwrap_or(f64::NAN)
            );
        }
        app.stop().await;
    }
}
