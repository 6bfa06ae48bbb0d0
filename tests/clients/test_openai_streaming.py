"""Stream caching with the official `openai` Python SDK.

Contract under test (README "What the key covers", DESIGN "Contract with clients"):
`stream` and `stream_options` are not part of the key, so a streamed request and a
non-streamed one share an entry in both directions. A streamed miss is stored right
before its final `[DONE]` is released, so the next identical request is a hit without
waiting; a JSON miss is stored off the response path, so tests wait for it with
`Cache-Control: only-if-cached` probes (504 `not_cached` until it is there).

A hit replays the same deltas (content, `reasoning_content`, tool-call fragments) and,
with `stream_options.include_usage`, a final `choices: []` chunk carrying `usage`
(reprise always asks the provider for usage, so this holds even when the miss did
not ask for it). A stream cut by the provider surfaces as an SDK error and is never
cached.

The cache lives for the whole session, so every test uses a unique prompt (`prompt`
fixture). Mock call counters are reset before every test.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import httpx
import httpx2  # the transport the openai SDK uses (it wraps its errors as APIConnectionError)
import openai
import pytest

MODEL = "gpt-4o-mini"
REASONING_MODEL = "mock-reasoning"  # the mock adds `reasoning_content` for models containing "reasoning"
CUT_MODEL = "mock-cut-stream"  # the mock aborts the connection after two content deltas

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

# Bounded wait for an off-path cache write (200 x 10 ms).
POLL_TRIES = 200
POLL_INTERVAL_S = 0.01


# --- helpers -------------------------------------------------------------------------


@dataclass
class Collected:
    """Everything a client reassembles from a chat completion stream."""

    content: str = ""
    reasoning: str = ""
    # index -> {"id", "type", "name", "arguments"}
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reasons: list[str] = field(default_factory=list)
    usage_chunks: list[Any] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    chunks: int = 0

    def tool_calls_list(self) -> list[dict[str, Any]]:
        return [self.tool_calls[i] for i in sorted(self.tool_calls)]


def reasoning_of(obj: Any) -> str | None:
    """`reasoning_content` of a delta or message (an unknown field to the SDK)."""
    value = getattr(obj, "reasoning_content", None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get("reasoning_content")
    return value


def collect(chunks: Iterable[Any]) -> Collected:
    out = Collected()
    content: list[str] = []
    reasoning: list[str] = []
    for chunk in chunks:
        out.chunks += 1
        out.ids.add(chunk.id)
        if chunk.usage is not None:
            out.usage_chunks.append(chunk)
        for choice in chunk.choices:
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    content.append(delta.content)
                r = reasoning_of(delta)
                if r:
                    reasoning.append(r)
                for tc in delta.tool_calls or []:
                    slot = out.tool_calls.setdefault(
                        tc.index, {"id": None, "type": None, "name": "", "arguments": ""}
                    )
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.type:
                        slot["type"] = tc.type
                    if tc.function is not None:
                        if tc.function.name:
                            slot["name"] += tc.function.name
                        if tc.function.arguments:
                            slot["arguments"] += tc.function.arguments
            if choice.finish_reason:
                out.finish_reasons.append(choice.finish_reason)
    out.content = "".join(content)
    out.reasoning = "".join(reasoning)
    return out


def messages_for(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def stream_raw(client: openai.OpenAI, prompt: str, **kwargs: Any) -> tuple[Any, Collected]:
    """A `stream=True` request via `with_raw_response`: (raw response, collected stream)."""
    kwargs.setdefault("model", MODEL)
    raw = client.chat.completions.with_raw_response.create(messages=messages_for(prompt), stream=True, **kwargs)
    return raw, collect(raw.parse())


def stream_ctx(client: openai.OpenAI, prompt: str, **kwargs: Any) -> tuple[dict[str, str], Collected]:
    """A `stream=True` request via `with_streaming_response` (context manager)."""
    kwargs.setdefault("model", MODEL)
    with client.chat.completions.with_streaming_response.create(
        messages=messages_for(prompt), stream=True, **kwargs
    ) as resp:
        headers = dict(resp.headers)
        collected = collect(resp.parse())
    return headers, collected


def chat_raw(client: openai.OpenAI, prompt: str, **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    return client.chat.completions.with_raw_response.create(messages=messages_for(prompt), **kwargs)


def wait_until_cached(client: openai.OpenAI, prompt: str, **kwargs: Any) -> None:
    """Waits (bounded) until the entry for this request exists, never calling upstream."""
    kwargs.setdefault("model", MODEL)
    last: Exception | None = None
    for _ in range(POLL_TRIES):
        try:
            client.chat.completions.create(
                messages=messages_for(prompt),
                extra_headers={"Cache-Control": "only-if-cached"},
                **kwargs,
            )
            return
        except openai.APIStatusError as e:
            assert e.status_code == 504, f"only-if-cached probe: unexpected {e.status_code}: {e.body}"
            last = e
        time.sleep(POLL_INTERVAL_S)
    pytest.fail(f"entry not cached after {POLL_TRIES * POLL_INTERVAL_S:.1f}s: {last}")


def status(headers: Any) -> str | None:
    return headers.get("x-cache-status")


def describe(headers: Any) -> str:
    return (
        f"status={headers.get('x-cache-status')!r} tier={headers.get('x-cache-tier')!r} "
        f"key={headers.get('x-cache-key')!r} age={headers.get('age')!r}"
    )


def assert_sse(headers: Any) -> None:
    assert headers.get("content-type", "").startswith("text/event-stream"), dict(headers)


# --- stream twice -------------------------------------------------------------------


def test_stream_twice_second_is_hit_with_identical_content(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    first, a = stream_raw(client, prompt)
    assert first.status_code == 200
    assert_sse(first.headers)
    assert status(first.headers) == "miss", describe(first.headers)
    assert a.content.startswith("Mock answer to: "), a.content
    assert a.finish_reasons == ["stop"]

    second, b = stream_raw(client, prompt)
    assert second.status_code == 200
    assert_sse(second.headers)
    assert status(second.headers) == "hit", describe(second.headers)
    assert second.headers.get("x-cache-tier") == "memory", describe(second.headers)
    assert second.headers.get("x-cache-key") == first.headers.get("x-cache-key")
    assert (second.headers.get("age") or "").isdigit(), describe(second.headers)

    assert b.content == a.content
    assert b.finish_reasons == a.finish_reasons
    assert b.ids == a.ids  # the replay carries the original completion id
    assert mock_calls()["chat"] == 1


def test_stream_twice_with_streaming_response_context_manager(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    h1, a = stream_ctx(client, prompt)
    assert status(h1) == "miss", describe(h1)
    h2, b = stream_ctx(client, prompt)
    assert status(h2) == "hit", describe(h2)
    assert_sse(h2)
    assert a.content and b.content == a.content
    assert mock_calls()["chat"] == 1


def test_stream_reasoning_content_identical_on_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    first, a = stream_raw(client, prompt, model=REASONING_MODEL)
    assert status(first.headers) == "miss", describe(first.headers)
    assert a.reasoning.startswith("Thinking about: "), a.reasoning
    assert a.content

    second, b = stream_raw(client, prompt, model=REASONING_MODEL)
    assert status(second.headers) == "hit", describe(second.headers)
    assert b.reasoning == a.reasoning
    assert b.content == a.content
    assert mock_calls()["chat"] == 1


def test_stream_tool_call_deltas_identical_on_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    first, a = stream_raw(client, prompt, tools=[WEATHER_TOOL])
    assert status(first.headers) == "miss", describe(first.headers)
    assert a.finish_reasons == ["tool_calls"]
    calls = a.tool_calls_list()
    assert len(calls) == 1, calls
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"] and calls[0]["type"] == "function"
    args = json.loads(calls[0]["arguments"])  # fragments reassemble into valid JSON
    assert isinstance(args, dict) and args, args
    assert a.content == ""

    second, b = stream_raw(client, prompt, tools=[WEATHER_TOOL])
    assert status(second.headers) == "hit", describe(second.headers)
    assert b.tool_calls_list() == calls
    assert b.finish_reasons == ["tool_calls"]
    assert mock_calls()["chat"] == 1


# --- include_usage ------------------------------------------------------------------


def assert_usage_chunk(c: Collected) -> Any:
    assert len(c.usage_chunks) == 1, f"expected one usage chunk, got {len(c.usage_chunks)}"
    last = c.usage_chunks[0]
    assert last.choices == []
    u = last.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    return u


def test_include_usage_final_chunk_on_miss_and_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    opts = {"include_usage": True}
    first, a = stream_raw(client, prompt, stream_options=opts)
    assert status(first.headers) == "miss", describe(first.headers)
    ua = assert_usage_chunk(a)

    second, b = stream_raw(client, prompt, stream_options=opts)
    assert status(second.headers) == "hit", describe(second.headers)
    ub = assert_usage_chunk(b)
    assert (ub.prompt_tokens, ub.completion_tokens, ub.total_tokens) == (
        ua.prompt_tokens,
        ua.completion_tokens,
        ua.total_tokens,
    )
    assert b.content == a.content

    # The same entry without include_usage: no chunk carries usage.
    third, c = stream_raw(client, prompt)
    assert status(third.headers) == "hit", describe(third.headers)
    assert c.usage_chunks == []
    assert c.content == a.content
    assert mock_calls()["chat"] == 1


def test_include_usage_on_hit_when_miss_did_not_ask(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    """`stream_options` is not in the key: a miss without usage still serves a hit that asks for it."""
    first, a = stream_raw(client, prompt)
    assert status(first.headers) == "miss", describe(first.headers)
    assert a.usage_chunks == []  # the caller did not ask, so it gets none

    second, b = stream_raw(client, prompt, stream_options={"include_usage": True})
    assert status(second.headers) == "hit", describe(second.headers)
    assert_usage_chunk(b)
    assert b.content == a.content
    assert mock_calls()["chat"] == 1


# --- stream <-> non-stream share an entry --------------------------------------------


def test_non_stream_after_stream_miss_is_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    first, a = stream_raw(client, prompt, model=REASONING_MODEL)
    assert status(first.headers) == "miss", describe(first.headers)

    raw = chat_raw(client, prompt, model=REASONING_MODEL)
    assert status(raw.headers) == "hit", describe(raw.headers)
    assert raw.headers.get("content-type", "").startswith("application/json")
    completion = raw.parse()
    assert completion.object == "chat.completion"
    msg = completion.choices[0].message
    assert msg.content == a.content
    assert reasoning_of(msg) == a.reasoning
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id in a.ids
    assert mock_calls()["chat"] == 1


def test_non_stream_after_stream_miss_keeps_tool_calls(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    first, a = stream_raw(client, prompt, tools=[WEATHER_TOOL])
    assert status(first.headers) == "miss", describe(first.headers)

    raw = chat_raw(client, prompt, tools=[WEATHER_TOOL])
    assert status(raw.headers) == "hit", describe(raw.headers)
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    got = [
        {"id": tc.id, "type": tc.type, "name": tc.function.name, "arguments": tc.function.arguments}
        for tc in choice.message.tool_calls or []
    ]
    assert got == a.tool_calls_list()
    assert mock_calls()["chat"] == 1


def test_stream_after_non_stream_miss_is_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    raw = chat_raw(client, prompt, model=REASONING_MODEL)
    assert status(raw.headers) == "miss", describe(raw.headers)
    completion = raw.parse()
    wait_until_cached(client, prompt, model=REASONING_MODEL)

    second, b = stream_raw(client, prompt, model=REASONING_MODEL, stream_options={"include_usage": True})
    assert status(second.headers) == "hit", describe(second.headers)
    assert_sse(second.headers)
    assert b.content == completion.choices[0].message.content
    assert b.reasoning == reasoning_of(completion.choices[0].message)
    assert b.finish_reasons == ["stop"]
    assert b.ids == {completion.id}
    u = assert_usage_chunk(b)
    assert completion.usage is not None
    assert (u.prompt_tokens, u.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert mock_calls()["chat"] == 1


def test_stream_after_non_stream_tool_call_miss_is_hit(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    raw = chat_raw(client, prompt, tools=[WEATHER_TOOL])
    assert status(raw.headers) == "miss", describe(raw.headers)
    msg = raw.parse().choices[0].message
    assert msg.tool_calls
    wait_until_cached(client, prompt, tools=[WEATHER_TOOL])

    second, b = stream_raw(client, prompt, tools=[WEATHER_TOOL])
    assert status(second.headers) == "hit", describe(second.headers)
    expected = [
        {"id": tc.id, "type": tc.type, "name": tc.function.name, "arguments": tc.function.arguments}
        for tc in msg.tool_calls
    ]
    assert b.tool_calls_list() == expected
    assert json.loads(b.tool_calls_list()[0]["arguments"]) == json.loads(expected[0]["arguments"])
    assert b.finish_reasons == ["tool_calls"]
    assert mock_calls()["chat"] == 1


# --- the SDK's high-level streaming helper ---------------------------------------------


def helper_run(client: openai.OpenAI, prompt: str, **kwargs: Any) -> tuple[str | None, Any, list[str]]:
    """`chat.completions.stream(...)`: (x-cache-status if reachable, final completion, event types)."""
    kwargs.setdefault("model", MODEL)
    with client.chat.completions.stream(messages=messages_for(prompt), **kwargs) as stream:
        # The helper does not expose headers publicly; `_response` is the httpx response.
        response = getattr(stream, "_response", None)
        cache_status = response.headers.get("x-cache-status") if response is not None else None
        event_types = [event.type for event in stream]
        final = stream.get_final_completion()
    return cache_status, final, event_types


def test_stream_helper_works_on_hit(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    s1, first, ev1 = helper_run(client, prompt)
    assert s1 in (None, "miss"), s1
    s2, second, ev2 = helper_run(client, prompt)
    assert s2 in (None, "hit"), s2
    assert mock_calls()["chat"] == 1

    c1, c2 = first.choices[0].message.content, second.choices[0].message.content
    assert c1 and c1.startswith("Mock answer to: ")
    assert c2 == c1
    assert second.id == first.id
    assert second.choices[0].finish_reason == "stop"
    assert "content.done" in ev2 and "content.delta" in ev2, ev2


def test_stream_helper_tool_call_on_hit(client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]) -> None:
    _, first, _ = helper_run(client, prompt, tools=[WEATHER_TOOL])
    _, second, ev = helper_run(client, prompt, tools=[WEATHER_TOOL])
    assert mock_calls()["chat"] == 1
    t1 = first.choices[0].message.tool_calls
    t2 = second.choices[0].message.tool_calls
    assert t1 and t2
    assert [(t.id, t.function.name, t.function.arguments) for t in t2] == [
        (t.id, t.function.name, t.function.arguments) for t in t1
    ]
    assert json.loads(t2[0].function.arguments)
    assert "tool_calls.function.arguments.done" in ev, ev


# --- a cut stream -------------------------------------------------------------------------


STREAM_ERRORS = (openai.APIError, httpx2.HTTPError, httpx.HTTPError)


def test_cut_stream_raises_and_is_not_cached(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    for attempt in (1, 2):
        received: list[str] = []
        with pytest.raises(STREAM_ERRORS) as ei:
            stream = client.chat.completions.create(model=CUT_MODEL, messages=messages_for(prompt), stream=True)
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        received.append(choice.delta.content)
        # Raised while reading the body (the head was a 200), not as an HTTP status error.
        assert not isinstance(ei.value, openai.APIStatusError), ei.value
        # The deltas before the cut reached the client as they arrived.
        assert "".join(received).startswith("Mock "), received
        # Never cached: the identical request goes upstream again.
        assert mock_calls()["chat"] == attempt

    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(
            model=CUT_MODEL,
            messages=messages_for(prompt),
            extra_headers={"Cache-Control": "only-if-cached"},
        )
    assert ei.value.status_code == 504
    assert mock_calls()["chat"] == 2


def test_cut_stream_with_raw_response_raises(
    client: openai.OpenAI, prompt: str, mock_calls: Callable[[], dict]
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CUT_MODEL, messages=messages_for(prompt), stream=True
    )
    assert raw.status_code == 200
    assert status(raw.headers) == "miss", describe(raw.headers)
    with pytest.raises(STREAM_ERRORS):
        collect(raw.parse())
    raw2 = client.chat.completions.with_raw_response.create(
        model=CUT_MODEL, messages=messages_for(prompt), stream=True
    )
    assert status(raw2.headers) == "miss", describe(raw2.headers)
    with pytest.raises(STREAM_ERRORS):
        collect(raw2.parse())
    assert mock_calls()["chat"] == 2


# --- async client ---------------------------------------------------------------------------


async def acollect(chunks: Any) -> Collected:
    items = [chunk async for chunk in chunks]
    return collect(items)


def test_async_stream_twice_is_hit(
    async_client_factory: Callable[..., openai.AsyncOpenAI], prompt: str, mock_calls: Callable[[], dict]
) -> None:
    async def run() -> list[tuple[str | None, Collected]]:
        out = []
        async with async_client_factory() as c:
            for _ in range(2):
                raw = await c.chat.completions.with_raw_response.create(
                    model=REASONING_MODEL,
                    messages=messages_for(prompt),
                    stream=True,
                    stream_options={"include_usage": True},
                )
                stream = raw.parse()  # the legacy raw response parses synchronously
                out.append((raw.headers.get("x-cache-status"), await acollect(stream)))
        return out

    (s1, a), (s2, b) = asyncio.run(run())
    assert s1 == "miss"
    assert s2 == "hit"
    assert a.content and b.content == a.content
    assert a.reasoning and b.reasoning == a.reasoning
    assert len(b.usage_chunks) == 1 and b.usage_chunks[0].choices == []
    assert mock_calls()["chat"] == 1


def test_async_plain_stream_iteration_hit(
    async_client_factory: Callable[..., openai.AsyncOpenAI], prompt: str, mock_calls: Callable[[], dict]
) -> None:
    """`async for chunk in await client.chat.completions.create(stream=True)`, tools included."""

    async def run() -> list[Collected]:
        out = []
        async with async_client_factory() as c:
            for _ in range(2):
                stream = await c.chat.completions.create(
                    model=MODEL, messages=messages_for(prompt), stream=True, tools=[WEATHER_TOOL]
                )
                out.append(await acollect(stream))
        return out

    a, b = asyncio.run(run())
    assert a.tool_calls_list() and b.tool_calls_list() == a.tool_calls_list()
    assert mock_calls()["chat"] == 1


def test_async_stream_helper_hit(
    async_client_factory: Callable[..., openai.AsyncOpenAI], prompt: str, mock_calls: Callable[[], dict]
) -> None:
    async def run() -> list[Any]:
        out = []
        async with async_client_factory() as c:
            for _ in range(2):
                async with c.chat.completions.stream(model=MODEL, messages=messages_for(prompt)) as stream:
                    async for _event in stream:
                        pass
                    out.append(await stream.get_final_completion())
        return out

    first, second = asyncio.run(run())
    assert first.choices[0].message.content
    assert second.choices[0].message.content == first.choices[0].message.content
    assert mock_calls()["chat"] == 1


def test_async_cut_stream_raises_and_is_not_cached(
    async_client_factory: Callable[..., openai.AsyncOpenAI], prompt: str, mock_calls: Callable[[], dict]
) -> None:
    async def run() -> list[str]:
        errors = []
        async with async_client_factory() as c:
            for _ in range(2):
                try:
                    stream = await c.chat.completions.create(
                        model=CUT_MODEL, messages=messages_for(prompt), stream=True
                    )
                    async for _chunk in stream:
                        pass
                except STREAM_ERRORS as e:
                    errors.append(type(e).__name__)
        return errors

    errors = asyncio.run(run())
    assert len(errors) == 2, errors
    assert mock_calls()["chat"] == 2
