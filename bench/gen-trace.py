#!/usr/bin/env python3
"""Writes a synthetic reprise trace (JSONL) for benchmarking `reprise profile`.

    python3 bench/gen-trace.py 1000000 > /tmp/trace-1m.jsonl

Five models, 200k distinct keys with a skewed popularity (a few hot prompts,
a long tail), one request every ~0.6 s over a week. Deterministic (seeded).
"""
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
rng = random.Random(16)
models = ["gpt-4o-mini", "gpt-4o", "o3", "claude-sonnet-4-5", "text-embedding-3-small"]
start = 1_764_547_200.0
span = 7 * 86_400
out = sys.stdout
for i in range(n):
    model = models[min(int(rng.expovariate(1.0)), len(models) - 1)]
    key = int(rng.paretovariate(1.1) * 1000) % 200_000
    line = {
        "ts": round(start + span * i / n, 3),
        "ns": "9f2c41d07a3b55e1",
        "endpoint": "chat",
        "provider": "openai",
        "model": model,
        "key": f"{key:032x}{hash((model, key)) & (2**128 - 1):032x}",
        "status": "miss",
        "http_status": 200,
        "prompt_tokens": 1200,
        "cached_tokens": 0,
        "completion_tokens": 180,
        "usd": 0.0004,
        "saved_usd": 0.0,
        "upstream_ms": 850.0,
        "ttl_s": 3600,
    }
    out.write(json.dumps(line, separators=(",", ":")))
    out.write("\n")
