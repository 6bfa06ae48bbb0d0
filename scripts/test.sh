#!/usr/bin/env bash
# The one test command: Rust unit + integration tests, then the client-compatibility
# suite (official Python SDKs against a real reprise + mock-upstream).
#
#   ./scripts/test.sh
#
# Needs: cargo, python3 (>= 3.11) with venv, sha256sum. Downloads the embedding model
# (scripts/fetch-embedding-model.sh) on first run.
# NOTE: the Rust integration tests will also need `redis-server` on PATH (they start
# a real one on a free port); .ci/run installs it on CI.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    python3 -m venv .venv
fi

# The semantic tier's tests run the real embedding model (not committed; ~90 MB,
# skipped when already present with the pinned checksums).
PYTHON=.venv/bin/python ./scripts/fetch-embedding-model.sh

echo "==> cargo build --bins"
cargo build --bins

echo "==> cargo test --all-targets"
cargo test --all-targets

echo "==> pip install -r tests/clients/requirements.txt -r tests/semantic/requirements.txt"
.venv/bin/python -m pip install -q --disable-pip-version-check \
    -r tests/clients/requirements.txt -r tests/semantic/requirements.txt

echo "==> pytest tests/clients tests/semantic"
# The suite uses target/debug/{reprise,mock-upstream} unless REPRISE_BIN /
# MOCK_UPSTREAM_BIN are set.
.venv/bin/python -m pytest -q tests/clients tests/semantic "$@"
