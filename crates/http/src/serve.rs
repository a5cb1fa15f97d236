//! Serving: bind, accept, and shut down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::Uri;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower::Layer;
use tower::util::MapRequestLayer;

use crate::AppState;

/// How long shutdown waits for background jobs (training, webhook retries) before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
/// signals long-lived connections through `state.shutdown`, and waits for background jobs.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // `/api/anomalies/` and `/api/anomalies` are the same resource (the dashboard uses both); no redirects.
    let app = MapRequestLayer::new(trim_trailing_slash).layer(app);
    let token = state.shutdown.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        token.cancel();
    };
    // Small writes (a WebSocket analysis frame, a short JSON answer) go out at once instead of waiting for Nagle's
    // algorithm to meet the client's delayed ACK, which costs up to tens of milliseconds per reply.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
    )
    .with_graceful_shutdown(signal)
    .await?;
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            pending = state.tasks.len(),
            "background jobs still running at shutdown; abandoning them"
        );
    }
    state.store.close().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// `/api/anomalies/` → `/api/anomalies`, keeping the query. Swagger UI's own `/docs/` is left alone: it redirects
/// `/docs` to `/docs/` and trimming that would loop.
pub fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/docs") {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match request.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(pq) = rebuilt.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// Registers for SIGINT (Ctrl-C) and SIGTERM *now* and returns a future that resolves on either.
///
/// Registration is eager on purpose: a signal that arrives between "listening" and the first poll of a lazily
/// registered handler would otherwise kill the process without a graceful shutdown.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static>
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT"),
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trimmed(uri: &str) -> String {
        let request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .expect("request");
        trim_trailing_slash(request).uri().to_string()
    }

    #[test]
    fn trims_collection_slashes_but_not_docs() {
        assert_eq!(trimmed("/api/anomalies/"), "/api/anomalies");
        assert_eq!(
            trimmed("/api/anomalies/?page=2&limit=5"),
            "/api/anomalies?page=2&limit=5"
        );
        assert_eq!(trimmed("/api/anomalies"), "/api/anomalies");
        assert_eq!(trimmed("/"), "/");
        assert_eq!(trimmed("/docs/"), "/docs/");
    }
}
