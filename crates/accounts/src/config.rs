//! Settings of the accounts API, flattened into `vigil serve` (flags, environment, `.env`).

/// Rate limits, token lifetimes, mail delivery, the first admin and the password policy.
#[derive(clap::Args, Clone, Debug)]
pub struct AccountsConfig {
    /// Login attempts allowed per account and client address in one login window.
    #[arg(long, env = "LOGIN_RATE_LIMIT", default_value_t = 5)]
    pub login_rate_limit: u32,
    /// Length of the login window in seconds.
    #[arg(long, env = "LOGIN_RATE_WINDOW_SECS", default_value_t = 900)]
    pub login_rate_window_secs: u64,
    /// Registrations allowed per client address in one register window.
    #[arg(long, env = "REGISTER_RATE_LIMIT", default_value_t = 3)]
    pub register_rate_limit: u32,
    #[arg(long, env = "REGISTER_RATE_WINDOW_SECS", default_value_t = 3600)]
    pub register_rate_window_secs: u64,
    /// Forgot-password requests allowed per client address in one window.
    #[arg(long, env = "FORGOT_PASSWORD_RATE_LIMIT", default_value_t = 3)]
    pub forgot_rate_limit: u32,
    #[arg(long, env = "FORGOT_PASSWORD_RATE_WINDOW_SECS", default_value_t = 3600)]
    pub forgot_rate_window_secs: u64,
    /// Requests per client address to every other accounts/users/sources route in one window.
    #[arg(long, env = "API_RATE_LIMIT", default_value_t = 100)]
    pub api_rate_limit: u32,
    #[arg(long, env = "API_RATE_WINDOW_SECS", default_value_t = 60)]
    pub api_rate_window_secs: u64,

    /// Refresh-token lifetime in days.
    #[arg(long, env = "REFRESH_TOKEN_EXPIRE_DAYS", default_value_t = 7)]
    pub refresh_token_expire_days: u64,
    /// Password-reset token lifetime in minutes.
    #[arg(long, env = "RESET_TOKEN_EXPIRE_MINUTES", default_value_t = 15)]
    pub reset_token_expire_minutes: u64,
    /// Email-verification token lifetime in hours.
    #[arg(long, env = "VERIFY_TOKEN_EXPIRE_HOURS", default_value_t = 24)]
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
    #[arg(long, env = "MAIL_PORT", default_value_t = 587)]
    pub mail_port: u16,
    #[arg(long, env = "MAIL_USERNAME")]
    pub mail_username: Option<String>,
    #[arg(long, env = "MAIL_PASSWORD", hide_env_values = true)]
    pub mail_password: Option<String>,
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "TopoForge <no-reply@localhost>"
    )]
    pub mail_from: String,
    /// Upgrade the SMTP connection with STARTTLS (required when true); false sends in plain text (local relays).
    #[arg(long, env = "MAIL_STARTTLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub mail_starttls: bool,

    /// Email of the admin created at first start (with ADMIN_PASSWORD) when no account has that email.
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Username of that first admin.
    #[arg(long, env = "ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: String,

    /// Minimum password length.
    #[arg(long, env = "PASSWORD_MIN_LENGTH", default_value_t = 8)]
    pub password_min_length: usize,
    /// Require upper case, lower case, a digit and a symbol in every password.
    #[arg(long, env = "PASSWORD_REQUIRE_CLASSES", default_value_t = true, action = clap::ArgAction::Set)]
    pub password_require_classes: bool,

    /// Seconds between purges of expired tokens and rate-limit windows (0: only at start).
    #[arg(long, env = "TOKEN_PURGE_INTERVAL_SECS", default_value_t = 600)]
    pub token_purge_interval_secs: u64,
}

impl Default for AccountsConfig {
    /// The same values as the command-line defaults.
    fn default() -> Self {
        AccountsConfig {
            login_rate_limit: 5,
            login_rate_window_secs: 900,
            register_rate_limit: 3,
            register_rate_window_secs: 3600,
            forgot_rate_limit: 3,
            forgot_rate_window_secs: 3600,
            api_rate_limit: 100,
            api_rate_window_secs: 60,
            refresh_token_expire_days: 7,
            reset_token_expire_minutes: 15,
            verify_token_expire_hours: 24,
            password_reset_url: None,
            email_verify_url: None,
            mail_server: None,
            mail_port: 587,
            mail_username: None,
            mail_password: None,
            mail_from: "TopoForge <no-reply@localhost>".into(),
            mail_starttls: true,
            admin_email: None,
            admin_password: None,
            admin_username: "admin".into(),
            password_min_length: 8,
            password_require_classes: true,
            token_purge_interval_secs: 600,
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
