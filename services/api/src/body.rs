//! `JsonBody<T>`: the request body of every write, parsed strictly —
//! `Content-Type: application/json`, at most [`MAX_BODY_BYTES`], unknown
//! fields refused by the body types themselves (`deny_unknown_fields`),
//! and a parse error names the field path it happened at
//! (`serde_path_to_error`), answered as a 400 problem document.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest accepted request body (bytes). Settings bodies are small.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::BadBody(
                "Content-Type must be application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::BadBody(format!(
                "could not read the body (at most {MAX_BODY_BYTES} bytes): {e}"
            ))
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` as `T`, naming the field of the first error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::BadBody(inner.to_string())
        } else {
            ApiError::BadBody(format!("at `{path}`: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct B {
        n: u32,
        inner: Option<Inner>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        s: String,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<B>(br#"{"n": "x"}"#).unwrap_err().to_string();
        assert!(e.contains("at `n`"), "{e}");
        let e = parse::<B>(br#"{"n": 1, "inner": {"s": 3}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at `inner.s`"), "{e}");
        let e = parse::<B>(br#"{"n": 1, "extra": true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = parse::<B>(b"{").unwrap_err().to_string();
        assert!(e.contains("EOF"), "{e}");
    }
}
