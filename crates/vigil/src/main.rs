//! `vigil`: the one binary. `vigil serve` (the default) runs the HTTP service; the other subcommands are offline
//! tools over the same data (`--data-dir` / `--database-url`) or over files.
//!
//! This crate only parses the command line and wires crates together; behaviour lives in the library crates.

mod cli;
mod cmd;
mod logging;
mod prompt;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `.env` first, so its values act as environment variables for clap's `env = …` fallbacks. A missing file is fine.
    let dotenv = dotenvy::dotenv();
    let cli = cli::Cli::parse();
    logging::init(cli.log_format());
    if let Err(e) = &dotenv
        && !e.not_found()
    {
        tracing::warn!(error = %e, "ignoring an unreadable .env file");
    }
    match cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
