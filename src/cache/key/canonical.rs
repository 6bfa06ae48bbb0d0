//! The canonical form: a tagged, length-prefixed encoding of JSON streamed
//! straight into SHA-256 (sorted keys, normalized numbers, content
//! normalization and provider `cache_control` markers by [`Shape`]).

use serde_json::Number;
use sha2::{Digest, Sha256};

use super::{CacheKey, KeyScope, KEY_VERSION};
use crate::json::Json;

/// An object's members sorted by name, each name once with its last value
/// (what parsing into a `serde_json::Map` keeps). O(n log n) for any input.
pub(super) fn last_of_each_name<'j, 'a>(object: &'j Json<'a>) -> Vec<(&'j str, &'j Json<'a>)> {
    let Json::Object(members) = object else {
        return Vec::new();
    };
    let mut sorted: Vec<(&str, &Json<'a>)> = members.iter().map(|(k, v)| (k.as_ref(), v)).collect();
    // Stable: among equal names, document order is kept, so the last is last;
    // each repeat hands its value to the one kept before it.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 = later.1;
        }
        same
    });
    sorted
}

/// Where an object sits, which decides what its members mean.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// Plain data: every member counts, `cache_control` included.
    Plain,
    /// A chat/Messages message: string `content` is normalized, array
    /// `content` holds content blocks.
    Message,
    /// A provider content block: its own `cache_control` is a marker; a
    /// `content` array (a `tool_result`'s) holds content blocks again.
    Block,
    /// A `tools` entry: its own `cache_control` is a marker.
    Marked,
}

/// Streams the canonical form straight into SHA-256. (An own stack buffer in
/// front of the hasher was measured slower: `sha2` buffers blocks already.)
pub(super) struct Encoder {
    pub(super) hasher: Sha256,
}

impl Encoder {
    pub(super) fn new(scope: &KeyScope<'_>, mode: &[u8]) -> Self {
        let mut enc = Encoder {
            hasher: Sha256::new(),
        };
        enc.str(KEY_VERSION);
        enc.str(scope.namespace);
        enc.str(scope.kind.as_str());
        enc.str(scope.provider);
        // Namespace-scoped custom keys are model-independent by choice.
        if mode != b"custom" {
            enc.str(scope.model);
        }
        enc.bytes(mode);
        enc
    }

    pub(super) fn finish(self) -> CacheKey {
        CacheKey(self.hasher.finalize().into())
    }

    pub(super) fn tag(&mut self, t: u8) {
        self.hasher.update([t]);
    }

    pub(super) fn len(&mut self, n: usize) {
        self.hasher.update((n as u64).to_le_bytes());
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.hasher.update(b);
    }

    pub(super) fn str(&mut self, s: &str) {
        self.tag(b's');
        self.bytes(s.as_bytes());
    }

    /// Numbers hash as their decimal text (`Display`), integral floats as
    /// integers; formatted on the stack.
    pub(super) fn number(&mut self, n: &Number) {
        self.tag(b'#');
        let mut ints = itoa::Buffer::new();
        if let Some(i) = n.as_i64() {
            self.bytes(ints.format(i).as_bytes());
        } else if let Some(u) = n.as_u64() {
            self.bytes(ints.format(u).as_bytes());
        } else if let Some(f) = n.as_f64() {
            // Integral floats within the exact range print as integers.
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                self.bytes(ints.format(f as i64).as_bytes());
            } else {
                let mut text = StackText::default();
                if std::fmt::Write::write_fmt(&mut text, format_args!("{f}")).is_ok() {
                    self.bytes(text.as_bytes());
                } else {
                    self.bytes(f.to_string().as_bytes());
                }
            }
        }
    }

    pub(super) fn value(&mut self, v: &Json<'_>) {
        match v {
            Json::Null => self.tag(b'n'),
            Json::Bool(b) => self.tag(if *b { b't' } else { b'f' }),
            Json::Number(n) => self.number(n),
            Json::String(s) => self.str(s),
            Json::Array(items) => {
                self.tag(b'[');
                self.len(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Json::Object(_) => self.object(v, Shape::Plain),
        }
    }

    /// An array whose object items have `shape` (anything else: plain data).
    pub(super) fn array_of(&mut self, v: &Json<'_>, shape: Shape) {
        match v {
            Json::Array(items) => {
                self.tag(b'[');
                self.len(items.len());
                for item in items {
                    if item.is_object() {
                        self.object(item, shape);
                    } else {
                        self.value(item);
                    }
                }
            }
            other => self.value(other),
        }
    }

    /// An object with sorted keys; `shape` says which members are markers
    /// and which hold content blocks. Only the object's own `cache_control`
    /// is ever dropped, never one nested in its data.
    pub(super) fn object(&mut self, object: &Json<'_>, shape: Shape) {
        let mut entries = last_of_each_name(object);
        if matches!(shape, Shape::Block | Shape::Marked) {
            entries.retain(|(k, _)| *k != "cache_control");
        }
        self.tag(b'{');
        self.len(entries.len());
        for (k, v) in entries {
            self.str(k);
            match (shape, k, v) {
                (Shape::Message, "content", Json::String(text)) => self.text_part_array(text),
                (Shape::Message | Shape::Block, "content", Json::Array(_)) => {
                    self.array_of(v, Shape::Block)
                }
                _ => self.value(v),
            }
        }
    }

    /// Exactly the encoding of `[{"text": text, "type": "text"}]`.
    pub(super) fn text_part_array(&mut self, text: &str) {
        self.tag(b'[');
        self.len(1);
        self.tag(b'{');
        self.len(2);
        self.str("text");
        self.str(text);
        self.str("type");
        self.str("text");
    }
}

/// A short `Display` rendering without allocating; refuses (and the caller
/// falls back to `String`) when the text is longer than the buffer.
#[derive(Default)]
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
