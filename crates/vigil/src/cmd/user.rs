//! `vigil user create`: make an account from the command line, typically the first admin.
//!
//! The password is never an argument (it would show in `ps` and shell history): it is prompted for twice on a
//! terminal, or read as one line from stdin otherwise (`echo "$PW" | vigil user create …`). The same password policy
//! as registration applies, and accounts created here are marked verified (an operator vouches for them).

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_accounts::{AccountsConfig, NewAccount};
use vigil_http::Role;

use crate::cli::StorageArgs;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account with a role (password from a prompt, or one line on stdin).
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// 3–50 characters, no spaces or '@'.
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub email: String,
    /// viewer, analyst or admin.
    #[arg(long, default_value = "viewer")]
    pub role: Role,
    #[arg(long)]
    pub full_name: Option<String>,
    #[arg(long)]
    pub organization: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
}

pub fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create(args) => create(args),
    }
}

fn create(args: CreateArgs) -> anyhow::Result<()> {
    // Read the password before opening the database, so a mistyped confirmation costs nothing.
    let password = crate::prompt::read_new_password()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let store = args.storage.open().await.context("opening the database")?;
        let created = vigil_accounts::create_account(
            &store,
            &AccountsConfig::default(),
            NewAccount {
                username: args.username,
                email: args.email,
                password,
                full_name: args.full_name,
                organization: args.organization,
                role: args.role,
                is_verified: true,
            },
        )
        .await;
        store.close().await;
        let user = created.map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "created {} {} <{}> (id {})",
            user.role, user.username, user.email, user.id
        );
        Ok(())
    })
}
