//! `ApiJson<T>`: the JSON body extractor every handler uses.
//!
//! It differs from `axum::Json` where clients notice: a body that does not fit the schema is a 422 whose `detail`
//! names the offending field (`keyEvents[3].downTime: invalid type: string "x", expected f64`); a body over the limit
//! is a 413 in the same `{"detail"}` shape; a missing `Content-Type` is tolerated, because the reference servers
//! accepted such requests and clients in the field send them, but the types a cross-site page can send without a
//! preflight (forms, plain text) are a 415 ([`JsonBytes`]).

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// A JSON request body (extractor) or response body (responder).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// The raw body of a route that takes JSON: [`RawBody`], refusing with 415 the content types an HTML form or a
/// cross-site `fetch` may send without a CORS preflight (`text/plain`, `application/x-www-form-urlencoded`,
/// `multipart/form-data`), so another site's page cannot post to these routes behind its visitor's back. A body
/// with no `Content-Type` is still read as JSON: command-line clients in the field send none.
pub struct JsonBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        if let Some(kind) = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            let media = kind
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if SIMPLE_REQUEST_TYPES.contains(&media.as_str()) {
                return Err(Error::UnsupportedMediaType(format!(
                    "Content-Type {media} is not accepted here; send the body as application/json."
                )));
            }
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Ok(JsonBytes(bytes))
    }
}

/// The request content types that browsers send cross-site without a preflight (the Fetch standard's list).
const SIMPLE_REQUEST_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

/// The raw request body: the one body reader, so every route answers an oversized body with 413 and a failed read
/// with 400, in the `{"detail"}` shape.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge("Request body is too large.".into())
                } else {
                    Error::BadRequest(format!(
                        "Could not read the request body: {}",
                        rejection.body_text()
                    ))
                }
            })
    }
}

/// Parses a JSON document into `T`, with the 422 messages described in the module docs.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::unprocessable(
            "Request body is empty; expected a JSON document.",
        ));
    }
    if has_escaped_nul(bytes) {
        return Err(Error::unprocessable(
            "Request body contains a NUL character (\\u0000), which no field accepts.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            "Invalid JSON"
        } else {
            "Invalid request body"
        };
        if path.is_empty() || path == "." {
            Error::unprocessable(format!("{what}: {inner}"))
        } else {
            Error::unprocessable(format!("{what} at {path}: {inner}"))
        }
    })
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Whether a JSON text carries a NUL character. In valid JSON a NUL can only be written as the escape `\u0000`
/// (raw control characters are not allowed in strings), so escapes are walked in order: `\\u0000` is an escaped
/// backslash followed by plain text, not a NUL. PostgreSQL cannot store NUL in text, so it is refused for every
/// body on both backends alike.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        t: f64,
    }

    fn detail(err: Error) -> String {
        assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        err.to_string()
    }

    #[test]
    fn names_the_offending_field() {
        let err =
            parse::<Body>(br#"{"name":"a","items":[{"t":1},{"t":"x"}]}"#).expect_err("bad type");
        let msg = detail(err);
        assert!(msg.contains("items[1].t"), "{msg}");
    }

    #[test]
    fn reports_syntax_errors_and_empty_bodies() {
        assert!(detail(parse::<Body>(b"{nope").expect_err("syntax")).starts_with("Invalid JSON"));
        assert!(detail(parse::<Body>(b"  ").expect_err("empty")).contains("empty"));
        assert!(detail(parse::<Body>(br#"{"name":"a"}"#).expect_err("missing")).contains("items"));
    }

    #[test]
    fn nul_escapes_are_found_but_escaped_backslashes_are_not() {
        assert!(has_escaped_nul(br#"{"a":"x\u0000y"}"#));
        assert!(has_escaped_nul(br#"{"a\u0000":1}"#));
        assert!(has_escaped_nul(br#"["\\\u0000"]"#));
        assert!(!has_escaped_nul(br#"["\\u0000"]"#));
        assert!(!has_escaped_nul(br#"{"a":"\u0001 \\ \""}"#));
        assert!(!has_escaped_nul(b"{}"));
        let err =
            parse::<serde_json::Value>(br#"{"username":"ad\u0000min"}"#).expect_err("refused");
        assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }
}
