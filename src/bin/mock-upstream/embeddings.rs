//! `POST /v1/embeddings`: deterministic unit vectors derived from SHA-256 of each
//! input's JSON, as float arrays or (`encoding_format: "base64"`, the official Python
//! SDK's default) standard base64 of the little-endian f32 bytes.
//!
//! Models whose name contains `bow` (e.g. `mock-embed-bow`) embed text inputs as a
//! hashed bag of words instead (256 dimensions unless `dimensions` says otherwise):
//! texts sharing most of their words are close, as a real embedding model's
//! paraphrases are (reprise's provider-embedder tests rely on it).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::control::Endpoint;
use crate::{openai, Shared};

const DEFAULT_DIMENSIONS: usize = 8;
const DEFAULT_BOW_DIMENSIONS: usize = 256;
const MAX_DIMENSIONS: u64 = 16_384;
const MAX_INPUTS: usize = 4_096;

pub async fn handle(State(state): State<Shared>, headers: HeaderMap, raw: Bytes) -> Response {
    let req = match openai::prelude(&state, Endpoint::Embeddings, &headers, &raw).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let inputs = match split_inputs(req.body.get("input")) {
        Ok(inputs) => inputs,
        Err(message) => return bad_request(message, "input"),
    };
    let bow = req.model.contains("bow");
    let dimensions = match req.body.get("dimensions") {
        None | Some(Value::Null) if bow => DEFAULT_BOW_DIMENSIONS,
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v
            .as_u64()
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .and_then(|d| usize::try_from(d).ok())
        {
            Some(d) => d,
            None => {
                return bad_request("'dimensions' must be an integer in 1..=16384", "dimensions")
            }
        },
    };
    let base64 = req.body.get("encoding_format").and_then(Value::as_str) == Some("base64");

    let mut tokens = 0usize;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            tokens += input_tokens(input);
            let vector = match input.as_str() {
                Some(text) if bow => bag_of_words(text, dimensions),
                _ => vector(input, dimensions),
            };
            let embedding = if base64 {
                Value::String(base64_encode(&le_bytes(&vector)))
            } else {
                Value::Array(vector.iter().map(|&f| float_value(f)).collect())
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    openai::json_response(&body, req.cut)
}

fn bad_request(message: &str, param: &str) -> Response {
    openai::error_response(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        Some(param),
        None,
    )
}

/// The individual inputs: a string, an array of strings, one token array (array of
/// ints) or an array of token arrays.
fn split_inputs(input: Option<&Value>) -> Result<Vec<&Value>, &'static str> {
    const SHAPE: &str =
        "'input' must be a string, an array of strings, an array of integers or an array of integer arrays";
    let is_tokens = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_u64));
    match input {
        None | Some(Value::Null) => Err("Missing required parameter: 'input'."),
        Some(s @ Value::String(_)) => Ok(vec![s]),
        Some(Value::Array(items)) if items.is_empty() => Err("'input' must not be empty"),
        Some(Value::Array(items)) if items.len() > MAX_INPUTS => Err("'input' has too many items"),
        Some(tokens @ Value::Array(items)) if items.iter().all(Value::is_u64) => Ok(vec![tokens]),
        Some(Value::Array(items)) if items.iter().all(|v| v.is_string() || is_tokens(v)) => {
            Ok(items.iter().collect())
        }
        Some(_) => Err(SHAPE),
    }
}

/// Prompt tokens of one input: a token array's length, or chars/4 + 1 for text.
fn input_tokens(input: &Value) -> usize {
    match input {
        Value::String(s) => s.chars().count() / 4 + 1,
        Value::Array(tokens) => tokens.len(),
        _ => 0,
    }
}

/// A deterministic unit vector of `dimensions` floats (each in [-1, 1]) derived from
/// SHA-256 of the input's JSON, expanded by hashing the seed with a block counter.
pub fn vector(input: &Value, dimensions: usize) -> Vec<f32> {
    let mut seed = Sha256::new();
    let _ = serde_json::to_writer(&mut seed, input);
    let seed = seed.finalize();
    let mut raw = Vec::with_capacity(dimensions);
    let mut block = 0u32;
    while raw.len() < dimensions {
        let digest = Sha256::new()
            .chain_update(seed)
            .chain_update(block.to_le_bytes())
            .finalize();
        for word in digest.chunks_exact(4) {
            if raw.len() == dimensions {
                break;
            }
            let u = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            raw.push(f64::from(u) / f64::from(u32::MAX) * 2.0 - 1.0);
        }
        block = block.wrapping_add(1);
    }
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
    raw.iter().map(|x| (x * scale) as f32).collect()
}

/// A hashed bag of words: each lowercase alphanumeric word adds ±1 at a position
/// drawn from its SHA-256; L2-normalized (all zeros for a text without words).
pub fn bag_of_words(text: &str, dimensions: usize) -> Vec<f32> {
    let size = dimensions.max(1);
    let mut raw = vec![0f64; size];
    let words = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    for word in words {
        let digest = Sha256::digest(word.to_lowercase().as_bytes());
        let slot = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) as usize;
        let sign = if digest[4] & 1 == 0 { 1.0 } else { -1.0 };
        raw[slot % size] += sign;
    }
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    raw.iter().map(|x| (x * scale) as f32).collect()
}

/// An f32 as a JSON number with its shortest f32 spelling (`0.1`, not
/// `0.10000000149011612`), like the real API.
fn float_value(f: f32) -> Value {
    f.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn le_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// Standard base64 (RFC 4648 alphabet, `=` padding).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
        }
        assert_eq!(base64_encode(&[0xff, 0xfe, 0x00]), "//4A");
        assert_eq!(base64_encode(&1.0f32.to_le_bytes()), "AACAPw==");
    }

    #[test]
    fn bags_of_words_put_paraphrases_close() {
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let a = bag_of_words("How do I reset my password?", 256);
        let b = bag_of_words("how do I reset my password please", 256);
        let c = bag_of_words("What is the capital of France?", 256);
        assert!(cos(&a, &b) > 0.85, "{}", cos(&a, &b));
        assert!(cos(&a, &c) < 0.5, "{}", cos(&a, &c));
        assert_eq!(a, bag_of_words("HOW do i reset my password", 256));
        assert!(bag_of_words("?!", 4).iter().all(|x| *x == 0.0));
    }

    #[test]
    fn vectors_are_deterministic_unit_and_bounded() {
        let a = vector(&json!("hello"), 8);
        assert_eq!(a, vector(&json!("hello"), 8));
        assert_ne!(a, vector(&json!("hello!"), 8));
        let long = vector(&json!([1, 2, 3]), 1536);
        assert_eq!(long.len(), 1536);
        for v in [&a, &long] {
            assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "{norm}");
        }
    }

    #[test]
    fn float_value_is_shortest_and_roundtrips() {
        assert_eq!(float_value(0.1).to_string(), "0.1");
        for f in vector(&json!("x"), 64) {
            let back = float_value(f).as_f64().map(|x| x as f32);
            assert_eq!(back, Some(f));
        }
    }

    #[test]
    fn input_shapes() {
        let ok = |v: Value| split_inputs(Some(&v)).map(|i| i.len());
        assert_eq!(ok(json!("a")), Ok(1));
        assert_eq!(ok(json!(["a", "b"])), Ok(2));
        assert_eq!(ok(json!([1, 2, 3])), Ok(1));
        assert_eq!(ok(json!([[1, 2], [3]])), Ok(2));
        assert!(ok(json!([])).is_err());
        assert!(ok(json!([{"a": 1}])).is_err());
        assert!(ok(json!(5)).is_err());
        assert!(split_inputs(None).is_err());
    }
}
