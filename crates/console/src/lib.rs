//! # vigil-console: the web UI at `/`
//!
//! The console is hand-written ES modules and CSS (no framework, no build step, no Node for a user), embedded in
//! the binary with `include_bytes!` and served by the same router as the API:
//!
//! * `GET /` — the page shell (`assets/index.html`), `Cache-Control: no-cache` with an `ETag`, so a new build is
//!   picked up at once and an unchanged one costs a 304.
//! * `GET /console/assets/{version}/{file}` — the modules and the stylesheet. `version` is a hash of every
//!   embedded asset, so a URL names one build's bytes and is cached for a year (`immutable`); relative imports
//!   between modules stay inside the same version. A request for another version (a page loaded before an
//!   upgrade) gets today's bytes with `no-cache`.
//! * Every answer carries a strict Content-Security-Policy: scripts, styles, images and connections from this
//!   origin only (no inline script or style, no CDN, no external fonts), no framing.
//!
//! Why hand-written and unbundled: the whole console is 12 files, well under 100 KB (the compressed total is
//! measured by `tests/browser/run.mjs`, whose limit is 300 KB); a framework or a bundler would add more than the app itself and
//! a Node build step for every contributor, and ES modules load in parallel from one origin (the two largest are
//! `modulepreload`ed).
//!
//! Gzip comes from the application's compression layer like every other answer. Tokens live in the page's
//! `sessionStorage` and `Authorization` headers, never in URLs (the SSE feed is read with `fetch`, not
//! `EventSource`, for that reason).

use std::sync::OnceLock;
use vigil_http::axum;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use vigil_http::AppState;
use vigil_http::utoipa_axum::router::OpenApiRouter;

/// The Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            bytes: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything under `/console/assets/`; `index.html` is served at `/` only.
static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("charts.js", JS),
    asset!("dom.js", JS),
    asset!("overview.js", JS),
    asset!("stream.js", JS),
    asset!("anomalies.js", JS),
    asset!("alerts.js", JS),
    asset!("users.js", JS),
    asset!("maxidom.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

static INDEX: &[u8] = include_bytes!("../assets/index.html");

/// The build's asset version and the page shell with it filled in.
struct Build {
    version: String,
    index: Vec<u8>,
    index_etag: String,
}

fn build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let mut h = Sha256::new();
        for a in ASSETS {
            h.update(a.name.as_bytes());
            h.update((a.bytes.len() as u64).to_le_bytes());
            h.update(a.bytes);
        }
        h.update(INDEX);
        let version = hex::encode(&h.finalize()[..6]);
        let index = String::from_utf8_lossy(INDEX)
            .replace("{{VERSION}}", &version)
            .into_bytes();
        let index_etag = etag(&index);
        Build {
            version,
            index,
            index_etag,
        }
    })
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..8]))
}

/// The path of an asset in this build (what `index.html` links to).
pub fn asset_path(file: &str) -> String {
    format!("/console/assets/{}/{file}", build().version)
}

/// The console's routes, to merge into the feature routers (not part of the OpenAPI document).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/", get(index))
        .route("/console/assets/{version}/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    let b = build();
    respond(
        &headers,
        "text/html; charset=utf-8",
        &b.index,
        &b.index_etag,
        "no-cache",
    )
}

async fn asset(Path((version, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == file) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_SECURITY_POLICY, CSP)],
            axum::Json(serde_json_detail("No such console asset.")),
        )
            .into_response();
    };
    let cache = if version == build().version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let tag = etag(a.bytes);
    respond(&headers, a.mime, a.bytes, &tag, cache)
}

fn serde_json_detail(detail: &str) -> std::collections::BTreeMap<&'static str, String> {
    std::collections::BTreeMap::from([("detail", detail.to_owned())])
}

fn respond(
    headers: &HeaderMap,
    mime: &str,
    body: &[u8],
    tag: &str,
    cache: &'static str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    let tag = HeaderValue::from_str(tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    if fresh {
        return (StatusCode::NOT_MODIFIED, common, [(header::ETAG, tag)]).into_response();
    }
    let mime = HeaderValue::from_str(mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    (
        common,
        [(header::ETAG, tag), (header::CONTENT_TYPE, mime)],
        body.to_vec(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_links_assets_of_this_build() {
        let html = String::from_utf8_lossy(&build().index).into_owned();
        assert!(!html.contains("{{VERSION}}"));
        assert!(html.contains(&asset_path("app.js")));
        assert!(html.contains(&asset_path("app.css")));
        // No inline script or style: the CSP would block them.
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<style"));
        assert!(!html.contains("style=\""));
    }

    #[test]
    fn every_module_import_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = String::from_utf8_lossy(a.bytes);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line
                    .split(['\'', '"'])
                    .nth(1)
                    .and_then(|p| p.strip_prefix("./"))
                    .unwrap_or_else(|| panic!("{}: import not relative: {line}", a.name));
                assert!(
                    ASSETS.iter().any(|b| b.name == target),
                    "{} imports {target}, which is not embedded",
                    a.name
                );
            }
        }
    }
}
