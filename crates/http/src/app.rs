//! Assembles the HTTP application: the feature routers, the core routes (`/health`, `/metrics`, API docs) and the
//! middleware every request passes through.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::{ApiJson, AppState, Error};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil",
        description = "Behavioural-biometrics continuous authentication (MaxiDOM) and topological anomaly detection on event streams (TopoForge).",
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole application as one router, ready to serve. `features` are the feature crates' routers merged.
pub fn build(state: AppState, features: OpenApiRouter<AppState>) -> Router {
    // Install the recorder before the first request, or early requests are recorded nowhere.
    let _ = crate::metrics::handle();
    let (api_routes, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .merge(features)
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document_body_refusals(&mut api, state.config.max_body_bytes);

    let docs = Router::new()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api.clone()))
        .merge(crate::redoc::router(api));

    api_routes
        .route("/metrics", axum::routing::get(render_metrics))
        .merge(docs)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(refuse_nul_in_uri))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CompressionLayer::new().gzip(true))
        .layer(cors(&state.config.cors_origins))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(AccessSpan))
        .with_state(state)
}

/// The request span of the access log: tower-http's default fields (method, URI, version), with the values of
/// credential parameters (`?token=` on stream endpoints, `?ticket=` on downloads) redacted from the URI, so a
/// debug log or a logged failure never holds a usable credential.
#[derive(Clone, Copy, Debug)]
struct AccessSpan;

impl<B> tower_http::trace::MakeSpan<B> for AccessSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let uri = request.uri();
        let shown = match uri.query() {
            Some(q) => format!("{}?{}", uri.path(), crate::ticket::redact_query(q)),
            None => uri.path().to_owned(),
        };
        // tower-http's own target, so `RUST_LOG=tower_http=debug` shows request spans as it always did.
        tracing::debug_span!(
            target: "tower_http::trace::make_span",
            "request",
            method = %request.method(),
            uri = %shown,
            version = ?request.version(),
        )
    }
}

/// Each operation of `api`, with its path.
pub fn operations_mut(
    api: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&str, &mut utoipa::openapi::path::Operation)> {
    api.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.options,
            &mut item.head,
            &mut item.trace,
        ]
        .into_iter()
        .filter_map(Option::as_mut)
        .map(move |op| (path.as_str(), op))
    })
}

/// Adds `status` with `description` to an operation that does not document it yet (a route's own wording wins).
pub fn document_response(
    op: &mut utoipa::openapi::path::Operation,
    status: u16,
    description: &str,
) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| utoipa::openapi::Response::new(description).into());
}

/// The refusals that come from the shared body readers rather than from a handler, stated on every operation they
/// apply to: 413 on every operation with a body (`MAX_BODY_BYTES`, [`crate::RawBody`]), 415 on every JSON body
/// ([`crate::JsonBytes`]).
fn document_body_refusals(api: &mut utoipa::openapi::OpenApi, max_body_bytes: usize) {
    let too_large = format!("The body is larger than MAX_BODY_BYTES ({max_body_bytes} bytes)");
    for (_, op) in operations_mut(api) {
        let Some(body) = &op.request_body else {
            continue;
        };
        let json = body.content.keys().any(|t| crate::json::is_json_type(t));
        document_response(op, 413, &too_large);
        if json {
            document_response(
                op,
                415,
                "The body is not declared as JSON (Content-Type application/json required)",
            );
        }
    }
}

/// Refuses a path or query that decodes to a NUL character (U+0000), before routing: PostgreSQL cannot store one
/// in text and answers its parameters with an error, SQLite would store what the other backend refuses, and no
/// legitimate id, filter or name contains one. JSON bodies get the same rule in [`crate::json::parse`].
async fn refuse_nul_in_uri(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri();
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
    };
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return Error::unprocessable("The request's path or query contains a NUL character (%00).")
            .into_response();
    }
    next.run(request).await
}

/// CORS as the clients need it: the extension calls from `chrome-extension://…` with credentials, so `*` means
/// "echo the caller's origin" (a literal `*` is not allowed with credentials); a list restricts to those origins.
fn cors(origins: &str) -> CorsLayer {
    let allow_origin = if origins.trim() == "*" || origins.trim().is_empty() {
        AllowOrigin::mirror_request()
    } else {
        let list: Vec<HeaderValue> = origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .filter_map(|o| o.parse().ok())
            .collect();
        AllowOrigin::list(list)
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
        .expose_headers([
            header::RETRY_AFTER,
            header::CONTENT_DISPOSITION,
            HeaderName::from_static("x-total-count"),
        ])
        .max_age(Duration::from_secs(600))
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Error::internal_msg("handler panicked").into_response()
}

async fn not_found() -> Error {
    Error::not_found("Not Found")
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}

async fn render_metrics() -> Response {
    let body = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Liveness and database reachability, and the state of the components features registered
/// ([`crate::health`], e.g. `nats` when the NATS ingest path is on).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`; `degraded` when the database does not answer (503) or a registered component is unhealthy (200).
    pub status: &'static str,
    pub database: &'static str,
    pub version: &'static str,
    /// Each registered component's state (e.g. `"nats": "connected"`); absent when none is registered.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, String>,
}

/// Liveness probe: answers 200 while the process and its database work, 503 when the database does not answer.
/// A registered component that is unhealthy (an optional input such as NATS being down) makes the status
/// `degraded` but keeps the 200: the process still serves its HTTP API.
#[utoipa::path(get, path = "/health", tag = "service", responses(
    (status = 200, description = "Healthy (or degraded by an optional component)", body = Health),
    (status = 503, description = "The database does not answer", body = Health),
))]
async fn health(State(state): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let report = state.health.report();
    let components_ok = report.values().all(|c| c.healthy);
    let components: BTreeMap<String, String> =
        report.into_iter().map(|(k, c)| (k, c.state)).collect();
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => ApiJson(Health {
            status: if components_ok { "ok" } else { "degraded" },
            database: "ok",
            version,
            components,
        })
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            ApiJson(Health {
                status: "degraded",
                database: "unreachable",
                version,
                components,
            }),
        )
            .into_response(),
    }
}
