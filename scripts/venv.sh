# Sourced by the Python peer scripts (bench_faiss.sh, bench_torch.sh); defines:
#   bench_venv MODULES PACKAGE...   create or reuse .venv-bench/ (git-ignored) so that
#                                   `import MODULES` works, installing PACKAGEs from PyPI
#   harness_bin                     export HARNESS_BIN (default target/release/harness) and
#                                   fail unless it is an executable
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-bench"

bench_venv() {
    local modules=$1; shift
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import $modules" 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --upgrade pip
        "$venv/bin/pip" install --quiet "$@"
    fi
}

harness_bin() {
    export HARNESS_BIN="${HARNESS_BIN:-target/release/harness}"
    if [[ ! -x "$HARNESS_BIN" ]]; then
        echo "HARNESS_BIN=$HARNESS_BIN is not an executable; build it with cargo build --release" >&2
        exit 1
    fi
}
