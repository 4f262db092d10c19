//! Errors in OpenAI's shape, `{"error": {"message", "type", "code"}}`, with
//! the status codes OpenAI's clients branch on (their `AuthenticationError`,
//! `RateLimitError`, ... are chosen by status). A message says what was
//! wrong with the request; it never carries a key or a request body.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            retry_after: None,
        }
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn invalid_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API key: send `Authorization: Bearer <TALARIA_API_KEY>`",
        )
        .code("invalid_api_key")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).code("not_found")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method not allowed on this path",
        )
        .code("method_not_allowed")
    }

    pub fn busy(max_runs: usize) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "the gateway is running {max_runs} conversations already (gateway.max_concurrent_runs); retry shortly"
            ),
        )
        .code("rate_limit_exceeded");
        error.retry_after = Some(1);
        error
    }

    pub fn timeout(seconds: u64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            format!(
                "the request did not finish within {seconds} s (gateway.request_timeout_secs); the turn was stopped and its session kept"
            ),
        )
        .code("timeout")
    }

    /// The model endpoint is down or refused: the client may retry later.
    pub fn model_unavailable(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, "api_error", message)
            .code("model_unavailable");
        error.retry_after = Some(5);
        error
    }

    /// 401 from the dashboard: no valid session (log in first).
    pub fn login_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "log in to the dashboard first",
        )
        .code("login_required")
    }

    /// 403: the request is refused whoever sends it (a wrong `Host`, a
    /// missing CSRF token, a wrong password).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).code(code)
    }

    /// 429 with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            .code("rate_limited");
        error.retry_after = Some(retry_after.max(1));
        error
    }

    /// 409: the request conflicts with what changed since the page read it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_request_error", message).code("conflict")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "the body must be JSON, sent with `Content-Type: application/json`",
            )
            .code("unsupported_media_type"),
            JsonRejection::JsonSyntaxError(error) => Self::bad_request(format!(
                "the body is not valid JSON: {}",
                error
                    .body_text()
                    .trim_start_matches("Failed to parse the request body as JSON: ")
            ))
            .code("invalid_json"),
            JsonRejection::JsonDataError(error) => Self::bad_request(format!(
                "the body does not match the request format: {}",
                error.body_text().trim_start_matches(
                    "Failed to deserialize the JSON body into the target type: "
                )
            ))
            .code("invalid_request"),
            JsonRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request_error",
                    "the request body is larger than gateway.max_body_bytes",
                )
                .code("request_too_large")
            }
            other => Self::new(other.status(), "invalid_request_error", other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        });
        let mut response = (self.status, Json(body)).into_response();
        // A server error comes after the run started: tools may have run.
        // OpenAI's clients retry 5xx twice unless told not to, which would
        // run the turn, and its tools, again.
        if self.status.is_server_error() {
            response.headers_mut().insert(
                axum::http::HeaderName::from_static("x-should-retry"),
                HeaderValue::from_static("false"),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
