#!/usr/bin/env bash
# Peer benchmark of the frozen EfficientNet-Lite0 feature pass (`harness bench model
# --encoder efficientnet_lite0 --mode infer`, burn's CPU flex backend) against the same network
# and weights in PyTorch on CPU, NCHW and channels_last (see bench_efficientnet.py).
#
# Creates the virtualenv .venv-bench/ (git-ignored) with torch, timm, safetensors and numpy
# from PyPI if needed, then runs scripts/bench_efficientnet.py with all arguments passed
# through. Builds nothing: HARNESS_BIN (default target/release/harness) must be a release build.
#
#   scripts/bench_efficientnet.sh                              # 96,128,160,224 px, batch 32
#   scripts/bench_efficientnet.sh --sizes 224 --threads 2 --steps 4
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$root"
bench_venv "torch, timm, safetensors, numpy" torch timm safetensors numpy
harness_bin
exec "$venv/bin/python" "$root/scripts/bench_efficientnet.py" "$@"
