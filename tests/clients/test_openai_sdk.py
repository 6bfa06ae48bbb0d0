"""The official `openai` Python SDK against a running reprise + mock-upstream.

Contract under test (see /work/shared/DESIGN.md, "Contract with clients"):
responses carry `x-cache-status`, `x-cache-tier` (on hits), `x-cache-key`
(64 hex chars) and `age` (on hits); the `cache` body extension and the
cache-control headers steer the cache; upstream errors reach the SDK as its own
exception types and are never cached.

The cache lives for the whole session, so every test uses a unique prompt
(`prompt` fixture). Mock call counters are reset before every test.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Callable

import openai
import pytest

MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
HEX64 = re.compile(r"^[0-9a-f]{64}$")

WEATHER_TOOL: dict[str, Any] = {
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
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string"}},
            "required": ["tz"],
        },
    },
}


def chat_raw(client: openai.OpenAI, prompt: str, **kwargs: Any) -> Any:
    """One non-stream chat completion through `with_raw_response` (headers + parsed body)."""
    kwargs.setdefault("model", MODEL)
    return client.chat.completions.with_raw_response.create(
        messages=[{"role": "user", "content": prompt}], **kwargs
    )


def status(raw: Any) -> str | None:
    return raw.headers.get("x-cache-status")


def describe(raw: Any) -> str:
    """Cache headers of a response, for assertion messages."""
    h = raw.headers
    return (
        f"status={h.get('x-cache-status')!r} tier={h.get('x-cache-tier')!r} "
        f"key={h.get('x-cache-key')!r} age={h.get('age')!r}"
    )


def assert_miss(raw: Any) -> None:
    assert raw.status_code == 200
    assert status(raw) == "miss", describe(raw)
    assert HEX64.match(raw.headers.get("x-cache-key", "")), describe(raw)


def assert_hit(raw: Any) -> None:
    assert raw.status_code == 200
    assert status(raw) == "hit", describe(raw)
    assert raw.headers.get("x-cache-tier") == "memory", describe(raw)
    assert HEX64.match(raw.headers.get("x-cache-key", "")), describe(raw)
    age = raw.headers.get("age")
    assert age is not None and age.isdigit(), describe(raw)


def content(raw: Any) -> str | None:
    return raw.parse().choices[0].message.content


# --- basic hit / miss -------------------------------------------------------


def test_same_request_twice_is_a_hit(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    first = chat_raw(client, prompt)
    assert_miss(first)
    second = chat_raw(client, prompt)
    assert_hit(second)

    a, b = first.parse(), second.parse()
    assert a.choices[0].message.content
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.id == a.id
    assert second.headers["x-cache-key"] == first.headers["x-cache-key"]
    assert mock_calls()["chat"] == 1


def test_hit_body_has_routing_metadata(client: openai.OpenAI, prompt: str) -> None:
    assert_miss(chat_raw(client, prompt))
    second = chat_raw(client, prompt)
    assert_hit(second)
    body = json.loads(second.text)
    assert body.get("routing_metadata", {}).get("cache", {}).get("status") == "hit", body.get("routing_metadata")
    # The SDK still parses the extended body into its own model.
    assert second.parse().choices[0].message.content


def test_async_client_same_request_twice_is_a_hit(
    async_client_factory: Callable[..., openai.AsyncOpenAI], prompt: str, mock_calls: Callable[[], dict]
) -> None:
    async def run() -> tuple[Any, Any]:
        async with async_client_factory() as c:
            msgs = [{"role": "user", "content": prompt}]
            first = await c.chat.completions.with_raw_response.create(model=MODEL, messages=msgs)
            second = await c.chat.completions.with_raw_response.create(model=MODEL, messages=msgs)
            return first, second

    first, second = asyncio.run(run())
    assert_miss(first)
    assert_hit(second)
    assert second.parse().id == first.parse().id
    assert content(second) == content(first)
    assert mock_calls()["chat"] == 1


def test_async_client_plain_create(
    async_client_factory: Callable[..., openai.AsyncOpenAI], prompt: str
) -> None:
    """The non-raw async path (what most apps call) parses both a miss and a hit."""

    async def run() -> tuple[Any, Any]:
        async with async_client_factory() as c:
            msgs = [{"role": "user", "content": prompt}]
            return (
                await c.chat.completions.create(model=MODEL, messages=msgs),
                await c.chat.completions.create(model=MODEL, messages=msgs),
            )

    a, b = asyncio.run(run())
    assert a.choices[0].message.content
    assert (b.id, b.choices[0].message.content) == (a.id, a.choices[0].message.content)


# --- what separates entries ---------------------------------------------------


def test_different_api_key_is_a_different_namespace(
    client: openai.OpenAI, client_b: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    a = chat_raw(client, prompt)
    assert_miss(a)
    b = chat_raw(client_b, prompt)
    assert_miss(b)
    assert b.headers["x-cache-key"] != a.headers["x-cache-key"]
    assert mock_calls()["chat"] == 2
    # Each namespace now has its own entry.
    assert_hit(chat_raw(client, prompt))
    assert_hit(chat_raw(client_b, prompt))
    assert mock_calls()["chat"] == 2


def test_changed_temperature_is_a_miss(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    assert_miss(chat_raw(client, prompt, temperature=0.2))
    assert_hit(chat_raw(client, prompt, temperature=0.2))
    changed = chat_raw(client, prompt, temperature=0.7)
    assert_miss(changed)
    assert mock_calls()["chat"] == 2


def test_changed_tools_is_a_miss(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    assert_miss(chat_raw(client, prompt, tools=[WEATHER_TOOL]))
    assert_hit(chat_raw(client, prompt, tools=[WEATHER_TOOL]))
    assert_miss(chat_raw(client, prompt, tools=[WEATHER_TOOL, TIME_TOOL]))
    assert mock_calls()["chat"] == 2


def test_integer_and_float_temperature_share_an_entry(client: openai.OpenAI, prompt: str) -> None:
    """DESIGN "The key": numbers are normalized, `0` == `0.0` (Python sends `0` vs `0.0`)."""
    assert_miss(chat_raw(client, prompt, temperature=0))
    assert_hit(chat_raw(client, prompt, temperature=0.0))


def test_string_content_equals_text_part_array(client: openai.OpenAI, prompt: str) -> None:
    """DESIGN "The key": string content == one-element `[{"type":"text","text":...}]`."""
    first = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}]
    )
    assert_miss(first)
    second = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    )
    assert_hit(second)


# --- request controls -----------------------------------------------------------


def test_no_store_does_not_write(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    first = chat_raw(client, prompt, extra_headers={"Cache-Control": "no-store"})
    assert first.status_code == 200
    assert content(first)
    assert status(first) != "hit", describe(first)

    second = chat_raw(client, prompt)
    assert_miss(second)  # nothing was stored by the no-store request
    assert mock_calls()["chat"] == 2
    assert_hit(chat_raw(client, prompt))  # ...but the normal request was stored
    assert mock_calls()["chat"] == 2


def test_no_cache_refreshes_the_entry(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    original = chat_raw(client, prompt)
    assert_miss(original)
    cached = chat_raw(client, prompt)
    assert_hit(cached)
    assert cached.parse().id == original.parse().id
    assert mock_calls()["chat"] == 1

    refreshed = chat_raw(client, prompt, extra_headers={"Cache-Control": "no-cache"})
    assert refreshed.status_code == 200
    assert status(refreshed) != "hit", describe(refreshed)
    assert mock_calls()["chat"] == 2  # upstream was asked again
    refreshed_id = refreshed.parse().id
    assert refreshed_id != original.parse().id  # mock ids are chatcmpl-mock-<counter>

    after = chat_raw(client, prompt)
    assert_hit(after)
    assert after.parse().id == refreshed_id  # the no-cache response replaced the entry
    assert mock_calls()["chat"] == 2


def test_cache_body_extension_is_stripped(
    client: openai.OpenAI, prompt: str, mock_last: Callable[[], Any], mock_calls: Callable[[], dict]
) -> None:
    first = chat_raw(client, prompt, extra_body={"cache": {"ttl": 60}})
    assert first.status_code == 200
    assert content(first)
    assert mock_calls()["chat"] == 1
    forwarded = mock_last()
    assert "cache" not in forwarded, forwarded
    assert forwarded["messages"][0]["content"] == prompt


def test_cache_body_extension_is_not_part_of_the_key(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    """DESIGN "The key": the proxy's own `cache` extension is excluded from the key."""
    assert_miss(chat_raw(client, prompt, extra_body={"cache": {"ttl": 60}}))
    assert_hit(chat_raw(client, prompt, extra_body={"cache": {"ttl": 60}}))
    assert_hit(chat_raw(client, prompt))
    assert mock_calls()["chat"] == 1


def test_unknown_field_is_forwarded_unchanged(
    client: openai.OpenAI, prompt: str, mock_last: Callable[[], Any]
) -> None:
    raw = chat_raw(client, prompt, extra_body={"some_vendor_field": {"x": 1}})
    assert raw.status_code == 200
    forwarded = mock_last()
    assert forwarded.get("some_vendor_field") == {"x": 1}, forwarded


def test_unknown_field_is_part_of_the_key(client: openai.OpenAI, prompt: str) -> None:
    """DESIGN "The key": an unknown field may affect output, so it is in the key."""
    assert_miss(chat_raw(client, prompt, extra_body={"some_vendor_field": {"x": 1}}))
    assert_hit(chat_raw(client, prompt, extra_body={"some_vendor_field": {"x": 1}}))
    assert_miss(chat_raw(client, prompt, extra_body={"some_vendor_field": {"x": 2}}))
    assert_miss(chat_raw(client, prompt))


def test_caller_authorization_is_forwarded(
    client: openai.OpenAI,
    client_b: openai.OpenAI,
    prompt: str,
    mock_last_headers: Callable[[], dict[str, str]],
) -> None:
    """The provider has no `api_key_env`, so the caller's credential goes upstream."""
    chat_raw(client, prompt)
    assert mock_last_headers().get("authorization") == "Bearer sk-test-a"
    chat_raw(client_b, prompt)
    assert mock_last_headers().get("authorization") == "Bearer sk-test-b"


# --- embeddings -------------------------------------------------------------------


def test_embeddings_twice_is_a_hit(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    inputs = [prompt, prompt + " (second input)"]
    first = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=inputs)
    assert_miss(first)
    second = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=inputs)
    assert_hit(second)

    a, b = first.parse(), second.parse()
    assert len(a.data) == len(inputs)
    assert all(isinstance(x, float) for x in a.data[0].embedding) and a.data[0].embedding
    assert [d.embedding for d in b.data] == [d.embedding for d in a.data]
    assert [d.index for d in b.data] == [0, 1]
    assert mock_calls()["embeddings"] == 1


# --- upstream errors ------------------------------------------------------------------


def test_upstream_500_is_internal_server_error_and_not_cached(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    for attempt in (1, 2):
        with pytest.raises(openai.InternalServerError) as ei:
            client.chat.completions.create(model="mock-error-500", messages=[{"role": "user", "content": prompt}])
        assert ei.value.status_code == 500
        assert mock_calls()["chat"] == attempt  # errors are never cached


def test_upstream_429_is_rate_limit_error(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(model="mock-error-429", messages=[{"role": "user", "content": prompt}])
    assert ei.value.status_code == 429
    assert mock_calls()["chat"] == 1


# --- streaming --------------------------------------------------------------------------


def stream_raw(client: openai.OpenAI, prompt: str, **kwargs: Any) -> tuple[Any, str]:
    """A `stream=True` request: (raw response, concatenated delta content)."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True, **kwargs
    )
    parts: list[str] = []
    for chunk in raw.parse():
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                parts.append(choice.delta.content)
    return raw, "".join(parts)


def test_stream_content_matches_non_stream(client: openai.OpenAI, prompt: str) -> None:
    raw, streamed = stream_raw(client, prompt)
    assert raw.status_code == 200
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    assert status(raw) in ("bypass", "miss"), describe(raw)
    assert streamed
    non_stream = content(chat_raw(client, prompt))
    assert streamed == non_stream


def test_stream_with_include_usage(client: openai.OpenAI, prompt: str) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_second_stream_request_is_a_hit(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    first, first_text = stream_raw(client, prompt)
    second, second_text = stream_raw(client, prompt)
    assert status(second) == "hit", describe(second)
    assert second.headers.get("content-type", "").startswith("text/event-stream")
    assert second_text == first_text
    assert mock_calls()["chat"] == 1


def wait_until_cached(client: openai.OpenAI, prompt: str, tries: int = 200, **kwargs: Any) -> None:
    """Bounded wait (tries x 10 ms) for an entry, using `only-if-cached` (504 until written)."""
    for _ in range(tries):
        try:
            chat_raw(client, prompt, extra_headers={"Cache-Control": "only-if-cached"}, **kwargs)
            return
        except openai.APIStatusError as e:
            assert e.status_code == 504, e
        time.sleep(0.01)
    pytest.fail(f"entry not cached after {tries} probes")


# --- prompt-cache injection (the `mock` provider has `inject_prompt_cache = true`) ----------


def test_prompt_cache_key_is_injected(
    client: openai.OpenAI, prompt: str, mock_last: Callable[[], Any]
) -> None:
    raw = chat_raw(client, prompt)
    assert raw.status_code == 200
    forwarded = mock_last()
    key = forwarded.get("prompt_cache_key")
    assert isinstance(key, str) and key.startswith("reprise-"), forwarded
    assert re.fullmatch(r"reprise-[0-9a-f]{32}", key), key
    assert "sk-test-a" not in key  # derived from a hash, never the credential


def test_prompt_cache_key_depends_on_prefix_and_credential(
    client: openai.OpenAI, client_b: openai.OpenAI, prompt: str, mock_last: Callable[[], Any]
) -> None:
    """Same credential + model + system prefix -> same key; another credential -> another key."""
    system = {"role": "system", "content": f"You are terse. ({prompt})"}

    def key_for(c: openai.OpenAI, question: str) -> str:
        c.chat.completions.create(model=MODEL, messages=[system, {"role": "user", "content": question}])
        return mock_last()["prompt_cache_key"]

    k1 = key_for(client, prompt + " first question")
    k2 = key_for(client, prompt + " second question")
    assert k1 == k2  # the user turn is not part of the stable prefix
    assert key_for(client_b, prompt + " first question") != k1


def test_caller_prompt_cache_key_is_forwarded_unchanged(
    client: openai.OpenAI, prompt: str, mock_last: Callable[[], Any]
) -> None:
    raw = chat_raw(client, prompt, extra_body={"prompt_cache_key": "my-own-key-123"})
    assert raw.status_code == 200
    assert mock_last().get("prompt_cache_key") == "my-own-key-123"


def test_prompt_cache_key_is_not_part_of_the_key(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    """README "What the key covers": `prompt_cache_key` is excluded."""
    assert_miss(chat_raw(client, prompt, extra_body={"prompt_cache_key": "caller-key"}))
    wait_until_cached(client, prompt)  # the JSON write is off the response path
    assert_hit(chat_raw(client, prompt))
    assert_hit(chat_raw(client, prompt, extra_body={"prompt_cache_key": "another-key"}))
    assert mock_calls()["chat"] == 1
