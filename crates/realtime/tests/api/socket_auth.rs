//! Socket roles, required stream auth, anonymous streams, session end.

use crate::helpers::{Ws, apps, connect, next_json, open};
use futures_util::SinkExt;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use vigil_http::Role;
use vigil_realtime::RealtimeConfig;

/// The next close frame's code and reason, skipping other frames, or `None` when none comes within `wait`.
async fn next_close(ws: &mut Ws, wait: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return Some((u16::from(f.code), f.reason.as_str().to_owned()));
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

#[tokio::test]
async fn stream_auth_can_be_required() {
    let cfg = RealtimeConfig {
        stream_require_auth: true,
        ..open()
    };
    for (app, _rt) in apps(cfg.clone()).await {
        assert!(
            tokio_tungstenite::connect_async(app.ws_url("/ws/stream"))
                .await
                .is_err(),
            "{}",
            app.label
        );
        assert!(
            tokio_tungstenite::connect_async(app.ws_url("/ws/stream?token=bogus"))
                .await
                .is_err()
        );
        let (_, analyst) = app.user_with_role("a2", Role::Analyst).await;
        let mut ws = connect(&app, &format!("?token={analyst}")).await;
        ws.send(Message::text(r#"{"value":1}"#)).await.unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
            "analysis"
        );
        let r = app
            .client
            .get(app.url("/api/realtime/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{}", app.label);
        app.stop().await;
    }
}

/// The hardening review's socket attacks, kept: with the shipped defaults an anonymous socket can neither feed
/// events nor receive the broadcast, a viewer cannot feed events (as on `POST /api/ingest`), and a session that
/// ends in the database (revoked tokens, deactivation) closes its socket with 1008 and ends its SSE stream.
#[tokio::test]
async fn socket_roles_and_session_end() {
    let cfg = RealtimeConfig {
        stream_session_recheck_ms: 100,
        ..RealtimeConfig::default()
    };
    for (app, _rt) in apps(cfg).await {
        let label = app.label;
        let mut anon = connect(&app, "").await;
        anon.send(Message::text(r#"{"value":1}"#)).await.unwrap();
        let e = next_json(&mut anon, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "error", "{label}: {e}");
        assert!(
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("STREAM_ANONYMOUS_STREAMS"),
            "{e}"
        );
        anon.send(Message::text(r#"{"type":"subscribe"}"#))
            .await
            .unwrap();
        let e = next_json(&mut anon, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "error", "{label}: {e}");
        let r = app
            .client
            .get(app.url("/api/realtime/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{label}");

        let (viewer_id, viewer) = app.user_with_role("vera", Role::Viewer).await;
        let mut v = connect(&app, &format!("?token={viewer}")).await;
        v.send(Message::text(r#"{"value":1}"#)).await.unwrap();
        let e = next_json(&mut v, Duration::from_secs(5)).await.unwrap();
        assert_eq!(e["type"], "error", "{label}: {e}");
        assert!(
            e["detail"].as_str().unwrap_or("").contains("analyst"),
            "{e}"
        );

        let (analyst_id, analyst) = app.user_with_role("andy", Role::Analyst).await;
        let mut a = connect(&app, &format!("?token={analyst}")).await;
        a.send(Message::text(r#"{"value":1,"stream":"s"}"#))
            .await
            .unwrap();
        let r = next_json(&mut a, Duration::from_secs(5)).await.unwrap();
        assert_eq!(r["type"], "analysis", "{label}: {r}");
        let sse = app
            .client
            .get(app.url(&format!("/api/realtime/stream?token={analyst}")))
            .send()
            .await
            .unwrap();
        assert_eq!(sse.status().as_u16(), 200, "{label}");
        // Logout everywhere, as the accounts routes do it: the account's session generation moves on.
        vigil_store::tokens::end_sessions(&app.state.store, &analyst_id)
            .await
            .unwrap();
        let (code, reason) = next_close(&mut a, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{label}: the socket of a revoked session stays open"));
        assert_eq!(code, 1008, "{label}");
        assert!(reason.contains("revoked"), "{label}: {reason}");
        let ended = tokio::time::timeout(Duration::from_secs(5), sse.bytes()).await;
        assert!(
            ended.is_ok(),
            "{label}: the SSE stream of a revoked session goes on"
        );

        // Deactivation ends the viewer's socket too.
        let deactivate = vigil_store::users::UserPatch {
            is_active: Some(false),
            ..Default::default()
        };
        vigil_store::users::update(&app.state.store, &viewer_id, &deactivate)
            .await
            .unwrap();
        let (code, _) = next_close(&mut v, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{label}: a deactivated account's socket stays open"));
        assert_eq!(code, 1008, "{label}");
        app.stop().await;
    }
}

/// An operator can open named streams to anonymous sockets (the TopoForge dashboard forwards public feed events to
/// `default` over one); every other stream stays closed to them.
#[tokio::test]
async fn anonymous_sockets_feed_only_the_streams_the_operator_names() {
    let cfg = RealtimeConfig {
        stream_anonymous_streams: "default, public".into(),
        ..RealtimeConfig::default()
    };
    for (app, _rt) in apps(cfg).await {
        let mut anon = connect(&app, "").await;
        for (frame, expected) in [
            (r#"{"value":1}"#, "analysis"),
            (r#"{"value":1,"stream":"public"}"#, "analysis"),
            (r#"{"value":1,"stream":"payments"}"#, "error"),
            (
                r#"{"type":"event","payload":{"value":2,"stream":"default"}}"#,
                "analysis",
            ),
        ] {
            anon.send(Message::text(frame)).await.unwrap();
            let r = next_json(&mut anon, Duration::from_secs(5)).await.unwrap();
            assert_eq!(r["type"], expected, "{} {frame}: {r}", app.label);
        }
        app.stop().await;
    }
}
