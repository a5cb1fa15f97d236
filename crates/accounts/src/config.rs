//! Settings of the accounts API, flattened into `vigil serve` (flags, environment, `.env`).

/// Rate limits, token lifetimes, mail delivery, the first admin and the password policy.
#[derive(clap::Args, Clone, Debug)]
pub struct AccountsConfig {
    /// Login attempts allowed per account and client address in one login window.
    #[arg(long, env = "LOGIN_RATE_LIMIT", default_value_t = defaults::LOGIN_RATE_LIMIT)]
    pub login_rate_limit: u32,
    /// Length of the login window in seconds.
    #[arg(long, env = "LOGIN_RATE_WINDOW_SECS", default_value_t = defaults::LOGIN_RATE_WINDOW_SECS)]
    pub login_rate_window_secs: u64,
    /// Registrations allowed per client address in one register window.
    #[arg(long, env = "REGISTER_RATE_LIMIT", default_value_t = defaults::REGISTER_RATE_LIMIT)]
    pub register_rate_limit: u32,
    #[arg(long, env = "REGISTER_RATE_WINDOW_SECS", default_value_t = defaults::REGISTER_RATE_WINDOW_SECS)]
    pub register_rate_window_secs: u64,
    /// Forgot-password requests allowed per client address in one window.
    #[arg(long, env = "FORGOT_PASSWORD_RATE_LIMIT", default_value_t = defaults::FORGOT_PASSWORD_RATE_LIMIT)]
    pub forgot_rate_limit: u32,
    #[arg(long, env = "FORGOT_PASSWORD_RATE_WINDOW_SECS", default_value_t = defaults::FORGOT_PASSWORD_RATE_WINDOW_SECS)]
    pub forgot_rate_window_secs: u64,
    /// Requests per client address to every other accounts/users/sources route in one window.
    #[arg(long, env = "API_RATE_LIMIT", default_value_t = defaults::API_RATE_LIMIT)]
    pub api_rate_limit: u32,
    #[arg(long, env = "API_RATE_WINDOW_SECS", default_value_t = defaults::API_RATE_WINDOW_SECS)]
    pub api_rate_window_secs: u64,

    /// Refresh-token lifetime in days.
    #[arg(long, env = "REFRESH_TOKEN_EXPIRE_DAYS", default_value_t = defaults::REFRESH_TOKEN_EXPIRE_DAYS)]
    pub refresh_token_expire_days: u64,
    /// Password-reset token lifetime in minutes.
    #[arg(long, env = "RESET_TOKEN_EXPIRE_MINUTES", default_value_t = defaults::RESET_TOKEN_EXPIRE_MINUTES)]
    pub reset_token_expire_minutes: u64,
    /// Email-verification token lifetime in hours.
    #[arg(long, env = "VERIFY_TOKEN_EXPIRE_HOURS", default_value_t = defaults::VERIFY_TOKEN_EXPIRE_HOURS)]
    pub verify_token_expire_hours: u64,
    /// Where reset links point (the dashboard's reset page); default `<PUBLIC_URL>/reset-password`.
    #[arg(long, env = "PASSWORD_RESET_URL")]
    pub password_reset_url: Option<String>,
    /// Where email-verification links point; default `<PUBLIC_URL>/verify-email`, a confirmation page this server
    /// serves (the token is used only when the page's button is pressed, never by opening the link). Point it at
    /// the dashboard's verification page instead if it has one; `?token=…` is appended either way.
    #[arg(long, env = "EMAIL_VERIFY_URL")]
    pub email_verify_url: Option<String>,

    /// SMTP server; without it, mails are not sent and their links are logged instead.
    #[arg(long, env = "MAIL_SERVER")]
    pub mail_server: Option<String>,
    #[arg(long, env = "MAIL_PORT", default_value_t = defaults::MAIL_PORT)]
    pub mail_port: u16,
    #[arg(long, env = "MAIL_USERNAME")]
    pub mail_username: Option<String>,
    #[arg(long, env = "MAIL_PASSWORD", hide_env_values = true)]
    pub mail_password: Option<String>,
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = defaults::MAIL_FROM
    )]
    pub mail_from: String,
    /// Upgrade the SMTP connection with STARTTLS (required when true); false sends in plain text (local relays).
    #[arg(long, env = "MAIL_STARTTLS", default_value_t = defaults::MAIL_STARTTLS, action = clap::ArgAction::Set)]
    pub mail_starttls: bool,

    /// Email of the admin created at first start (with ADMIN_PASSWORD) when no account has that email.
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Username of that first admin.
    #[arg(long, env = "ADMIN_USERNAME", default_value = defaults::ADMIN_USERNAME)]
    pub admin_username: String,

    /// Minimum password length.
    #[arg(long, env = "PASSWORD_MIN_LENGTH", default_value_t = defaults::PASSWORD_MIN_LENGTH)]
    pub password_min_length: usize,
    /// Require upper case, lower case, a digit and a symbol in every password.
    #[arg(long, env = "PASSWORD_REQUIRE_CLASSES", default_value_t = defaults::PASSWORD_REQUIRE_CLASSES, action = clap::ArgAction::Set)]
    pub password_require_classes: bool,

    /// Seconds between purges of expired tokens and rate-limit windows (0: only at start).
    #[arg(long, env = "TOKEN_PURGE_INTERVAL_SECS", default_value_t = defaults::TOKEN_PURGE_INTERVAL_SECS)]
    pub token_purge_interval_secs: u64,
}

/// The default of every setting, shared by the command line (`default_value_t`) and `Default`.
pub mod defaults {
    pub const LOGIN_RATE_LIMIT: u32 = 5;
    pub const LOGIN_RATE_WINDOW_SECS: u64 = 900;
    pub const REGISTER_RATE_LIMIT: u32 = 3;
    pub const REGISTER_RATE_WINDOW_SECS: u64 = 3600;
    pub const FORGOT_PASSWORD_RATE_LIMIT: u32 = 3;
    pub const FORGOT_PASSWORD_RATE_WINDOW_SECS: u64 = 3600;
    pub const API_RATE_LIMIT: u32 = 100;
    pub const API_RATE_WINDOW_SECS: u64 = 60;
    pub const REFRESH_TOKEN_EXPIRE_DAYS: u64 = 7;
    pub const RESET_TOKEN_EXPIRE_MINUTES: u64 = 15;
    pub const VERIFY_TOKEN_EXPIRE_HOURS: u64 = 24;
    pub const MAIL_PORT: u16 = 587;
    pub const MAIL_FROM: &str = "TopoForge <no-reply@localhost>";
    pub const MAIL_STARTTLS: bool = true;
    pub const ADMIN_USERNAME: &str = "admin";
    pub const PASSWORD_MIN_LENGTH: usize = 8;
    pub const PASSWORD_REQUIRE_CLASSES: bool = true;
    pub const TOKEN_PURGE_INTERVAL_SECS: u64 = 600;
}

impl Default for AccountsConfig {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        AccountsConfig {
            login_rate_limit: defaults::LOGIN_RATE_LIMIT,
            login_rate_window_secs: defaults::LOGIN_RATE_WINDOW_SECS,
            register_rate_limit: defaults::REGISTER_RATE_LIMIT,
            register_rate_window_secs: defaults::REGISTER_RATE_WINDOW_SECS,
            forgot_rate_limit: defaults::FORGOT_PASSWORD_RATE_LIMIT,
            forgot_rate_window_secs: defaults::FORGOT_PASSWORD_RATE_WINDOW_SECS,
            api_rate_limit: defaults::API_RATE_LIMIT,
            api_rate_window_secs: defaults::API_RATE_WINDOW_SECS,
            refresh_token_expire_days: defaults::REFRESH_TOKEN_EXPIRE_DAYS,
            reset_token_expire_minutes: defaults::RESET_TOKEN_EXPIRE_MINUTES,
            verify_token_expire_hours: defaults::VERIFY_TOKEN_EXPIRE_HOURS,
            password_reset_url: None,
            email_verify_url: None,
            mail_server: None,
            mail_port: defaults::MAIL_PORT,
            mail_username: None,
            mail_password: None,
            mail_from: defaults::MAIL_FROM.into(),
            mail_starttls: defaults::MAIL_STARTTLS,
            admin_email: None,
            admin_password: None,
            admin_username: defaults::ADMIN_USERNAME.into(),
            password_min_length: defaults::PASSWORD_MIN_LENGTH,
            password_require_classes: defaults::PASSWORD_REQUIRE_CLASSES,
            token_purge_interval_secs: defaults::TOKEN_PURGE_INTERVAL_SECS,
        }
    }
}

pub(crate) fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl AccountsConfig {
    pub(crate) fn refresh_ttl_ms(&self) -> i64 {
        secs_to_ms(self.refresh_token_expire_days.saturating_mul(86_400))
    }

    pub(crate) fn reset_ttl_ms(&self) -> i64 {
        secs_to_ms(self.reset_token_expire_minutes.saturating_mul(60))
    }

    pub(crate) fn verify_ttl_ms(&self) -> i64 {
        secs_to_ms(self.verify_token_expire_hours.saturating_mul(3600))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        accounts: AccountsConfig,
    }

    #[test]
    fn command_line_defaults_match_default() {
        let parsed = Cli::parse_from(["x"]).accounts;
        let d = AccountsConfig::default();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
        assert_eq!(d.refresh_ttl_ms(), 7 * 86_400_000);
        assert_eq!(d.reset_ttl_ms(), 15 * 60_000);
    }

    #[test]
    fn booleans_take_explicit_values() {
        let parsed = Cli::parse_from(["x", "--mail-starttls", "false"]).accounts;
        assert!(!parsed.mail_starttls);
    }
}
