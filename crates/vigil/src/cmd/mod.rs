//! One module per subcommand; each turns parsed arguments into calls on the library crates.

pub mod iforest;
mod serve;
pub mod tda;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Tda(args)) => tda::run(args),
        Some(Command::Iforest(args)) => iforest::run(args),
    }
}
