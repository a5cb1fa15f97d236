//! Slow subscribers and disconnects.

use crate::helpers::{apps, connect, open};
use futures_util::SinkExt;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use vigil_http::Role;
use vigil_realtime::RealtimeConfig;

#[tokio::test]
async fn slow_subscribers_are_dropped_and_disconnects_free_resources() {
    let cfg = RealtimeConfig {
        stream_subscriber_queue: 4,
        ..open()
    };
    for (app, rt) in apps(cfg.clone()).await {
        let (_, analyst) = app.user_with_role("watcher", Role::Viewer).await;
        let mut slow = connect(&app, &format!("?token={analyst}")).await;
        slow.send(Message::text(r#"{"type":"subscribe"}"#))
            .await
            .unwrap();
        for _ in 0..50 {
            if rt.hub().subscribers() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (rt.hub().subscribers(), rt.hub().registered_sockets()),
            (1, 1),
            "{}",
            app.label
        );
        // Far more than the queue holds, published at once: publishing never waits for the socket.
        let big = Arc::<str>::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(1000)));
        let started = std::time::Instant::now();
        for _ in 0..500 {
            rt.hub().publish(big.clone());
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "publishing blocked"
        );
        // The socket is closed with a policy-violation frame once it notices it lagged.
        let mut closed = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    closed = frame;
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                _ => break,
            }
        }
        let frame = closed.expect("close frame");
        assert_eq!(u16::from(frame.code), 1008, "{}", app.label);
        assert!(frame.reason.as_str().contains("too slow"));
        for _ in 0..100 {
            if rt.hub().subscribers() == 0 && rt.hub().registered_sockets() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (rt.hub().subscribers(), rt.hub().registered_sockets()),
            (0, 0),
            "{}",
            app.label
        );
        app.stop().await;
    }
}
