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
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$root"
bench_venv "torch, numpy" torch numpy
harness_bin
exec "$venv/bin/python" "$root/scripts/bench_torch.py" "$@"
