//! Malformed payloads: clear 4xx and nothing changed.

use crate::helpers::{apps, enroll, new_id, post_declared_length, post_raw, status_of};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_biometrics::synth::Persona;
use vigil_biometrics::synth::SessionGenerator;
use vigil_biometrics::synth::Shape;
use vigil_maxidom::MaxidomConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_get_clear_4xx_and_change_nothing() {
    for app in apps(MaxidomConfig::default()).await {
        let l = app.label;
        let id = new_id();
        enroll(&app, &id, "pw").await;
        let path = format!("/api/train/{id}");
        let good = r#"{"startTimestamp":0,"endTimestamp":1000,"keyEvents":[],"mousePaths":[[]],"clicks":[]}"#;
        let (s, text) = post_raw(&app, &path, good.as_bytes().to_vec()).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: empty lists and paths are valid: {text}"
        );
        let cases: [(&str, &str); 7] = [
            (
                r#"{"startTimestamp":"0","endTimestamp":1000,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
                "startTimestamp",
            ),
            (
                r#"{"startTimestamp":0,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
                "endTimestamp",
            ),
            (
                r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[{"code":"KeyA","downTime":1}],"mousePaths":[],"clicks":[]}"#,
                "keyEvents[0]",
            ),
            (
                r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[[{"t":1,"x":null,"y":2}]],"clicks":[]}"#,
                "mousePaths[0][0].x",
            ),
            (
                r#"{"startTimestamp":NaN,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#,
                "invalid payload",
            ),
            (
                r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":{},"mousePaths":[],"clicks":[]}"#,
                "keyEvents",
            ),
            ("", "invalid payload"),
        ];
        for (body, mention) in cases {
            for route in ["train", "score"] {
                let (s, text) = post_raw(
                    &app,
                    &format!("/api/{route}/{id}"),
                    body.as_bytes().to_vec(),
                )
                .await;
                assert_eq!(
                    s,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{l}: {route} {body}: {text}"
                );
                let detail = serde_json::from_str::<Value>(&text).unwrap()["detail"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(
                    detail.contains(mention),
                    "{l}: {detail:?} should mention {mention}"
                );
            }
        }
        // A large but valid body (≈ 5 MB of mouse points) is accepted; one over the limit is a 413.
        let mut g = SessionGenerator::new(Persona::bob(), 3);
        let big = serde_json::to_vec(&g.payload(Shape {
            mouse_points: 150_000,
            key_events: 10,
        }))
        .unwrap();
        assert!(big.len() > 4_500_000, "{}", big.len());
        let (s, text) = post_raw(&app, &path, big).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{l}: {}",
            text.get(..200).unwrap_or(&text)
        );
        let s = post_declared_length(&app, &path, 17 * 1024 * 1024).await;
        assert_eq!(s, 413, "{l}: a body declared over the limit is refused");
        let st = status_of(&app, &id).await;
        assert_eq!(
            st["vectors_stored"],
            json!(2),
            "{l}: only the two valid bodies were stored: {st}"
        );
        // Bad ids on every route.
        let (s, _) = post_raw(&app, "/api/train/ABC", good.as_bytes().to_vec()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let r = app
            .client
            .get(app.url("/api/profile/3F1C2D9E-8A4B-4C5D-9E6F-0A1B2C3D4E5F/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let r = app
            .client
            .get(app.url(&format!("/api/profile/{}/status", new_id())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        app.stop().await;
    }
}
