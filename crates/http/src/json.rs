//! `ApiJson<T>`: the JSON body extractor every handler uses.
//!
//! It differs from `axum::Json` where clients notice: a body that does not fit the schema is a 422 whose `detail`
//! names the offending field (`keyEvents[3].downTime: invalid type: string "x", expected f64`); a body over the limit
//! is a 413 in the same `{"detail"}` shape; a body that is not declared as JSON is a 415 ([`JsonBytes`]).

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

/// The raw body of a route that takes JSON: [`RawBody`], read only when the request declares it as JSON
/// (`application/json`, or a `+json` type such as `application/merge-patch+json`); anything else, a missing
/// `Content-Type` included, is a 415.
///
/// Why a missing type is refused too: the point is that another site's page must not be able to post to these
/// routes behind its visitor's back, and a browser sends a cross-site request without a CORS preflight only when
/// its content type is one of the Fetch standard's three "simple" types, or when there is no `Content-Type` at all
/// (`fetch(url, {method: "POST", mode: "no-cors", body: new Blob([json])})` or `navigator.sendBeacon(url,
/// arrayBuffer)` send none). Bearer tokens cannot ride along on such a request, but the unauthenticated routes
/// (registration, password reset, the MaxiDOM extension's routes) would still be reachable through a visitor's
/// browser on an internal network. Requiring a JSON type forces the preflight, which CORS then answers. Every
/// client we ship or know of declares its JSON (the TopoForge dashboard, the MaxiDOM extension, `curl --json`,
/// Python `requests` with `json=`); `curl -d` without a type sends a form type and was already refused.
pub struct JsonBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !declared.is_some_and(is_json_type) {
            let got = declared.map_or_else(
                || "no Content-Type".to_owned(),
                |t| format!("Content-Type {t}"),
            );
            return Err(Error::UnsupportedMediaType(format!(
                "{got} is not accepted here; send the body as application/json."
            )));
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Ok(JsonBytes(bytes))
    }
}

/// `application/json` or any `…/…+json` media type, parameters (`; charset=utf-8`) ignored.
pub fn is_json_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json"
        || media
            .split_once('/')
            .is_some_and(|(top, sub)| !top.is_empty() && sub.len() > 5 && sub.ends_with("+json"))
}

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
    serde_path_to_error::deserialize(de)
        .or_else(|err| {
            // JSON has one number type: `2.0` is the integer 2 (JSON Schema agrees), but serde refuses it for an
            // integer field. Only a body that failed is re-read with such numbers made integers, so the common path
            // costs nothing.
            let integral = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|mut v| integral_floats_to_integers(&mut v).then_some(v))
                .and_then(|v| serde_json::from_value(v).ok());
            integral.ok_or(err)
        })
        .map_err(|err| {
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

/// Rewrites every number with an integral value written as a float (`2.0`, `1e3`) as an integer, within ±2^53
/// (beyond that a float no longer holds every integer exactly); true when anything changed.
fn integral_floats_to_integers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= EXACT => {
                #[allow(clippy::cast_possible_truncation)] // integral and within ±2^53: exact
                let i = f as i64;
                *v = Value::from(i);
                true
            }
            _ => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, x| integral_floats_to_integers(x) | changed),
        Value::Object(members) => members
            .values_mut()
            .fold(false, |changed, x| integral_floats_to_integers(x) | changed),
        _ => false,
    }
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

    #[test]
    fn integral_floats_fill_integer_fields() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Counts {
            n: i64,
            x: f64,
        }
        assert_eq!(
            parse::<Counts>(br#"{"n": 2.0, "x": 1.5}"#).expect("integral"),
            Counts { n: 2, x: 1.5 }
        );
        assert_eq!(
            parse::<Counts>(br#"{"n": 1e3, "x": 2.0}"#).expect("exponent"),
            Counts { n: 1000, x: 2.0 }
        );
        let e = parse::<Counts>(br#"{"n": 2.5, "x": 1}"#).expect_err("fraction");
        assert!(e.to_string().contains("at n"), "{e}");
        assert!(parse::<Counts>(br#"{"n": 1e300, "x": 1}"#).is_err());
    }

    #[test]
    fn only_json_media_types_are_json() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            " application/json ;",
        ] {
            assert!(is_json_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/octet-stream",
            "application/+json",
            "+json",
            "application/jsonp",
        ] {
            assert!(!is_json_type(bad), "{bad}");
        }
    }

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
