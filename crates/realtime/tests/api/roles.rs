//! Every stream HTTP route, by role (table-driven). The SSE stream and the socket have their own tests
//! (`sse`, `watch`, `socket_auth`): an open stream never ends, so it does not fit a request/answer table.

use crate::helpers::{apps, quick_config};
use serde_json::json;
use vigil_http::Role;
use vigil_http::testing::RoleCase;
use vigil_realtime::RealtimeConfig;

#[tokio::test]
async fn every_stream_route_answers_by_role() {
    // The shipped defaults: no anonymous feeding or subscribing.
    for (app, _rt) in apps(RealtimeConfig::default()).await {
        let (_, viewer) = app.user_with_role("rv", Role::Viewer).await;
        let (_, analyst) = app.user_with_role("ra", Role::Analyst).await;
        let (_, admin) = app.user_with_role("rad", Role::Admin).await;
        // The current window exists only once the stream has an event.
        let (s, body) = app
            .api_as(&analyst)
            .post("/api/ingest", &json!({"stream": "roles", "value": 1}))
            .await;
        assert_eq!(s, 200, "{}: {body}", app.label);

        let cases = [
            RoleCase::get("/api/streams", Role::Viewer),
            RoleCase::get("/api/streams/roles/analysis", Role::Viewer),
            RoleCase::get("/api/streams/roles/config", Role::Viewer),
            RoleCase::put("/api/streams/roles/config", quick_config(), Role::Analyst),
            RoleCase::post(
                "/api/ingest",
                json!({"stream": "roles", "value": 2}),
                Role::Analyst,
            ),
        ];
        let tokens = [
            (Role::Viewer, viewer.as_str()),
            (Role::Analyst, analyst.as_str()),
            (Role::Admin, admin.as_str()),
        ];
        app.check_roles(&cases, &tokens).await;
        app.stop().await;
    }
}
