#!/usr/bin/env bash
# Offline build of `harness` with the `cuda` cargo feature (burn-cuda), for a machine that cannot
# reach GitHub. With internet access, plain `cargo build --release --features cuda` is the way.
#
# Why: burn-cuda -> cubecl-cuda -> cubecl-llvm, whose build dependency tracel-llvm-bundler
# downloads a prebuilt LLVM 23 from GitHub unless `<prefix>/.tracel-llvm-installed` exists, with
# `<prefix>` = `$XDG_DATA_HOME/tracel/tracel-llvm-<bundler version>` (dirs::data_local_dir()).
# cubecl-llvm's build script then only runs `<prefix>/bin/llvm-config --link-static` with
# --libs, --system-libs, --libdir, --includedir and --cxxflags. This script fills that prefix
# from Debian unstable's LLVM 23 packages (downloaded with a private apt configuration and
# unpacked with `dpkg -x`; nothing is installed and the system's apt sources are untouched):
#   - a wrapper `llvm-config` drops what Debian's build names but the link cannot use or does
#     not need: -lPolly -lPollyISL (archives not shipped), libz3.so (named by path), -lxml2;
#   - on glibc < 2.38 it appends a six-function shim archive (__isoc23_strtol, ...ll, ...ul,
#     ...ull, __isoc23_sscanf, __isoc23_scanf forwarding to the C11 functions), which the
#     objects Debian built against glibc 2.38+ reference;
#   - where the linker finds no libz.so / libzstd.so (the -dev packages are not installed),
#     a symlink to the runtime library libz.so.1 / libzstd.so.1 is put in the unpacked lib/.
# Everything lives under $HARNESS_CUDA_DIR (default target/cuda-llvm); XDG_DATA_HOME points
# there for the cargo build only, so nothing in $HOME is touched. Then it builds into its own
# target folder ($HARNESS_CUDA_TARGET_DIR, default target/cuda), leaving target/release alone.
#
# Usage: scripts/cuda_build.sh [--check] [--package] [--no-build] [--help]
#   (no option)  prepare the LLVM prefix (idempotent) and build target/cuda/release/harness
#   --check      then check the CUDA binary on this machine (no GPU needed): (a) `harness run
#                configs/ci.yaml backend=cuda` fails before any stage, naming what is missing,
#                with and without CUDA_VISIBLE_DEVICES=-1; (b) on the CPU, configs/ci.yaml gives
#                the default binary's metrics.csv bit for bit (timing rows aside), `harness
#                check` against experiments/baselines/ci.csv and `harness validate` pass
#   --package    then make the GPU bundle in $HARNESS_CUDA_BUNDLE (default target/cuda-bundle):
#                harness.xz (stripped, xz -6), cuda/nvvm/libdevice/libdevice.10.bc (from the
#                PyPI wheel nvidia-cuda-nvcc-cu12), gpu_check.sh, configs/ci.yaml and
#                configs/paper.yaml, MANIFEST and SHA256SUMS; fails if it reaches 64 MiB
#   --no-build   skip the cargo build (use the binary already in the target folder)
# Environment (all optional):
#   HARNESS_CUDA_DIR         private folder for apt state, .debs, unpacked LLVM, prefix
#   HARNESS_CUDA_TARGET_DIR  CARGO_TARGET_DIR of the CUDA build
#   HARNESS_CUDA_BUNDLE      output folder of --package
#   CUDARC_CUDA_VERSION      CUDA driver API the binary is built for (default 12080 = 12.8);
#                            the GPU's driver must support at least this version
#   HARNESS_LLVM_DEB_VERSION pin the Debian package version (e.g. 1:23.1.4-2)
#   HARNESS_DEBIAN_MIRROR    default http://deb.debian.org/debian (suite: HARNESS_DEBIAN_SUITE,
#                            default unstable); once unstable has moved past LLVM 23, a
#                            https://snapshot.debian.org/archive/debian/<date>/ URL can stand in
#                            (its Release files are old: Check-Valid-Until is then turned off)
#   HARNESS_NVCC_WHEEL       nvidia-cuda-nvcc-cu12 version for libdevice (default 12.8.93)
#   HARNESS_BASELINE_BIN     default (non-CUDA) binary for --check (default target/release/harness)
#   CARGO_BUILD_JOBS, nice level HARNESS_NICE (default 19)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

say() { printf 'cuda_build: %s\n' "$*"; }
die() { printf 'cuda_build: error: %s\n' "$*" >&2; exit 1; }
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$repo/$1" ;; esac; }

do_check=0 do_package=0 do_build=1
for arg in "$@"; do
  case $arg in
    --check) do_check=1 ;;
    --package) do_package=1 ;;
    --no-build) do_build=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$arg' (see --help)" ;;
  esac
done

priv=$(abs "${HARNESS_CUDA_DIR:-target/cuda-llvm}")
target_dir=$(abs "${HARNESS_CUDA_TARGET_DIR:-target/cuda}")
bundle=$(abs "${HARNESS_CUDA_BUNDLE:-target/cuda-bundle}")
cuda_version=${CUDARC_CUDA_VERSION:-12080}
mirror=${HARNESS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=${HARNESS_DEBIAN_SUITE:-unstable}
nvcc_wheel=${HARNESS_NVCC_WHEEL:-12.8.93}
baseline_bin=$(abs "${HARNESS_BASELINE_BIN:-target/release/harness}")
nice_level=${HARNESS_NICE:-19}
llvm_major=23
packages=("llvm-$llvm_major" "llvm-$llvm_major-dev" "libllvm$llvm_major")
[[ $cuda_version =~ ^1[0-9]0[0-9]0$ ]] || die "CUDARC_CUDA_VERSION='$cuda_version' is not like 12080"

# Writes stdin to $1 only if the content differs, and says which.
put() {
  local dest=$1 tmp
  tmp=$(mktemp "$dest.XXXXXX")
  cat >"$tmp"
  if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
    rm -f "$tmp"
    say "unchanged: $dest"
  else
    mv -f "$tmp" "$dest"
    say "wrote: $dest"
  fi
}

# ---------------------------------------------------------------------------------------------
# 1. The LLVM prefix
# ---------------------------------------------------------------------------------------------
prepare_llvm() {
  local tool
  for tool in apt-get dpkg-deb cc c++ ar cargo awk; do
    command -v "$tool" >/dev/null || die "'$tool' is needed and not on PATH"
  done
  mkdir -p "$priv"
  say "private folder: $priv (outside it, only the cargo target folder and, with --package, the bundle are written)"

  # The bundler's version names the prefix; read it from Cargo.lock.
  local bundler_version
  bundler_version=$(awk '/^name = "tracel-llvm-bundler"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
  [[ -n $bundler_version ]] || die "tracel-llvm-bundler not in Cargo.lock: is this still burn 0.22 with cubecl-llvm?"
  xdg=$priv/xdg-data
  prefix=$xdg/tracel/tracel-llvm-$bundler_version
  say "tracel-llvm-bundler $bundler_version: prefix $prefix (XDG_DATA_HOME=$xdg during the build)"

  # 1a. .debs, with a private apt configuration: own sources.list, lists, cache and status.
  local apt=$priv/apt debs=$priv/debs
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$debs"
  printf 'deb %s %s main\n' "$mirror" "$suite" | put "$apt/sources.list"
  [[ -f $apt/status ]] || : >"$apt/status"
  local -a apt_opts=(
    -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
    -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1 -o APT::Architecture=amd64
    -o "APT::Sandbox::User=$(id -un)" -q
  )
  [[ $mirror == *snapshot.debian.org* ]] && apt_opts+=(-o Acquire::Check-Valid-Until=false)
  local want=() p have=1 pinned=${HARNESS_LLVM_DEB_VERSION:-}
  for p in "${packages[@]}"; do
    want+=("$p${pinned:+=$pinned}")
    # apt-get download names a file <package>_<version, ':' as %3a>_<arch>.deb
    compgen -G "$debs/${p}_${pinned:+${pinned//:/%3a}_}*.deb" >/dev/null || have=0
  done
  if [[ $have == 1 ]]; then
    say "unchanged: $debs (already holds ${packages[*]}${pinned:+ $pinned})"
  else
    rm -f "$debs"/*.deb
    say "apt-get update with the private sources ($mirror $suite) into $apt"
    apt-get "${apt_opts[@]}" update >"$apt/update.log" 2>&1 || { cat "$apt/update.log" >&2; die "apt-get update failed (is $mirror reachable?)"; }
    say "apt-get download ${want[*]} into $debs"
    (cd "$debs" && apt-get "${apt_opts[@]}" download "${want[@]}") ||
      die "apt-get download failed: $suite may no longer carry LLVM $llvm_major; set HARNESS_DEBIAN_MIRROR to a snapshot.debian.org date and HARNESS_LLVM_DEB_VERSION"
  fi

  # 1b. Unpack. The marker records which .debs the tree came from.
  local root=$priv/root stamp
  stamp=$(cd "$debs" && sha256sum ./*.deb)
  if [[ -f $root/.unpacked ]] && [[ $(cat "$root/.unpacked") == "$stamp" ]]; then
    say "unchanged: $root (unpacked from the same .debs)"
  else
    rm -rf "$root"
    mkdir -p "$root"
    local deb
    for deb in "$debs"/*.deb; do
      say "dpkg -x $(basename "$deb") $root"
      dpkg-deb -x "$deb" "$root"
    done
    printf '%s\n' "$stamp" >"$root/.unpacked"
  fi
  real=$root/usr/lib/llvm-$llvm_major/bin/llvm-config
  [[ -x $real ]] || die "$real is missing after unpacking"
  local version
  version=$("$real" --version) || die "$real does not run on this machine"
  [[ $version == "$llvm_major".* ]] || die "$real is LLVM $version, the bundler wants $llvm_major.x"
  libdir=$("$real" --libdir)
  "$real" --targets-built | grep -qw NVPTX || die "this LLVM was built without NVPTX"
  say "LLVM $version from Debian $suite: $real"
  printf '%s from Debian %s (%s)\n' "$version" "$suite" "$(find "$debs" -name '*.deb' -printf '%f\n' | LC_ALL=C sort | paste -sd ' ' -)" >"$priv/llvm.version"

  # 1c. glibc < 2.38 lacks the C23 entry points that Debian unstable's objects call.
  shim_lib=""
  local glibc
  glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  if [[ $(printf '%s\n2.38\n' "$glibc" | sort -V | head -n 1) != 2.38 ]]; then
    shim_lib=harness_isoc23
    local src=$priv/shim/isoc23.c
    mkdir -p "$priv/shim"
    put "$src" <<'EOF'
/* glibc 2.38's C23 entry points, for objects built against glibc >= 2.38 and linked on an
 * older one (scripts/cuda_build.sh). They forward to the C11 functions; the only difference,
 * C23's 0b prefix for base 0 and 2, does not matter to LLVM's uses. Compiled with -std=c11 so
 * that glibc's headers do not redirect the callees back to these names. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

long __isoc23_strtol(const char *s, char **end, int base) { return strtol(s, end, base); }
long long __isoc23_strtoll(const char *s, char **end, int base) { return strtoll(s, end, base); }
unsigned long __isoc23_strtoul(const char *s, char **end, int base) { return strtoul(s, end, base); }
unsigned long long __isoc23_strtoull(const char *s, char **end, int base) { return strtoull(s, end, base); }

int __isoc23_sscanf(const char *s, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = vsscanf(s, format, ap);
  va_end(ap);
  return n;
}

int __isoc23_scanf(const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  int n = vscanf(format, ap);
  va_end(ap);
  return n;
}
EOF
    local archive=$libdir/lib$shim_lib.a
    if [[ -f $archive && $archive -nt $src ]]; then
      say "unchanged: $archive"
    else
      cc -std=c11 -O2 -fPIC -c "$src" -o "$priv/shim/isoc23.o"
      rm -f "$archive"
      ar rcs "$archive" "$priv/shim/isoc23.o"
      say "wrote: $archive (glibc $glibc < 2.38: __isoc23_* shim)"
    fi
  else
    say "glibc $glibc has the __isoc23_* functions: no shim"
  fi

  # 1d. -lz and -lzstd need the unversioned .so, which only the -dev packages install.
  local lib so1
  for lib in z zstd; do
    if [[ $(cc -print-file-name="lib$lib.so") == /* ]]; then
      say "the linker finds lib$lib.so: $(cc -print-file-name="lib$lib.so")"
    elif [[ -e $libdir/lib$lib.so ]]; then
      say "unchanged: $libdir/lib$lib.so"
    else
      so1=$(/sbin/ldconfig -p 2>/dev/null | awk -v n="lib$lib.so.1" '$1 == n && /x86-64/ {print $NF; exit}')
      [[ -n $so1 ]] || so1=$(cc -print-file-name="lib$lib.so.1")
      [[ $so1 == /* && -e $so1 ]] || die "neither lib$lib.so nor lib$lib.so.1 found (Debian: zlib1g-dev, libzstd-dev)"
      ln -sfn "$so1" "$libdir/lib$lib.so"
      say "wrote: $libdir/lib$lib.so -> $so1 (no lib$lib -dev package installed)"
    fi
  done

  # 1e. The prefix: the wrapper llvm-config and the marker that skips the download.
  mkdir -p "$prefix/bin"
  put "$prefix/bin/llvm-config" <<EOF
#!/bin/sh
# Written by scripts/cuda_build.sh: Debian's llvm-config, minus the libraries the link cannot
# use (Polly, named by Debian's build but not shipped; z3 by path; xml2), plus the
# __isoc23_* shim on glibc < 2.38.
real='$real'
shim='$shim_lib'
out=\$("\$real" "\$@") || exit \$?
libs=0
for a in "\$@"; do [ "\$a" = --libs ] && libs=1; done
printf '%s\n' "\$out" | awk -v libs="\$libs" -v shim="\$shim" '
  {
    line = ""
    for (i = 1; i <= NF; i++) {
      if (\$i == "-lPolly" || \$i == "-lPollyISL" || \$i == "-lxml2" || \$i == "-lz3" || \$i ~ /\/libz3\.so/) continue
      line = line (line == "" ? "" : " ") \$i
    }
    if (libs && shim != "" && line ~ /-lLLVM/) line = line " -l" shim
    print line
  }'
EOF
  chmod +x "$prefix/bin/llvm-config"
  if [[ -f $prefix/.tracel-llvm-installed ]]; then
    say "unchanged: $prefix/.tracel-llvm-installed"
  else
    : >"$prefix/.tracel-llvm-installed"
    say "wrote: $prefix/.tracel-llvm-installed (the bundler skips its download)"
  fi
  local flag
  for flag in --system-libs --libdir; do
    say "llvm-config --link-static $flag: $("$prefix/bin/llvm-config" --link-static "$flag")"
  done
  say "llvm-config --link-static --libs: $("$prefix/bin/llvm-config" --link-static --libs | wc -w) libraries, ending $("$prefix/bin/llvm-config" --link-static --libs | awk '{print $(NF-1), $NF}')"
}

# ---------------------------------------------------------------------------------------------
# 2. The build
# ---------------------------------------------------------------------------------------------
cuda_bin=$target_dir/release/harness

build() {
  say "building: CUDARC_CUDA_VERSION=$cuda_version XDG_DATA_HOME=$xdg CARGO_TARGET_DIR=$target_dir nice -n $nice_level cargo build --release --features cuda"
  local t0=$SECONDS
  XDG_DATA_HOME=$xdg CUDARC_CUDA_VERSION=$cuda_version CARGO_TARGET_DIR=$target_dir \
    nice -n "$nice_level" cargo build --release --features cuda
  local dt=$((SECONDS - t0))
  say "cargo build took $((dt / 60)) min $((dt % 60)) s"
  [[ -x $cuda_bin ]] || die "$cuda_bin was not built"
  say "built: $cuda_bin ($(du -m "$cuda_bin" | cut -f1) MiB), dynamic libraries:"
  ldd "$cuda_bin" | sed 's/^/    /'
  printf '%s\n' "$cuda_version" >"$target_dir/release/harness.cuda-version"
}

# ---------------------------------------------------------------------------------------------
# 3. --check: the CUDA binary on this (GPU-less) machine
# ---------------------------------------------------------------------------------------------
# The timing rows of metrics.csv; every other row (quality metrics, hit counts, index bytes per
# item, threads) must be bit-identical between the CUDA binary and the default one.
timing_metrics='^(build_s|qps|query_mean_s|query_median_s|query_p95_s)$'
no_timing() { awk -F, -v t="$timing_metrics" 'NR == 1 || $3 !~ t' "$1"; }
run_dirs_of() { awk '/^results: / { print $2 }' "$1"; }

check_cpu() {
  local scratch=$target_dir/check log
  [[ -n $target_dir && $scratch == */check ]] || die "no target folder"
  rm -rf "$scratch"
  mkdir -p "$scratch"
  say "check: scratch folder $scratch"

  # (a) backend=cuda fails before any stage, naming what is missing.
  local -a cases=()
  if [[ -e /proc/driver/nvidia/version ]] || compgen -G '/dev/nvidia[0-9]*' >/dev/null; then
    say "check (a): this machine has an NVIDIA driver or device node: only the CUDA_VISIBLE_DEVICES case applies"
  else
    cases+=(no-gpu)
  fi
  cases+=(hidden)
  local c expect
  for c in "${cases[@]}"; do
    log=$scratch/cuda-$c.log
    local -a env_cmd=(env)
    if [[ $c == hidden ]]; then
      env_cmd+=(CUDA_VISIBLE_DEVICES=-1)
      # shellcheck disable=SC2016 # the backquotes are the message's own
      expect='CUDA_VISIBLE_DEVICES is `-1`, which hides every GPU'
    else
      env_cmd+=(-u CUDA_VISIBLE_DEVICES)
      expect='no NVIDIA GPU is visible'
    fi
    if "${env_cmd[@]}" "$cuda_bin" --quiet run configs/ci.yaml backend=cuda \
      --out "$scratch/cuda-$c" --cache "$scratch/cache-cuda-$c" >"$log" 2>&1; then
      die "check (a, $c): harness run ... backend=cuda succeeded on a machine where it must fail (see $log)"
    fi
    grep -qF "$expect" "$log" || { cat "$log" >&2; die "check (a, $c): the error does not say '$expect'"; }
    if compgen -G "$scratch/cuda-$c/*/stages/*.json" >/dev/null || compgen -G "$scratch/cache-cuda-$c/*" >/dev/null; then
      die "check (a, $c): a stage ran or was cached before the error (see $scratch/cuda-$c)"
    fi
    # shellcheck disable=SC2016 # the backquotes are the message's own
    say "check (a, $c): passed; no stage ran; the error: $(grep -F 'backend `cuda`' "$log" | head -n 1)"
  done

  # (b) On the CPU the CUDA binary gives the default binary's metrics, bit for bit.
  local base=$scratch/harness-default
  if [[ ! -x $baseline_bin ]]; then
    say "check (b): $baseline_bin is missing: building it (nice -n $nice_level cargo build --release)"
    nice -n "$nice_level" cargo build --release
  fi
  cp -p "$baseline_bin" "$base" # a copy: target/release may be rebuilt meanwhile
  say "check (b): default binary: copy of $baseline_bin ($("$base" --version))"
  local which bin t0
  for which in cuda default; do
    bin=$cuda_bin
    [[ $which == default ]] && bin=$base
    t0=$SECONDS
    "$bin" --quiet run configs/ci.yaml --out "$scratch/ci-$which" --cache "$scratch/cache-$which" \
      >"$scratch/ci-$which.log" 2>&1 || { tail -n 20 "$scratch/ci-$which.log" >&2; die "check (b): configs/ci.yaml failed with the $which binary"; }
    say "check (b): configs/ci.yaml with the $which binary: $((SECONDS - t0)) s"
  done
  local -a cuda_runs default_runs
  mapfile -t cuda_runs < <(run_dirs_of "$scratch/ci-cuda.log")
  mapfile -t default_runs < <(run_dirs_of "$scratch/ci-default.log")
  [[ ${#cuda_runs[@]} -gt 0 && ${#cuda_runs[@]} == "${#default_runs[@]}" ]] ||
    die "check (b): the two binaries printed ${#cuda_runs[@]} and ${#default_runs[@]} run folders"
  local i rows
  for i in "${!cuda_runs[@]}"; do
    if ! cmp -s <(no_timing "${cuda_runs[$i]}/metrics.csv") <(no_timing "${default_runs[$i]}/metrics.csv"); then
      diff <(no_timing "${cuda_runs[$i]}/metrics.csv") <(no_timing "${default_runs[$i]}/metrics.csv") | head -n 20 >&2
      die "check (b): ${cuda_runs[$i]##*/}: metrics.csv differs from the default binary's"
    fi
    rows=$(no_timing "${cuda_runs[$i]}/metrics.csv" | awk 'NR > 1' | wc -l)
    say "check (b): ${cuda_runs[$i]##*/}: all $rows non-timing rows of metrics.csv bit-identical to the default binary's"
  done
  "$cuda_bin" --quiet check "${cuda_runs[0]}" --baseline experiments/baselines/ci.csv --both-ways \
    >"$scratch/check.log" 2>&1 || { cat "$scratch/check.log" >&2; die "check (b): harness check against experiments/baselines/ci.csv failed"; }
  say "check (b): harness check ${cuda_runs[0]##*/} --baseline experiments/baselines/ci.csv --both-ways: passed"
  "$cuda_bin" validate --brief configs/*.yaml >"$scratch/validate.log" 2>&1 ||
    { cat "$scratch/validate.log" >&2; die "check (b): harness validate configs/*.yaml failed"; }
  say "check (b): harness validate --brief configs/*.yaml: passed"
  say "check: passed (logs and runs in $scratch)"
}

# ---------------------------------------------------------------------------------------------
# 4. --package: the bundle for scripts/gpu_check.sh
# ---------------------------------------------------------------------------------------------
package() {
  local tool
  for tool in strip xz sha256sum python3; do
    command -v "$tool" >/dev/null || die "--package needs '$tool'"
  done
  [[ -n $bundle ]] || die "no bundle folder"
  mkdir -p "$bundle/cuda/nvvm/libdevice" "$bundle/configs"
  say "bundle: $bundle"
  local bin_sha stripped_bytes=""
  bin_sha=$(sha256sum "$cuda_bin" | cut -d' ' -f1)
  if [[ -f $bundle/harness.xz && -f $bundle/MANIFEST ]] && grep -qx "binary_sha256=$bin_sha" "$bundle/MANIFEST"; then
    say "unchanged: $bundle/harness.xz (same binary)"
    stripped_bytes=$(awk -F= '$1 == "stripped_bytes" { print $2 }' "$bundle/MANIFEST")
  else
    strip --strip-all -o "$bundle/harness.stripped" "$cuda_bin"
    stripped_bytes=$(stat -c %s "$bundle/harness.stripped")
    say "stripped: $(stat -c %s "$cuda_bin") -> $stripped_bytes bytes"
    nice -n "$nice_level" xz -6 -T0 -c "$bundle/harness.stripped" >"$bundle/harness.xz.tmp"
    rm -f "$bundle/harness.stripped"
    mv -f "$bundle/harness.xz.tmp" "$bundle/harness.xz"
    say "wrote: $bundle/harness.xz ($(stat -c %s "$bundle/harness.xz") bytes, xz -6)"
  fi

  # libdevice.10.bc from NVIDIA's nvcc wheel on PyPI (only that member is kept).
  local wheels=$priv/wheels libdevice=$bundle/cuda/nvvm/libdevice/libdevice.10.bc wheel
  wheel=$(compgen -G "$wheels/nvidia_cuda_nvcc_cu12-$nvcc_wheel-*.whl" | head -n 1 || true)
  if [[ -z $wheel ]]; then
    say "python3 -m pip download --no-deps nvidia-cuda-nvcc-cu12==$nvcc_wheel into $wheels"
    python3 -m pip download --no-deps --only-binary=:all: -q -d "$wheels" "nvidia-cuda-nvcc-cu12==$nvcc_wheel"
    wheel=$(compgen -G "$wheels/nvidia_cuda_nvcc_cu12-$nvcc_wheel-*.whl" | head -n 1)
  fi
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc"))' \
    "$wheel" "$libdevice.tmp"
  if [[ -f $libdevice ]] && cmp -s "$libdevice.tmp" "$libdevice"; then
    rm -f "$libdevice.tmp"
    say "unchanged: $libdevice"
  else
    mv -f "$libdevice.tmp" "$libdevice"
    say "wrote: $libdevice (from $(basename "$wheel"))"
  fi

  cp scripts/gpu_check.sh "$bundle/gpu_check.sh"
  cp configs/ci.yaml configs/paper.yaml "$bundle/configs/"
  local revision dirty=""
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && dirty=" (uncommitted changes in src/ or Cargo.*)"
  {
    printf 'cuda_version=%s\n' "$(cat "$target_dir/release/harness.cuda-version" 2>/dev/null || echo "$cuda_version")"
    printf 'git_revision=%s%s\n' "$revision" "$dirty"
    printf 'harness_version=%s\n' "$("$cuda_bin" --version)"
    printf 'rustc=%s\n' "$(rustc -V)"
    printf 'llvm=%s\n' "$(cat "$priv/llvm.version" 2>/dev/null || echo unknown)"
    printf 'libdevice=nvidia-cuda-nvcc-cu12 %s\n' "$nvcc_wheel"
    printf 'binary_sha256=%s\n' "$bin_sha"
    printf 'binary_bytes=%s\n' "$(stat -c %s "$cuda_bin")"
    printf 'stripped_bytes=%s\n' "$stripped_bytes"
    printf 'xz_bytes=%s\n' "$(stat -c %s "$bundle/harness.xz")"
  } >"$bundle/MANIFEST"
  (cd "$bundle" && find . -type f ! -name 'SHA256SUMS*' -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >SHA256SUMS.tmp && mv -f SHA256SUMS.tmp SHA256SUMS)
  local total limit=$((64 * 1024 * 1024))
  total=$(find "$bundle" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  say "bundle: $(find "$bundle" -type f | wc -l) files, $total bytes ($(awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }') MiB):"
  find "$bundle" -type f -printf '    %P  %s bytes\n' | LC_ALL=C sort
  [[ $total -lt $limit ]] || die "the bundle is $total bytes, not under 64 MiB"
  say "bundle: under 64 MiB; on the GPU machine: ./gpu_check.sh . DATA_ROOT"
}

main() {
  prepare_llvm
  if [[ $do_build == 1 ]]; then
    build
  else
    [[ -x $cuda_bin ]] || die "--no-build, and $cuda_bin does not exist"
    say "--no-build: using $cuda_bin"
  fi
  if [[ $do_check == 1 ]]; then check_cpu; fi
  if [[ $do_package == 1 ]]; then package; fi
}

# One line, so that bash has read all of it before it runs (the file may be edited meanwhile).
main "$@"; exit
