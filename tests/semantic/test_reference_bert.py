"""The Rust embedder (candle) against the independent numpy implementation.

Runs `embed_json` (examples/embed_json.rs; `$EMBED_JSON_BIN`, else
target/debug/examples/embed_json, built on demand) over fixed sentences and checks:
same token ids, and cosine(rust, numpy) >= 0.9999 for every sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reference_bert import MAX_TOKENS, ReferenceBert

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(os.environ.get("REPRISE_MODEL_DIR") or REPO_ROOT / "models" / "all-MiniLM-L6-v2")

SENTENCES = [
    "How do I reset my password?",
    "What are the steps to reset my password?",
    "Is the store open at 9am on Sundays?",
    "Don't book the flight without checking the 2 o'clock slot.",
    "Café naïve résumé — ünïcödé & punctuation!?",
    "Sort the list ascending, not descending.",
    "x",
    # Longer than 256 tokens: both sides must truncate at the same place.
    " ".join(f"word{i}" for i in range(400)),
]


def embed_json_bin() -> Path:
    explicit = os.environ.get("EMBED_JSON_BIN")
    if explicit:
        return Path(explicit)
    path = REPO_ROOT / "target" / "debug" / "examples" / "embed_json"
    if not path.is_file():
        subprocess.run(["cargo", "build", "--example", "embed_json"], cwd=REPO_ROOT, check=True)
    return path


@pytest.fixture(scope="module")
def rust_rows() -> list[dict]:
    if not (MODEL_DIR / "model.safetensors").is_file():
        pytest.fail(f"no model in {MODEL_DIR}: run scripts/fetch-embedding-model.sh")
    out = subprocess.run(
        [str(embed_json_bin()), str(MODEL_DIR)],
        input="\n".join(SENTENCES) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == SENTENCES
    return rows


@pytest.fixture(scope="module")
def reference() -> ReferenceBert:
    return ReferenceBert(MODEL_DIR)


@pytest.mark.parametrize("index", range(len(SENTENCES)))
def test_rust_embedding_matches_numpy_reference(rust_rows, reference, index):
    row = rust_rows[index]
    ids, expected = reference.embed(row["text"])
    assert row["ids"] == ids
    assert len(ids) <= MAX_TOKENS
    got = np.array(row["embedding"], dtype=np.float64)
    assert got.shape == (384,)
    cos = float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))
    assert cos >= 0.9999, f"cosine {cos:.6f} for {row['text'][:40]!r}"
    assert np.abs(got - expected).max() < 1e-3


def test_long_text_is_truncated_at_256_tokens(rust_rows):
    assert len(rust_rows[-1]["ids"]) == MAX_TOKENS
