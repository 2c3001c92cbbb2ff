#!/usr/bin/env bash
# IWAN query latency over topIWK x topWWK in 1..10 on the test (10k) and train (50k) databases
# of a finished run, as Markdown tables of the median milliseconds per query (word model
# excluded; its per-image cost is printed below each table).
#
# Usage: scripts/bench_iwan.sh RUN_DIR [--queries Q] [--k K]
#   RUN_DIR must have evaluated the train_db protocol (configs/default.yaml does).
#   HARNESS_BIN overrides target/release/harness. Raw JSON lines go to RUN_DIR/bench_iwan.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 1 ]] || { sed -n '2,9p' "$0"; exit 2; }
run_dir=$1; shift
queries=1000; k=100
while [[ $# -gt 0 ]]; do
  case $1 in
    --queries) queries=$2; shift 2 ;;
    --k) k=$2; shift 2 ;;
    *) echo "bench_iwan: unknown option $1" >&2; exit 2 ;;
  esac
done
bin=${HARNESS_BIN:-target/release/harness}
[[ -x $bin ]] || cargo build --release
out=$run_dir/bench_iwan.jsonl
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for db in test train; do
  "$bin" bench iwan "$run_dir" --db "$db" --queries "$queries" --k "$k" \
    --top-iwk 1,2,3,4,5,6,7,8,9,10 --top-wwk 1,2,3,4,5,6,7,8,9,10 >> "$tmp"
done
mv "$tmp" "$out"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for db in ("test", "train"):
    r = [x for x in rows if x["database"] == db]
    if not r:
        continue
    med = {(x["top_iwk"], x["top_wwk"]): x["median_s"] * 1e3 for x in r}
    p95 = {(x["top_iwk"], x["top_wwk"]): x["p95_s"] * 1e3 for x in r}
    iwks = sorted({x["top_iwk"] for x in r}); wwks = sorted({x["top_wwk"] for x in r})
    x0 = r[0]
    print(f"\n{db} database ({x0['images']} images), k = {x0['k']}, {x0['queries']} queries: "
          "median ms per query (p95 in brackets), rows topIWK, columns topWWK\n")
    print("| topIWK \\ topWWK | " + " | ".join(map(str, wwks)) + " |")
    print("|---|" + "---:|" * len(wwks))
    for i in iwks:
        print(f"| {i} | " + " | ".join(f"{med[i, w]:.3f} ({p95[i, w]:.3f})" for w in wwks) + " |")
    enc = x0["word_model"].get("encoder_s_per_image")
    print(f"\nword model per image: {x0['word_model']['head_s_per_image'] * 1e3:.4f} ms on stored encoder outputs"
          + (f", {enc * 1e3:.2f} ms for the encoder pass" if enc else ""))
    at44 = [x for x in r if x["top_iwk"] == 4 and x["top_wwk"] == 4]
    if at44:
        x = at44[0]
        print(f"at 4/4: {x['words']} words, {x['edges']} edges, median {x['median_s']*1e3:.3f} ms,"
              f" with the word model {x['with_model_median_s']*1e3:.3f} ms")
PY
