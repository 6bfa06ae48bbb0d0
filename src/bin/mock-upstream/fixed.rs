//! A switchable fixed answer, so reprise's verified semantic mode can be tested
//! against a provider whose answers to paraphrases agree (or stop agreeing):
//!
//! - `POST /_mock/answer` `{"content": "Open Settings > Security."}` → every later
//!   chat completion (JSON and SSE, every model but `judge-yes*`) answers exactly
//!   this text instead of the derived `Mock answer to: …`;
//! - `POST /_mock/answer` `{"content": null}` clears it (so does `/_mock/reset`).

use std::sync::{Mutex, MutexGuard};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::Shared;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Setting {
    content: Option<String>,
}

#[derive(Debug, Default)]
pub struct FixedAnswer {
    current: Mutex<Option<String>>,
}

impl FixedAnswer {
    fn lock(&self) -> MutexGuard<'_, Option<String>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clear(&self) {
        *self.lock() = None;
    }

    /// The text every chat answer has now, when one is set.
    pub fn get(&self) -> Option<String> {
        self.lock().clone()
    }
}

pub fn routes() -> Router<Shared> {
    Router::new().route("/_mock/answer", post(set))
}

async fn set(State(state): State<Shared>, Json(setting): Json<Setting>) -> Json<Value> {
    *state.fixed_answer.lock() = setting.content.clone();
    Json(json!({"content": setting.content}))
}
