//! The judge for the borderline band: a candidate whose similarity lies in
//! `[semantic.judge_floor, semantic.threshold)` is served only when
//! `semantic.judge_model` answers "yes" to one fixed, short question.
//!
//! The question goes through reprise's own flow (routing, exact cache, cost),
//! as the caller (same credential, same namespace), with the semantic tier
//! off for it: a repeated judgement is an exact-cache hit and costs nothing.
//! Any failure (error status, timeout, unparsable answer) is a "no": the
//! request then goes to the provider as a miss.

use std::future::Future;
use std::pin::Pin;

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;

use super::Request;
use crate::cache::facts::BodyFacts;
use crate::cache::key::EndpointKind;
use crate::json::Json;

/// The answer a judgement may be, at most (a "yes" or "no" and some slack).
const MAX_JUDGE_TOKENS: u64 = 3;
/// Bigger judge responses are not read.
const MAX_JUDGE_BODY: usize = 64 * 1024;

/// The fixed question (the issue's wording), with the two texts quoted as JSON strings.
pub fn question(cached: &str, new: &str) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "Question A: {}\nQuestion B: {}\n\
         Would a correct answer to A be a correct and complete answer to B? Answer yes or no.",
        quote(cached),
        quote(new)
    )
}

/// The judge's request body.
pub fn body(model: &str, cached: &str, new: &str) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "temperature": 0,
        "max_tokens": MAX_JUDGE_TOKENS,
        "messages": [{"role": "user", "content": question(cached, new)}],
    })
}

/// Whether a chat completion's first choice says yes.
pub fn says_yes(response_body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(response_body) else {
        return false;
    };
    value["choices"][0]["message"]["content"]
        .as_str()
        .map(|t| t.trim_start().to_ascii_lowercase())
        .is_some_and(|t| t.starts_with("yes"))
}

/// Asks the judge model whether the answer to `cached` answers `new`.
/// Boxed with its `Send` bound spelled out: the judge's flow is the same
/// `run` that called it, and the compiler cannot infer `Send` through that cycle.
pub fn confirms<'a>(
    request: &'a Request,
    cached: &'a str,
    new: &'a str,
) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
    Box::pin(ask(request, cached, new))
}

async fn ask(request: &Request, cached: &str, new: &str) -> bool {
    let Some(model) = request
        .state
        .semantic
        .as_ref()
        .and_then(|t| t.config.judge_model.clone())
    else {
        return false;
    };
    let raw = Bytes::from(body(&model, cached, new).to_string());
    let Ok(parsed) = Json::parse(&raw) else {
        return false;
    };
    let Ok(facts) = BodyFacts::derive(EndpointKind::Chat, &parsed) else {
        return false;
    };
    let mut headers = HeaderMap::new();
    for name in ["authorization", "x-api-key", "x-cache-namespace"] {
        if let Some(v) = request.headers.get(name) {
            headers.insert(name, v.clone());
        }
    }
    headers.insert("x-cache-semantic", HeaderValue::from_static("off"));
    let response = super::run(
        request.state.clone(),
        EndpointKind::Chat,
        headers,
        raw,
        &facts,
    )
    .await;
    if !response.status().is_success() {
        metrics::counter!("reprise_semantic_judge_failures_total").increment(1);
        return false;
    }
    match axum::body::to_bytes(response.into_body(), MAX_JUDGE_BODY).await {
        Ok(bytes) => says_yes(&bytes),
        Err(_) => {
            metrics::counter!("reprise_semantic_judge_failures_total").increment(1);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_yes_and_no() {
        let answer = |t: &str| {
            serde_json::json!({"choices": [{"message": {"role": "assistant", "content": t}}]})
                .to_string()
        };
        assert!(says_yes(answer("Yes").as_bytes()));
        assert!(says_yes(answer(" yes.").as_bytes()));
        assert!(!says_yes(answer("No").as_bytes()));
        assert!(!says_yes(answer("").as_bytes()));
        assert!(!says_yes(b"not json"));
        assert!(!says_yes(b"{\"choices\":[]}"));
    }

    #[test]
    fn the_question_quotes_both_texts() {
        let q = question("reset \"password\"?", "password reset steps?");
        assert!(q.contains(r#"Question A: "reset \"password\"?""#));
        assert!(q.contains("Question B: \"password reset steps?\""));
        assert!(q.ends_with("Answer yes or no."));
    }
}
