//! One module per subcommand; each turns parsed arguments into calls on the library crates.

pub mod iforest;
pub mod import_maxidom;
mod serve;
pub mod sources;
pub mod tda;
pub mod user;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(*args),
        Some(Command::Tda(args)) => tda::run(args),
        Some(Command::Iforest(args)) => iforest::run(args),
        Some(Command::User { command }) => user::run(command),
        Some(Command::Sources { command }) => sources::run(command),
        Some(Command::ImportMaxidom(args)) => import_maxidom::run(args),
    }
}
