//! `vigil sources load-catalog`: load the built-in catalogue of public event feeds into the sources table.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::StorageArgs;

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Insert (or refresh) the built-in public event feeds: Wikipedia recent changes, GitHub events, USGS
    /// earthquakes, … Idempotent; feeds switched off by an analyst stay off.
    LoadCatalog(LoadCatalogArgs),
}

#[derive(Debug, Args)]
pub struct LoadCatalogArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
}

pub fn run(command: SourcesCommand) -> anyhow::Result<()> {
    match command {
        SourcesCommand::LoadCatalog(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(async move {
                let store = args.storage.open().await.context("opening the database")?;
                let loaded = vigil_accounts::catalog::load_catalog(&store).await;
                store.close().await;
                let (added, total) = loaded.context("loading the catalogue")?;
                println!(
                    "catalogue loaded: {added} new, {} already present ({total} feeds)",
                    total - added
                );
                Ok(())
            })
        }
    }
}
