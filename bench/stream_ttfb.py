#!/usr/bin/env python3
"""Time-to-first-byte and time-to-last-byte of streamed (SSE) cache hits.

usage: stream_ttfb.py HOST:PORT BODY_FILE N

Sends the streaming request in BODY_FILE N times, one at a time, over one
keep-alive connection (raw socket: no client library in the measurement),
after one warm-up request. TTFB = request written -> first response byte;
TTLB = request written -> the end of the chunked body. Prints one line:
RESULT n=.. ttfb_p50=.. ttfb_p99=.. ttlb_p50=.. ttlb_p99=.. (microseconds)
and the x-cache-status values seen.
"""
import os
import socket
import sys
import time

# QUICKACK=1: re-arm TCP_QUICKACK after every recv, so this client never delays
# its ACKs (a diagnostic: a server that writes an answer in several small
# segments without TCP_NODELAY then stops waiting ~40 ms on delayed ACKs).
QUICKACK = os.environ.get("QUICKACK") == "1" and hasattr(socket, "TCP_QUICKACK")


def recv(sock):
    data = sock.recv(65536)
    if QUICKACK:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return data


def read_response(sock):
    """Reads one HTTP/1.1 response; returns (first_byte_time, end_time, head)."""
    buf = b""
    first = None
    while b"\r\n\r\n" not in buf:
        chunk = recv(sock)
        if not chunk:
            raise RuntimeError("connection closed in head")
        if first is None:
            first = time.perf_counter()
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = recv(sock)
            if not chunk:
                raise RuntimeError("connection closed in body")
            body += chunk
    else:
        length = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            chunk = recv(sock)
            if not chunk:
                raise RuntimeError("connection closed in body")
            body += chunk
    return first, time.perf_counter(), head.decode("latin-1")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    body = open(sys.argv[2], "rb").read()
    n = int(sys.argv[3])
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
        b"content-type: application/json\r\nauthorization: Bearer sk-bench\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    statuses = {}
    ttfb, ttlb = [], []
    for i in range(n + 1):
        start = time.perf_counter()
        sock.sendall(req)
        first, end, head = read_response(sock)
        status = "?"
        for line in head.split("\r\n"):
            if line.lower().startswith("x-cache-status:"):
                status = line.split(":", 1)[1].strip()
        if i == 0:
            continue
        statuses[status] = statuses.get(status, 0) + 1
        ttfb.append((first - start) * 1e6)
        ttlb.append((end - start) * 1e6)
    print(
        "RESULT n=%d ttfb_p50=%d ttfb_p99=%d ttlb_p50=%d ttlb_p99=%d statuses=%s"
        % (
            n,
            pct(ttfb, 50),
            pct(ttfb, 99),
            pct(ttlb, 50),
            pct(ttlb, 99),
            ",".join("%s:%d" % kv for kv in sorted(statuses.items())),
        )
    )


if __name__ == "__main__":
    main()
