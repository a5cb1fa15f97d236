//! `/verify-email`: the page that verification mail links to by default (`EMAIL_VERIFY_URL` points elsewhere,
//! e.g. the dashboard's own page).
//!
//! Opening the link (`GET /verify-email?token=…`) only shows a page with a confirm button; the token is used by
//! the button's form `POST`. Mail scanners and link previewers fetch every GET in a message before the person
//! does, so a GET that consumed the token would verify the address without its owner and leave them a dead link.
//! The JSON route `GET /api/auth/verify-email` (what a dashboard page calls) is unchanged.
//!
//! The pages are plain server-rendered HTML with no script, no external resource and a strict
//! `Content-Security-Policy`; the token is shown only inside an escaped form field, the page is never cached, and
//! `Referrer-Policy: no-referrer` keeps the token in its URL from leaking to another site.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use vigil_http::axum;
use vigil_http::{ApiQuery, AppState, Error};
use vigil_store::time::now_ms;
use vigil_store::tokens::{self, Purpose};
use vigil_store::users::{self, UserPatch};

use crate::policy;

/// Where the page lives; the default target of verification links (`<PUBLIC_URL>/verify-email`).
pub const PATH: &str = "/verify-email";

/// `token` from the link (GET) or from the page's form (POST).
#[derive(Debug, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct PageToken {
    pub token: Option<String>,
}

/// The confirmation page of an email-verification link. It does not use the token: its button does.
#[utoipa::path(get, path = "/verify-email", tag = "auth", params(PageToken),
    responses((status = 200, description = "An HTML page with a button that confirms the address", content_type = "text/html"),
        (status = 400, description = "An HTML page saying the link has no token", content_type = "text/html")))]
pub async fn page(query: Result<ApiQuery<PageToken>, Error>) -> Response {
    // A person opened this link: whatever is wrong with its query, the answer is a page, not JSON.
    let token = query
        .ok()
        .and_then(|ApiQuery(q)| q.token)
        .unwrap_or_default();
    if token.trim().is_empty() {
        return html(
            StatusCode::BAD_REQUEST,
            "Verification link incomplete",
            "<p>This link has no verification token. Open the link from the email exactly as it was sent.</p>",
        );
    }
    let body = format!(
        "<p>Confirm that this email address is yours.</p>\
         <form method=\"post\" action=\"{PATH}\">\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\
         <button type=\"submit\">Confirm my email address</button></form>",
        escape(token.trim())
    );
    html(StatusCode::OK, "Confirm your email address", &body)
}

/// Uses a verification token posted by the confirmation page and says how it went, as a page.
#[utoipa::path(post, path = "/verify-email", tag = "auth",
    request_body(content = PageToken, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "An HTML page: the address is verified", content_type = "text/html"),
        (status = 400, description = "An HTML page: the token is missing, invalid, used or expired", content_type = "text/html")))]
pub async fn confirm(
    State(state): State<AppState>,
    form: Result<Form<PageToken>, FormRejection>,
) -> Response {
    let token = form.ok().and_then(|Form(f)| f.token).unwrap_or_default();
    match verify(&state, token.trim()).await {
        Ok(true) => html(
            StatusCode::OK,
            "Email address verified",
            "<p>Thank you: your email address is verified. You can close this page.</p>",
        ),
        Ok(false) => html(
            StatusCode::BAD_REQUEST,
            "Link invalid or expired",
            "<p>This verification link is invalid, already used or expired. Sign in and ask for a new one.</p>",
        ),
        Err(e) => {
            // A database failure: the token was not used, so the same link works again.
            tracing::error!(error = %e, "email verification page failed");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again later",
                "<p>The address could not be verified just now. Try the same link again in a moment.</p>",
            )
        }
    }
}

/// Uses `token` once: true when it was a live verification token and its account is now verified.
pub(crate) async fn verify(state: &AppState, token: &str) -> Result<bool, Error> {
    if token.is_empty() {
        return Ok(false);
    }
    let hash = policy::token_hash(token);
    let Some(user_id) =
        tokens::consume_mailed(&state.store, &hash, Purpose::VerifyEmail, now_ms()).await?
    else {
        return Ok(false);
    };
    let patch = UserPatch {
        is_verified: Some(true),
        ..UserPatch::default()
    };
    users::update(&state.store, &user_id, &patch).await?;
    Ok(true)
}

/// A small self-contained page; `body` is trusted markup (only [`escape`]d values go into it).
fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · TopoForge</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}\
         button{{font-size:1rem;padding:.5rem 1rem}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        page,
    )
        .into_response()
}

/// HTML-escapes text for an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_closes_every_way_out_of_an_attribute() {
        assert_eq!(
            escape(r#""><script>alert('x')</script>&"#),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
        assert_eq!(escape("ab12"), "ab12");
    }
}
