#!/usr/bin/env bash
# Peer benchmark of `harness bench search` against FAISS (see bench_faiss.py).
#
# Creates the virtualenv .venv-bench/ (git-ignored) with faiss-cpu and numpy
# if needed, then runs scripts/bench_faiss.py with all arguments passed
# through. Builds nothing: HARNESS_BIN (default target/release/harness) must
# be a release build that understands `bench search`.
#
#   HARNESS_BIN=target/release/harness scripts/bench_faiss.sh --quick
#   scripts/bench_faiss.sh --k 100 --threads 2
#   scripts/bench_faiss.sh --exact-sizes '' --code-sizes '' \
#       --embeddings test_emb.npy --codes test_codes.npy --code-bits 64
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv-bench"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import faiss, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet faiss-cpu numpy
fi
export HARNESS_BIN="${HARNESS_BIN:-target/release/harness}"
if [[ ! -x "$HARNESS_BIN" ]]; then
    echo "HARNESS_BIN=$HARNESS_BIN is not an executable; build it with cargo build --release" >&2
    exit 1
fi
exec "$venv/bin/python" "$root/scripts/bench_faiss.py" "$@"
