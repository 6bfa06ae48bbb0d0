"""A real MCP server (PyPI `mcp`, MCPServer over Streamable HTTP) for the MCP tests.

    python mcp_upstream.py [--json-response] [--stateless]

Binds 127.0.0.1 on a free port and prints `mcp-upstream listening on http://127.0.0.1:PORT/mcp`.
Tools: add(a, b) (counts its executions), fail() (raises: an isError result), now(),
change_tools() (adds a tool and sends notifications/tools/list_changed on the request's
stream), slow_add(a, b) (sleeps 20 ms: the benchmark's upstream latency).
Side channel (not MCP): GET /_counts -> {"tools/list": n, "tools/call": n, "add": n, ...},
POST /_reset zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from collections import Counter

import uvicorn
from mcp.server import MCPServer
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context
from mcp_types import ToolListChangedNotification
from starlette.requests import Request
from starlette.responses import JSONResponse

COUNTS: Counter[str] = Counter()

server = MCPServer(
    "reprise-test-upstream",
    # 2026-07-28 results carry ttlMs/cacheScope; without a hint tools/list says ttlMs=0.
    cache_hints={"tools/list": CacheHint(ttl_ms=600_000, scope="private")},
)


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    COUNTS["add"] += 1
    return a + b


@server.tool()
async def slow_add(a: int, b: int) -> int:
    """Adds two integers after 20 ms (a stand-in for a real lookup)."""
    COUNTS["slow_add"] += 1
    await asyncio.sleep(0.02)
    return a + b


@server.tool()
def fail() -> str:
    """Always raises (the result has isError: true)."""
    COUNTS["fail"] += 1
    raise ValueError("this tool always fails")


@server.tool()
def now() -> float:
    """The server's clock."""
    COUNTS["now"] += 1
    return time.time()


@server.tool()
async def change_tools(ctx: Context, standalone: bool = False) -> str:
    """Adds a tool and tells the client the tool list changed: on this request's
    stream, or (`standalone`) on the session's GET stream."""
    COUNTS["change_tools"] += 1
    n = COUNTS["change_tools"]

    def extra() -> str:
        return f"extra {n}"

    server.add_tool(extra, name=f"extra_{n}", description="added by change_tools")
    if standalone:
        await ctx.session.send_tool_list_changed()
    else:
        await ctx.session.send_notification(ToolListChangedNotification(), related_request_id=ctx.request_id)
    return f"added extra_{n}"


@server.custom_route("/_counts", methods=["GET"])
async def counts(_request: Request) -> JSONResponse:
    return JSONResponse(dict(COUNTS))


@server.custom_route("/_reset", methods=["POST"])
async def reset(_request: Request) -> JSONResponse:
    COUNTS.clear()
    return JSONResponse({})


class CountMethods:
    """ASGI wrapper counting JSON-RPC methods of POSTs to /mcp (the body is replayed)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/mcp"):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        try:
            body = json.loads(b"".join(m.get("body", b"") for m in chunks))
            if isinstance(body, dict) and "method" in body:
                COUNTS[body["method"]] += 1
        except ValueError:
            pass

        async def replay():
            return chunks.pop(0) if chunks else await receive()

        return await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args()
    app = server.streamable_http_app(json_response=args.json_response, stateless_http=args.stateless)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from now on, before uvicorn serves
    port = sock.getsockname()[1]
    print(f"mcp-upstream listening on http://127.0.0.1:{port}/mcp", flush=True)
    config = uvicorn.Config(CountMethods(app), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
