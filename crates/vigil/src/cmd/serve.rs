use anyhow::Context;
use tokio::net::TcpListener;
use vigil_accounts::ratelimit::{ApiLimit, limited};
use vigil_http::AppState;
use vigil_http::utoipa_axum::router::OpenApiRouter;

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = args.storage.open().await.context("opening the database")?;
    let secret = args.http.resolve_jwt_secret(&args.storage.data_dir)?;
    let state = AppState::new(store, args.http.clone(), &secret);

    vigil_accounts::bootstrap_admin(&state, &args.accounts)
        .await
        .context("creating the first admin")?;
    // Each feature crate: `Feature::new(config…)` (its process-local side), then `.router(&state)`. One alert
    // dispatcher: the stream side delivers through the anomaly log's, so every alert shares its queue, limits and
    // `WEBHOOK_*` settings.
    let anomalies = vigil_anomalies::Anomalies::new(&args.anomalies);
    let realtime = vigil_realtime::Realtime::new(args.realtime.clone(), &anomalies);
    // The TopoForge API's general per-address limit: the accounts router applies it itself; the anomaly log and
    // the stream routes get it here (ingest exempt). MaxiDOM, /health and /metrics are deliberately outside it
    // (`vigil_accounts::ratelimit::ApiLimit` says why).
    let limit = ApiLimit::new(&state, &args.accounts);
    let features: OpenApiRouter<AppState> = OpenApiRouter::new()
        .merge(vigil_maxidom::Maxidom::new(args.maxidom.clone()).router(&state))
        .merge(vigil_accounts::Accounts::new(args.accounts.clone()).router(&state))
        .merge(limited(anomalies.router(&state), &limit))
        .merge(limited(realtime.router(&state), &limit))
        .merge(vigil_console::router());
    let app = vigil_http::app::build(state.clone(), features);

    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    let shutdown = vigil_http::serve::shutdown_signal().context("installing signal handlers")?;
    tracing::info!(%addr, "listening");
    // A plain line on stdout for scripts and tests that start us on port 0.
    println!("vigil listening on http://{addr}");
    vigil_http::serve::serve(listener, app, state, shutdown).await?;
    Ok(())
}
