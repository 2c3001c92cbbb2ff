#!/usr/bin/env bash
# Model throughput on real CIFAR-100 images, as JSON lines (`harness bench model`):
#   - EfficientNet-Lite0 frozen feature extraction at 96, 128 and 224 px (the features stage);
#   - EfficientNet-Lite0 fine-tuning (freeze: false) at 96 px and AlexNet at 224 px, training
#     and inference;
#   - the flex and ndarray backends on cifar_cnn, when HARNESS_NDARRAY_BIN names a binary built
#     with `cargo build --release --features ndarray` (the README's backend comparison).
# PyTorch on the same cifar_cnn: scripts/bench_torch.sh.
#
# Usage: scripts/bench_models.sh [OUT.jsonl]     (HARNESS_BIN overrides target/release/harness)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${HARNESS_BIN:-target/release/harness}
[[ -x $bin ]] || { echo "build $bin first: cargo build --release" >&2; exit 1; }
out=${1:-/dev/stdout}
{
  for size in 96 128 224; do
    "$bin" bench model --encoder efficientnet_lite0 --input-size "$size" --mode infer \
      --batch 32 --warmup 1 --steps 10
  done
  "$bin" bench model --encoder efficientnet_lite0 --fine-tune --input-size 96 --batch 32 \
    --warmup 1 --steps 5
  "$bin" bench model --encoder alexnet --input-size 224 --batch 16 --warmup 1 --steps 5
  if [[ -n ${HARNESS_NDARRAY_BIN:-} ]]; then
    for backend in flex ndarray; do
      "$HARNESS_NDARRAY_BIN" bench model --backend "$backend" --batch 64 --warmup 1 --steps 8
    done
  fi
} > "$out"
