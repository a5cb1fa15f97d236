//! MaxiDOM settings; every one can be set by flag or environment. The quotas are chosen from the dev
//! protocol's accuracy curve (ARCHITECTURE.md, MaxiDOM), not the reference's 300/50/150/30.

use std::path::PathBuf;

use vigil_biometrics::lifecycle::{Quotas, RetrainPolicy};

/// Settings of the MaxiDOM routes (flattened into `vigil serve`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct MaxidomConfig {
    /// Stored vectors a profile needs before it is ready (and one modality must be at its quota too).
    #[arg(
        long = "maxidom-quota-total",
        env = "MAXIDOM_QUOTA_TOTAL",
        default_value_t = defaults::QUOTA_TOTAL
    )]
    pub quota_total: u64,
    /// Vectors with typing (typing_speed_kps > 0) the typing model needs.
    #[arg(
        long = "maxidom-quota-keyboard",
        env = "MAXIDOM_QUOTA_KEYBOARD",
        default_value_t = defaults::QUOTA_KEYBOARD
    )]
    pub quota_keyboard: u64,
    /// Vectors with mouse movement (avg_mouse_speed > 0) the mouse model needs.
    #[arg(
        long = "maxidom-quota-mouse",
        env = "MAXIDOM_QUOTA_MOUSE",
        default_value_t = defaults::QUOTA_MOUSE
    )]
    pub quota_mouse: u64,
    /// Vectors with digraph timings (avg_flight_time_digraph > 0) the typing model needs.
    #[arg(
        long = "maxidom-quota-digraph",
        env = "MAXIDOM_QUOTA_DIGRAPH",
        default_value_t = defaults::QUOTA_DIGRAPH
    )]
    pub quota_digraph: u64,
    /// Whether accepted sessions feed the retraining pool (the feedback loop). Off: models change only
    /// with profiling data (`/train`).
    #[arg(
        long = "maxidom-feedback",
        env = "MAXIDOM_FEEDBACK",
        default_value_t = defaults::FEEDBACK,
        action = clap::ArgAction::Set
    )]
    pub feedback: bool,
    /// Calibrated score a session needs to enter the retraining pool: only sessions at least as typical
    /// as this share of the owner's own are trusted to be the owner's, so an impostor that slips under the
    /// anomaly threshold does not teach the model.
    #[arg(
        long = "maxidom-pool-min-score",
        env = "MAXIDOM_POOL_MIN_SCORE",
        default_value_t = defaults::POOL_MIN_SCORE
    )]
    pub pool_min_score: f64,
    /// Accepted sessions in the retraining pool that trigger a retraining.
    #[arg(
        long = "maxidom-pool-size",
        env = "MAXIDOM_POOL_SIZE",
        default_value_t = defaults::POOL_SIZE
    )]
    pub pool_size: usize,
    /// Newest profiling vectors a training uses (the accuracy curve is flat beyond ~150).
    #[arg(
        long = "maxidom-retrain-profiling",
        env = "MAXIDOM_RETRAIN_PROFILING",
        default_value_t = defaults::RETRAIN_PROFILING
    )]
    pub retrain_profiling: usize,
    /// Newest pool vectors a retraining uses.
    #[arg(
        long = "maxidom-retrain-pool",
        env = "MAXIDOM_RETRAIN_POOL",
        default_value_t = defaults::RETRAIN_POOL
    )]
    pub retrain_pool: usize,
    /// Failed password checks admitted per window before verify_password answers 429.
    #[arg(
        long = "maxidom-lockout-failures",
        env = "MAXIDOM_LOCKOUT_FAILURES",
        default_value_t = defaults::LOCKOUT_FAILURES
    )]
    pub lockout_failures: u32,
    /// The guessing window in seconds; a locked profile answers 429 until it has passed.
    #[arg(
        long = "maxidom-lockout-window-secs",
        env = "MAXIDOM_LOCKOUT_WINDOW_SECS",
        default_value_t = defaults::LOCKOUT_WINDOW_SECS
    )]
    pub lockout_window_secs: u64,
    /// A training claim not refreshed for this long is presumed dead (its process crashed) and is taken over;
    /// live trainings refresh theirs every quarter of it. It bounds how long a crash mid-training leaves a
    /// profile without its model.
    #[arg(
        long = "maxidom-claim-ttl-secs",
        env = "MAXIDOM_CLAIM_TTL_SECS",
        default_value_t = defaults::CLAIM_TTL_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub claim_ttl_secs: u64,
    /// Seed of legacy Isolation Forests (kept for configuration compatibility: the k-NN models are deterministic).
    #[arg(long = "maxidom-seed", env = "MAXIDOM_SEED", default_value_t = defaults::SEED)]
    pub seed: u64,
    /// Profiles whose models are kept decoded in memory (each ≈ 100 KB).
    #[arg(
        long = "maxidom-cache-profiles",
        env = "MAXIDOM_CACHE_PROFILES",
        default_value_t = defaults::CACHE_PROFILES
    )]
    pub cache_profiles: usize,
    /// Folder served at /static/update.xml and /static/extension.crx (extension self-update; also under /api/static/).
    #[arg(long = "maxidom-static-dir", env = "MAXIDOM_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
}

/// The default of every setting, shared by the command line (`default_value_t`) and `Default`.
pub mod defaults {
    pub const QUOTA_TOTAL: u64 = 30;
    pub const QUOTA_KEYBOARD: u64 = 30;
    pub const QUOTA_MOUSE: u64 = 30;
    pub const QUOTA_DIGRAPH: u64 = 10;
    pub const FEEDBACK: bool = true;
    pub const POOL_MIN_SCORE: f64 = 0.5;
    pub const POOL_SIZE: usize = 500;
    pub const RETRAIN_PROFILING: usize = 300;
    pub const RETRAIN_POOL: usize = 300;
    pub const LOCKOUT_FAILURES: u32 = 5;
    pub const LOCKOUT_WINDOW_SECS: u64 = 900;
    pub const CLAIM_TTL_SECS: u64 = 30;
    pub const SEED: u64 = 42;
    pub const CACHE_PROFILES: usize = 10_000;
}

impl Default for MaxidomConfig {
    fn default() -> Self {
        MaxidomConfig {
            quota_total: defaults::QUOTA_TOTAL,
            quota_keyboard: defaults::QUOTA_KEYBOARD,
            quota_mouse: defaults::QUOTA_MOUSE,
            quota_digraph: defaults::QUOTA_DIGRAPH,
            feedback: defaults::FEEDBACK,
            pool_min_score: defaults::POOL_MIN_SCORE,
            pool_size: defaults::POOL_SIZE,
            retrain_profiling: defaults::RETRAIN_PROFILING,
            retrain_pool: defaults::RETRAIN_POOL,
            lockout_failures: defaults::LOCKOUT_FAILURES,
            lockout_window_secs: defaults::LOCKOUT_WINDOW_SECS,
            claim_ttl_secs: defaults::CLAIM_TTL_SECS,
            seed: defaults::SEED,
            cache_profiles: defaults::CACHE_PROFILES,
            static_dir: None,
        }
    }
}

impl MaxidomConfig {
    pub fn quotas(&self) -> Quotas {
        Quotas {
            total: self.quota_total,
            keyboard: self.quota_keyboard,
            mouse: self.quota_mouse,
            digraph: self.quota_digraph,
        }
    }

    pub fn retrain_policy(&self) -> RetrainPolicy {
        RetrainPolicy {
            pool_trigger: self.pool_size,
            max_profiling: self.retrain_profiling,
            max_pool: self.retrain_pool,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: MaxidomConfig,
    }

    #[test]
    fn clap_defaults_match_default() {
        let cli = Cli::try_parse_from(["vigil"]).unwrap();
        assert_eq!(cli.config, MaxidomConfig::default());
        assert_eq!(cli.config.quotas(), Quotas::default());
        assert_eq!(cli.config.retrain_policy(), RetrainPolicy::default());
    }

    #[test]
    fn flags_override() {
        let cli = Cli::try_parse_from([
            "vigil",
            "--maxidom-quota-total",
            "10",
            "--maxidom-pool-size",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.config.quota_total, 10);
        assert_eq!(cli.config.pool_size, 7);
        let off = Cli::try_parse_from(["vigil", "--maxidom-feedback", "false"]).unwrap();
        assert!(!off.config.feedback);
    }
}
