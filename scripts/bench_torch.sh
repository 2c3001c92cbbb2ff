#!/usr/bin/env bash
# Peer benchmark of `harness bench model` (burn, CPU flex backend) against the same cifar_cnn
# network in PyTorch on CPU (see bench_torch.py).
#
# Creates the virtualenv .venv-bench/ (git-ignored) with torch and numpy from PyPI if needed
# (PyPI's Linux torch wheel pulls in the CUDA runtime libraries, about 3 GB; only the CPU is
# used), then runs scripts/bench_torch.py with all arguments passed through. Builds nothing:
# HARNESS_BIN (default target/release/harness) must be a release build with `bench model`.
#
#   scripts/bench_torch.sh                          # batches 32,64,128 at 1 and 2 threads
#   scripts/bench_torch.sh --batches 64 --threads 2 --steps 40
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv-bench"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import torch, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet torch numpy
fi
export HARNESS_BIN="${HARNESS_BIN:-target/release/harness}"
if [[ ! -x "$HARNESS_BIN" ]]; then
    echo "HARNESS_BIN=$HARNESS_BIN is not an executable; build it with cargo build --release" >&2
    exit 1
fi
exec "$venv/bin/python" "$root/scripts/bench_torch.py" "$@"
