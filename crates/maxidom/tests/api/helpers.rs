//! Shared setup and request helpers of these tests.

use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use std::time::Duration;
use vigil_biometrics::Payload;
use vigil_http::testing::TestApp;
use vigil_maxidom::MaxidomConfig;

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) async fn apps(config: MaxidomConfig) -> Vec<TestApp> {
    TestApp::all(move |state| vigil_maxidom::Maxidom::new(config.clone()).router(state)).await
}

pub(crate) async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let r = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.text().await.unwrap_or_default())
}

/// POSTs a body declared as `len` bytes but sends only one byte more than the server's limit, then returns the
/// status the server answers with.
///
/// The server refuses as soon as the body passes its limit and closes the connection, so a client that uploads
/// all 17 MB races that close (sometimes it reads the 413, sometimes its write fails with a broken pipe). Sending
/// exactly limit + 1 bytes, all of which the server must read to decide, makes the check deterministic.
pub(crate) async fn post_declared_length(app: &TestApp, path: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let over_limit = app.state.config.max_body_bytes + 1;
    assert!(
        over_limit < len,
        "the declared length must exceed the limit"
    );
    stream
        .write_all(&vec![b' '; over_limit])
        .await
        .expect("write the body up to the limit");
    let mut response = Vec::new();
    let mut buf = [0_u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.expect("read response");
        assert!(n > 0, "connection closed before a response");
        response.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&response);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code")
}

pub(crate) async fn status_of(app: &TestApp, id: &str) -> Value {
    app.client
        .get(app.url(&format!("/api/profile/{id}/status")))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

pub(crate) async fn enroll(app: &TestApp, id: &str, password: &str) {
    let (s, body) = app
        .api()
        .post(&format!("/api/enroll/{id}"), &json!({"password": password}))
        .await;
    assert_eq!(s, StatusCode::OK, "{}: {body}", app.label);
}

/// Waits until the status satisfies `done` (training runs in the background).
pub(crate) async fn wait_for(
    app: &TestApp,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..400 {
        let s = status_of(app, id).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{}: timed out waiting for {what}: {}",
        app.label,
        status_of(app, id).await
    );
}

pub(crate) fn small_quotas() -> MaxidomConfig {
    MaxidomConfig {
        quota_total: 40,
        quota_keyboard: 10,
        quota_mouse: 20,
        quota_digraph: 5,
        ..MaxidomConfig::default()
    }
}

/// The payload with every time moved so that its first event is at `t0` (a session's clock).
pub(crate) fn at(mut p: Payload, t0: f64) -> Payload {
    let (lo, _) = vigil_biometrics::sequential::event_span(&p).expect("events");
    let dt = t0 - lo;
    p.start_timestamp += dt;
    p.end_timestamp += dt;
    for k in &mut p.key_events {
        k.down_time += dt;
        k.up_time += dt;
    }
    for path in &mut p.mouse_paths {
        for pt in path {
            pt.t += dt;
        }
    }
    for c in &mut p.clicks {
        c.t += dt;
    }
    p
}
