//! Compatibility with the TopoForge web dashboard: the calls its pages make, replayed against the real `vigil`
//! binary from a browser origin, asserting the fields the dashboard reads (see docs/compatibility.md); and the
//! server's access log checked for the credentials those calls put in URLs.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::BackendServer as Server;
use tokio_tungstenite::tungstenite::Message;

const ORIGIN: &str = "http://localhost:3000";
const ADMIN_PASSWORD: &str = "S3cure-pass!";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server as the dashboard's operator runs it: a first admin, the public feed's socket open to anonymous
/// clients, and request logging at debug (every request's URI in the log).
async fn servers() -> Vec<Server> {
    Server::all(&[
        ("ADMIN_EMAIL", "admin@example.com"),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("STREAM_ANONYMOUS_STREAMS", "default"),
        ("STREAM_ANONYMOUS_SUBSCRIBE", "true"),
        ("RUST_LOG", "info,tower_http=debug"),
    ])
    .await
}

/// A browser `fetch` from the dashboard's origin; the answer must be readable there (CORS).
async fn fetch(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = http.request(method, url).header("origin", ORIGIN);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ORIGIN),
        "readable from the dashboard's origin"
    );
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

fn assert_analysis(data: &Value, l: &str) {
    for k in [
        "stream",
        "window_size",
        "timestamp",
        "anomaly_score",
        "is_anomaly",
    ] {
        assert!(!data[k].is_null(), "{l}: {k}: {data}");
    }
    for h in ["h0", "h1", "h2"] {
        assert!(data["betti_numbers"][h].is_u64(), "{l}: betti {h}: {data}");
        assert!(
            data["persistence"][h].is_array(),
            "{l}: persistence {h}: {data}"
        );
    }
    let tf = &data["topology_features"];
    assert!(
        tf["entropy"].is_number() && tf["total_lifetime"].is_number(),
        "{l}: {tf}"
    );
    assert_eq!(
        tf["landscape"]["x"].as_array().map(Vec::len),
        Some(100),
        "{l}"
    );
    assert_eq!(
        tf["landscape"]["y"].as_array().map(Vec::len),
        Some(100),
        "{l}"
    );
    for k in ["total", "betti", "entropy", "ml"] {
        let v = data["scores"][k].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&v), "{l}: scores.{k} = {v}");
    }
    let sa = &data["security_analysis"];
    assert!(
        ["Low", "Medium", "High", "Critical"].contains(&sa["risk_level"].as_str().unwrap_or("")),
        "{l}: {sa}"
    );
    assert!(
        sa["confidence"].is_number() && sa["threats"].is_array() && sa["mitigation"].is_array(),
        "{l}: {sa}"
    );
}

#[tokio::test]
async fn dashboard_pages_and_access_log() {
    let http = reqwest::Client::new();
    for server in servers().await {
        let l = server.label;

        // Login page: the OAuth2 password form.
        let r = http
            .post(server.url("/api/auth/login"))
            .header("origin", ORIGIN)
            .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        let session: Value = r.json().await.expect("json");
        assert_eq!(session["token_type"], "bearer", "{l}");
        for k in [
            "id",
            "username",
            "email",
            "full_name",
            "organization",
            "role",
            "is_verified",
        ] {
            assert!(session["user"].get(k).is_some(), "{l}: user.{k}: {session}");
        }
        assert_eq!(session["user"]["role"], "admin");
        let token = session["access_token"].as_str().expect("access").to_owned();
        let refresh = session["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned();
        let (s, me) = fetch(
            &http,
            Method::GET,
            server.url("/api/auth/me"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(
            (s, me["username"].as_str()),
            (StatusCode::OK, Some("admin")),
            "{l}"
        );

        // Data Sources page: no token, re-fetched on every stream event, never throttled.
        for _ in 0..120 {
            let (s, list) = fetch(&http, Method::GET, server.url("/api/sources"), None, None).await;
            assert_eq!(s, StatusCode::OK, "{l}: {list}");
            assert!(list.is_array(), "{l}");
        }
        // Its form sends no protocol.
        let (s, src) = fetch(
            &http,
            Method::POST,
            server.url("/api/sources"),
            Some(&token),
            Some(json!({"name": "USGS", "type": "seismic", "url": "https://earthquake.usgs.gov/feed.geojson", "description": "quakes"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{l}: {src}");
        assert_eq!(src["protocol"], "https-poll", "{l}");
        let (_, list) = fetch(&http, Method::GET, server.url("/api/sources/"), None, None).await;
        let first = &list[0];
        for k in [
            "id",
            "name",
            "type",
            "url",
            "protocol",
            "description",
            "active",
        ] {
            assert!(first.get(k).is_some(), "{l}: source.{k}: {first}");
        }

        // Live page: an anonymous socket on the public feed; one analysis frame per event, buffering first.
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url("/ws/stream"))
            .await
            .expect("ws");
        ws.send(Message::text(
            json!({"type": "config", "payload": {"anomaly_threshold": 60}}).to_string(),
        ))
        .await
        .expect("config");
        let mut analyses = 0;
        for i in 0..14 {
            let event =
                json!({"value": ((i * 7) % 5) as f64 + 0.1 * i as f64, "source": "default"});
            ws.send(Message::text(
                json!({"type": "event", "payload": event}).to_string(),
            ))
            .await
            .expect("send");
            let frame = next_json(&mut ws, Duration::from_secs(20))
                .await
                .expect("a frame per event");
            assert_eq!(frame["type"], "analysis", "{l}: {frame}");
            assert_eq!(frame["original_event"], event, "{l}");
            let data = &frame["data"];
            if data["status"] == "buffering" {
                assert_eq!(data["count"], i + 1, "{l}: {data}");
            } else {
                assert_analysis(data, l);
                analyses += 1;
            }
        }
        assert!(
            analyses >= 5,
            "{l}: analyses from the 10th event on, got {analyses}"
        );
        // Nothing more than one frame per event (the config frame has no reply).
        assert!(
            next_json(&mut ws, Duration::from_millis(300))
                .await
                .is_none(),
            "{l}"
        );
        // A bare object is an event too; a non-JSON frame is an error frame and the socket stays open.
        ws.send(Message::text(r#"{"value": 1.5}"#))
            .await
            .expect("send");
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(20))
                .await
                .expect("frame")["type"],
            "analysis"
        );
        ws.send(Message::text("not json")).await.expect("send");
        let err = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("frame");
        assert_eq!(err["type"], "error", "{l}: {err}");
        assert!(err["detail"].is_string(), "{l}");
        ws.close(None).await.ok();

        // The signed-in socket carries its token in the URL (browsers cannot set headers on sockets).
        let (mut ws, _) =
            tokio_tungstenite::connect_async(server.ws_url(&format!("/ws/stream?token={token}")))
                .await
                .expect("ws with a token");
        ws.send(Message::text(json!({"type": "subscribe"}).to_string()))
            .await
            .expect("subscribe");
        ws.close(None).await.ok();

        // Anomalies page: list, stats, and the export the browser downloads by URL.
        let doc = json!({"timestamp": "2026-01-12T08:00:00Z", "source_type": "default", "event_data": {"value": 9},
            "betti_h0": 1, "betti_h1": 3, "betti_h2": 0, "anomaly_score": 0.91, "metadata": {}});
        let (s, created) = fetch(
            &http,
            Method::POST,
            server.url("/api/anomalies"),
            Some(&token),
            Some(doc),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{l}: {created}");
        let (s, page) = fetch(
            &http,
            Method::GET,
            server.url("/api/anomalies/?page=1&limit=20"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}");
        for k in ["data", "page", "limit", "total"] {
            assert!(page.get(k).is_some(), "{l}: {k}: {page}");
        }
        let (s, stats) = fetch(
            &http,
            Method::GET,
            server.url("/api/anomalies/stats"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}");
        for k in ["Low", "Medium", "High", "Critical"] {
            assert!(stats["severity_distribution"][k].is_u64(), "{l}: {stats}");
        }
        assert!(
            stats["total_anomalies"].is_u64()
                && stats["by_source"].is_object()
                && stats["timeline"].is_array()
        );

        // `window.open('/api/anomalies/export?format=csv')` as the dashboard does it today: no credential, 401.
        let r = http
            .get(server.url("/api/anomalies/export?format=csv"))
            .send()
            .await
            .expect("export");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{l}");
        // With a signed link: a fetch for the link, then `window.open(link.url)`.
        let (s, link) = fetch(
            &http,
            Method::POST,
            server.url("/api/anomalies/export/link?format=csv"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}: {link}");
        let path = link["path"].as_str().expect("path").to_owned();
        let ticket = path.split("ticket=").nth(1).expect("ticket").to_owned();
        let r = http.get(server.url(&path)).send().await.expect("download");
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        assert!(
            r.headers()["content-disposition"]
                .to_str()
                .expect("ascii")
                .starts_with("attachment; filename=anomalies_")
        );
        let csv = r.text().await.expect("csv");
        assert!(
            csv.starts_with(
                "Timestamp,Source,Is Anomaly,Score,Severity,Betti H0,Betti H1,Betti H2,Entropy"
            ),
            "{l}"
        );
        assert_eq!(csv.lines().count(), 2, "{l}: {csv}");

        // Prometheus panel: /metrics fetched from the browser.
        let r = http
            .get(server.url("/metrics"))
            .header("origin", ORIGIN)
            .send()
            .await
            .expect("metrics");
        assert_eq!(r.status(), StatusCode::OK, "{l}");
        assert_eq!(r.headers()["access-control-allow-origin"], ORIGIN, "{l}");
        assert!(
            r.text()
                .await
                .expect("text")
                .contains("http_requests_total"),
            "{l}"
        );

        // Logout, then the stale refresh token of that session (another tab): a plain 401, no other effect.
        let r = http
            .post(server.url("/api/auth/login"))
            .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
            .send()
            .await
            .expect("login");
        let other: Value = r.json().await.expect("json");
        let (s, _) = fetch(
            &http,
            Method::POST,
            server.url("/api/auth/logout"),
            Some(&token),
            Some(json!({"refresh_token": refresh})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{l}");
        let (s, b) = fetch(
            &http,
            Method::POST,
            server.url("/api/auth/refresh"),
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
        assert_eq!(
            (s, b["detail"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Invalid refresh token")),
            "{l}"
        );
        let (s, _) = fetch(
            &http,
            Method::GET,
            server.url("/api/auth/me"),
            other["access_token"].as_str(),
            None,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: the account's other session survives"
        );
        // The logged-out session's download links die with it.
        let r = http.get(server.url(&path)).send().await.expect("download");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{l}");

        // The access log has every request (URIs at debug) but no credential from any URL.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = server.log();
        assert!(
            log.contains("/api/anomalies/export?format=csv&ticket=[redacted]"),
            "{l}: the download is logged, redacted"
        );
        assert!(
            log.contains("/ws/stream?token=[redacted]"),
            "{l}: the socket is logged, redacted"
        );
        assert!(
            !log.contains(&ticket),
            "{l}: a download ticket reached the log"
        );
        assert!(
            !log.contains(&token),
            "{l}: an access token reached the log"
        );
        assert!(
            !log.contains("a rotated refresh token was replayed"),
            "{l}: a logout is not a theft"
        );

        // The routes the clients need are in the OpenAPI document with the statuses they answer.
        let spec: Value = http
            .get(server.url("/openapi.json"))
            .send()
            .await
            .expect("spec")
            .json()
            .await
            .expect("json");
        let paths = &spec["paths"];
        for (path, method, statuses) in [
            (
                "/api/anomalies/export/link",
                "post",
                &["200", "401", "422"][..],
            ),
            (
                "/api/anomalies/export",
                "get",
                &["200", "401", "403", "422"][..],
            ),
            ("/verify-email", "get", &["200", "400"][..]),
            ("/verify-email", "post", &["200", "400"][..]),
            ("/static/{file}", "get", &["200", "404"][..]),
            ("/api/sources", "get", &["200"][..]),
        ] {
            let responses = &paths[path][method]["responses"];
            for st in statuses {
                assert!(
                    responses[*st].is_object(),
                    "{l}: {method} {path} documents {st}: {responses}"
                );
            }
        }
        assert!(
            paths["/api/sources"]["get"]["security"].is_null(),
            "{l}: GET /api/sources needs no token"
        );
    }
}
