//! `/api/enroll`, `/api/verify_password`, password change and `/api/reset_profile`, and the lockout.

use crate::helpers::{apps, enroll, new_id, status_of};
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use vigil_http::testing::TestApp;
use vigil_maxidom::MaxidomConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_verify_change_reset_and_their_errors() {
    for app in apps(MaxidomConfig::default()).await {
        let id = new_id();
        enrollment(&app, &id).await;
        verification(&app, &id).await;
        password_change(&app, &id).await;
        reset(&app, &id).await;
        app.stop().await;
    }
}

/// Enrollment: the password's errors, the answer's exact bytes, a second enrollment.
async fn enrollment(app: &TestApp, id: &str) {
    let l = app.label;
    // Enrollment.
    let (s, b) = app
        .api()
        .post(&format!("/api/enroll/{id}"), &json!({}))
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "Password not provided."})
        ),
        "{l}"
    );
    for bad in [
        json!({"password": ""}),
        json!({"password": 5}),
        json!({"password": null}),
        json!("pw"),
    ] {
        let (s, _) = app.api().post(&format!("/api/enroll/{id}"), &bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l}: {bad}");
    }
    let (s, b) = app
        .api()
        .post("/api/enroll/not-a-uuid", &json!({"password": "pw"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{l}: {b}");
    let r = app
        .client
        .post(app.url(&format!("/api/enroll/{id}")))
        .json(&json!({"password": "s3cret", "extra": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.unwrap(),
        format!(r#"{{"status":"enrollment successful","profile_id":"{id}"}}"#)
    );
    let (s, b) = app
        .api()
        .post(&format!("/api/enroll/{id}"), &json!({"password": "other"}))
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::CONFLICT,
            json!({"detail": "Profile already enrolled."})
        ),
        "{l}"
    );
}

/// Verification.
async fn verification(app: &TestApp, id: &str) {
    let l = app.label;
    // Verification.
    let (s, b) = app
        .api()
        .post(
            &format!("/api/verify_password/{}", new_id()),
            &json!({"password": "x"}),
        )
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::NOT_FOUND,
            json!({"detail": "User profile not found or not enrolled."})
        ),
        "{l}"
    );
    let (s, b) = app
        .api()
        .post(&format!("/api/verify_password/{id}"), &json!({}))
        .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "Password not provided."})
        ),
        "{l}"
    );
    assert_eq!(
        app.api()
            .post(
                &format!("/api/verify_password/{id}"),
                &json!({"password": "s3cret"})
            )
            .await
            .1,
        json!({"verified": true})
    );
    assert_eq!(
        app.api()
            .post(
                &format!("/api/verify_password/{id}"),
                &json!({"password": "nope"})
            )
            .await
            .1,
        json!({"verified": false})
    );
}

/// Password change.
async fn password_change(app: &TestApp, id: &str) {
    // Password change.
    let put = |body: Value| {
        let url = app.url(&format!("/api/profile/{id}/password"));
        let c = app.client.clone();
        async move {
            let r = c.put(url).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let both = json!({"detail": "Both 'old_password' and 'new_password' are required."});
    assert_eq!(
        put(json!({"old_password": "s3cret"})).await,
        (StatusCode::UNPROCESSABLE_ENTITY, both)
    );
    assert_eq!(
        put(json!({"old_password": "wrong", "new_password": "n"})).await,
        (
            StatusCode::FORBIDDEN,
            json!({"detail": "Incorrect current password."})
        )
    );
    assert_eq!(
        put(json!({"old_password": "s3cret", "new_password": "n3w"})).await,
        (
            StatusCode::OK,
            json!({"status": "password changed successfully"})
        )
    );
    assert_eq!(
        app.api()
            .post(
                &format!("/api/verify_password/{id}"),
                &json!({"password": "n3w"})
            )
            .await
            .1,
        json!({"verified": true})
    );
    assert_eq!(
        app.api()
            .post(
                &format!("/api/verify_password/{id}"),
                &json!({"password": "s3cret"})
            )
            .await
            .1,
        json!({"verified": false})
    );
}

/// Reset: 204 with an empty body, password kept; unknown profiles reset fine too.
async fn reset(app: &TestApp, id: &str) {
    // Reset: 204 with an empty body, password kept; unknown profiles reset fine too.
    let r = app
        .client
        .delete(app.url(&format!("/api/reset_profile/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = app
        .client
        .delete(app.url(&format!("/api/reset_profile/{}", new_id())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .client
        .delete(app.url("/api/reset_profile/.."))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.api()
            .post(
                &format!("/api/verify_password/{id}"),
                &json!({"password": "n3w"})
            )
            .await
            .1,
        json!({"verified": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_verify_password_with_retry_after() {
    for app in apps(MaxidomConfig::default()).await {
        let id = new_id();
        enroll(&app, &id, "right").await;
        // One success first: it resets the count, so five failures are needed afterwards.
        assert_eq!(
            app.api()
                .post(
                    &format!("/api/verify_password/{id}"),
                    &json!({"password": "right"})
                )
                .await
                .1,
            json!({"verified": true})
        );
        for _ in 0..5 {
            let (s, b) = app
                .api()
                .post(
                    &format!("/api/verify_password/{id}"),
                    &json!({"password": "guess"}),
                )
                .await;
            assert_eq!(
                (s, b),
                (StatusCode::OK, json!({"verified": false})),
                "{}",
                app.label
            );
        }
        let r = app
            .client
            .post(app.url(&format!("/api/verify_password/{id}")))
            .json(&json!({"password": "right"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{}", app.label);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        // The change-password route shares the limit, so it cannot be used to keep guessing.
        let r = app
            .client
            .put(app.url(&format!("/api/profile/{id}/password")))
            .json(&json!({"old_password": "right", "new_password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let st = status_of(&app, &id).await;
        assert!(st["password_locked_until"].as_i64().is_some(), "{st}");
        app.stop().await;
    }
}
