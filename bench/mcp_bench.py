"""Cached MCP tools/call latency: through reprise (hits) vs straight to the server.

    .venv/bin/python bench/mcp_bench.py [--reprise target/release/reprise] [--n 2000]

Starts the test MCP server (tests/clients/mcp_upstream.py: the PyPI `mcp` MCPServer on
uvicorn, JSON answers) and a reprise in front of it, then times N sequential
`tools/call`s, one keep-alive connection, protocol 2026-07-28 (no session), for two tools:
`add` (answers at once) and `slow_add` (sleeps 20 ms, a stand-in for a real lookup).
"direct" calls go to the server; "reprise hit" calls repeat one cached call through
reprise. The same Python client measures both, so its own overhead is in both columns.
Prints a Markdown table (median, p90, p99 in ms).
"""

from __future__ import annotations

import argparse
import os
import threading
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def start(argv: list[str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, RUST_LOG="warn,reprise=info", NO_COLOR="1")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in iter(proc.stdout.readline, ""):
        m = re.search(pattern, re.sub(r"\x1b\[[0-9;]*m", "", line))
        if m:
            # Keep draining, so a full pipe never blocks the process.
            threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
            return proc, m.group(1)
    raise SystemExit(f"{argv[0]} exited before it was ready")


def body(tool: str, i: int) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": i,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {"a": 20, "b": 22},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }


def timed(client: httpx.Client, url: str, tool: str, n: int, expect: str | None) -> list[float]:
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        "Authorization": "Bearer bench",
    }
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.post(url, json=body(tool, i), headers=headers)
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200 or (expect and r.headers.get("x-cache-status") != expect):
            raise SystemExit(f"unexpected answer: {r.status_code} {r.headers} {r.text[:200]}")
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reprise", default=str(ROOT / "target/release/reprise"))
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    upstream, upstream_url = start(
        [sys.executable, str(ROOT / "tests/clients/mcp_upstream.py"), "--json-response"],
        r"listening on (http://\S+/mcp)",
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "reprise.toml"
        config.write_text(
            f'[mcp.servers.calc]\nurl = "{upstream_url}"\n'
            'tools = { add = { ttl = "1h" }, slow_add = { ttl = "1h" } }\n'
        )
        reprise, addr = start(
            [args.reprise, "--config", str(config), "--listen", "127.0.0.1:0"],
            r"listening on (?:http://)?([0-9.]+:[0-9]+)",
        )
        try:
            via = f"http://{addr}/mcp/calc"
            rows = []
            with httpx.Client(timeout=30) as client:
                for tool in ("add", "slow_add"):
                    timed(client, upstream_url, tool, 50, None)  # warm-up
                    direct = timed(client, upstream_url, tool, args.n, None)
                    timed(client, via, tool, 1, None)  # the miss that fills the cache
                    hits = timed(client, via, tool, args.n, "hit")
                    for name, xs in ((f"`{tool}` direct to the server", direct), (f"`{tool}` through reprise (hit)", hits)):
                        rows.append(f"| {name} | {statistics.median(xs):.2f} | {pct(xs, 0.9):.2f} | {pct(xs, 0.99):.2f} |")
            print(f"N = {args.n} sequential calls each, one keep-alive connection\n")
            print("| tools/call | median ms | p90 ms | p99 ms |\n|---|---|---|---|")
            print("\n".join(rows))
        finally:
            reprise.terminate()
            reprise.wait()
            upstream.terminate()
            upstream.wait()


if __name__ == "__main__":
    main()
