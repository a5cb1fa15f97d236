use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vigil_http::HttpConfig;
use vigil_store::{Store, StoreOptions};

use crate::logging::LogFormat;

/// Vigil: says, fast and with evidence, when behaviour or an event stream is off.
///
/// With no subcommand, `vigil` serves the HTTP API (same as `vigil serve`). Every setting can also come from the
/// environment or a `.env` file in the working directory (see `.env.example`).
#[derive(Debug, Parser)]
#[command(
    name = "vigil",
    version,
    args_conflicts_with_subcommands = true,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Some(Command::Serve(args)) => args.log_format,
            _ => self.serve.log_format,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve(Box<ServeArgs>),
    /// Persistence barcodes (Vietoris–Rips) of a point cloud or distance matrix, in Ripser's formats.
    Tda(crate::cmd::tda::TdaArgs),
    /// Fit an Isolation Forest on one CSV and print the score of every row of another.
    Iforest(crate::cmd::iforest::IforestArgs),
    /// Manage TopoForge accounts (e.g. create the first admin).
    User {
        #[command(subcommand)]
        command: crate::cmd::user::UserCommand,
    },
    /// Manage TopoForge data sources (e.g. load the built-in catalogue of public feeds).
    Sources {
        #[command(subcommand)]
        command: crate::cmd::sources::SourcesCommand,
    },
    /// Import users and feature vectors from the Python MaxiDOM backend (maxidom.db + user_data/).
    ImportMaxidom(crate::cmd::import_maxidom::ImportMaxidomArgs),
}

/// Defaults of the binary's own settings (the feature crates' live in their `config` modules).
pub mod defaults {
    pub const DATA_DIR: &str = "./data";
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: u16 = 8000;
}

/// Where the data lives. Every command that touches stored data takes these.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory for the embedded SQLite database and generated development secrets.
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,

    /// Database URL (`postgres://…` to scale out, or `sqlite://…`); default: SQLite `vigil.db` in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Maximum PostgreSQL connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = StoreOptions::DEFAULT_MAX_CONNECTIONS)]
    pub database_max_connections: u32,
}

impl StorageArgs {
    /// Opens the configured database, creating and migrating it as needed.
    pub async fn open(&self) -> anyhow::Result<Store> {
        let options = StoreOptions {
            max_connections: self.database_max_connections,
            ..StoreOptions::default()
        };
        let store = match self.database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => Store::connect(url, &options).await?,
            None => Store::open_data_dir(&self.data_dir, &options).await?,
        };
        Ok(store)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "VIGIL_HOST", default_value = defaults::HOST)]
    pub host: String,

    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "VIGIL_PORT", default_value_t = defaults::PORT)]
    pub port: u16,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub maxidom: vigil_maxidom::MaxidomConfig,

    #[command(flatten)]
    pub accounts: vigil_accounts::AccountsConfig,

    #[command(flatten)]
    pub anomalies: vigil_anomalies::AnomaliesConfig,

    #[command(flatten)]
    pub realtime: vigil_realtime::RealtimeConfig,
}
