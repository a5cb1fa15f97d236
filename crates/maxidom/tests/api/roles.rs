//! The MaxiDOM routes that check a role (table-driven). The profile routes themselves are guarded by the
//! profile's password, not by a role (see `enroll`).

use crate::helpers::{apps, enroll, new_id};
use reqwest::StatusCode;
use vigil_http::Role;
use vigil_http::testing::RoleCase;
use vigil_maxidom::MaxidomConfig;

#[tokio::test]
async fn profile_admin_answers_by_role() {
    for app in apps(MaxidomConfig::default()).await {
        let (_, viewer) = app.user_with_role("mv", Role::Viewer).await;
        let (_, analyst) = app.user_with_role("ma", Role::Analyst).await;
        let (_, admin) = app.user_with_role("mad", Role::Admin).await;
        let id = new_id();
        enroll(&app, &id, "s3cret").await;

        let cases = [RoleCase::get("/api/maxidom/profiles", Role::Admin)];
        let tokens = [
            (Role::Viewer, viewer.as_str()),
            (Role::Analyst, analyst.as_str()),
            (Role::Admin, admin.as_str()),
        ];
        app.check_roles(&cases, &tokens).await;

        // What the admin is allowed to see: the enrolled profile.
        let (s, page) = app.api_as(&admin).get("/api/maxidom/profiles").await;
        assert_eq!(s, StatusCode::OK, "{}: {page}", app.label);
        assert_eq!(page["total"], 1, "{}: {page}", app.label);
        assert_eq!(page["data"][0]["profile_id"], id.as_str(), "{}", app.label);
        app.stop().await;
    }
}
