//! Text helpers shared by the chat answer and its stream: message text, the request
//! hash, and word splitting that preserves whitespace exactly.

use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Text of a message: string content, or the concatenated `text` of its parts.
pub fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The body map serialized without `stream` / `stream_options`, in original order.
struct WithoutStreamFields<'a>(&'a Map<String, Value>);

impl Serialize for WithoutStreamFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .filter(|(k, _)| k.as_str() != "stream" && k.as_str() != "stream_options"),
        )
    }
}

/// First 8 hex chars of SHA-256 of the body without the stream fields.
pub fn body_hash8(body: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    // Writing into a hasher cannot fail; on the impossible error the hash still differs.
    let _ = serde_json::to_writer(&mut hasher, &WithoutStreamFields(body));
    let digest = hasher.finalize();
    hex::encode(&digest[..4])
}

pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

pub fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Splits `s` into words that keep their following whitespace, so the pieces
/// concatenate back to `s` exactly (leading whitespace joins the first piece).
pub fn word_pieces(s: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_ws = false;
    let mut seen_word = false;
    for (i, ch) in s.char_indices() {
        let ws = ch.is_whitespace();
        if !ws && prev_ws && seen_word {
            pieces.push(&s[start..i]);
            start = i;
        }
        seen_word |= !ws;
        prev_ws = ws;
    }
    if start < s.len() {
        pieces.push(&s[start..]);
    }
    pieces
}

/// The first `n` words of `s`, with their original spacing, trailing space trimmed.
pub fn truncate_words(s: &str, n: usize) -> String {
    word_pieces(s)
        .into_iter()
        .take(n)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn word_pieces_roundtrip() {
        for s in [
            "a b  c",
            "  lead",
            "x",
            "",
            "tab\tand\nnewline ",
            "é ü 日本 語",
        ] {
            assert_eq!(word_pieces(s).concat(), s);
            assert_eq!(
                word_pieces(s).len(),
                word_count(s).max(usize::from(!s.is_empty()))
            );
        }
        assert_eq!(truncate_words("a  b c", 2), "a  b");
    }

    #[test]
    fn hash_ignores_stream_fields_only() {
        let Value::Object(plain) = json!({"model": "m", "messages": []}) else {
            unreachable!()
        };
        let Value::Object(streamed) =
            json!({"model": "m", "stream": true, "messages": [], "stream_options": {}})
        else {
            unreachable!()
        };
        assert_eq!(body_hash8(&plain), body_hash8(&streamed));
        let Value::Object(other) = json!({"model": "m2", "messages": []}) else {
            unreachable!()
        };
        assert_ne!(body_hash8(&plain), body_hash8(&other));
    }

    #[test]
    fn message_text_and_truncation() {
        let parts = json!({"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}},
            {"type": "text", "text": "b"}]});
        assert_eq!(message_text(&parts), "ab");
        assert_eq!(
            message_text(&json!({"role": "assistant", "content": null})),
            ""
        );
        assert_eq!(truncate_chars("日本語", 2), "日本");
        assert_eq!(truncate_chars("ab", 5), "ab");
    }
}
