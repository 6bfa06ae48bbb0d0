"""An independent numpy implementation of all-MiniLM-L6-v2's sentence embedding.

Written from the BERT paper / Hugging Face `BertModel` semantics, sharing no code with
the Rust side (src/semantic/bert.rs): it reads the same model.safetensors, tokenizes
with the `tokenizers` package (padding off, truncation at 256), runs the 6 post-LN
transformer layers in float64, mean-pools over the attention mask and L2-normalizes.

    python tests/semantic/reference_bert.py models/all-MiniLM-L6-v2 "some text" ...
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_TOKENS = 256
_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    # Exact (erf) GELU, as BERT's "gelu".
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ReferenceBert:
    def __init__(self, model_dir: Path) -> None:
        self.cfg = json.loads((model_dir / "config.json").read_text())
        self.w = {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)

    def dense(self, x: np.ndarray, name: str) -> np.ndarray:
        # PyTorch Linear stores weight as (out, in).
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], self.cfg["layer_norm_eps"])

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed(self, text: str) -> tuple[list[int], np.ndarray]:
        enc = self.tokenizer.encode(text)
        ids = np.array(enc.ids)
        mask = np.array(enc.attention_mask, dtype=np.float64)
        n = len(ids)
        heads = self.cfg["num_attention_heads"]
        d = self.cfg["hidden_size"] // heads
        x = (
            self.w["embeddings.word_embeddings.weight"][ids]
            + self.w["embeddings.position_embeddings.weight"][np.arange(n)]
            + self.w["embeddings.token_type_embeddings.weight"][np.array(enc.type_ids)]
        )
        x = self.norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[None, None, :] * -1e9  # additive attention mask
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self.dense(x, p + f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2)
                for m in ("query", "key", "value")
            )
            att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d) + bias)
            ctx = (att @ v).transpose(1, 0, 2).reshape(n, heads * d)
            x = self.norm(self.dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = gelu(self.dense(x, p + "intermediate.dense"))
            x = self.norm(self.dense(h, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[:, None]).sum(axis=0) / mask.sum()
        return enc.ids, pooled / np.linalg.norm(pooled)


if __name__ == "__main__":
    model = ReferenceBert(Path(sys.argv[1]))
    for text in sys.argv[2:]:
        ids, vec = model.embed(text)
        print(json.dumps({"text": text, "ids": ids, "embedding": vec.tolist()}))
