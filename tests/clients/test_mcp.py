"""MCP tool servers behind reprise, with the official `mcp` SDK (PyPI mcp 2.3.0).

A real MCPServer (tests/clients/mcp_upstream.py, uvicorn) runs in JSON and in SSE
response mode; a reprise in front of each serves `/mcp/calc`. Every test drives the
SDK's `Client` (response cache off, so only reprise caches) in both protocol eras:
handshake-era (`mode="legacy"`: initialize, sessions) and 2026-07-28 (no initialize).
Upstream executions are read from the server's `/_counts` side channel; reprise's
`x-cache-status` from an httpx2 response hook. Each test uses its own tenant (a fresh
bearer credential), so it starts from an empty cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import _PROCESSES, REPRISE_LISTEN_RE, ManagedProcess, _binary, _child_env

HERE = Path(__file__).resolve().parent
UPSTREAM_RE = re.compile(r"^mcp-upstream listening on (http://127\.0\.0\.1:\d+/mcp)\s*$")
ERAS = ["legacy", "2026-07-28"]


def start_upstream(json_response: bool) -> tuple[ManagedProcess, str]:
    argv = [sys.executable, str(HERE / "mcp_upstream.py")]
    if json_response:
        argv.append("--json-response")
    proc = ManagedProcess("mcp-upstream", argv, env=_child_env(PYTHONUNBUFFERED="1"))
    _PROCESSES.append(proc)
    line = proc.first_stdout_line("its listening line")
    m = UPSTREAM_RE.match(line)
    if not m:
        proc._fail(f"unexpected first line {line!r}")
    assert m is not None
    return proc, m.group(1)


def start_reprise(upstream_url: str, tmp: Path, extra: str = "") -> tuple[ManagedProcess, str]:
    config = tmp / "reprise.toml"
    config.write_text(
        f"""\
[server]
listen = "127.0.0.1:8080"
upstream_timeout = "10s"
{extra}
[mcp.servers.calc]
url = "{upstream_url}"
list_ttl = "5m"
# call_ttl stays 0: now() is never cached. fail() opts in, yet errors are never stored.
tools = {{ add = {{ ttl = "10m" }}, slow_add = {{ ttl = "10m" }}, fail = {{ ttl = "10m" }}, change_tools = {{ cache = false }} }}
""",
        encoding="utf-8",
    )
    proc = ManagedProcess(
        "reprise-mcp",
        [str(_binary("REPRISE_BIN", "reprise")), "--config", str(config), "--listen", "127.0.0.1:0"],
        env=_child_env(NO_COLOR="1", RUST_LOG="info"),
    )
    _PROCESSES.append(proc)
    m = proc.wait_for_line(REPRISE_LISTEN_RE, {"stdout", "stderr"}, "its `listening on` log line")
    return proc, f"http://{m.group(1)}"


class Stack:
    """One upstream (JSON or SSE answers) and the reprise in front of it."""

    def __init__(self, upstream: str, reprise: str):
        self.upstream = upstream
        self.reprise = reprise
        self.url = reprise + "/mcp/calc"

    def counts(self) -> dict[str, int]:
        r = httpx.get(self.upstream.removesuffix("/mcp") + "/_counts", timeout=10)
        r.raise_for_status()
        return r.json()

    def count(self, name: str) -> int:
        return self.counts().get(name, 0)


@pytest.fixture(scope="module", params=[False, True], ids=["sse", "json"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    upstream, upstream_url = start_upstream(json_response=request.param)
    try:
        reprise, reprise_url = start_reprise(upstream_url, tmp_path_factory.mktemp("mcp"))
        try:
            s = Stack(upstream_url, reprise_url)
            s.json_response = request.param  # type: ignore[attr-defined]
            yield s
        finally:
            reprise.stop()
    finally:
        upstream.stop()


class Session:
    """An SDK client session through reprise, recording `x-cache-status` per JSON-RPC method."""

    def __init__(self, url: str, tenant: str, era: str):
        self.url = url
        self.tenant = tenant
        self.era = era
        self.statuses: list[tuple[str, str | None]] = []

    async def _hook(self, response: httpx2.Response) -> None:
        method = "?"
        try:
            body = json.loads(response.request.content or b"null")
            if isinstance(body, dict):
                method = body.get("method", "?")
                if method == "tools/call":
                    method = f"tools/call:{body['params']['name']}"
        except (ValueError, KeyError, TypeError):
            pass
        if response.request.method == "POST":
            self.statuses.append((method, response.headers.get("x-cache-status")))

    def status_of(self, method: str) -> list[str | None]:
        return [s for m, s in self.statuses if m == method]

    async def run(self, steps, message_handler=None):
        async with httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self.tenant}"},
            event_hooks={"response": [self._hook]},
            timeout=30,
        ) as http:
            async with Client(
                streamable_http_client(self.url, http_client=http),
                mode=self.era,
                cache=None,
                message_handler=message_handler,
            ) as client:
                return await steps(client)


def session(stack: Stack, era: str, tenant: str | None = None) -> Session:
    return Session(stack.url, tenant or f"tenant-{uuid.uuid4()}", era)


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("era", ERAS)
def test_list_tools_twice_is_one_upstream_call(stack: Stack, era: str) -> None:
    s = session(stack, era)
    before = stack.count("tools/list")

    async def steps(client: Client) -> list[str]:
        first = await client.list_tools()
        second = await client.list_tools()
        assert [t.name for t in first.tools] == [t.name for t in second.tools]
        return [t.name for t in first.tools]

    names = asyncio.run(s.run(steps))
    assert "add" in names, s.statuses
    assert s.status_of("tools/list") == ["miss", "hit"], s.statuses
    assert stack.count("tools/list") == before + 1

    # A second session of the same tenant: a handshake-era client initializes
    # again (a new session), so its next tools/list goes to the server.
    s2 = session(stack, era, s.tenant)
    asyncio.run(s2.run(lambda c: c.list_tools()))
    if era == "legacy":
        assert s2.status_of("tools/list") == ["miss"]
        assert stack.count("tools/list") == before + 2
    else:
        assert s2.status_of("tools/list") == ["hit"]
        assert stack.count("tools/list") == before + 1


@pytest.mark.parametrize("era", ERAS)
def test_tool_call_cached_per_tenant(stack: Stack, era: str) -> None:
    a, b = uuid.uuid4().int % 10_000, 7
    s = session(stack, era)
    before = stack.count("add")

    async def twice(client: Client) -> None:
        first = await client.call_tool("add", {"a": a, "b": b})
        second = await client.call_tool("add", {"b": b, "a": a})  # argument order is not part of the key
        assert text_of(first) == text_of(second) == str(a + b)
        assert not first.is_error and not second.is_error

    asyncio.run(s.run(twice))
    assert stack.count("add") == before + 1
    assert s.status_of("tools/call:add") == ["miss", "hit"]

    async def once(client: Client) -> None:
        result = await client.call_tool("add", {"a": a, "b": b})
        assert text_of(result) == str(a + b)

    same_tenant = session(stack, era, s.tenant)
    asyncio.run(same_tenant.run(once))
    assert same_tenant.status_of("tools/call:add") == ["hit"]
    assert stack.count("add") == before + 1

    other_tenant = session(stack, era)
    asyncio.run(other_tenant.run(once))
    assert other_tenant.status_of("tools/call:add") == ["miss"]
    assert stack.count("add") == before + 2


@pytest.mark.parametrize("era", ERAS)
def test_errors_and_uncached_tools_always_reach_the_server(stack: Stack, era: str) -> None:
    s = session(stack, era)
    fails, nows = stack.count("fail"), stack.count("now")

    async def steps(client: Client) -> None:
        for _ in range(2):
            assert (await client.call_tool("fail", {})).is_error
        first = await client.call_tool("now", {})
        second = await client.call_tool("now", {})
        assert not first.is_error and not second.is_error

    asyncio.run(s.run(steps))
    assert stack.count("fail") == fails + 2
    assert s.status_of("tools/call:fail") == ["miss", "miss"]
    # call_ttl = 0 and no rule for now(): never looked up, never stored.
    assert stack.count("now") == nows + 2
    assert s.status_of("tools/call:now") == [None, None]


def test_tool_list_change_notification_invalidates(stack: Stack) -> None:
    """change_tools() sends notifications/tools/list_changed: on its own SSE answer, or
    (JSON answers cannot carry one) on the session's GET stream. Either way reprise sees
    it pass and the next tools/list goes to the server, with the new tool in it."""
    s = session(stack, "legacy")
    standalone = bool(stack.json_response)  # type: ignore[attr-defined]

    async def steps(client: Client) -> tuple[list[str], list[str]]:
        before = [t.name for t in (await client.list_tools()).tools]
        await client.list_tools()
        await client.call_tool("change_tools", {"standalone": standalone})
        # Wait for the client to have received the notification (reprise bumps the
        # generation before it releases the bytes carrying it).
        await asyncio.wait_for(changed.wait(), timeout=15)
        after = [t.name for t in (await client.list_tools()).tools]
        return before, after

    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        method = getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)
        if method == "notifications/tools/list_changed":
            changed.set()

    async def main() -> tuple[list[str], list[str]]:
        nonlocal changed
        changed = asyncio.Event()
        return await s.run(steps, message_handler=on_message)

    before, after = asyncio.run(main())
    lists = s.status_of("tools/list")
    assert lists[:2] == ["miss", "hit"], s.statuses
    # The SDK may re-list on its own after the notification; whichever list comes
    # first after it went to the server.
    assert lists[2] == "miss", s.statuses
    assert len(after) == len(before) + 1


@pytest.mark.parametrize("era", ERAS)
def test_admin_invalidation_bumps_the_server_generation(stack: Stack, era: str) -> None:
    s = session(stack, era)
    a = uuid.uuid4().int % 10_000

    async def steps(client: Client) -> None:
        await client.list_tools()
        await client.call_tool("add", {"a": a, "b": 1})
        r = httpx.post(stack.reprise + "/v1/cache/mcp/calc/invalidate", timeout=10)
        assert r.status_code == 200, r.text
        await client.list_tools()
        await client.call_tool("add", {"a": a, "b": 1})

    asyncio.run(s.run(steps))
    assert s.status_of("tools/list") == ["miss", "miss"]
    assert s.status_of("tools/call:add") == ["miss", "miss"]
    assert httpx.post(stack.reprise + "/v1/cache/mcp/nope/invalidate", timeout=10).status_code == 404


def test_hits_answer_with_the_callers_id_as_json(stack: Stack) -> None:
    """Raw JSON-RPC at 2026-07-28 (no session): a hit carries this request's id, with
    its JSON type (number or string), as application/json even when SSE is accepted."""
    a = uuid.uuid4().int % 10_000
    headers = {
        "Authorization": f"Bearer raw-{uuid.uuid4()}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "add",
    }

    def call(id_: Any, meta: dict[str, Any]) -> httpx.Response:
        body = {
            "jsonrpc": "2.0",
            "id": id_,
            "method": "tools/call",
            "params": {
                "name": "add",
                "arguments": {"a": a, "b": 2},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": str(id_)},
                    **meta,
                },
            },
        }
        return httpx.post(stack.url, json=body, headers=headers, timeout=10)

    def result_of(r: httpx.Response) -> dict[str, Any]:
        if r.headers["content-type"].startswith("text/event-stream"):
            for line in r.text.splitlines():
                if line.startswith("data:") and line[5:].strip():
                    msg = json.loads(line[5:])
                    if "result" in msg or "error" in msg:
                        return msg
            raise AssertionError(r.text)
        return r.json()

    first = call("first-id", {"progressToken": "p1"})
    assert first.status_code == 200, first.text
    assert first.headers["x-cache-status"] == "miss"
    assert result_of(first)["id"] == "first-id"

    # Another progress token (transport-only _meta) still hits.
    numeric = call(41, {"progressToken": "p2"})
    assert numeric.headers["x-cache-status"] == "hit"
    assert numeric.headers["content-type"] == "application/json"
    body = numeric.json()
    assert body["id"] == 41 and isinstance(body["id"], int)
    assert body["result"] == result_of(first)["result"]
    assert "mcp-session-id" not in numeric.headers

    text = call("req-\u00e9", {})
    assert text.headers["x-cache-status"] == "hit"
    assert text.json()["id"] == "req-\u00e9"

    # An unknown _meta member may change the answer: a different key.
    other = call(42, {"com.example/locale": "fr"})
    assert other.headers["x-cache-status"] == "miss"


def test_stats_report_mcp_cache_types(stack: Stack) -> None:
    s = session(stack, "2026-07-28")
    a = uuid.uuid4().int % 10_000

    async def steps(client: Client) -> None:
        await client.list_tools()
        await client.list_tools()
        await client.call_tool("add", {"a": a, "b": 3})
        await client.call_tool("add", {"a": a, "b": 3})

    asyncio.run(s.run(steps))
    stats = httpx.get(
        stack.reprise + "/v1/cache/stats", headers={"Authorization": f"Bearer {s.tenant}"}, timeout=10
    ).json()
    assert stats["by_type"]["mcp_list_tools"]["hits"]["memory"] == 1
    assert stats["by_type"]["mcp_list_tools"]["misses"] == 1
    assert stats["by_type"]["mcp_call"]["hits"]["memory"] == 1
    assert stats["by_type"]["mcp_call"]["misses"] == 1
    metrics = httpx.get(stack.reprise + "/metrics", timeout=10).text
    assert 'reprise_mcp_requests_total{type="mcp_call",cache="hit",tier="memory"}' in metrics


# --- Redis down: calls still succeed ------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_calls_still_succeed(tmp_path: Path) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("redis-server is not installed (scripts/test.sh / .ci/run install it)")
    port = free_port()
    redis = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    upstream, upstream_url = start_upstream(json_response=False)
    reprise = None
    try:
        assert redis.stdout is not None
        for line in redis.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail("redis-server exited before it was ready")
        reprise, reprise_url = start_reprise(
            upstream_url,
            tmp_path,
            extra=f'[cache]\nbackend = "tiered"\n[cache.redis]\nurl = "redis://127.0.0.1:{port}"\n',
        )
        stack = Stack(upstream_url, reprise_url)
        tenant = f"tenant-{uuid.uuid4()}"
        a = uuid.uuid4().int % 10_000

        async def steps(client: Client) -> None:
            assert text_of(await client.call_tool("add", {"a": a, "b": 5})) == str(a + 5)
            assert text_of(await client.call_tool("add", {"a": a, "b": 5})) == str(a + 5)

        up = session(stack, "2026-07-28", tenant)
        asyncio.run(up.run(steps))
        assert up.status_of("tools/call:add") == ["miss", "hit"]
        # The entry reached Redis (tiered: memory L1 + Redis L2).
        if shutil.which("redis-cli"):
            keys = subprocess.run(
                ["redis-cli", "-p", str(port), "--scan", "--pattern", "reprise:v1:*"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            assert keys, "no entry was written to redis"

        redis.terminate()
        redis.wait(timeout=10)

        down = session(stack, "2026-07-28", tenant)

        async def while_down(client: Client) -> None:
            await client.list_tools()
            await client.list_tools()
            for b in (6, 6, 7):
                assert text_of(await client.call_tool("add", {"a": a, "b": b})) == str(a + b)
            assert (await client.call_tool("fail", {})).is_error

        asyncio.run(down.run(while_down))
        # Every call answered; the memory tier still serves what it holds.
        assert down.status_of("tools/call:add") == ["miss", "hit", "miss"]
        assert down.status_of("tools/list")[-1] == "hit"
    finally:
        if reprise is not None:
            reprise.stop()
        upstream.stop()
        if redis.poll() is None:
            redis.terminate()
            redis.wait(timeout=10)
