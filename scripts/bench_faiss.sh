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
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$root"
bench_venv "faiss, numpy" faiss-cpu numpy
harness_bin
exec "$venv/bin/python" "$root/scripts/bench_faiss.py" "$@"
