//! `vigil import-maxidom --db maxidom.db --user-data DIR`: moves a reference MaxiDOM backend's users and
//! feature vectors into Vigil's database, with a progress bar and a report of everything skipped and why.
//! Safe to run twice (nothing is imported twice); profiles that are ready get their models trained.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use vigil_maxidom::import::import_reference;
use vigil_maxidom::{Maxidom, MaxidomConfig};

use crate::cli::StorageArgs;

/// Import the reference backend's `maxidom.db` users and `user_data/<profile_id>/features.csv` vectors.
#[derive(Debug, Clone, Args)]
pub struct ImportMaxidomArgs {
    /// The reference's SQLite database (table `users(profile_id, password_hash)`).
    #[arg(long = "db", value_name = "FILE")]
    pub reference_db: Option<PathBuf>,

    /// The reference's `user_data` folder (one `<profile_id>/features.csv` per profile).
    #[arg(long, value_name = "DIR")]
    pub user_data: Option<PathBuf>,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub maxidom: MaxidomConfig,
}

pub fn run(args: ImportMaxidomArgs) -> anyhow::Result<()> {
    if args.reference_db.is_none() && args.user_data.is_none() {
        anyhow::bail!("nothing to import: give --db FILE, --user-data DIR, or both");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(import(args))
}

async fn import(args: ImportMaxidomArgs) -> anyhow::Result<()> {
    let store = args.storage.open().await.context("opening the database")?;
    let service = Maxidom::new(args.maxidom.clone());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} importing [{bar:40}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = import_reference(
        &store,
        &service,
        args.reference_db.as_deref(),
        args.user_data.as_deref(),
        &mut progress,
    )
    .await?;
    bar.finish_and_clear();
    println!("users imported:             {}", report.users_imported);
    println!(
        "users already enrolled:     {} (passwords kept)",
        report.users_already_enrolled
    );
    println!(
        "profiles without password:  {} (created from feature files; they can enroll)",
        report.profiles_created_without_password
    );
    println!("vectors imported:           {}", report.vectors_imported);
    println!(
        "vectors already present:    {}",
        report.vectors_already_present
    );
    if report.timestamps_defaulted > 0 {
        println!(
            "unreadable timestamps:      {} (imported with the import time)",
            report.timestamps_defaulted
        );
    }
    println!("models trained:             {}", report.models_trained);
    println!("skipped:                    {}", report.skipped.len());
    for s in &report.skipped {
        println!("  {}: {}", s.item, s.reason);
    }
    store.close().await;
    Ok(())
}
