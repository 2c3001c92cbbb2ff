#!/usr/bin/env bash
# `harness bench scale` with FAISS's counterparts measured in the same run.
#
# Creates the virtualenv .venv-bench/ (git-ignored) with faiss-cpu and numpy if needed, then
# runs `harness bench scale RUN_DIR ... --faiss-python .venv-bench/bin/python` with every
# argument passed through. Builds nothing: HARNESS_BIN (default target/release/harness) must be
# a release build.
#
#   scripts/bench_scale.sh results/default/<run-id> --sizes 10k,100k,1M,10M,20M --k 100
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$root"
bench_venv "faiss, numpy" faiss-cpu numpy
harness_bin
exec "$HARNESS_BIN" bench scale "$@" --faiss-python "$venv/bin/python" \
  --faiss-script "$root/scripts/faiss_scale.py"
