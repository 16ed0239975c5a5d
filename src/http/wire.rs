//! The wire rules every route keeps: who may call (a key and its scope), what a body must be
//! (`application/json`, at most 1 MiB, one object), and what an error answers (a status and a
//! JSON object of its own words, never a value the caller sent).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::Service;
use super::keys::Scope;

/// The largest request body a decision or search route reads.
pub const MAX_BODY: usize = 1024 * 1024;

/// An answer other than 200: its status, a machine-readable kind and a message of the service's
/// own words (a field's name at most, never its value).
#[derive(Debug, Clone)]
pub(crate) struct WireError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) retry_after: Option<u64>,
}

impl WireError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        WireError { status, kind, message: message.into(), retry_after: None }
    }

    /// 400: the request is not one the route takes.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The error as an object: what an item of a batch carries in `context.error`.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({"status": self.status.as_u16(), "kind": self.kind, "message": self.message});
        if let Some(s) = self.retry_after {
            v["retry_after"] = json!(s);
        }
        v
    }
}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.to_json())).into_response();
        if let Some(s) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.kind == "unauthorized" {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="ghauthz""#));
        }
        response
    }
}

/// Lets in a caller whose bearer key has `needed`: 401 without a key or with one not held, 403
/// with a key of another scope.
pub(crate) fn admit(service: &Service, headers: &HeaderMap, needed: Scope) -> Result<(), WireError> {
    let unauthorized = || WireError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer key is required");
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    let scope = service.keys().scope_of(presented).ok_or_else(unauthorized)?;
    if scope.admits(needed) {
        Ok(())
    } else {
        Err(WireError::new(StatusCode::FORBIDDEN, "forbidden", "this key may not call this route"))
    }
}

/// The body as one JSON object: `application/json` (parameters such as a charset accepted,
/// else 415), at most [`MAX_BODY`] bytes (else 413), JSON (else 400; nesting deeper than 128
/// levels is refused by the parser), an object (else 400).
pub(crate) async fn json_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, WireError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(WireError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| WireError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is larger than 1 MiB"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WireError::bad_request("the body must be a JSON object")),
        // The parser's message names a line and column, never the text there.
        Err(e) => Err(WireError::bad_request(format!("the body is not JSON: {}", e.classify_message()))),
    }
}

/// What kind of JSON error, in the service's words.
trait Classify {
    fn classify_message(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Eof => "it ends early",
            serde_json::error::Category::Syntax if self.to_string().contains("recursion limit") => {
                "it is nested too deeply"
            }
            serde_json::error::Category::Syntax => "a syntax error",
            serde_json::error::Category::Data | serde_json::error::Category::Io => "it cannot be read",
        }
    }
}

/// The answer to a request whose route exists but not for its method.
pub(crate) fn method_not_allowed() -> WireError {
    WireError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take this method")
}

/// The answer to a path no route has.
pub(crate) fn not_found() -> WireError {
    WireError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A 200 with a JSON body.
pub(crate) fn ok(value: &Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}
