#!/usr/bin/env bash
# Peer benchmark of the train stage (a decoder on cached EfficientNet-Lite features) against
# the same network, loss and optimiser in PyTorch on CPU (see bench_decoder.py).
#
# Creates or reuses .venv-bench/ (torch, numpy). Builds nothing: HARNESS_BIN (default
# target/release/harness) must be a release build. The config's features must already be
# in --cache (default results/cache), or the first round computes them.
#
#   scripts/bench_decoder.sh                                  # configs/default.yaml, 3 rounds
#   scripts/bench_decoder.sh --config configs/default.yaml --rounds 3 --threads 2
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$root"
bench_venv "torch, numpy" torch numpy
harness_bin
exec "$venv/bin/python" "$root/scripts/bench_decoder.py" "$@"
