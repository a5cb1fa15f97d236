//! Webhook delivery against local receivers on 127.0.0.1:0: retries with backoff, timeouts, never blocking.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use vigil_anomalies::signing::{self, WebhookSecret};
use vigil_anomalies::{AlertDispatcher, DeliveryPolicy};
use vigil_http::axum::Router;
use vigil_http::axum::http::HeaderMap;
use vigil_http::axum::http::StatusCode;
use vigil_http::axum::routing::post;
use vigil_http::{AppState, HttpConfig};
use vigil_store::alert_configs::{NewAlertConfig, create};
use vigil_store::anomalies::{Anomaly, NewAnomaly, insert};
use vigil_store::testing::TestDb;

fn policy(max_attempts: u32, timeout_ms: u64) -> DeliveryPolicy {
    DeliveryPolicy {
        timeout: Duration::from_millis(timeout_ms),
        max_attempts,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        concurrency: 4,
        queue: 100,
        // The receivers here listen on loopback.
        allow_private: true,
        secret: None,
    }
}

async fn state_with_user(db: &TestDb) -> (AppState, String) {
    let state = AppState::new(
        db.store.clone(),
        HttpConfig::for_tests(),
        b"test-secret-test-secret-test-secret!",
    );
    let user = uuid::Uuid::new_v4().to_string();
    vigil_store::users::insert(
        &db.store,
        &vigil_store::users::NewUser {
            id: user.clone(),
            username: format!("u-{user}"),
            email: format!("{user}@example.com"),
            password_hash: "x".into(),
            full_name: None,
            organization: None,
            role: vigil_store::Role::Analyst,
            is_verified: false,
            created_at: 0,
        },
    )
    .await
    .expect("user");
    (state, user)
}

async fn config(state: &AppState, user: &str, threshold: f64, channels: &[String]) {
    create(
        &state.store,
        &NewAlertConfig {
            user_id: user.to_owned(),
            threshold,
            notification_channels: channels.to_vec(),
            is_active: true,
        },
    )
    .await
    .expect("config");
}

async fn stored(state: &AppState, score: f64) -> Anomaly {
    insert(
        &state.store,
        &NewAnomaly {
            ts: 1_768_204_800_000,
            source_type: "netflow".into(),
            event_data: json!({"value": 1}),
            betti: [1, 0, 0],
            anomaly_score: score,
            is_anomaly: true,
            risk_level: "High".into(),
            entropy: None,
            metadata: json!({}),
            created_by: None,
        },
    )
    .await
    .expect("anomaly")
}

/// A receiver that answers 500 to the first `failures` requests and 200 afterwards; returns its URL and hit count.
async fn flaky_receiver(failures: usize) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let h = h.clone();
            async move {
                assert!(body.contains("\"source_type\":\"netflow\""), "{body}");
                if h.fetch_add(1, Ordering::SeqCst) < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { vigil_http::axum::serve(listener, app).await });
    (format!("webhook:http://{addr}/hook"), hits)
}

/// Accepts connections and never answers; counts connections.
async fn silent_receiver() -> (String, Arc<AtomicUsize>) {
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(sock);
        }
    });
    (format!("webhook:http://{addr}/hook"), conns)
}

/// Waits for every delivery task (the same wait graceful shutdown does), bounded.
async fn drain(state: &AppState) {
    state.tasks.close();
    tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .expect("deliveries finish");
}

#[tokio::test]
async fn retries_until_the_receiver_recovers() {
    for db in TestDb::all().await {
        let (state, user) = state_with_user(&db).await;
        let (hook, hits) = flaky_receiver(2).await;
        // A receiver's secret in the query never reaches the history.
        config(&state, &user, 0.5, &[format!("{hook}?token=secret")]).await;
        let dispatcher = AlertDispatcher::new(policy(4, 1000));
        let anomaly = stored(&state, 0.9).await;
        let sockets = dispatcher.fire(&state, &anomaly).await;
        assert!(sockets.is_empty());
        drain(&state).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            3,
            "{}: two failures, then delivered, then no more",
            db.label
        );
        // The delivery's history row: one row for the three attempts, without the URL's query.
        let history = vigil_store::alert_deliveries::recent(&state.store, Some(&user), 10)
            .await
            .expect("history");
        assert_eq!(history.len(), 1, "{}", db.label);
        let d = &history[0];
        assert_eq!(
            (d.outcome.as_str(), d.attempts, d.last_status),
            ("delivered", 3, Some(204))
        );
        assert_eq!(d.anomaly_id, anomaly.id);
        assert!(d.target.starts_with("http://127.0.0.1:") && d.target.ends_with("/hook"));
        assert!(!d.target.contains('?'), "{}", d.target);
    }
}

#[tokio::test]
async fn internal_destinations_are_refused_unless_allowed() {
    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    let (hook, hits) = flaky_receiver(0).await;
    // The same receiver by IP literal and by a name that resolves to loopback only; stored directly, as a config
    // written before the guard existed (or by an import) would be.
    let by_name = hook.replace("127.0.0.1", "localhost");
    config(&state, &user, 0.5, &[hook.clone(), by_name]).await;
    let guarded = AlertDispatcher::new(DeliveryPolicy {
        allow_private: false,
        base_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(5),
        ..policy(3, 1000)
    });
    dispatcher_fires_and_drains(&guarded, &state).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached loopback");

    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    config(&state, &user, 0.5, &[hook]).await;
    dispatcher_fires_and_drains(&AlertDispatcher::new(policy(3, 1000)), &state).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "allowed when configured");
}

/// Fires for a fresh anomaly and waits for the deliveries; refusals must not wait out retry backoffs.
async fn dispatcher_fires_and_drains(dispatcher: &AlertDispatcher, state: &AppState) {
    dispatcher.fire(state, &stored(state, 0.9).await).await;
    let t = Instant::now();
    drain(state).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "refused deliveries are not retried: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn deliveries_are_signed_and_keep_their_id_across_retries() {
    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    let seen: Arc<std::sync::Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let s = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let s = s.clone();
            async move {
                let mut seen = s.lock().expect("lock");
                seen.push((headers, body));
                // Fail the first attempt, so a retry is signed too.
                if seen.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { vigil_http::axum::serve(listener, app).await });
    config(&state, &user, 0.5, &[format!("webhook:http://{addr}/hook")]).await;
    let secret = WebhookSecret::new("receiver-shared-secret").expect("secret");
    let dispatcher = AlertDispatcher::new(DeliveryPolicy {
        secret: Some(secret.clone()),
        ..policy(3, 1000)
    });
    dispatcher.fire(&state, &stored(&state, 0.9).await).await;
    drain(&state).await;
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 2, "one failure, one retry");
    let header = |h: &HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("missing {name}"))
    };
    for (headers, body) in seen.iter() {
        let ts: i64 = header(headers, signing::TIMESTAMP_HEADER)
            .parse()
            .expect("timestamp");
        let now = vigil_store::time::now_ms() / 1000;
        assert!((now - ts).abs() < 60, "fresh timestamp {ts}");
        let sig = header(headers, signing::SIGNATURE_HEADER);
        assert!(secret.verify(ts, body, &sig), "{sig}");
        let forged = WebhookSecret::new("guess").expect("secret");
        assert!(!forged.verify(ts, body, &sig));
    }
    assert_eq!(
        header(&seen[0].0, signing::DELIVERY_HEADER),
        header(&seen[1].0, signing::DELIVERY_HEADER),
        "a retry is the same delivery"
    );
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    let (hook, hits) = flaky_receiver(usize::MAX).await;
    config(&state, &user, 0.5, &[hook]).await;
    let dispatcher = AlertDispatcher::new(policy(3, 1000));
    dispatcher.fire(&state, &stored(&state, 0.9).await).await;
    drain(&state).await;
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let history = vigil_store::alert_deliveries::recent(&state.store, None, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    let d = &history[0];
    assert_eq!(
        (d.outcome.as_str(), d.attempts, d.last_status),
        ("failed", 3, Some(500))
    );
    assert_eq!(
        d.error.as_deref(),
        Some("answered 500 Internal Server Error")
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_block_the_caller() {
    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    let (silent, conns) = silent_receiver().await;
    let (good, hits) = flaky_receiver(0).await;
    config(&state, &user, 0.5, &[silent, "websocket".into()]).await;
    config(&state, &user, 0.1, &[good]).await;
    let dispatcher = AlertDispatcher::new(policy(2, 300));
    let anomaly = stored(&state, 0.9).await;
    let started = Instant::now();
    let sockets = dispatcher.fire(&state, &anomaly).await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "fire returned after {:?}",
        started.elapsed()
    );
    assert_eq!(sockets, vec![user.clone()]);
    // The healthy receiver is served while the silent one hangs.
    let deadline = Instant::now() + Duration::from_secs(2);
    while hits.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let t = Instant::now();
    drain(&state).await;
    // Two attempts of 300 ms each plus one backoff: it times out rather than hanging.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "one connection per attempt"
    );
}

#[tokio::test]
async fn below_threshold_inactive_and_full_queue_send_nothing() {
    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    let (hook, hits) = flaky_receiver(0).await;
    config(&state, &user, 0.95, std::slice::from_ref(&hook)).await;
    let dispatcher = AlertDispatcher::new(policy(1, 1000));
    assert!(
        dispatcher
            .fire(&state, &stored(&state, 0.9).await)
            .await
            .is_empty()
    );
    // A queue of one: the second delivery of the same burst is dropped, not queued without bound.
    let (silent, _) = silent_receiver().await;
    config(&state, &user, 0.1, &[silent, hook]).await;
    let tiny = AlertDispatcher::new(DeliveryPolicy {
        queue: 1,
        ..policy(1, 300)
    });
    tiny.fire(&state, &stored(&state, 0.5).await).await;
    drain(&state).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn shutdown_stops_retrying() {
    let db = TestDb::sqlite().await;
    let (state, user) = state_with_user(&db).await;
    let (hook, hits) = flaky_receiver(usize::MAX).await;
    config(&state, &user, 0.5, &[hook]).await;
    let dispatcher = AlertDispatcher::new(DeliveryPolicy {
        base_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(30),
        ..policy(5, 1000)
    });
    dispatcher.fire(&state, &stored(&state, 0.9).await).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while hits.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    state.shutdown.cancel();
    let t = Instant::now();
    drain(&state).await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "shutdown waited {:?}",
        t.elapsed()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
