//! `ApiQuery<T>`: the query-string extractor every handler uses.
//!
//! `axum::extract::Query` rejects a query string that does not fit `T` with a plain-text 400; this one answers a 422
//! in the `{"detail"}` shape (`Failed to deserialize query string: page: invalid digit found in string`), as
//! [`crate::ApiJson`] does for bodies, so a handler never maps `QueryRejection` itself. Document the parameters with
//! `#[derive(utoipa::IntoParams)] #[into_params(parameter_in = Query)]` and `params(T)` in `utoipa::path`.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::Error;

/// Query parameters deserialized into `T`; a query string that does not fit is a 422 naming what is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|rejection| Error::unprocessable(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Request, StatusCode};
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Page {
        page: Option<i64>,
    }

    async fn extract(uri: &str) -> Result<ApiQuery<Page>, Error> {
        let (mut parts, ()) = Request::get(uri).body(()).expect("request").into_parts();
        ApiQuery::<Page>::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn parses_a_fitting_query() {
        let ApiQuery(p) = extract("/x?page=3").await.expect("parses");
        assert_eq!(p, Page { page: Some(3) });
        let ApiQuery(p) = extract("/x").await.expect("no query");
        assert_eq!(p, Page { page: None });
    }

    #[tokio::test]
    async fn a_query_that_does_not_fit_is_a_422_naming_the_parameter() {
        let err = extract("/x?page=three").await.expect_err("not a number");
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("page"), "{err}");
        let err = extract("/x?page=1&page=2").await.expect_err("given twice");
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
