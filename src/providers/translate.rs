//! OpenAI chat completions ⇄ Anthropic Messages, as pure functions over JSON.
//!
//! [`chat_to_messages`] turns an OpenAI `chat.completions` request into an Anthropic
//! `/v1/messages` request; [`messages_to_chat`] turns Anthropic's message response
//! back into a `chat.completion`. The streaming direction lives in
//! `anthropic_stream.rs` and shares [`finish_reason`] and [`normalize_usage`].
//!
//! Principle: a field is translated when Anthropic has an equivalent, dropped when
//! losing it cannot change the answer ([`DROPPED_FIELDS`], or a field at its neutral
//! value, [`DROPPED_WHEN_NEUTRAL`]), and refused with a 400 naming it otherwise
//! ([`REFUSED_FIELDS`], and every unknown field): a silently different answer is
//! worse than a clear error. A top-level `null` counts as absent.
//!
//! Decisions:
//! - `temperature` is clamped to 1.0 (OpenAI's range is 0–2, Anthropic's 0–1; values
//!   up to 1 mean roughly the same on both). This is what Anthropic's own OpenAI
//!   compatibility layer does.
//! - System and developer messages are hoisted, in order, into the top-level `system`
//!   array (one text block per part), wherever they appear in `messages`.
//! - `seed` is dropped: Anthropic has none, and losing it changes determinism only.
//! - `response_format` `json_object` / `json_schema` are a 400: Anthropic has no JSON
//!   mode, and emulating one with a forced tool would change `tool_choice` and the
//!   shape of streamed deltas behind the caller's back. `{"type":"text"}` is dropped.
//! - `reasoning_effort` is a 400: there is no faithful mapping to a thinking budget.
//!   Anthropic's own `thinking` object (and `top_k`) may be sent as extensions and
//!   are passed through ([`ANTHROPIC_EXTENSIONS`]).
//! - `tools[].function.strict` is dropped (Anthropic's compatibility layer ignores it
//!   too; SDKs set it by default, so refusing it would break them).
//! - `name` on messages is dropped (Anthropic has no per-message name).
//! - An assistant message's `reasoning_content` is dropped: Anthropic needs the signed
//!   thinking blocks, which an OpenAI client does not keep.
//! - `cache_control` is accepted on content parts, on tools (beside `function` or
//!   inside it) and on a whole message (applied to its last block), and kept as
//!   Anthropic's marker.
//! - Unknown keys inside messages, content parts and tools are a 400 too.

use serde_json::{json, Map, Value};

use crate::error::ProxyError;

/// Top-level fields dropped whatever their value: they have no Anthropic equivalent
/// and do not change the answer (`seed` changes determinism only).
pub const DROPPED_FIELDS: &[&str] = &[
    "store",
    "metadata",
    "stream_options",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "seed",
];

/// Top-level fields dropped at their neutral value (shown as JSON); any other value
/// is a 400 naming the field.
pub const DROPPED_WHEN_NEUTRAL: &[(&str, &str)] = &[
    ("n", "1"),
    ("presence_penalty", "0"),
    ("frequency_penalty", "0"),
    ("logprobs", "false"),
    ("top_logprobs", "0"),
    ("logit_bias", "{}"),
    ("modalities", r#"["text"]"#),
    ("response_format", r#"{"type":"text"}"#),
];

/// Top-level fields refused with a 400 whenever present (not null): Anthropic cannot
/// honour them and dropping them would silently change the answer.
pub const REFUSED_FIELDS: &[&str] = &[
    "audio",
    "prediction",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    "functions",
    "function_call",
];

/// Anthropic request fields accepted as extensions and passed through unchanged.
pub const ANTHROPIC_EXTENSIONS: &[&str] = &["thinking", "top_k"];

/// Top-level fields that are translated.
const TRANSLATED_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
];

/// Anthropic's `temperature` ceiling.
const MAX_TEMPERATURE: f64 = 1.0;

fn bad(message: impl Into<String>, param: &'static str) -> ProxyError {
    ProxyError::bad_request(message, Some(param))
}

/// The `&'static` name of a known top-level field, for the error's `param`.
fn static_name(key: &str) -> Option<&'static str> {
    TRANSLATED_FIELDS
        .iter()
        .chain(DROPPED_FIELDS)
        .chain(REFUSED_FIELDS)
        .chain(ANTHROPIC_EXTENSIONS)
        .chain(DROPPED_WHEN_NEUTRAL.iter().map(|(k, _)| k))
        .find(|k| **k == key)
        .copied()
}

/// Whether `value` is the neutral value of a [`DROPPED_WHEN_NEUTRAL`] field.
fn is_neutral(key: &str, value: &Value) -> bool {
    match key {
        "n" => value.as_f64() == Some(1.0),
        "presence_penalty" | "frequency_penalty" | "top_logprobs" => value.as_f64() == Some(0.0),
        "logprobs" => value == &Value::Bool(false),
        "logit_bias" => value.as_object().is_some_and(Map::is_empty),
        "modalities" => value == &json!(["text"]),
        "response_format" => {
            value.as_object().is_some_and(|o| o.len() == 1)
                && value.get("type").and_then(Value::as_str) == Some("text")
        }
        _ => false,
    }
}

/// Translates an OpenAI chat request into an Anthropic Messages request.
///
/// `default_max_tokens` is used when neither `max_completion_tokens` nor
/// `max_tokens` is given (Anthropic requires one).
pub fn chat_to_messages(
    body: &Map<String, Value>,
    default_max_tokens: u64,
) -> Result<Map<String, Value>, ProxyError> {
    // Classify every field first, so an unsupported one is named even when a
    // translated one would also fail.
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        let name = static_name(key);
        match name {
            Some(k) if REFUSED_FIELDS.contains(&k) => {
                return Err(bad(refused_message(k), k));
            }
            Some(k) if DROPPED_WHEN_NEUTRAL.iter().any(|(n, _)| *n == k) => {
                if !is_neutral(k, value) {
                    return Err(bad(non_neutral_message(k, value), k));
                }
            }
            Some(_) => {}
            None => {
                return Err(ProxyError::bad_request(
                    format!(
                        "`{key}` is not supported when routing to an Anthropic model \
                         (reprise refuses unknown fields rather than dropping them)"
                    ),
                    None,
                ));
            }
        }
    }
    let get = |k: &str| body.get(k).filter(|v| !v.is_null());

    let mut out = Map::new();
    let model = get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`model` is required and must be a string", "model"))?;
    out.insert("model".into(), model.into());
    out.insert(
        "max_tokens".into(),
        max_tokens(
            get("max_completion_tokens"),
            get("max_tokens"),
            default_max_tokens,
        )?
        .into(),
    );

    let messages = get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` is required and must be an array", "messages"))?;
    let (system, turns) = convert_messages(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns));

    let tools = match get("tools") {
        Some(Value::Array(tools)) => tools
            .iter()
            .map(convert_tool)
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(bad("`tools` must be an array", "tools")),
        None => Vec::new(),
    };
    let parallel = match get("parallel_tool_calls") {
        None => true,
        Some(v) => v.as_bool().ok_or_else(|| {
            bad(
                "`parallel_tool_calls` must be a boolean",
                "parallel_tool_calls",
            )
        })?,
    };
    let mut tool_choice = get("tool_choice").map(convert_tool_choice).transpose()?;
    if !parallel && !tools.is_empty() {
        let choice = tool_choice.get_or_insert_with(|| {
            let mut auto = Map::new();
            auto.insert("type".into(), "auto".into());
            auto
        });
        if choice.get("type").and_then(Value::as_str) != Some("none") {
            choice.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), Value::Object(choice));
    }

    if let Some(stop) = get("stop") {
        let sequences = match stop {
            Value::String(s) => vec![Value::String(s.clone())],
            Value::Array(items) if items.iter().all(Value::is_string) => items.clone(),
            _ => {
                return Err(bad(
                    "`stop` must be a string or an array of strings",
                    "stop",
                ))
            }
        };
        if !sequences.is_empty() {
            out.insert("stop_sequences".into(), Value::Array(sequences));
        }
    }
    if let Some(t) = get("temperature") {
        let t = t
            .as_f64()
            .ok_or_else(|| bad("`temperature` must be a number", "temperature"))?;
        let value = if t > MAX_TEMPERATURE {
            json!(MAX_TEMPERATURE)
        } else {
            body.get("temperature").cloned().unwrap_or(Value::Null)
        };
        out.insert("temperature".into(), value);
    }
    if let Some(p) = get("top_p") {
        if !p.is_number() {
            return Err(bad("`top_p` must be a number", "top_p"));
        }
        out.insert("top_p".into(), p.clone());
    }
    for ext in ANTHROPIC_EXTENSIONS {
        if let Some(v) = get(ext) {
            out.insert((*ext).into(), v.clone());
        }
    }
    let user = match (get("user"), get("safety_identifier")) {
        (Some(u), _) => Some(("user", u)),
        (None, Some(s)) => Some(("safety_identifier", s)),
        (None, None) => None,
    };
    if let Some((field, user)) = user {
        let user = user
            .as_str()
            .ok_or_else(|| bad(format!("`{field}` must be a string"), field))?;
        if !user.is_empty() {
            out.insert("metadata".into(), json!({ "user_id": user }));
        }
    }
    if let Some(stream) = get("stream") {
        let stream = stream
            .as_bool()
            .ok_or_else(|| bad("`stream` must be a boolean", "stream"))?;
        out.insert("stream".into(), stream.into());
    }
    Ok(out)
}

fn refused_message(field: &str) -> String {
    let hint = match field {
        "reasoning_effort" => " (send Anthropic's `thinking` object instead)",
        "functions" | "function_call" => " (use `tools` / `tool_choice`)",
        _ => "",
    };
    format!("`{field}` is not supported when routing to an Anthropic model{hint}")
}

fn non_neutral_message(field: &str, value: &Value) -> String {
    match field {
        "response_format" => format!(
            "`response_format` {} is not supported when routing to an Anthropic model \
             (Anthropic has no JSON mode; only {{\"type\":\"text\"}} is accepted)",
            value.get("type").unwrap_or(value)
        ),
        "n" => "`n` must be 1 when routing to an Anthropic model".to_owned(),
        _ => format!(
            "`{field}` = {value} is not supported when routing to an Anthropic model \
             (only its default is accepted)"
        ),
    }
}

fn max_tokens(
    max_completion: Option<&Value>,
    max: Option<&Value>,
    default: u64,
) -> Result<u64, ProxyError> {
    let (field, value) = match (max_completion, max) {
        (Some(v), _) => ("max_completion_tokens", v),
        (None, Some(v)) => ("max_tokens", v),
        (None, None) => return Ok(default),
    };
    value
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad(format!("`{field}` must be a positive integer"), field))
}

/// A user or assistant turn being assembled.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

const SYSTEM_KEYS: &[&str] = &["role", "content", "name", "cache_control"];
const USER_KEYS: &[&str] = &["role", "content", "name", "cache_control"];
const ASSISTANT_KEYS: &[&str] = &[
    "role",
    "content",
    "name",
    "cache_control",
    "tool_calls",
    "refusal",
    "reasoning_content",
    "audio",
    "function_call",
];
const TOOL_KEYS: &[&str] = &["role", "content", "tool_call_id", "cache_control"];

/// `(system blocks, Anthropic messages)`.
fn convert_messages(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), ProxyError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let m = message
            .as_object()
            .ok_or_else(|| bad(format!("messages[{i}] must be an object"), "messages"))?;
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let allowed = match role {
            "system" | "developer" => SYSTEM_KEYS,
            "user" => USER_KEYS,
            "assistant" => ASSISTANT_KEYS,
            "tool" => TOOL_KEYS,
            "function" => {
                return Err(bad(
                    format!(
                    "messages[{i}]: role `function` is deprecated and not supported; use `tool`"
                ),
                    "messages",
                ))
            }
            other => {
                return Err(bad(
                    format!("messages[{i}]: unsupported role `{other}`"),
                    "messages",
                ))
            }
        };
        if let Some(key) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(
                format!("messages[{i}]: `{key}` is not supported on a `{role}` message when routing to an Anthropic model"),
                "messages",
            ));
        }
        let (turn_role, mut blocks) = match role {
            "system" | "developer" => {
                let mut blocks = text_blocks(m.get("content"), i)?;
                blocks.retain(|b| b.get("text").and_then(Value::as_str) != Some(""));
                mark_last(&mut blocks, m.get("cache_control"));
                system.extend(blocks);
                continue;
            }
            "user" => ("user", user_blocks(m.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            _ => ("user", vec![tool_result(m, i)?]),
        };
        mark_last(&mut blocks, m.get("cache_control"));
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == turn_role => last.blocks.append(&mut blocks),
            _ => turns.push(Turn {
                role: turn_role,
                blocks,
            }),
        }
    }
    let messages = turns
        .into_iter()
        .map(|t| {
            let mut msg = Map::new();
            msg.insert("role".into(), t.role.into());
            msg.insert("content".into(), compact_content(t.blocks));
            Value::Object(msg)
        })
        .collect();
    Ok((system, messages))
}

/// A lone plain text block becomes string content; anything else stays blocks.
fn compact_content(mut blocks: Vec<Value>) -> Value {
    if blocks.len() == 1 {
        let plain = blocks[0]
            .as_object()
            .is_some_and(|b| b.len() == 2 && b.get("type").and_then(Value::as_str) == Some("text"));
        if plain {
            if let Some(Value::String(text)) = blocks[0].get_mut("text").map(Value::take) {
                return Value::String(text);
            }
        }
    }
    Value::Array(blocks)
}

/// Applies a message-level `cache_control` to the message's last block.
fn mark_last(blocks: &mut [Value], cache_control: Option<&Value>) {
    let Some(cc) = cache_control.filter(|c| !c.is_null()) else {
        return;
    };
    if let Some(Value::Object(last)) = blocks.last_mut() {
        last.insert("cache_control".into(), cc.clone());
    }
}

fn text_block(text: &str, cache_control: Option<&Value>) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), "text".into());
    block.insert("text".into(), text.into());
    if let Some(cc) = cache_control.filter(|c| !c.is_null()) {
        block.insert("cache_control".into(), cc.clone());
    }
    Value::Object(block)
}

fn check_keys(part: &Map<String, Value>, allowed: &[&str], i: usize) -> Result<(), ProxyError> {
    match part.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(bad(
            format!("messages[{i}]: `{key}` is not supported in a content part when routing to an Anthropic model"),
            "messages",
        )),
        None => Ok(()),
    }
}

/// Content that may only hold text (system, developer and tool messages).
fn text_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![text_block(s, None)]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                let part = p.as_object().filter(|o| {
                    o.get("type").and_then(Value::as_str) == Some("text")
                        && o.get("text").is_some_and(Value::is_string)
                });
                let part = part.ok_or_else(|| {
                    bad(
                        format!("messages[{i}]: only text parts are allowed here"),
                        "messages",
                    )
                })?;
                check_keys(part, &["type", "text", "cache_control"], i)?;
                Ok(text_block(
                    part.get("text").and_then(Value::as_str).unwrap_or_default(),
                    part.get("cache_control"),
                ))
            })
            .collect(),
        Some(_) => Err(bad(
            format!("messages[{i}]: `content` must be a string or an array of parts"),
            "messages",
        )),
    }
}

fn user_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        Some(Value::String(s)) => Ok(vec![text_block(s, None)]),
        Some(Value::Array(parts)) => parts.iter().map(|p| user_part(p, i)).collect(),
        _ => Err(bad(
            format!("messages[{i}]: `content` must be a string or an array of parts"),
            "messages",
        )),
    }
}

fn user_part(part: &Value, i: usize) -> Result<Value, ProxyError> {
    let p = part.as_object().ok_or_else(|| {
        bad(
            format!("messages[{i}]: a content part must be an object"),
            "messages",
        )
    })?;
    let cache_control = p.get("cache_control");
    match p.get("type").and_then(Value::as_str).unwrap_or_default() {
        "text" => {
            check_keys(p, &["type", "text", "cache_control"], i)?;
            let text = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                bad(format!("messages[{i}]: a text part needs a string `text`"), "messages")
            })?;
            Ok(text_block(text, cache_control))
        }
        "image_url" => {
            check_keys(p, &["type", "image_url", "cache_control"], i)?;
            let url = match p.get("image_url") {
                Some(Value::String(url)) => Some(url.as_str()),
                Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
                _ => None,
            };
            let url = url.ok_or_else(|| {
                bad(format!("messages[{i}]: an image_url part needs `image_url.url`"), "messages")
            })?;
            Ok(block_with_source("image", image_source(url, i)?, cache_control))
        }
        "file" => {
            check_keys(p, &["type", "file", "cache_control"], i)?;
            let data = p
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    bad(
                        format!("messages[{i}]: only inline `file.file_data` files are supported when routing to an Anthropic model (not `file_id`)"),
                        "messages",
                    )
                })?;
            let source = data_url_source(data, i)?;
            if source.get("media_type").and_then(Value::as_str) != Some("application/pdf") {
                return Err(bad(
                    format!("messages[{i}]: only PDF files are supported when routing to an Anthropic model"),
                    "messages",
                ));
            }
            Ok(block_with_source("document", source, cache_control))
        }
        other => Err(bad(
            format!("messages[{i}]: content part type `{other}` is not supported when routing to an Anthropic model"),
            "messages",
        )),
    }
}

fn block_with_source(kind: &str, source: Value, cache_control: Option<&Value>) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), kind.into());
    block.insert("source".into(), source);
    if let Some(cc) = cache_control.filter(|c| !c.is_null()) {
        block.insert("cache_control".into(), cc.clone());
    }
    Value::Object(block)
}

/// `data:` URLs become base64 sources, http(s) URLs URL sources.
fn image_source(url: &str, i: usize) -> Result<Value, ProxyError> {
    if url.starts_with("data:") {
        data_url_source(url, i)
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "url", "url": url}))
    } else {
        Err(bad(
            format!("messages[{i}]: an image URL must be an http(s) URL or a base64 data: URL"),
            "messages",
        ))
    }
}

/// `data:<media type>[;params];base64,<data>` → `{"type":"base64","media_type","data"}`.
fn data_url_source(url: &str, i: usize) -> Result<Value, ProxyError> {
    let parsed = url.strip_prefix("data:").and_then(|rest| {
        let (meta, data) = rest.split_once(',')?;
        let mut params = meta.split(';');
        let media_type = params.next().filter(|m| !m.is_empty())?;
        params.any(|p| p == "base64").then_some((media_type, data))
    });
    let (media_type, data) = parsed.ok_or_else(|| {
        bad(
            format!("messages[{i}]: a data: URL must look like `data:<media type>;base64,<data>`"),
            "messages",
        )
    })?;
    Ok(json!({"type": "base64", "media_type": media_type, "data": data}))
}

fn assistant_blocks(m: &Map<String, Value>, i: usize) -> Result<Vec<Value>, ProxyError> {
    for field in ["audio", "function_call"] {
        if m.get(field).is_some_and(|v| !v.is_null()) {
            return Err(bad(
                format!("messages[{i}]: `{field}` on an assistant message is not supported when routing to an Anthropic model"),
                "messages",
            ));
        }
    }
    let mut blocks = Vec::new();
    match m.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => blocks.push(text_block(s, None)),
        Some(Value::Array(parts)) => {
            for p in parts {
                let part = p.as_object().ok_or_else(|| {
                    bad(
                        format!("messages[{i}]: a content part must be an object"),
                        "messages",
                    )
                })?;
                check_keys(part, &["type", "text", "refusal", "cache_control"], i)?;
                let text = match part.get("type").and_then(Value::as_str) {
                    Some("text") => part.get("text"),
                    Some("refusal") => part.get("refusal"),
                    _ => None,
                };
                let text = text.and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        format!("messages[{i}]: assistant content parts must be text or refusal"),
                        "messages",
                    )
                })?;
                blocks.push(text_block(text, part.get("cache_control")));
            }
        }
        Some(_) => {
            return Err(bad(
                format!("messages[{i}]: `content` must be a string, an array of parts or null"),
                "messages",
            ))
        }
    }
    if blocks.is_empty() {
        if let Some(Value::String(refusal)) = m.get("refusal") {
            blocks.push(text_block(refusal, None));
        }
    }
    // Anthropic refuses empty text blocks; an empty assistant text carries nothing.
    blocks.retain(|b| b.get("text").and_then(Value::as_str) != Some(""));
    match m.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for call in calls {
                blocks.push(tool_use(call, i)?);
            }
        }
        Some(_) => {
            return Err(bad(
                format!("messages[{i}]: `tool_calls` must be an array"),
                "messages",
            ))
        }
    }
    Ok(blocks)
}

fn tool_use(call: &Value, i: usize) -> Result<Value, ProxyError> {
    let id = call.get("id").and_then(Value::as_str);
    let function = call.get("function");
    let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(bad(
            format!("messages[{i}]: a tool call needs `id` and `function.name`"),
            "messages",
        ));
    };
    let arguments = function
        .and_then(|f| f.get("arguments"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let input = if arguments.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str::<Value>(arguments)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                bad(
                    format!(
                        "messages[{i}]: the arguments of tool call `{id}` are not a JSON object"
                    ),
                    "messages",
                )
            })?
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result(m: &Map<String, Value>, i: usize) -> Result<Value, ProxyError> {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                format!("messages[{i}]: a tool message needs a string `tool_call_id`"),
                "messages",
            )
        })?;
    let content = match m.get("content") {
        Some(Value::String(s)) => Value::String(s.clone()),
        other => Value::Array(text_blocks(other, i)?),
    };
    Ok(json!({"type": "tool_result", "tool_use_id": id, "content": content}))
}

fn convert_tool(tool: &Value) -> Result<Value, ProxyError> {
    let t = tool
        .as_object()
        .ok_or_else(|| bad("each tool must be an object", "tools"))?;
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(
            "only `function` tools are supported when routing to an Anthropic model",
            "tools",
        ));
    }
    if let Some(key) = t
        .keys()
        .find(|k| !["type", "function", "cache_control"].contains(&k.as_str()))
    {
        return Err(bad(format!("`tools[].{key}` is not supported"), "tools"));
    }
    let f = t
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("a function tool needs a `function` object", "tools"))?;
    if let Some(key) = f.keys().find(|k| {
        ![
            "name",
            "description",
            "parameters",
            "strict",
            "cache_control",
        ]
        .contains(&k.as_str())
    }) {
        return Err(bad(
            format!("`tools[].function.{key}` is not supported"),
            "tools",
        ));
    }
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a function tool needs a string `name`", "tools"))?;
    let mut out = Map::new();
    out.insert("name".into(), name.into());
    if let Some(d) = f.get("description").filter(|d| !d.is_null()) {
        out.insert("description".into(), d.clone());
    }
    let schema = f
        .get("parameters")
        .filter(|p| !p.is_null())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object"}));
    out.insert("input_schema".into(), schema);
    let cache_control = t
        .get("cache_control")
        .or_else(|| f.get("cache_control"))
        .filter(|c| !c.is_null());
    if let Some(cc) = cache_control {
        out.insert("cache_control".into(), cc.clone());
    }
    Ok(Value::Object(out))
}

fn convert_tool_choice(choice: &Value) -> Result<Map<String, Value>, ProxyError> {
    let kind = match choice {
        Value::String(s) => match s.as_str() {
            "auto" => "auto",
            "required" => "any",
            "none" => "none",
            other => {
                return Err(bad(
                    format!("`tool_choice` `{other}` is not supported"),
                    "tool_choice",
                ))
            }
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("`tool_choice.function.name` is required", "tool_choice"))?;
            let mut out = Map::new();
            out.insert("type".into(), "tool".into());
            out.insert("name".into(), name.into());
            return Ok(out);
        }
        _ => {
            return Err(bad(
                "`tool_choice` must be \"auto\", \"required\", \"none\" or a named function",
                "tool_choice",
            ))
        }
    };
    let mut out = Map::new();
    out.insert("type".into(), kind.into());
    Ok(out)
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, unknown.
        _ => "stop",
    }
}

/// OpenAI usage from Anthropic usage: `prompt_tokens` counts every input token
/// (uncached + cache reads + cache writes), as OpenAI's does; the cache fields go to
/// `prompt_tokens_details` only when Anthropic sent them.
pub fn normalize_usage(usage: &Map<String, Value>) -> Value {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64);
    let input = n("input_tokens").unwrap_or(0);
    let read = n("cache_read_input_tokens");
    let creation = n("cache_creation_input_tokens");
    let output = n("output_tokens").unwrap_or(0);
    let prompt = input
        .saturating_add(read.unwrap_or(0))
        .saturating_add(creation.unwrap_or(0));
    let mut out = Map::new();
    out.insert("prompt_tokens".into(), prompt.into());
    out.insert("completion_tokens".into(), output.into());
    out.insert("total_tokens".into(), prompt.saturating_add(output).into());
    let mut details = Map::new();
    if let Some(read) = read {
        details.insert("cached_tokens".into(), read.into());
    }
    if let Some(creation) = creation {
        details.insert("cache_creation_tokens".into(), creation.into());
    }
    if !details.is_empty() {
        out.insert("prompt_tokens_details".into(), Value::Object(details));
    }
    Value::Object(out)
}

/// Translates an Anthropic message response into a `chat.completion`.
/// `created` is the unix time to report (the caller's clock keeps this pure).
pub fn messages_to_chat(resp: &Value, model_for_client: &str, created: u64) -> Value {
    let id = resp.get("id").and_then(Value::as_str).unwrap_or_default();
    let blocks: &[Value] = resp
        .get("content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("thinking") => {
                let t = block
                    .get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                reasoning.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = serde_json::to_string(&input).unwrap_or_else(|_| "{}".into());
                tool_calls.push(json!({
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": arguments,
                    },
                }));
            }
            // redacted_thinking, server tool blocks: nothing an OpenAI client reads.
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert("content".into(), text.map_or(Value::Null, Value::String));
    if let Some(r) = reasoning {
        message.insert("reasoning_content".into(), r.into());
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    message.insert("refusal".into(), Value::Null);
    let stop_reason = resp.get("stop_reason").and_then(Value::as_str);
    let empty = Map::new();
    let usage = resp
        .get("usage")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model_for_client,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(stop_reason),
        }],
        "usage": normalize_usage(usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn translate(v: Value) -> Result<Value, ProxyError> {
        chat_to_messages(&obj(v), 4096).map(Value::Object)
    }

    fn err_param(v: Value) -> (String, Option<&'static str>) {
        match translate(v) {
            Err(ProxyError::BadRequest { message, param, .. }) => (message, param),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn minimal_request() {
        let out = translate(json!({"model": "claude-x", "messages": [
            {"role": "user", "content": "hi"}]}))
        .unwrap();
        assert_eq!(
            out,
            json!({"model": "claude-x", "max_tokens": 4096,
                   "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn system_and_developer_are_hoisted_with_cache_control() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "system", "content": "sys one"},
            {"role": "user", "content": "q"},
            {"role": "developer", "content": [
                {"type": "text", "text": "dev a"},
                {"type": "text", "text": "dev b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "system", "content": ""}]}))
        .unwrap();
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "sys one"},
                   {"type": "text", "text": "dev a"},
                   {"type": "text", "text": "dev b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
        );
        assert_eq!(out["messages"], json!([{"role": "user", "content": "q"}]));
    }

    #[test]
    fn tool_loop_merges_turns() {
        let out = translate(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "user", "content": [{"type": "text", "text": "in Paris", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": "You're welcome", "name": "bot"}]}))
        .unwrap();
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "weather?"},
                    {"type": "text", "text": "in Paris", "cache_control": {"type": "ephemeral"}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                    {"type": "text", "text": "thanks"}]},
                {"role": "assistant", "content": "You're welcome"}])
        );
    }

    #[test]
    fn invalid_tool_arguments_are_a_400() {
        for args in ["{not json", "[1,2]", "\"s\""] {
            let (msg, param) = err_param(json!({"model": "m", "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]}]}));
            assert_eq!(param, Some("messages"));
            assert!(msg.contains("arguments"), "{msg}");
        }
    }

    #[test]
    fn images_and_files() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}, "cache_control": {"type": "ephemeral"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}}]}]}))
        .unwrap();
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}, "cache_control": {"type": "ephemeral"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}])
        );
        for bad_url in [
            "data:image/png,rawbytes",
            "ftp://x/y.png",
            "data:;base64,AA",
        ] {
            let (_, param) = err_param(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": bad_url}}]}]}),
            );
            assert_eq!(param, Some("messages"));
        }
        let (msg, _) = err_param(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}),
        );
        assert!(msg.contains("input_audio"), "{msg}");
    }

    #[test]
    fn tools_and_tool_choice() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "function", "function": {"name": "a", "description": "A", "parameters": {"type": "object", "properties": {}}, "strict": true}},
                {"type": "function", "function": {"name": "b"}, "cache_control": {"type": "ephemeral"}}]});
        let out = translate(base.clone()).unwrap();
        assert_eq!(
            out["tools"],
            json!([
                {"name": "a", "description": "A", "input_schema": {"type": "object", "properties": {}}},
                {"name": "b", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}])
        );
        assert!(out.get("tool_choice").is_none());
        let cases = [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "b"}}),
                json!({"type": "tool", "name": "b"}),
            ),
        ];
        for (choice, expected) in cases {
            let mut req = base.clone();
            req["tool_choice"] = choice;
            assert_eq!(translate(req).unwrap()["tool_choice"], expected);
        }
        let mut req = base.clone();
        req["parallel_tool_calls"] = json!(false);
        assert_eq!(
            translate(req.clone()).unwrap()["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        req["tool_choice"] = json!("required");
        assert_eq!(
            translate(req.clone()).unwrap()["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        req["tool_choice"] = json!("none");
        assert_eq!(
            translate(req).unwrap()["tool_choice"],
            json!({"type": "none"})
        );
        let mut custom = base.clone();
        custom["tools"] = json!([{"type": "custom", "custom": {"name": "x"}}]);
        assert_eq!(err_param(custom).1, Some("tools"));
    }

    #[test]
    fn scalar_fields() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 1.7, "top_p": 0.9,
            "stop": "END", "stream": true, "stream_options": {"include_usage": true},
            "user": "u-1", "seed": 7, "n": 1, "presence_penalty": 0, "frequency_penalty": 0.0,
            "store": false, "metadata": {"a": "b"}, "logprobs": false, "logit_bias": {},
            "modalities": ["text"], "response_format": {"type": "text"},
            "prompt_cache_key": "k", "service_tier": "auto", "thinking": {"type": "enabled", "budget_tokens": 1024},
            "top_k": 5, "audio": null}))
        .unwrap();
        assert_eq!(
            out,
            json!({"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}],
                "stop_sequences": ["END"], "temperature": 1.0, "top_p": 0.9,
                "thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5,
                "metadata": {"user_id": "u-1"}, "stream": true})
        );
        let kept = translate(json!({"model": "m", "messages": [], "temperature": 0.3,
            "stop": ["a", "b"], "max_tokens": 5}))
        .unwrap();
        assert_eq!(kept["temperature"], json!(0.3));
        assert_eq!(kept["stop_sequences"], json!(["a", "b"]));
        assert_eq!(kept["max_tokens"], 5);
    }

    #[test]
    fn behaviour_changing_fields_are_named_in_a_400() {
        let cases = [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("audio", json!({"voice": "alloy", "format": "wav"})),
            ("modalities", json!(["text", "audio"])),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(-1)),
            ("prediction", json!({"type": "content", "content": "x"})),
            ("logit_bias", json!({"50256": -100})),
            (
                "response_format",
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
            ),
            ("response_format", json!({"type": "json_object"})),
            ("reasoning_effort", json!("high")),
            ("max_tokens", json!(0)),
            ("temperature", json!("hot")),
        ];
        for (field, value) in cases {
            let mut req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            req[field] = value;
            let (msg, param) = err_param(req);
            assert_eq!(param, Some(field), "{field}: {msg}");
            assert!(msg.contains(field), "{field}: {msg}");
        }
        let (msg, param) = err_param(json!({"model": "m", "messages": [], "frobnicate": 1}));
        assert!(msg.contains("`frobnicate`"), "{msg}");
        assert_eq!(param, None);
        let (msg, _) = err_param(json!({"model": "m", "messages": [
            {"role": "user", "content": "x", "weird": 1}]}));
        assert!(msg.contains("`weird`"), "{msg}");
    }

    #[test]
    fn response_text_and_usage() {
        let resp = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": 20, "output_tokens": 5}});
        let out = messages_to_chat(&resp, "claude-alias", 1_700_000_000);
        assert_eq!(
            out,
            json!({"id": "chatcmpl-msg_01", "object": "chat.completion", "created": 1_700_000_000u64,
                "model": "claude-alias",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world", "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135,
                          "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 20}}})
        );
        let plain = normalize_usage(&obj(json!({"input_tokens": 3, "output_tokens": 4})));
        assert_eq!(
            plain,
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
        );
        let zero = normalize_usage(&obj(json!({"input_tokens": 3, "output_tokens": 4,
            "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})));
        assert_eq!(
            zero["prompt_tokens_details"],
            json!({"cached_tokens": 0, "cache_creation_tokens": 0})
        );
    }

    #[test]
    fn response_tool_use_and_thinking() {
        let resp = json!({"id": "msg_02", "content": [
            {"type": "thinking", "thinking": "Let me think", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris", "n": 1}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}});
        let out = messages_to_chat(&resp, "m", 0);
        let message = &out["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["reasoning_content"], "Let me think");
        assert_eq!(
            message["tool_calls"],
            json!([{"id": "toolu_1", "type": "function",
                    "function": {"name": "get", "arguments": "{\"city\":\"Paris\",\"n\":1}"}}])
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn finish_reasons() {
        for (stop, finish) in [
            (Some("end_turn"), "stop"),
            (Some("stop_sequence"), "stop"),
            (Some("max_tokens"), "length"),
            (Some("tool_use"), "tool_calls"),
            (Some("refusal"), "content_filter"),
            (Some("pause_turn"), "stop"),
            (None, "stop"),
        ] {
            assert_eq!(finish_reason(stop), finish);
        }
    }
}
