//! The request bodies as `/openapi.json` states them. The routes read these bodies by hand (the payload with a
//! fast parser, the passwords as single members of any object), so these types exist only to document the shapes
//! that are accepted: every member the server requires is `required` here, so a schema fuzzer's valid requests
//! are the server's valid requests.
#![allow(dead_code)] // documentation types: never built, only described

use utoipa::ToSchema;

/// One key press; `code` is the DOM `KeyboardEvent.code` (e.g. `KeyT`). Times are ms.
#[derive(ToSchema)]
#[schema(as = KeyEvent)]
#[allow(non_snake_case)]
pub struct KeyEventDoc {
    code: String,
    downTime: f64,
    upTime: f64,
}

/// One sampled mouse position.
#[derive(ToSchema)]
#[schema(as = MousePoint)]
pub struct MousePointDoc {
    t: f64,
    x: f64,
    y: f64,
}

/// One mouse click; `duration` is press-to-release in ms.
#[derive(ToSchema)]
#[schema(as = Click)]
pub struct ClickDoc {
    t: f64,
    x: Option<f64>,
    y: Option<f64>,
    button: Option<i64>,
    duration: f64,
}

/// One activity session as the extension sends it (times in ms from `performance.now()`).
#[derive(ToSchema)]
#[schema(as = SessionPayload)]
#[allow(non_snake_case)]
pub struct PayloadDoc {
    startTimestamp: f64,
    endTimestamp: f64,
    keyEvents: Vec<KeyEventDoc>,
    mousePaths: Vec<Vec<MousePointDoc>>,
    clicks: Vec<ClickDoc>,
}

/// `{"password": "…"}` (other members are ignored).
#[derive(ToSchema)]
pub struct PasswordBody {
    #[schema(min_length = 1)]
    password: String,
}

/// `{"old_password": "…", "new_password": "…"}`.
#[derive(ToSchema)]
pub struct ChangePasswordBody {
    #[schema(min_length = 1)]
    old_password: String,
    #[schema(min_length = 1)]
    new_password: String,
}
