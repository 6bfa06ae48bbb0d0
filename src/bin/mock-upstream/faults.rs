//! A switchable fault, to play a sick replica in routing tests:
//!
//! - `POST /_mock/fault` `{"status": 503, "retry_after": "30", "times": 2}` →
//!   the next `times` requests (all of them when absent) to the `/v1` routes
//!   (chat, embeddings, models) answer `status` with an OpenAI-shaped error
//!   (and `retry-after` when given);
//! - `POST /_mock/fault` `{"status": 0}` clears it (so does `/_mock/reset`).

use std::sync::{Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::Shared;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub status: u16,
    #[serde(default)]
    pub retry_after: Option<String>,
    #[serde(default)]
    pub times: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Faults {
    current: Mutex<Option<Fault>>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, Option<Fault>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clear(&self) {
        *self.lock() = None;
    }

    /// The error response for this request, when a fault is set.
    pub fn response(&self) -> Option<Response> {
        let fault = {
            let mut current = self.lock();
            let fault = current.clone()?;
            match fault.times {
                Some(0) => {
                    *current = None;
                    return None;
                }
                Some(n) => {
                    if let Some(f) = current.as_mut() {
                        f.times = Some(n - 1);
                    }
                }
                None => {}
            }
            fault
        };
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = crate::openai::error_response(
            status,
            "mock fault injected",
            "server_error",
            None,
            Some("mock_fault"),
        );
        if let Some(v) = fault
            .retry_after
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Some(resp)
    }
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/_mock/fault", post(set))
}

async fn set(State(state): State<Shared>, Json(fault): Json<Fault>) -> Json<Value> {
    let active = fault.status != 0;
    if active {
        *state.faults.lock() = Some(fault);
    } else {
        state.faults.clear();
    }
    Json(json!({ "fault": active }))
}
