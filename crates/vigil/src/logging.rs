use tracing_subscriber::EnvFilter;

/// How log lines look: `pretty` for people at a terminal, `json` for log shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default: info for Vigil, warn for libraries).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,vigil=info,vigil_http=info,vigil_store=info,vigil_maxidom=info,vigil_accounts=info,vigil_realtime=info,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
