//! One error type for everything reprise itself refuses or fails at, rendered
//! in the OpenAI shape `{"error":{"message","type","param","code"}}`.
//! Errors the provider sends are not this type: they are passed through as sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<&'static str>,
        code: Option<&'static str>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    ModelNotFound(String),
    #[error("the request body did not arrive within {millis} ms")]
    RequestTimeout { millis: u64 },
    #[error(
        "reprise is at its limit of {limit} requests in flight; retry after {retry_after_secs} s"
    )]
    Overloaded { limit: usize, retry_after_secs: u64 },
    /// `limits.max_mcp_streams` long-lived MCP GET streams are open.
    #[error(
        "reprise holds its limit of {limit} open MCP streams; retry after {retry_after_secs} s"
    )]
    McpStreamsFull { limit: usize, retry_after_secs: u64 },
    /// Authenticated, but not allowed (an admin-only operation, `/metrics`).
    #[error("{0}")]
    Forbidden(String),
    #[error("the response is not in the cache (Cache-Control: only-if-cached)")]
    NotCached,
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("could not reach the upstream provider `{provider}`: {detail}")]
    UpstreamConnect { provider: String, detail: String },
    #[error("the upstream provider `{provider}` did not answer within {secs} s")]
    UpstreamTimeout { provider: String, secs: u64 },
    #[error("the upstream provider `{provider}` sent an unreadable response: {detail}")]
    UpstreamBroken { provider: String, detail: String },
}

impl ProxyError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ProxyError::BadRequest {
            message: message.into(),
            param,
            code: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Overloaded { .. } | ProxyError::McpStreamsFull { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UpstreamConnect { .. } | ProxyError::UpstreamBroken { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout { .. } | ProxyError::NotCached => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    fn kind_and_code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ProxyError::BadRequest { code, .. } => ("invalid_request_error", *code),
            ProxyError::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key")),
            ProxyError::RequestTimeout { .. } => ("invalid_request_error", Some("request_timeout")),
            ProxyError::Overloaded { .. } | ProxyError::McpStreamsFull { .. } => {
                ("server_error", Some("overloaded"))
            }
            ProxyError::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            ProxyError::Forbidden(_) => ("permission_error", Some("insufficient_permissions")),
            ProxyError::PayloadTooLarge { .. } => {
                ("invalid_request_error", Some("request_too_large"))
            }
            ProxyError::NotCached => ("invalid_request_error", Some("not_cached")),
            ProxyError::UpstreamConnect { .. } => ("upstream_error", Some("upstream_unreachable")),
            ProxyError::UpstreamTimeout { .. } => ("upstream_error", Some("upstream_timeout")),
            ProxyError::UpstreamBroken { .. } => ("upstream_error", Some("upstream_broken")),
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            ProxyError::BadRequest { param, .. } => *param,
            ProxyError::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind_and_code();
        json!({"error": {"message": self.to_string(), "type": kind, "param": self.param(), "code": code}})
    }
}

impl ProxyError {
    /// The same error in Anthropic's shape, for `/v1/messages`:
    /// `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_response(&self) -> Response {
        let kind = match self.status().as_u16() {
            400 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            408 => "timeout_error",
            503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        };
        let body = json!({"type": "error", "error": {"type": kind, "message": self.to_string()}});
        let mut response = (self.status(), body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.add_headers(&mut response);
        response
    }

    /// Headers some errors carry: `Retry-After` on a shed request, and
    /// `Connection: close` when the body was left unread (408).
    fn add_headers(&self, response: &mut Response) {
        match self {
            ProxyError::Overloaded {
                retry_after_secs, ..
            }
            | ProxyError::McpStreamsFull {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ProxyError::RequestTimeout { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.body().to_string();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self.add_headers(&mut response);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_openai() {
        let e = ProxyError::bad_request("`messages` is required", Some("messages"));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let body = e.body();
        assert_eq!(body["error"]["message"], "`messages` is required");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        assert!(body["error"]["code"].is_null());
    }

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::PayloadTooLarge { limit: 1 }.status(), 413);
        let t = ProxyError::UpstreamTimeout {
            provider: "p".into(),
            secs: 1,
        };
        assert_eq!(t.status(), 504);
        let c = ProxyError::UpstreamConnect {
            provider: "p".into(),
            detail: "x".into(),
        };
        assert_eq!(c.status(), 502);
    }
}
