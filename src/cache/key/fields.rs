//! Which top-level body fields take part in the key, per endpoint kind.

/// How a top-level body field takes part in the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FieldRole {
    /// Cannot change the output: left out.
    Excluded,
    /// Part of the scope (hashed separately).
    Scope,
    /// Chat messages: string content is normalized to a text-part array.
    Messages,
    /// Anthropic `system`: a string equals a one-text-block array.
    System,
    /// `tools`: each entry may carry a provider `cache_control` marker.
    Tools,
    /// Everything else, known or unknown.
    Included,
}

/// Every chat-completions field reprise knows, with its decision. A new
/// OpenAI field lands in `_ => Included` until someone decides otherwise.
pub(super) fn chat_field(name: &str) -> FieldRole {
    match name {
        "model" => FieldRole::Scope,
        "messages" => FieldRole::Messages,
        // Transport, attribution and provider-side caching hints.
        "stream"
        | "stream_options"
        | "user"
        | "metadata"
        | "store"
        | "prompt_cache_key"
        | "prompt_cache_retention"
        | "cache_control"
        | "cache" => FieldRole::Excluded,
        "tools" => FieldRole::Tools,
        // Output-affecting, listed so the decision is visible.
        "tool_choice"
        | "functions"
        | "function_call"
        | "response_format"
        | "temperature"
        | "top_p"
        | "max_tokens"
        | "max_completion_tokens"
        | "stop"
        | "seed"
        | "n"
        | "logprobs"
        | "top_logprobs"
        | "logit_bias"
        | "presence_penalty"
        | "frequency_penalty"
        | "reasoning_effort"
        | "parallel_tool_calls"
        | "modalities"
        | "audio"
        | "prediction"
        | "web_search_options"
        | "verbosity"
        | "service_tier" => FieldRole::Included,
        _ => FieldRole::Included,
    }
}

/// Every embeddings field reprise knows, with its decision.
pub(super) fn embeddings_field(name: &str) -> FieldRole {
    match name {
        "model" => FieldRole::Scope,
        "user" | "cache" => FieldRole::Excluded,
        // `encoding_format` changes the response bytes (base64 vs floats).
        "input" | "encoding_format" | "dimensions" => FieldRole::Included,
        _ => FieldRole::Included,
    }
}

/// Every Anthropic Messages field reprise knows, with its decision. Unlike
/// chat completions, `stream` is part of the key here: Anthropic streams are
/// replayed byte for byte and never converted to or from a JSON message.
pub(super) fn messages_field(name: &str) -> FieldRole {
    match name {
        "model" => FieldRole::Scope,
        "messages" => FieldRole::Messages,
        "system" => FieldRole::System,
        // Top-level `cache_control`: Anthropic's automatic caching hint.
        "metadata" | "cache" | "cache_control" => FieldRole::Excluded,
        "tools" => FieldRole::Tools,
        "stream" | "max_tokens" | "temperature" | "top_p" | "top_k" | "stop_sequences"
        | "tool_choice" | "thinking" | "service_tier" | "container" | "mcp_servers" => {
            FieldRole::Included
        }
        _ => FieldRole::Included,
    }
}
