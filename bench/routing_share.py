#!/usr/bin/env python3
"""Cached-token share of a multi-conversation workload through reprise in front
of N mock-upstream replicas, each with its own imitation prefix cache
(`mock-upstream --prefix-cache`), per routing strategy.

    cargo build --bins && python3 bench/routing_share.py [--conversations 60] [--turns 6]

Workload: C conversations share one system prompt; each has its own first
question and grows by one exchange per turn (the whole history is resent, as
chat clients do). Turns are interleaved across conversations (turn 1 of every
conversation, then turn 2, ...), so a round-robin balancer scatters each
conversation over the replicas. The cache is bypassed (`no-store`) so every
request reaches a replica. Reported per strategy:

- share = sum(cached_tokens) / sum(prompt_tokens) over all requests;
- vs ideal = sum(cached_tokens) / the same with ONE replica (every earlier
  prefix available): 1.0 means routing lost nothing to a cold replica.
Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "debug")


def start(cmd, pattern):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, NO_COLOR="1", RUST_LOG="warn,reprise=info"))
    for line in proc.stdout:
        m = re.search(pattern, line)
        if m:
            # Keep draining the logs, or a full pipe would stall the process.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1)
    raise SystemExit(f"{cmd[0]} did not start")


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json", "authorization": "Bearer bench",
        "cache-control": "no-store"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


SHARED_SYSTEM = True


def turn(c, t):
    tag = "" if SHARED_SYSTEM else f"(tenant {c}) "
    messages = [
        {"role": "system", "content": f"You are a careful assistant {tag}. " + "Policy text. " * 150},
        {"role": "user", "content": f"Conversation {c}: " + "Background. " * 60},
    ]
    for k in range(1, t + 1):
        messages.append({"role": "assistant", "content": f"Answer {k} in conversation {c}. " * 8})
        messages.append({"role": "user", "content": f"Follow-up {k} in conversation {c}."})
    return {"model": "llama-3.3-70b", "messages": messages}


def run(strategy, replicas, conversations, turns):
    mocks = [start([os.path.join(BIN, "mock-upstream"), "--listen", "127.0.0.1:0", "--prefix-cache"],
                   r"listening on (http://\S+)") for _ in range(replicas)]
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        urls = ", ".join(f'"{u}/v1"' for _, u in mocks)
        f.write(f'[routing]\ndefault_provider = "vllm"\nstrategy = "{strategy}"\n'
                f'[[providers]]\nname = "vllm"\nkind = "openai"\nbase_urls = [{urls}]\nmodels = ["*"]\n')
        config = f.name
    proxy, addr = start([os.path.join(BIN, "reprise"), "--config", config, "--listen", "127.0.0.1:0"],
                        r"listening on (?:http://)?([0-9.]+:[0-9]+)")
    cached = prompt = 0
    try:
        for t in range(turns):
            for c in range(conversations):
                usage = post(f"http://{addr}/v1/chat/completions", turn(c, t))["usage"]
                prompt += usage["prompt_tokens"]
                cached += usage["prompt_tokens_details"]["cached_tokens"]
    finally:
        for p in [proxy] + [m for m, _ in mocks]:
            p.terminate()
            p.wait()
        os.unlink(config)
    return cached, prompt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--conversations", type=int, default=31)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--own-system", action="store_true",
                    help="give every conversation its own system prompt (nothing shared)")
    a = ap.parse_args()
    global SHARED_SYSTEM
    SHARED_SYSTEM = not a.own_system
    ideal, _ = run("prefix_affinity", 1, a.conversations, a.turns)
    print(f"{a.conversations} conversations x {a.turns} turns, {a.replicas} replicas "
          f"(ideal = one replica: {ideal} cached tokens)")
    print(f"{'strategy':<16} {'cached':>9} {'prompt':>9} {'share':>7} {'vs ideal':>9}")
    for strategy in ["prefix_affinity", "round_robin", "least_busy"]:
        cached, prompt = run(strategy, a.replicas, a.conversations, a.turns)
        print(f"{strategy:<16} {cached:>9} {prompt:>9} {cached / prompt:>7.3f} {cached / ideal:>9.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
