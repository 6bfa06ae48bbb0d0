//! Operational routes: liveness, readiness, and the OpenAI-shaped 404.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Liveness: the process answers.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: config loaded and the listener accepting (true once routed here).
pub async fn ready() -> Json<serde_json::Value> {
    Json(json!({"status": "ready"}))
}

pub async fn not_found(uri: Uri) -> Response {
    let body = json!({"error": {
        "message": format!("Unknown route: {}", uri.path()),
        "type": "invalid_request_error", "param": null, "code": "unknown_route"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
