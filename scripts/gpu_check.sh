#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU and its driver and nothing else: no network,
# no toolchain, no Python. Needs bash, coreutils, awk and xz (or `busybox xz`); nvidia-smi is
# used when present.
#
# Usage: gpu_check.sh BUNDLE DATA_ROOT [options]
#   BUNDLE     the folder `scripts/cuda_build.sh --package` made (harness.xz, cuda/, configs/,
#              MANIFEST, SHA256SUMS); this script ships in it, so `./gpu_check.sh . /data` works
#   DATA_ROOT  the data folder (cifar-100-binary/, hierarchy/, usf/, imagenet/, pretrained/)
# Options:
#   --out DIR            where everything goes (default ./gpu-check-<UTC time>); summary.md there
#   --cuda-version V     the driver's CUDA version (12.8 or 12080), when neither nvidia-smi nor
#                        /proc/driver/nvidia/version gives it
#   --tolerance X        largest |difference| of a quality metric, GPU vs CPU (default 0.03)
#   --reload-images N    test images embedded after a checkpoint moves device (default 20)
#   --paper-epochs N     train configs/paper.yaml for N epochs instead of its 32 (the summary
#                        says so); --skip-paper leaves it out
#   --paper-timeout S    stop the paper run after S seconds (coreutils timeout)
#   --skip-wgpu          do not try backend: wgpu
#   --backend B          the accelerated backend under test: cuda (default) or wgpu. With wgpu the
#                        same checks run on a Vulkan adapter (Mesa's lavapipe on a machine without
#                        a GPU), which is how this script is tested where no GPU is available
#   --binary PATH        use this harness binary instead of unpacking BUNDLE/harness.xz
#   --force              go on when the driver's CUDA version is older than the build's
#
# What it does, with every figure in DATA's summary.md:
#   1. verifies the bundle (SHA256SUMS) and unpacks the binary;
#   2. finds the GPU, the driver and its CUDA version (nvidia-smi, else /proc/driver/nvidia/version,
#      else --cuda-version) and stops, naming what is missing, if there is no GPU or the driver is
#      older than the CUDA version the binary was built for (MANIFEST: cuda_version; cudarc reads
#      CUDARC_CUDA_VERSION when it is compiled, not at run time);
#   3. sets CUDA_PATH to BUNDLE/cuda, where nvvm/libdevice/libdevice.10.bc is (the kernels for
#      exp, log, tanh... link it);
#   4. runs configs/ci.yaml with backend=cuda and with backend=cpu (own caches, so every stage
#      runs on each) and compares every quality metric (mP, mAP, mHP, mAHP, mAHP_mean,
#      mAP_report, as tests/wgpu.rs does): each within the tolerance, and not all bit-identical
#      (that would mean the GPU was not used);
#   5. moves each checkpoint to the other device: a copy of the run folder with the other
#      backend in config.resolved.yaml is served (`harness serve`); test images, written as
#      32 x 32 PNGs, are uploaded (the run's model embeds them on the other device) and their
#      scores against the stored test embeddings (made where the model was trained) are compared
#      with the stored ranking of the same image (GET /api/search?query=ID&protocol=report);
#   6. compares the stage times (stages/<stage>.json: seconds) of features, train, embed, eval;
#   7. runs configs/paper.yaml (AlexNet at 224 px trained end to end, as the report did) with
#      backend=cuda: wall time and the Tables 1-2 sections of its tables/paper.md;
#   8. tries backend=wgpu on the NVIDIA Vulkan driver if an ICD file names it, and says which
#      backends ran.
# Exit status: 0 all checks passed; 1 a check failed; 2 it could not start (usage, bundle, no GPU).
# GPU_CHECK_PROC and GPU_CHECK_DEV (default /proc and /dev) let the detection be tested on
# hand-made trees; harness itself always looks at the real ones.
set -euo pipefail
proc_root=${GPU_CHECK_PROC:-/proc}
dev_root=${GPU_CHECK_DEV:-/dev}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { printf 'gpu_check: error: %s\n' "$*" >&2; [[ -n ${summary:-} && -d ${out:-} ]] && printf '\n**Stopped:** %s\n' "$*" >>"$summary"; exit 2; }
say() { printf 'gpu_check: %s\n' "$*"; }
abspath() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

bundle="" data="" out="" cuda_flag="" tolerance=0.03 reload_images=20 paper_epochs=""
paper_timeout="" skip_paper=0 skip_wgpu=0 gpu=cuda binary="" force=0
need_value() { [[ $# -ge 2 && -n $2 ]] || { usage >&2; die "$1 needs a value"; }; }
positional=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --cuda-version) need_value "$@"; cuda_flag=$2; shift 2 ;;
    --tolerance) need_value "$@"; tolerance=$2; shift 2 ;;
    --reload-images) need_value "$@"; reload_images=$2; shift 2 ;;
    --paper-epochs) need_value "$@"; paper_epochs=$2; shift 2 ;;
    --paper-timeout) need_value "$@"; paper_timeout=$2; shift 2 ;;
    --skip-paper) skip_paper=1; shift ;;
    --skip-wgpu) skip_wgpu=1; shift ;;
    --backend) need_value "$@"; gpu=$2; shift 2 ;;
    --binary) need_value "$@"; binary=$2; shift 2 ;;
    --force) force=1; shift ;;
    --) shift; positional+=("$@"); break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -eq 2 ]] || { usage >&2; die "expected BUNDLE and DATA_ROOT, got ${#positional[@]} arguments"; }
bundle=$(abspath "${positional[0]}")
data=$(abspath "${positional[1]}")
[[ $gpu == cuda || $gpu == wgpu ]] || die "--backend must be cuda or wgpu, not '$gpu'"
[[ $tolerance =~ ^[0-9]*\.?[0-9]+$ ]] || die "--tolerance '$tolerance' is not a number"
[[ $reload_images =~ ^[1-9][0-9]*$ && $reload_images -le 10000 ]] || die "--reload-images '$reload_images' is not 1..10000"
[[ -z $paper_epochs || $paper_epochs =~ ^[1-9][0-9]*$ ]] || die "--paper-epochs '$paper_epochs' is not a positive integer"
[[ -z $paper_timeout || $paper_timeout =~ ^[1-9][0-9]*$ ]] || die "--paper-timeout '$paper_timeout' is not seconds"
[[ -d $bundle ]] || die "bundle folder $bundle does not exist"
[[ -d $data/cifar-100-binary ]] || die "$data has no cifar-100-binary/: pass the data root (cifar-100-binary/, hierarchy/, usf/, imagenet/, pretrained/)"
for tool in awk sha256sum od timeout date; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH"
done

out=$(abspath "${out:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}")
mkdir -p "$out/logs" "$out/runs"
summary=$out/summary.md
failures=0
fail() { failures=$((failures + 1)); say "FAILED: $*"; printf '\n**FAILED:** %s\n' "$*" >>"$summary"; }
md() { printf '%s\n' "$@" >>"$summary"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

{
  # shellcheck disable=SC2016 # Markdown backquotes
  printf '# gpu_check: `backend: %s` against the CPU\n\n' "$gpu"
  printf -- '- date: %s\n- host: %s, %s CPU cores\n' "$(date -u +%FT%TZ)" "$(uname -n)" "$(nproc)"
  printf -- '- bundle: %s\n- data root: %s\n- output: %s\n' "$bundle" "$data" "$out"
} >"$summary"

# 1. The bundle.
if [[ -f $bundle/SHA256SUMS ]]; then
  (cd "$bundle" && sha256sum --quiet -c SHA256SUMS) || die "the bundle does not match its SHA256SUMS"
  say "bundle verified: $bundle/SHA256SUMS"
elif [[ -z $binary ]]; then
  die "$bundle/SHA256SUMS is missing: is this the folder cuda_build.sh --package made?"
fi
manifest_value() { [[ -f $bundle/MANIFEST ]] && awk -F= -v k="$1" '$1 == k { sub(/^[^=]*=/, ""); print; exit }' "$bundle/MANIFEST"; }
build_cuda=$(manifest_value cuda_version || true)
if [[ -n $binary ]]; then
  bin=$(abspath "$binary")
  [[ -x $bin ]] || die "--binary $bin is not an executable"
else
  [[ -f $bundle/harness.xz ]] || die "$bundle/harness.xz is missing"
  mkdir -p "$out/bin"
  bin=$out/bin/harness
  if command -v xz >/dev/null; then
    xz -dc "$bundle/harness.xz" >"$bin.tmp"
  elif command -v busybox >/dev/null && busybox --list | grep -qx xzcat; then
    busybox xzcat "$bundle/harness.xz" >"$bin.tmp"
  else
    die "neither xz nor busybox xz is installed to unpack harness.xz (Debian: xz-utils)"
  fi
  chmod +x "$bin.tmp"
  mv -f "$bin.tmp" "$bin"
  say "unpacked: $bin"
fi
version=$("$bin" --version) || die "$bin does not run here"
md "- binary: $bin ($version; built for CUDA ${build_cuda:-unknown}; $(manifest_value git_revision || echo 'revision unknown'))"

# 2. The GPU, the driver and its CUDA version.
to_cuda_number() { # 12.8 -> 12080, 12080 -> 12080
  case $1 in
    *.*) awk -v v="$1" 'BEGIN { split(v, p, "."); printf "%d%03d\n", p[1], p[2] * 10 }' ;;
    *) printf '%s\n' "$1" ;;
  esac
}
# The oldest Linux driver of each CUDA release (NVIDIA's CUDA toolkit release notes, table 3).
cuda_of_driver() {
  awk -v d="$1" 'BEGIN {
    n = split("13000:580.65.06 12090:575.51.03 12080:570.26 12060:560.28.03 12050:555.42.02 12040:550.54.14 12030:545.23.06 12020:535.54.03 12010:530.30.02 12000:525.60.13 11080:520.61.05", t, " ")
    split(d, dv, ".")
    for (i = 1; i <= n; i++) {
      split(t[i], e, ":"); split(e[2], mv, ".")
      if (dv[1] + 0 > mv[1] + 0 || (dv[1] + 0 == mv[1] + 0 && (dv[2] + 0 > mv[2] + 0 || (dv[2] + 0 == mv[2] + 0 && dv[3] + 0 >= mv[3] + 0)))) { print e[1]; exit }
    }
  }'
}
driver="" driver_cuda="" gpu_names="" smi=0
if command -v nvidia-smi >/dev/null && nvidia-smi >"$out/logs/nvidia-smi.txt" 2>&1; then
  smi=1
  gpu_names=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | paste -sd ';' - || true)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
  v=$(awk '/CUDA Version/ { for (i = 1; i < NF - 1; i++) if ($i == "CUDA" && $(i + 1) == "Version:") { print $(i + 2); exit } }' "$out/logs/nvidia-smi.txt")
  [[ -n $v ]] && driver_cuda=$(to_cuda_number "$v")
fi
if [[ -z $driver && -r $proc_root/driver/nvidia/version ]]; then
  driver=$(awk '/NVRM version/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+(\.[0-9]+)?$/) { print $i; exit } }' "$proc_root/driver/nvidia/version")
fi
if [[ -z $driver_cuda && -n $driver ]]; then driver_cuda=$(cuda_of_driver "$driver"); fi
if [[ -n $cuda_flag ]]; then driver_cuda=$(to_cuda_number "$cuda_flag"); fi
nodes=$(compgen -G "$dev_root/nvidia[0-9]*" | paste -sd ' ' - || true)
md "- GPU: ${gpu_names:-none named (no nvidia-smi)}; driver ${driver:-none}; driver's CUDA ${driver_cuda:-unknown}; device nodes: ${nodes:-none}; CUDA_VISIBLE_DEVICES: ${CUDA_VISIBLE_DEVICES-unset}"
if [[ $gpu == cuda ]]; then
  missing=()
  [[ -r $proc_root/driver/nvidia/version || $smi == 1 ]] || missing+=("no NVIDIA driver (no $proc_root/driver/nvidia/version, no working nvidia-smi)")
  [[ -n $nodes ]] || missing+=("no $dev_root/nvidia0 device node")
  if [[ -n ${CUDA_VISIBLE_DEVICES+x} ]] && [[ -z ${CUDA_VISIBLE_DEVICES// /} || $CUDA_VISIBLE_DEVICES == -1 ]]; then
    missing+=("CUDA_VISIBLE_DEVICES='$CUDA_VISIBLE_DEVICES' hides every GPU")
  fi
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "no NVIDIA GPU can be used here: $(printf '%s; ' "${missing[@]}" | sed 's/; $//'). Run this on the GPU machine (or --backend wgpu to exercise the script on a Vulkan adapter)."
  fi
  if [[ -n $build_cuda && -n $driver_cuda && $driver_cuda -lt $build_cuda && $force == 0 ]]; then
    die "the driver supports CUDA $driver_cuda, older than the $build_cuda the binary was built for: rebuild with CUDARC_CUDA_VERSION=$driver_cuda scripts/cuda_build.sh --package, or --force"
  fi
  [[ -n $driver_cuda ]] || say "warning: the driver's CUDA version is unknown (pass --cuda-version); going on"
fi
if [[ -f $bundle/cuda/nvvm/libdevice/libdevice.10.bc ]]; then
  export CUDA_PATH=$bundle/cuda
  md "- CUDA_PATH=$CUDA_PATH (libdevice.10.bc)"
else
  say "warning: $bundle/cuda/nvvm/libdevice/libdevice.10.bc is missing; kernels that call exp, log, tanh... will fail unless CUDA_PATH is already set"
fi

run_prefix=()
# Runs a config: run_config NAME CONFIG BACKEND [KEY=VALUE...]. Sets run_rc, run_wall and
# run_dirs (the run folders it printed, in sweep order).
run_config() {
  local name=$1 config=$2 backend=$3 t0 t1
  shift 3
  local log=$out/logs/$name.log
  say "running $name: $(basename "$config") backend=$backend $* (log: $log)"
  t0=$(now)
  set +e
  "${run_prefix[@]+"${run_prefix[@]}"}" "$bin" --quiet --data-root "$data" run "$config" "backend=$backend" "$@" \
    --out "$out/runs/$name" --cache "$out/runs/cache-$name" >"$log" 2>&1
  run_rc=$?
  set -e
  t1=$(now)
  run_wall=$(elapsed "$t0" "$t1")
  mapfile -t run_dirs < <(awk '/^results: / { print $2 }' "$log")
  say "$name: exit $run_rc, ${run_wall} s, ${#run_dirs[@]} run folder(s)"
}

# Quality metrics of two metrics.csv: prints "compared max_diff worst_row over identical".
compare_quality() {
  awk -F, -v tol="$tolerance" '
    FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    {
      m = $col["metric"]
      if (m != "mP" && m != "mAP" && m != "mHP" && m != "mAHP" && m != "mAHP_mean" && m != "mAP_report") next
      key = $col["method"] "," $col["protocol"] "," m "," $col["k"]
      if (FILENAME == ARGV[1]) { a[key] = $col["value"]; na++ } else { b[key] = $col["value"]; nb++ }
    }
    END {
      n = 0; worst = 0; wrow = "-"; over = 0; same = 0; missing = 0
      for (k in a) {
        if (!(k in b)) { missing++; continue }
        n++
        d = a[k] - b[k]; if (d < 0) d = -d
        if (a[k] == b[k]) same++
        if (d > worst) { worst = d; wrow = k }
        if (d > tol) over++
      }
      if (na != nb) missing++
      printf "%d %.6f %s %d %d %d\n", n, worst, wrow, over, same, missing
    }' "$1" "$2"
}

stage_seconds() { # stage_seconds RUN_DIR STAGE
  [[ -f $1/stages/$2.json ]] || { printf -- '-\n'; return; }
  awk -F: '/"seconds"/ { gsub(/[ ,]/, "", $2); printf "%.2f\n", $2; exit }' "$1/stages/$2.json"
}

# 4. configs/ci.yaml on the GPU and on the CPU.
ci=$bundle/configs/ci.yaml
[[ -f $ci ]] || die "$ci is missing"
declare -A ran=()
run_config "ci-$gpu" "$ci" "$gpu"
gpu_rc=$run_rc gpu_wall=$run_wall gpu_dirs=("${run_dirs[@]}")
run_config ci-cpu "$ci" cpu
cpu_rc=$run_rc cpu_wall=$run_wall cpu_dirs=("${run_dirs[@]}")
ran[cpu]=$([[ $cpu_rc == 0 ]] && echo yes || echo "failed (exit $cpu_rc)")
ran[$gpu]=$([[ $gpu_rc == 0 ]] && echo yes || echo "failed (exit $gpu_rc)")
md "" "## configs/ci.yaml: quality, $gpu against cpu" ""
md "Every quality metric (mP, mAP, mHP, mAHP, mAHP_mean, mAP_report at every k, method and protocol, as tests/wgpu.rs compares them) must agree within $tolerance, and the two must not be bit-identical." ""
if [[ $gpu_rc != 0 ]]; then
  fail "ci.yaml with backend=$gpu exited $gpu_rc; last lines of $out/logs/ci-$gpu.log:"
  md '```' "$(tail -n 15 "$out/logs/ci-$gpu.log")" '```'
fi
[[ $cpu_rc == 0 ]] || fail "ci.yaml with backend=cpu exited $cpu_rc (see $out/logs/ci-cpu.log)"
if [[ $gpu_rc == 0 && $cpu_rc == 0 ]]; then
  md "| run | metrics compared | max abs difference | at (method,protocol,metric,k) | over $tolerance | bit-identical | verdict |" "|---|---:|---:|---|---:|---:|---|"
  [[ ${#gpu_dirs[@]} == "${#cpu_dirs[@]}" && ${#gpu_dirs[@]} -gt 0 ]] || fail "the two runs printed ${#gpu_dirs[@]} and ${#cpu_dirs[@]} run folders"
  for i in "${!gpu_dirs[@]}"; do
    g=${gpu_dirs[$i]} c=${cpu_dirs[$i]:-}
    [[ -n $c ]] || continue
    read -r n worst wrow over same missing < <(compare_quality "$g/metrics.csv" "$c/metrics.csv") || true
    verdict=pass
    if [[ $n == 0 || $missing != 0 || $over != 0 || $same == "$n" ]]; then verdict=FAIL; fi
    md "| ${g##*/} | $n | $worst | $wrow | $over | $same of $n | $verdict |"
    [[ $verdict == pass ]] || fail "quality of ${g##*/}: $over over the tolerance, $same of $n identical, $missing missing"
  done
fi

# 6. Stage times.
if [[ $gpu_rc == 0 && $cpu_rc == 0 ]]; then
  md "" "## Stage times, configs/ci.yaml (seconds, stages/<stage>.json; the first run of the sweep)" ""
  md "The features stage (frozen EfficientNet-Lite0) runs on the CPU whatever the backend; train and embed run on the backend. The $gpu times include compiling its kernels on first use." ""
  md "| stage | cpu | $gpu | cpu / $gpu |" "|---|---:|---:|---:|"
  for stage in features train embed eval; do
    c=$(stage_seconds "${cpu_dirs[0]}" "$stage") g=$(stage_seconds "${gpu_dirs[0]}" "$stage")
    ratio=$(awk -v c="$c" -v g="$g" 'BEGIN { if (c + 0 > 0 && g + 0 > 0) printf "%.2f", c / g; else print "-" }')
    md "| $stage | $c | $g | $ratio |"
  done
  md "| whole command (both sweep runs) | $cpu_wall | $gpu_wall | $(awk -v c="$cpu_wall" -v g="$gpu_wall" 'BEGIN { printf "%.2f", c / g }') |"
fi

# 5. Checkpoints moved to the other device, through `harness serve`.
# shellcheck disable=SC2016 # an awk program
png_awk='
function bxor(a, b,   r, bit) {
  r = 0
  for (bit = 1; bit < 256; bit *= 2) if ((int(a / bit) % 2) != (int(b / bit) % 2)) r += bit
  return r
}
function crc_init(   n, c0, c1, c2, c3, k, low) {
  for (n = 0; n < 256; n++) {
    c0 = n; c1 = 0; c2 = 0; c3 = 0
    for (k = 0; k < 8; k++) {
      low = c0 % 2
      c0 = int(c0 / 2) + (c1 % 2) * 128; c1 = int(c1 / 2) + (c2 % 2) * 128
      c2 = int(c2 / 2) + (c3 % 2) * 128; c3 = int(c3 / 2)
      if (low) { c0 = X[c0, 32]; c1 = X[c1, 131]; c2 = X[c2, 184]; c3 = X[c3, 237] }
    }
    T0[n] = c0; T1[n] = c1; T2[n] = c2; T3[n] = c3
  }
}
function emit(b) { out = out sprintf("\\%03o", b) }
function chunk(type, nd,   i, c0, c1, c2, c3, t, b) {
  emit(int(nd / 16777216) % 256); emit(int(nd / 65536) % 256); emit(int(nd / 256) % 256); emit(nd % 256)
  c0 = 255; c1 = 255; c2 = 255; c3 = 255
  for (i = 1; i <= 4 + nd; i++) {
    b = (i <= 4) ? ORD[substr(type, i, 1)] : D[i - 4]
    emit(b)
    t = X[c0, b]; c0 = X[T0[t], c1]; c1 = X[T1[t], c2]; c2 = X[T2[t], c3]; c3 = T3[t]
  }
  emit(255 - c3); emit(255 - c2); emit(255 - c1); emit(255 - c0)
}
BEGIN {
  for (a = 0; a < 256; a++) for (b = 0; b < 256; b++) X[a, b] = bxor(a, b)
  ORD["I"] = 73; ORD["H"] = 72; ORD["D"] = 68; ORD["R"] = 82; ORD["A"] = 65; ORD["T"] = 84
  ORD["E"] = 69; ORD["N"] = 78
  crc_init()
}
{ for (i = 1; i <= NF; i++) P[n++] = $i }
END {
  if (n != 3074) { print "expected one 3074-byte CIFAR-100 record, got " n > "/dev/stderr"; exit 1 }
  emit(137); emit(80); emit(78); emit(71); emit(13); emit(10); emit(26); emit(10)
  split("0 0 0 32 0 0 0 32 8 2 0 0 0", h, " ")
  for (i = 1; i <= 13; i++) D[i] = h[i]
  chunk("IHDR", 13)
  raw = 32 * 97; nd = 0
  D[++nd] = 120; D[++nd] = 1; D[++nd] = 1
  D[++nd] = raw % 256; D[++nd] = int(raw / 256); D[++nd] = 255 - raw % 256; D[++nd] = 255 - int(raw / 256)
  s1 = 1; s2 = 0
  for (y = 0; y < 32; y++) {
    D[++nd] = 0; s2 = (s2 + s1) % 65521
    for (x = 0; x < 32; x++) for (c = 0; c < 3; c++) {
      v = P[2 + c * 1024 + y * 32 + x]
      D[++nd] = v; s1 = (s1 + v) % 65521; s2 = (s2 + s1) % 65521
    }
  }
  D[++nd] = int(s2 / 256); D[++nd] = s2 % 256; D[++nd] = int(s1 / 256); D[++nd] = s1 % 256
  chunk("IDAT", nd)
  chunk("IEND", 0)
  printf "%s", out
}'
# Test image ID of the data root as a 32 x 32 PNG (stored zlib block; no compressor needed).
write_png() {
  local esc
  esc=$(od -An -tu1 -v -j $(($1 * 3074)) -N 3074 "$data/cifar-100-binary/test.bin" | awk "$png_awk")
  # shellcheck disable=SC2059 # the format is the octal escapes awk wrote, nothing else
  printf "$esc" >"$2"
}
# One HTTP/1.0 request over bash's /dev/tcp: http PORT PATH [PNG_FILE]; prints the body.
http() {
  local port=$1 path=$2 file=${3:-}
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  if [[ -n $file ]]; then
    printf 'POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n' "$path" "$(wc -c <"$file")" >&3
    cat "$file" >&3
  else
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
  fi
  awk 'body { print; next } /^\r?$/ { body = 1 }' <&3
  exec 3>&-
}
# "id score" per result of a /api/search answer.
results() {
  awk '{
    s = substr($0, index($0, "\"results\":["))
    while (match(s, /"id":[0-9]+/)) {
      id = substr(s, RSTART + 5, RLENGTH - 5); s = substr(s, RSTART + RLENGTH)
      if (!match(s, /"score":[-+0-9.eE]+/)) break
      print id, substr(s, RSTART + 8, RLENGTH - 8); s = substr(s, RSTART + RLENGTH)
    }
  }'
}
serve_pid=""
stop_serve() { if [[ -n $serve_pid ]]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; serve_pid=""; fi; }
trap 'if [[ -n $serve_pid ]]; then kill "$serve_pid" 2>/dev/null || true; fi' EXIT
# move_check RUN_DIR FROM TO: serves a copy of RUN_DIR on TO, uploads the test images.
move_check() {
  local run=$1 from=$2 to=$3 copy log port="" i k=10
  copy=$out/runs/moved-$from-to-$to
  log=$out/logs/serve-$from-to-$to.log
  rm -rf "$copy"
  cp -a "$run" "$copy"
  awk -v to="$to" '/^backend: / { print "backend: " to; next } { print }' "$run/config.resolved.yaml" >"$copy/config.resolved.yaml"
  grep -q "^backend: $to\$" "$copy/config.resolved.yaml" || { fail "no backend line in $run/config.resolved.yaml"; return; }
  : >"$log" # exists before the background job opens it
  "$bin" --data-root "$data" serve "$copy" --addr 127.0.0.1:0 >"$log" 2>&1 &
  serve_pid=$!
  for ((i = 0; i < 300; i++)); do
    port=$(awk 'match($0, /http:\/\/127\.0\.0\.1:[0-9]+/) { print substr($0, RSTART + 17, RLENGTH - 17); exit }' "$log" 2>/dev/null || true)
    [[ -n $port ]] && break
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 1
  done
  if [[ -z $port ]]; then
    fail "harness serve of the $from checkpoint on $to did not start (see $log)"
    md '```' "$(tail -n 10 "$log")" '```'
    stop_serve
    return
  fi
  local worst=0 self=0 common=0 total=0 id moved stored
  mkdir -p "$out/png"
  for ((id = 0; id < reload_images; id++)); do
    [[ -f $out/png/$id.png ]] || write_png "$id" "$out/png/$id.png"
    moved=$(http "$port" "/api/search?method=exact&k=$k" "$out/png/$id.png" | results)
    stored=$(http "$port" "/api/search?query=$id&method=exact&k=$k&protocol=report" | results)
    if [[ -z $moved || -z $stored ]]; then
      fail "no search results for test image $id from the $from checkpoint served on $to (see $log)"
      break
    fi
    [[ ${moved%% *} == "$id" ]] && self=$((self + 1))
    read -r c w < <(awk 'NR == FNR { s[$1] = $2; next } ($1 in s) { n++; d = s[$1] - $2; if (d < 0) d = -d; if (d > w) w = d } END { printf "%d %.3g\n", n, w + 0 }' <(printf '%s\n' "$stored") <(printf '%s\n' "$moved")) || true
    common=$((common + c)) total=$((total + k))
    worst=$(awk -v a="$worst" -v b="$w" 'BEGIN { print (b > a) ? b : a }')
  done
  stop_serve
  local verdict=pass
  awk -v w="$worst" 'BEGIN { exit !(w <= 1e-3) }' || verdict=FAIL
  [[ $total -gt 0 ]] || verdict=FAIL
  md "| $from | $to | $reload_images | $self of $reload_images | $common of $total | $worst | $verdict |"
  [[ $verdict == pass ]] || fail "the $from checkpoint on $to: scores differ by up to $worst"
}
if [[ $gpu_rc == 0 && $cpu_rc == 0 ]]; then
  md "" "## Checkpoints moved to the other device" ""
  md "A copy of each run folder with the other backend in config.resolved.yaml is served by \`harness serve\`; the first $reload_images test images, uploaded as 32 x 32 PNGs, are embedded by the checkpoint on the other device and searched (exact, top 10) against the test embeddings stored where it was trained. Their cosine scores are compared with the stored ranking of the same image (\`GET /api/search?query=ID&protocol=report\`); tests/wgpu.rs asks 1e-3 of the embeddings, and this asks 1e-3 of the scores." ""
  md "| trained on | reloaded on | images | ranked first itself | results in both top 10s | max abs score difference | verdict |" "|---|---|---:|---:|---:|---:|---|"
  move_check "${gpu_dirs[0]}" "$gpu" cpu
  move_check "${cpu_dirs[0]}" cpu "$gpu"
fi

# 7. configs/paper.yaml on the GPU.
paper=$bundle/configs/paper.yaml
if [[ $skip_paper == 1 ]]; then
  md "" "## configs/paper.yaml" "" "Skipped (--skip-paper)."
elif [[ ! -f $paper ]]; then
  fail "$paper is missing"
else
  overrides=()
  [[ -n $paper_epochs ]] && overrides+=("train.epochs=$paper_epochs")
  md "" "## configs/paper.yaml with backend=$gpu" ""
  [[ -n $paper_timeout ]] && run_prefix=(timeout "$paper_timeout")
  run_config paper "$paper" "$gpu" "${overrides[@]+"${overrides[@]}"}"
  run_prefix=()
  md "- epochs: ${paper_epochs:-as configured (32)}$([[ -n $paper_epochs ]] && printf '%s' ' (shortened with --paper-epochs: not the report setting)')"
  md "- wall time: $run_wall s (exit $run_rc)"
  if [[ $run_rc == 0 && ${#run_dirs[@]} -gt 0 ]]; then
    p=${run_dirs[0]}
    md "- stages (s): features $(stage_seconds "$p" features), train $(stage_seconds "$p" train), embed $(stage_seconds "$p" embed), eval $(stage_seconds "$p" eval)"
    epochs=$(awk '/^train:/ { t = 1; next } /^[^ ]/ { t = 0 } t && $1 == "epochs:" { print $2; exit }' "$p/config.resolved.yaml")
    md "- training: $(awk -v s="$(stage_seconds "$p" train)" -v e="${epochs:-0}" 'BEGIN { if (s + 0 > 0 && e + 0 > 0) printf "%.1f s per epoch over %d epochs, so about %.0f s for the report'"'"'s 32", s / e, e, 32 * s / e; else print "-" }')" ""
    if [[ -f $p/tables/paper.md ]]; then
      awk '/^##+ / { on = ($0 ~ /^##+ Table [12][,:]/) } on { sub(/^#/, "##"); print }' "$p/tables/paper.md" >>"$summary"
    else
      fail "the paper run has no tables/paper.md"
    fi
  else
    fail "configs/paper.yaml with backend=$gpu exited $run_rc$([[ $run_rc == 124 ]] && printf ' (stopped by --paper-timeout)')"
    md '```' "$(tail -n 15 "$out/logs/paper.log")" '```'
  fi
fi

# 8. wgpu on the NVIDIA Vulkan driver.
if [[ $gpu == cuda && $skip_wgpu == 0 ]]; then
  icd=$(compgen -G '/usr/share/vulkan/icd.d/*nvidia*.json' || compgen -G '/etc/vulkan/icd.d/*nvidia*.json' || true)
  icd=${icd%%$'\n'*}
  md "" "## backend: wgpu on the NVIDIA Vulkan driver" ""
  if [[ -z $icd ]]; then
    ran[wgpu]="not tried (no NVIDIA Vulkan ICD in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d)"
    md "Not tried: no NVIDIA Vulkan ICD file (/usr/share/vulkan/icd.d/*nvidia*.json, /etc/vulkan/icd.d/*nvidia*.json)."
  else
    VK_ICD_FILENAMES=$icd VK_DRIVER_FILES=$icd run_config ci-wgpu "$ci" wgpu
    if [[ $run_rc == 0 && ${#run_dirs[@]} -gt 0 && ${#cpu_dirs[@]} -gt 0 && $cpu_rc == 0 ]]; then
      ran[wgpu]="yes ($icd)"
      read -r n worst wrow over same missing < <(compare_quality "${run_dirs[0]}/metrics.csv" "${cpu_dirs[0]}/metrics.csv") || true
      md "ICD: $icd; wall time $run_wall s (cpu: $cpu_wall s); train $(stage_seconds "${run_dirs[0]}" train) s, embed $(stage_seconds "${run_dirs[0]}" embed) s." ""
      md "Against cpu: $n metrics, max abs difference $worst ($wrow), $over over $tolerance, $same identical."
      [[ $over == 0 && $missing == 0 && $same != "$n" ]] || fail "wgpu quality against cpu: $over over the tolerance, $same of $n identical"
    else
      ran[wgpu]="failed (exit $run_rc; see $out/logs/ci-wgpu.log)"
      md "Failed (exit $run_rc):" '```' "$(tail -n 10 "$out/logs/ci-wgpu.log")" '```'
    fi
  fi
fi

md "" "## Backends" "" "| backend | ran configs/ci.yaml |" "|---|---|"
[[ $gpu == wgpu ]] && ran[cuda]="not tried (--backend wgpu)"
for b in cpu cuda wgpu; do
  if [[ -n ${ran[$b]:-} ]]; then md "| $b | ${ran[$b]} |"; fi
done
md "" "Result: $([[ $failures == 0 ]] && echo 'every check passed' || echo "$failures check(s) failed")."
say "summary: $summary"
[[ $failures == 0 ]] || exit 1
