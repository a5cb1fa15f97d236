//! `vigil iforest`: fit an Isolation Forest on one CSV file and print the `score_samples` value
//! of every row of another, one per line (scikit-learn's convention: lower is more abnormal).
//!
//! Thin by design: CSV parsing (with line-numbered errors) and the model live in `vigil-iforest`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use vigil_iforest::{Contamination, IsolationForest, MaxSamples, Params, csv};

#[derive(clap::Args, Debug)]
pub struct IforestArgs {
    /// Training rows: CSV of numbers, with or without a header row.
    #[arg(long, value_name = "TRAIN.csv")]
    pub train: PathBuf,
    /// Rows to score: CSV with the same number of columns as TRAIN.
    #[arg(long, value_name = "TEST.csv")]
    pub score: PathBuf,
    /// Number of trees.
    #[arg(long, default_value_t = 100)]
    pub trees: usize,
    /// Rows per tree: `auto` (min(256, n)), a row count, or a fraction in (0, 1].
    #[arg(long, default_value = "auto")]
    pub max_samples: MaxSamples,
    /// `auto` or the expected outlier fraction in (0, 0.5]; only moves the decision threshold,
    /// so it does not change the printed scores.
    #[arg(long, default_value = "auto")]
    pub contamination: Contamination,
    /// Random seed: the same seed gives the same scores on any machine.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: IforestArgs) -> anyhow::Result<()> {
    let train = csv::read_matrix_path(&args.train)
        .with_context(|| format!("reading {}", args.train.display()))?;
    let test = csv::read_matrix_path(&args.score)
        .with_context(|| format!("reading {}", args.score.display()))?;
    if test.n_cols != train.n_cols {
        bail!(
            "{} has {} columns but {} has {}",
            args.score.display(),
            test.n_cols,
            args.train.display(),
            train.n_cols
        );
    }
    let params = Params {
        n_estimators: args.trees,
        max_samples: args.max_samples,
        contamination: args.contamination,
        seed: args.seed,
        ..Params::default()
    };
    let forest = IsolationForest::fit_matrix(&train.data, train.n_cols, &params)
        .context("fitting the isolation forest")?;
    let scores = forest.score_samples_batch(&test.data).context("scoring")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in scores {
        writeln!(out, "{s}")?;
    }
    out.flush()?;
    Ok(())
}
