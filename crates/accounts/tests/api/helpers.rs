//! Shared setup and request helpers of these tests.

use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::TcpListener;
use vigil_accounts::AccountsConfig;
use vigil_http::testing::TestApp;

pub(crate) const PASSWORD: &str = "Str0ng!password";

pub(crate) const YEAR: u64 = 365 * 86_400;

/// A minimal SMTP server that accepts every message and keeps its text.
#[derive(Clone, Default)]
pub(crate) struct Inbox(Arc<Mutex<Vec<String>>>);

impl Inbox {
    pub(crate) async fn start() -> (Inbox, u16) {
        let inbox = Inbox::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let keep = inbox.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 test ESMTP\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 test\r\n",
                            "DATA" => {
                                let _ = w.write_all(b"354 go ahead\r\n").await;
                                let mut message = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    message.push_str(&l);
                                    message.push_str("\r\n");
                                }
                                keep.0.lock().expect("inbox").push(message);
                                b"250 queued\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        (inbox, port)
    }

    /// Waits for a message to `to` whose text contains `marker` and returns the token of its link.
    pub(crate) async fn token_for(&self, to: &str, marker: &str) -> String {
        for _ in 0..200 {
            let found = self.0.lock().expect("inbox").iter().rev().find_map(|m| {
                // Undo quoted-printable soft breaks and escapes, whichever transfer encoding was chosen.
                let text = m.replace("=\r\n", "").replace("=3D", "=");
                (text.contains(&format!("To: {to}")) && text.contains(marker)).then(|| {
                    let at = text.find("token=").map(|i| i + 6).unwrap_or(0);
                    text[at..]
                        .chars()
                        .take_while(char::is_ascii_hexdigit)
                        .collect::<String>()
                })
            });
            if let Some(t) = found.filter(|t| t.len() == 64) {
                self.0.lock().expect("inbox").clear();
                return t;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no mail to {to} containing {marker}");
    }
}

pub(crate) fn lax_limits() -> AccountsConfig {
    AccountsConfig {
        login_rate_limit: 1000,
        register_rate_limit: 1000,
        forgot_rate_limit: 1000,
        api_rate_limit: 10_000,
        ..AccountsConfig::default()
    }
}

pub(crate) async fn apps(config: AccountsConfig) -> Vec<TestApp> {
    TestApp::all(move |state| vigil_accounts::Accounts::new(config.clone()).router(state)).await
}

pub(crate) async fn register(app: &TestApp, username: &str, email: &str) -> (StatusCode, Value) {
    let body = json!({"username": username, "email": email, "password": PASSWORD});
    app.api().post("/api/auth/register", &body).await
}

pub(crate) async fn login_form(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/login"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("login")
}
