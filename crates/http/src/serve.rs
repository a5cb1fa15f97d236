//! Serving: bind, accept, and shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::Uri;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower::util::MapRequestLayer;
use tower::{Layer, ServiceExt};

use crate::AppState;

/// How long shutdown waits for background jobs (training, webhook retries) before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
/// signals long-lived connections through `state.shutdown`, and waits for background jobs.
///
/// The accept loop is ours rather than `axum::serve`'s for two limits that one leaves out: a header-read timeout
/// (also the idle timeout of a kept-alive connection, since the timer runs while hyper waits for the next request's
/// head), and a cap on open connections below the open-file limit, so silent sockets can neither pile up forever
/// nor take the descriptors the database and `/health` need.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // `/api/anomalies/` and `/api/anomalies` are the same resource (the dashboard uses both); no redirects.
    let app = MapRequestLayer::new(trim_trailing_slash).layer(app);
    // HTTP/1.1 only: both clients (the extension, the dashboard) speak it over plain HTTP, where browsers never use
    // HTTP/2, and hyper-util's protocol detection would wait for a silent client's first bytes with no timeout.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(
            state.config.header_read_timeout_secs.max(1),
        ));
    let cap = state.config.connection_cap();
    let permits = Arc::new(Semaphore::new(cap));
    tracing::debug!(max_connections = cap, "accepting connections");
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first: at the cap, new clients wait in the kernel's backlog instead of costing a descriptor.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: pause briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (a WebSocket analysis frame, a short JSON answer) go out at once instead of waiting for
        // Nagle's algorithm to meet the client's delayed ACK, which costs up to tens of milliseconds per reply.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let stop = state.shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    // Finish the request in flight, then close; an idle connection closes at once.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tracing::info!("shutting down: finishing in-flight requests");
    state.shutdown.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open at shutdown; closing them"
        );
    }
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
