//! `/redoc`: the ReDoc reference page, served from a vendored bundle so it works offline.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

const BUNDLE: &[u8] = include_bytes!("../assets/redoc/redoc.standalone.js");

const PAGE: &str = r#"<!DOCTYPE html>
<html>
  <head>
    <title>Vigil API reference</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>body { margin: 0; padding: 0; }</style>
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/redoc/redoc.standalone.js"></script>
  </body>
</html>
"#;

/// The page and its script. The spec itself is served at `/openapi.json` by the Swagger UI router.
pub fn router<S: Clone + Send + Sync + 'static>(_api: utoipa::openapi::OpenApi) -> Router<S> {
    Router::new()
        .route("/redoc", get(|| async { Html(PAGE) }))
        .route(
            "/redoc/redoc.standalone.js",
            get(|| async {
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            "application/javascript; charset=utf-8",
                        ),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    BUNDLE,
                )
                    .into_response()
            }),
        )
}
