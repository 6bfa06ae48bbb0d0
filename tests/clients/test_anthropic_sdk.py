"""The official `anthropic` Python SDK against reprise's `POST /v1/messages`, and the
`openai` SDK against a Claude model (translated to a Messages request and back).

Setup (conftest): provider `claude` (kind `anthropic`, models `claude-*`) points at the
same mock-upstream, which speaks Anthropic at `/v1/messages` (see
src/bin/mock-upstream/anthropic.rs); `mock` (OpenAI, `*`) catches everything else.

Contract under test:
- Messages requests are cached like chat completions: a repeat is `x-cache-status: hit`
  with the same content and one upstream call; a stream is replayed on a hit.
- reprise injects Anthropic prompt caching for callers who did not: `cache_control`
  on the last tool and the last system block (and, in multi-turn conversations, on the
  message before the newest user turn), skipping breakpoints whose prefix is below the
  model's minimum cacheable length. A caller who placed any `cache_control` keeps
  exactly their own markers.
- Responses keep Anthropic's native usage fields; `routing_metadata.cost` reports what
  the call cost (0 on a hit) and what caching saved.
- Provider errors reach the SDK as its own exception types and are never cached.

The cache lives for the whole session, so every test uses a unique prompt (`prompt`
fixture). Mock call counters and the mock's prompt cache are reset before every test.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import anthropic
import httpx
import httpx2  # the transport the anthropic and openai SDKs use
import openai
import pytest

# A priced model (data/pricing.json: claude-sonnet-4, min_cacheable_tokens 1024); the mock
# echoes any model name.
PRICED_MODEL = "claude-sonnet-4-20250514"
MAX_TOKENS = 256
EPHEMERAL = {"type": "ephemeral"}

# What reading a cut stream may raise (the SDK wraps or passes through transport errors).
STREAM_ERRORS = (anthropic.APIError, httpx2.HTTPError, httpx.HTTPError)

# The SDK warns that this (priced, dated) model name is deprecated; irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

POLL_TRIES = 200
POLL_INTERVAL_S = 0.01


def long_text(tag: str, words: int = 1500) -> str:
    """Well above 1,024 cl100k tokens (each `tagN` word is several tokens)."""
    return " ".join(f"{tag}{i}" for i in range(words))


SEARCH_TOOL: dict[str, Any] = {
    "name": "search",
    "description": "Search the knowledge base",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}
# Large enough that the tools alone reach the minimum cacheable length.
BIG_TOOL: dict[str, Any] = {
    "name": "lookup",
    "description": "Look a record up. " + long_text("field", 1500),
    "input_schema": {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    },
}

OPENAI_WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# --- helpers ---------------------------------------------------------------------------


def user(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def create_raw(client: anthropic.Anthropic, prompt: str, **kwargs: Any) -> Any:
    kwargs.setdefault("model", PRICED_MODEL)
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    kwargs.setdefault("messages", user(prompt))
    return client.messages.with_raw_response.create(**kwargs)


def wait_until_cached(client: anthropic.Anthropic, prompt: str, **kwargs: Any) -> None:
    """Bounded wait for the off-path write, with `only-if-cached` (504 until it exists)."""
    kwargs.setdefault("model", PRICED_MODEL)
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    kwargs.setdefault("messages", user(prompt))
    last: Exception | None = None
    for _ in range(POLL_TRIES):
        try:
            client.messages.create(extra_headers={"Cache-Control": "only-if-cached"}, **kwargs)
            return
        except anthropic.APIStatusError as e:
            assert e.status_code == 504, f"only-if-cached probe: unexpected {e.status_code}: {e.body}"
            last = e
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"entry not cached after {POLL_TRIES * POLL_INTERVAL_S:.1f}s: {last}")


def wait_until_chat_cached(client: openai.OpenAI, **kwargs: Any) -> None:
    last: Exception | None = None
    for _ in range(POLL_TRIES):
        try:
            client.chat.completions.create(extra_headers={"Cache-Control": "only-if-cached"}, **kwargs)
            return
        except openai.APIStatusError as e:
            assert e.status_code == 504, f"only-if-cached probe: unexpected {e.status_code}: {e.body}"
            last = e
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"entry not cached after {POLL_TRIES * POLL_INTERVAL_S:.1f}s: {last}")


def describe(headers: Any) -> str:
    return (
        f"status={headers.get('x-cache-status')!r} tier={headers.get('x-cache-tier')!r} "
        f"key={headers.get('x-cache-key')!r} age={headers.get('age')!r}"
    )


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def markers(value: Any, path: str = "") -> list[str]:
    """Paths of every `cache_control` key (not looking inside tool schemas)."""
    found: list[str] = []
    if isinstance(value, dict):
        if "cache_control" in value:
            found.append(path or "/")
        for k, v in value.items():
            if k not in ("input_schema", "cache_control"):
                found.extend(markers(v, f"{path}/{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(markers(v, f"{path}/{i}"))
    return found


# --- caching -----------------------------------------------------------------------------


def test_messages_create_twice_is_a_hit(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    first = create_raw(anthropic_client, prompt)
    assert first.status_code == 200
    assert first.headers.get("x-cache-status") == "miss", describe(first.headers)
    a = first.parse()
    assert a.type == "message" and a.role == "assistant"
    assert text_of(a).startswith("Mock answer to: ")
    assert a.stop_reason == "end_turn"

    wait_until_cached(anthropic_client, prompt)
    second = create_raw(anthropic_client, prompt)
    assert second.status_code == 200
    assert second.headers.get("x-cache-status") == "hit", describe(second.headers)
    assert second.headers.get("x-cache-tier") == "memory", describe(second.headers)
    assert second.headers.get("x-cache-key") == first.headers.get("x-cache-key")
    b = second.parse()
    assert b.id == a.id
    assert text_of(b) == text_of(a)
    assert b.stop_reason == a.stop_reason
    assert mock_calls()["messages"] == 1
    assert mock_calls()["chat"] == 0


def test_messages_stream_twice_is_replayed(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    runs = []
    for _ in range(2):
        with anthropic_client.messages.stream(
            model=PRICED_MODEL, max_tokens=MAX_TOKENS, messages=user(prompt)
        ) as stream:
            status = stream.response.headers.get("x-cache-status")
            ctype = stream.response.headers.get("content-type", "")
            text = stream.get_final_text()
            final = stream.get_final_message()
        runs.append((status, ctype, text, final))

    (s1, c1, t1, m1), (s2, c2, t2, m2) = runs
    assert s1 == "miss"
    assert s2 == "hit"
    assert c1.startswith("text/event-stream") and c2.startswith("text/event-stream")
    assert t1.startswith("Mock answer to: ")
    assert t2 == t1
    assert m2.id == m1.id
    assert m2.stop_reason == m1.stop_reason == "end_turn"
    assert mock_calls()["messages"] == 1


def test_messages_stream_tool_use_replayed(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    finals = []
    for _ in range(2):
        with anthropic_client.messages.stream(
            model=PRICED_MODEL, max_tokens=MAX_TOKENS, messages=user(prompt), tools=[SEARCH_TOOL]
        ) as stream:
            finals.append((stream.response.headers.get("x-cache-status"), stream.get_final_message()))
    (s1, m1), (s2, m2) = finals
    assert (s1, s2) == ("miss", "hit")
    tools1 = [(b.id, b.name, b.input) for b in m1.content if b.type == "tool_use"]
    tools2 = [(b.id, b.name, b.input) for b in m2.content if b.type == "tool_use"]
    assert tools1 == [(tools1[0][0], "search", {"query": prompt[:40]})]
    assert tools2 == tools1
    assert m2.stop_reason == "tool_use"
    assert mock_calls()["messages"] == 1


def test_caller_cache_control_is_not_part_of_the_key(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    """README "What the key covers": `cache_control` markers are ignored by the key."""
    system_text = long_text("sys")
    marked = [{"type": "text", "text": system_text, "cache_control": EPHEMERAL}]
    first = create_raw(anthropic_client, prompt, system=marked)
    assert first.headers.get("x-cache-status") == "miss", describe(first.headers)
    wait_until_cached(anthropic_client, prompt, system=marked)
    second = create_raw(anthropic_client, prompt, system=[{"type": "text", "text": system_text}])
    assert second.headers.get("x-cache-status") == "hit", describe(second.headers)
    assert mock_calls()["messages"] == 1


# --- prompt-cache injection ------------------------------------------------------------------


def test_injects_cache_control_on_last_system_block_and_last_tool(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_last: Callable[[], Any]
) -> None:
    system = [
        {"type": "text", "text": "You are a helpful assistant."},
        {"type": "text", "text": long_text("sys")},
    ]
    raw = create_raw(anthropic_client, prompt, system=system, tools=[SEARCH_TOOL, BIG_TOOL])
    assert raw.status_code == 200
    fwd = mock_last()
    assert fwd["tools"][-1].get("cache_control") == EPHEMERAL, markers(fwd)
    assert "cache_control" not in fwd["tools"][0]
    assert fwd["system"][-1].get("cache_control") == EPHEMERAL, markers(fwd)
    assert "cache_control" not in fwd["system"][0]
    assert sorted(markers(fwd)) == ["/system/1", "/tools/1"]
    # Nothing else changed: the markers are the only difference.
    assert [{k: v for k, v in t.items() if k != "cache_control"} for t in fwd["tools"]] == [SEARCH_TOOL, BIG_TOOL]
    assert [{k: v for k, v in s.items() if k != "cache_control"} for s in fwd["system"]] == system
    assert fwd["messages"] == user(prompt)
    # The mock imitates Anthropic's prompt cache: the injected breakpoints were written.
    usage = raw.parse().usage
    assert usage.cache_creation_input_tokens and usage.cache_creation_input_tokens > 0, usage


def test_injects_cache_control_on_string_system(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_last: Callable[[], Any]
) -> None:
    system = long_text("sys")
    create_raw(anthropic_client, prompt, system=system)
    fwd = mock_last()
    assert fwd["system"] == [{"type": "text", "text": system, "cache_control": EPHEMERAL}], str(fwd["system"])[:300]
    assert markers(fwd) == ["/system/0"]


def test_injects_cache_control_before_newest_user_turn(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_last: Callable[[], Any]
) -> None:
    messages = [
        {"role": "user", "content": "first question " + prompt},
        {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
        {"role": "user", "content": "second question " + prompt},
    ]
    create_raw(anthropic_client, prompt, system=long_text("sys"), messages=messages)
    fwd = mock_last()
    assert fwd["messages"][1]["content"][-1].get("cache_control") == EPHEMERAL, markers(fwd)
    assert sorted(markers(fwd)) == ["/messages/1/content/0", "/system/0"]
    assert fwd["messages"][2] == messages[2]


def test_injection_reads_the_prompt_cache_on_the_next_request(
    anthropic_client: anthropic.Anthropic, prompt: str
) -> None:
    """Two different questions over the same long system prompt: the second reads the prefix."""
    system = long_text("shared")
    first = create_raw(anthropic_client, prompt + " one", system=system).parse()
    second = create_raw(anthropic_client, prompt + " two", system=system).parse()
    assert first.usage.cache_creation_input_tokens > 0, first.usage
    assert first.usage.cache_read_input_tokens == 0, first.usage
    assert second.usage.cache_read_input_tokens > 0, second.usage
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


def test_short_prefix_below_model_minimum_gets_no_markers(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_last: Callable[[], Any]
) -> None:
    """A breakpoint below the model's minimum cacheable length (1,024 for claude-sonnet-4) is skipped."""
    create_raw(anthropic_client, prompt, system="Be brief.", tools=[SEARCH_TOOL])
    fwd = mock_last()
    assert markers(fwd) == [], markers(fwd)
    assert fwd["system"] == "Be brief."
    assert fwd["tools"] == [SEARCH_TOOL]


def test_caller_cache_control_is_forwarded_exactly(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_last: Callable[[], Any]
) -> None:
    system = [
        {"type": "text", "text": long_text("sys"), "cache_control": EPHEMERAL},
        {"type": "text", "text": "Answer in one line."},
    ]
    tools = [SEARCH_TOOL, BIG_TOOL]
    create_raw(anthropic_client, prompt, system=system, tools=tools)
    fwd = mock_last()
    assert markers(fwd) == ["/system/0"]
    assert fwd["system"] == system
    assert fwd["tools"] == tools
    assert fwd["messages"] == user(prompt)


def test_caller_marker_on_a_message_block_only(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_last: Callable[[], Any]
) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt, "cache_control": EPHEMERAL}]}]
    create_raw(anthropic_client, prompt, system=long_text("sys"), tools=[BIG_TOOL], messages=messages)
    fwd = mock_last()
    assert markers(fwd) == ["/messages/0/content/0"]
    assert fwd["messages"] == messages


# --- usage and cost ---------------------------------------------------------------------------


def test_miss_usage_keeps_anthropic_native_fields(
    anthropic_client: anthropic.Anthropic, prompt: str
) -> None:
    raw = create_raw(anthropic_client, prompt)
    body = raw.json()
    usage = body["usage"]
    for field in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert isinstance(usage.get(field), int), usage
    assert "prompt_tokens" not in usage, usage  # not translated to the OpenAI shape
    parsed = raw.parse().usage
    assert parsed.cache_creation_input_tokens is not None
    assert parsed.cache_read_input_tokens is not None
    assert parsed.input_tokens > 0 and parsed.output_tokens > 0


def test_hit_cost_is_zero_with_savings(
    anthropic_client: anthropic.Anthropic, prompt: str
) -> None:
    first = create_raw(anthropic_client, prompt)
    miss_meta = first.json().get("routing_metadata")
    assert isinstance(miss_meta, dict), first.json()
    assert miss_meta.get("provider") == "claude"
    assert miss_meta.get("cache", {}).get("status") == "miss"

    wait_until_cached(anthropic_client, prompt)
    second = create_raw(anthropic_client, prompt)
    assert second.headers.get("x-cache-status") == "hit", describe(second.headers)
    meta = second.json().get("routing_metadata")
    assert isinstance(meta, dict), second.json()
    assert meta.get("cache", {}).get("status") == "hit", meta
    cost = meta.get("cost")
    assert isinstance(cost, dict), meta
    assert cost.get("usd") == 0, cost
    assert cost.get("cache_savings_usd", 0) > 0, cost
    # The SDK still parses the extended body.
    assert text_of(second.parse())


def test_hit_reports_tokens_saved(anthropic_client: anthropic.Anthropic, prompt: str) -> None:
    """README: a hit's `routing_metadata.cache` carries `tokens_saved` (the original call's
    total tokens; for Anthropic usage: input + cache creation + cache read + output)."""
    first = create_raw(anthropic_client, prompt)
    u = first.json()["usage"]
    total = u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"] + u["output_tokens"]
    wait_until_cached(anthropic_client, prompt)
    second = create_raw(anthropic_client, prompt)
    assert second.headers.get("x-cache-status") == "hit", describe(second.headers)
    cache_meta = (second.json().get("routing_metadata") or {}).get("cache", {})
    assert cache_meta.get("tokens_saved") == total, cache_meta


def test_miss_cost_is_reported(anthropic_client: anthropic.Anthropic, prompt: str) -> None:
    raw = create_raw(anthropic_client, prompt)
    cost = (raw.json().get("routing_metadata") or {}).get("cost")
    assert isinstance(cost, dict), raw.json()
    assert cost.get("usd", 0) > 0, cost


# --- errors ---------------------------------------------------------------------------------------


def test_upstream_500_is_internal_server_error_and_not_cached(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    # The mock fails on the exact model name `mock-error-500`; the `claude/` prefix
    # selects the provider named `claude` and is stripped before forwarding.
    for attempt in (1, 2):
        with pytest.raises(anthropic.InternalServerError) as ei:
            anthropic_client.messages.create(
                model="claude/mock-error-500", max_tokens=MAX_TOKENS, messages=user(prompt)
            )
        assert ei.value.status_code == 500
        assert mock_calls()["messages"] == attempt  # errors are never cached


def test_upstream_429_is_rate_limit_error(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    with pytest.raises(anthropic.RateLimitError) as ei:
        anthropic_client.messages.create(model="claude/mock-error-429", max_tokens=MAX_TOKENS, messages=user(prompt))
    assert ei.value.status_code == 429
    assert mock_calls()["messages"] == 1


def test_cut_stream_raises_and_is_not_cached(
    anthropic_client: anthropic.Anthropic, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    """The mock cuts the stream before `message_stop`: an SDK error, never a cached entry."""
    for attempt in (1, 2):
        with pytest.raises(STREAM_ERRORS) as ei:
            with anthropic_client.messages.stream(
                model="claude/mock-cut-stream", max_tokens=MAX_TOKENS, messages=user(prompt)
            ) as stream:
                assert stream.response.status_code == 200
                for _ in stream:
                    pass
                stream.get_final_message()
        # A failure while reading the body, not an HTTP error status (e.g. a 404 route).
        assert not isinstance(ei.value, anthropic.APIStatusError), ei.value
        assert mock_calls()["messages"] == attempt


# --- the OpenAI SDK against a Claude model -----------------------------------------------------


def test_openai_sdk_to_claude_translates_both_ways(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict], mock_last: Callable[[], Any]
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=PRICED_MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": prompt},
        ],
        tools=[OPENAI_WEATHER_TOOL],
    )
    assert raw.status_code == 200
    assert raw.headers.get("x-cache-status") == "miss", describe(raw.headers)
    calls = mock_calls()
    assert calls["messages"] == 1 and calls["chat"] == 0, calls

    fwd = mock_last()
    assert "system" in fwd and "max_tokens" in fwd, fwd
    assert isinstance(fwd["max_tokens"], int) and fwd["max_tokens"] > 0
    assert all(m["role"] in ("user", "assistant") for m in fwd["messages"]), fwd["messages"]
    assert fwd["tools"][0]["name"] == "get_weather"
    assert fwd["tools"][0]["input_schema"] == OPENAI_WEATHER_TOOL["function"]["parameters"]

    completion = raw.parse()
    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    tcs = choice.message.tool_calls
    assert tcs and len(tcs) == 1, choice.message
    assert tcs[0].type == "function"
    assert tcs[0].id
    assert tcs[0].function.name == "get_weather"
    assert json.loads(tcs[0].function.arguments) == {"query": prompt[:40]}
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens is not None


def test_openai_sdk_to_claude_text_and_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    kwargs: dict[str, Any] = {
        "model": PRICED_MODEL,
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}],
    }
    first = client.chat.completions.with_raw_response.create(**kwargs)
    assert first.headers.get("x-cache-status") == "miss", describe(first.headers)
    a = first.parse()
    assert a.choices[0].message.content.startswith("Mock answer to: ")
    assert a.choices[0].finish_reason == "stop"
    wait_until_chat_cached(client, **kwargs)
    second = client.chat.completions.with_raw_response.create(**kwargs)
    assert second.headers.get("x-cache-status") == "hit", describe(second.headers)
    assert second.parse().choices[0].message.content == a.choices[0].message.content
    assert mock_calls()["messages"] == 1


def test_openai_sdk_to_claude_long_system_gets_cached_tokens(
    client: openai.OpenAI, prompt: str, mock_last: Callable[[], Any]
) -> None:
    """Injection after translation: the mock's prompt cache shows up as `cached_tokens`."""
    system = {"role": "system", "content": long_text("sys")}
    first = client.chat.completions.create(
        model=PRICED_MODEL, messages=[system, {"role": "user", "content": prompt + " one"}]
    )
    fwd = mock_last()
    assert markers(fwd) == ["/system/0"], markers(fwd)
    second = client.chat.completions.create(
        model=PRICED_MODEL, messages=[system, {"role": "user", "content": prompt + " two"}]
    )
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens > 0, second.usage
    # OpenAI's prompt_tokens includes the cached part.
    assert second.usage.prompt_tokens >= second.usage.prompt_tokens_details.cached_tokens


def collect_openai_stream(stream: Any) -> tuple[str, dict[int, dict[str, str]], list[str], list[Any]]:
    content: list[str] = []
    tools: dict[int, dict[str, str]] = {}
    finish: list[str] = []
    usage: list[Any] = []
    for chunk in stream:
        if chunk.usage is not None:
            usage.append(chunk)
        for choice in chunk.choices:
            d = choice.delta
            if d is not None:
                if d.content:
                    content.append(d.content)
                for tc in d.tool_calls or []:
                    slot = tools.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    return "".join(content), tools, finish, usage


def test_openai_sdk_to_claude_stream_tool_call(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    results = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model=PRICED_MODEL,
            messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}],
            tools=[OPENAI_WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
        assert raw.headers.get("content-type", "").startswith("text/event-stream")
        results.append((raw.headers.get("x-cache-status"), collect_openai_stream(raw.parse())))

    (s1, (c1, t1, f1, u1)), (s2, (c2, t2, f2, u2)) = results
    assert s1 == "miss"
    assert list(t1) == [0], t1
    assert t1[0]["name"] == "get_weather" and t1[0]["id"]
    assert json.loads(t1[0]["arguments"]) == {"query": prompt[:40]}
    assert f1 == ["tool_calls"]
    assert len(u1) == 1 and u1[0].choices == [] and u1[0].usage.prompt_tokens > 0
    assert mock_calls()["messages"] == 1

    assert s2 == "hit"
    assert t2 == t1 and f2 == f1 and c2 == c1
    assert len(u2) == 1
    assert mock_calls()["messages"] == 1


def test_openai_sdk_to_claude_stream_text(client: openai.OpenAI, prompt: str) -> None:
    stream = client.chat.completions.create(model=PRICED_MODEL, messages=user(prompt), stream=True)
    content, tools, finish, usage = collect_openai_stream(stream)
    assert content.startswith("Mock answer to: ")
    assert tools == {} and finish == ["stop"] and usage == []
    non_stream = client.chat.completions.create(model=PRICED_MODEL, messages=user(prompt))
    assert non_stream.choices[0].message.content == content


def test_openai_sdk_to_claude_upstream_500(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="claude/mock-error-500", messages=user(prompt))
    assert ei.value.status_code == 500
    assert mock_calls()["messages"] == 1
