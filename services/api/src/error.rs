//! The API's one error type and its RFC 9457 `application/problem+json`
//! form. Every failure a handler or extractor can meet is an [`ApiError`];
//! its status, headers and body are decided here and nowhere else.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of problem details (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a request failed. Handlers return `Result<_, ApiError>`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or path parameter is malformed or out of range.
    #[error("parameter `{name}`: {detail}")]
    BadParameter { name: String, detail: String },
    /// A query parameter this endpoint does not know.
    #[error("unknown query parameter `{0}`")]
    UnknownParameter(String),
    /// The request body is not what the endpoint takes.
    #[error("request body: {0}")]
    BadBody(String),
    /// The query string is longer than `api.max_query_bytes`.
    #[error("the query string is {len} bytes; at most {max} are accepted")]
    QueryTooLong { len: usize, max: usize },
    /// No valid bearer token (missing, malformed, bad signature, expired,
    /// wrong issuer or audience...). Answers 401 with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token that may not do this (no tenant claim, not an admin).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing here for this tenant (also: another tenant's resource).
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The tenant's request rate is over its limit.
    #[error("rate limit exceeded; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    /// A dependency (DynamoDB, STS, an issuer's JWKS) failed transiently.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_parameter(name: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::BadParameter {
            name: name.into(),
            detail: detail.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadParameter { .. } | Self::UnknownParameter(_) | Self::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::QueryTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's short name (`urn:kopter:problem:{slug}`).
    fn slug(&self) -> &'static str {
        match self {
            Self::BadParameter { .. } => "bad-parameter",
            Self::UnknownParameter(_) => "unknown-parameter",
            Self::BadBody(_) => "bad-body",
            Self::QueryTooLong { .. } => "query-too-long",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::RateLimited { .. } => "rate-limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            // The cause goes to the log, not to the client.
            Self::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
            other => other.to_string(),
        };
        Problem {
            r#type: format!("urn:kopter:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            parameter: match self {
                Self::BadParameter { name, .. } | Self::UnknownParameter(name) => {
                    Some(name.clone())
                }
                _ => None,
            },
        }
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    // Retry-After has whole seconds; rounding down would invite a retry
    // that is refused again.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:kopter:problem:{bad-parameter|unknown-parameter|bad-body|query-too-long|unauthenticated|forbidden|not-found|method-not-allowed|rate-limited|unavailable|internal}`.
    pub r#type: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The offending query/path parameter (bad-parameter, unknown-parameter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(e) => tracing::error!(error = %format!("{e:#}"), "request failed"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "dependency unavailable"),
            _ => {}
        }
        crate::metrics::api()
            .errors
            .with_label_values(&[self.slug()])
            .inc();
        let body = serde_json::to_vec(&self.problem()).expect("problem serialises");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::Unauthenticated(detail) => {
                let value = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    detail.replace(['"', '\\'], "'")
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Self::RateLimited { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_one_status_and_type() {
        let e = ApiError::bad_parameter("limit", "must be 1-1000");
        let p = e.problem();
        assert_eq!(p.status, 400);
        assert_eq!(p.r#type, "urn:kopter:problem:bad-parameter");
        assert_eq!(p.parameter.as_deref(), Some("limit"));
        assert!(p.detail.contains("limit"));
        let internal = ApiError::Internal(anyhow::anyhow!("secret table name"));
        assert_eq!(internal.status(), 500);
        assert!(!internal.problem().detail.contains("secret"));
        let r = ApiError::RateLimited {
            retry_after: Duration::from_millis(1200),
        }
        .into_response();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let r = ApiError::Unauthenticated("token expired".into()).into_response();
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
}
