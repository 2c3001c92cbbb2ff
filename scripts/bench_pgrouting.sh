#!/usr/bin/env bash
# Peer benchmark of the IWAN graph search (`harness bench iwan`) against
# PostgreSQL + pgRouting on the same graph and queries (see bench_pgrouting.py).
#
# usage: scripts/bench_pgrouting.sh RUN_DIR [--db test|train] [--queries Q] [--k K]
#        scripts/bench_pgrouting.sh --export-dir DIR
#
#   RUN_DIR         an experiment run directory that `harness iwan export` reads
#   --db            database split (default test)
#   --queries Q     first Q queries (default 200)
#   --k K           top-K compared (default 100)
#   --export-dir DIR  (plumbing test) use an existing export in DIR instead of
#                   running `harness iwan export`, and skip `harness bench iwan`;
#                   queries and k then come from DIR/meta.json. A fake export:
#                     .venv-bench/bin/python scripts/bench_pgrouting.py fake-export /tmp/fake
#                     scripts/bench_pgrouting.sh --export-dir /tmp/fake
#
# Steps: installs postgresql-NN-pgrouting with apt-get if missing (as root),
# creates/reuses the virtualenv .venv-bench/ (git-ignored) with psycopg,
# runs `harness iwan export` into a temp dir (HARNESS_BIN, default
# target/release/harness, built with cargo build --release if missing),
# initdb's a throw-away cluster in that temp dir listening only on a Unix
# socket there (no TCP), runs bench_pgrouting.py (load, pgr_dijkstraCost and
# pgr_drivingDistance per query, top-K check against the export), then
# `harness bench iwan` with the same options, and prints a Markdown table.
# The cluster is stopped and the temp dir removed on any exit. When run as
# root, the cluster runs as the `postgres` system user (created if missing).
#
# Environment: HARNESS_BIN, PG_BIN (PostgreSQL bin dir, default: newest
# /usr/lib/postgresql/*/bin), BENCH_PG_ARGS (extra arguments for
# bench_pgrouting.py run, e.g. "--repeat 3" or "--methods pgr_dijkstraCost");
# HARNESS_DATA (data root) reaches the harness as usual.
#
# Exit status: 0 agree, 3 some top-K disagree beyond tolerance, other: error.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
caller_pwd="$PWD"
cd "$root"
# Paths given by the caller are relative to the caller's directory.
abspath() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$caller_pwd/$1"; fi; }

die() { echo "bench_pgrouting: $*" >&2; exit 1; }
say() { echo "bench_pgrouting: $*" >&2; }
usage() { sed -n '5,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit "${1:-2}"; }

run_dir="" db="test" queries=200 k=100 export_dir=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --db) [[ $# -ge 2 ]] || usage; db="$2"; shift 2 ;;
        --queries) [[ $# -ge 2 ]] || usage; queries="$2"; shift 2 ;;
        --k) [[ $# -ge 2 ]] || usage; k="$2"; shift 2 ;;
        --export-dir) [[ $# -ge 2 ]] || usage; export_dir="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) [[ -z "$run_dir" ]] || { echo "more than one RUN_DIR" >&2; usage; }; run_dir="$1"; shift ;;
    esac
done
[[ "$db" == test || "$db" == train ]] || die "--db must be test or train, not '$db'"
[[ "$queries" =~ ^[1-9][0-9]*$ ]] || die "--queries must be a positive integer, not '$queries'"
[[ "$k" =~ ^[1-9][0-9]*$ ]] || die "--k must be a positive integer, not '$k'"
[[ -z "$run_dir" ]] || run_dir="$(abspath "$run_dir")"
[[ -z "$export_dir" ]] || export_dir="$(abspath "$export_dir")"
[[ -z "${HARNESS_BIN:-}" ]] || HARNESS_BIN="$(abspath "$HARNESS_BIN")"
if [[ -n "$export_dir" ]]; then
    [[ -f "$export_dir/meta.json" ]] || die "--export-dir $export_dir has no meta.json"
    export_dir="$(cd "$export_dir" && pwd)"
else
    [[ -n "$run_dir" ]] || { echo "RUN_DIR is required" >&2; usage; }
    [[ -d "$run_dir" ]] || die "RUN_DIR $run_dir is not a directory"
fi

is_root=0
[[ "$(id -u)" -eq 0 ]] && is_root=1

# ---------------------------------------------------------------- PostgreSQL + pgRouting
apt_install() {
    ((is_root)) || die "pgRouting is missing and we are not root; install it with: sudo apt-get install -y $*"
    command -v apt-get >/dev/null || die "pgRouting is missing and there is no apt-get; install $* by hand"
    say "apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >&2; then
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
    fi
}
find_pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" ]] || die "PG_BIN=$PG_BIN has no initdb"
        echo "$PG_BIN"; return
    fi
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" ]] && best="$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1)"
    done
    [[ -n "$best" ]] && echo "$best"
}
pg_bin="$(find_pg_bin || true)"
if [[ -z "$pg_bin" ]]; then
    apt_install postgresql
    pg_bin="$(find_pg_bin || true)"
    [[ -n "$pg_bin" ]] || die "no PostgreSQL server (initdb) found under /usr/lib/postgresql after install"
fi
pg_major="$("$pg_bin/pg_config" --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/' || true)"
[[ "$pg_major" =~ ^[0-9]+$ ]] || pg_major="$(basename "$(dirname "$pg_bin")")"
pg_share="$("$pg_bin/pg_config" --sharedir 2>/dev/null || echo "/usr/share/postgresql/$pg_major")"
if [[ ! -f "$pg_share/extension/pgrouting.control" ]]; then
    apt_install "postgresql-$pg_major-pgrouting"
    [[ -f "$pg_share/extension/pgrouting.control" ]] \
        || die "postgresql-$pg_major-pgrouting installed but $pg_share/extension/pgrouting.control is missing"
fi

# ---------------------------------------------------------------- virtualenv
venv="$root/.venv-bench"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import psycopg' 2>/dev/null; then
    if [[ -e "$venv" && ! -w "$venv" ]]; then
        die "$venv lacks psycopg or does not run for $(id -un), and is not writable by it; fix or remove it"
    fi
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet 'psycopg[binary]' || die "pip install psycopg[binary] failed"
fi
py="$venv/bin/python"
bench_py="$root/scripts/bench_pgrouting.py"

# ---------------------------------------------------------------- harness binary
harness=""
if [[ -z "$export_dir" ]]; then
    harness="${HARNESS_BIN:-target/release/harness}"
    if [[ ! -x "$harness" ]]; then
        [[ -z "${HARNESS_BIN:-}" ]] || die "HARNESS_BIN=$HARNESS_BIN is not an executable"
        say "building target/release/harness"
        cargo build --release >&2 || die "cargo build --release failed"
        [[ -x "$harness" ]] || die "$harness missing after cargo build --release"
    fi
fi

# ---------------------------------------------------------------- temp dir, cluster user
if ((is_root)); then
    if ! id -u postgres >/dev/null 2>&1; then
        say "creating system user postgres"
        useradd --system --user-group --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin postgres || die "useradd postgres failed"
    fi
    as_pg() {
        if command -v runuser >/dev/null; then
            runuser -u postgres -- "$@"
        else
            su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
        fi
    }
else
    as_pg() { "$@"; }
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/bench_pgrouting.XXXXXX")"
pgdir="$tmp/pg"           # socket directory and cluster parent, owned by the cluster user
pgdata="$pgdir/data"
pglog="$pgdir/server.log"
server_job=""   # our background job that runs the postmaster (so that we reap it)
# A process that runs (an exited one is a zombie until its parent reaps it).
running() { [[ -r "/proc/$1/stat" ]] && ! awk '{ exit ($3 == "Z" ? 0 : 1) }' "/proc/$1/stat" 2>/dev/null; }
stop_cluster() {
    [[ -n "$server_job" ]] || return 0
    local pid=""
    [[ -f "$pgdata/postmaster.pid" ]] && pid="$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)"
    if running "$server_job" && ! as_pg "$pg_bin/pg_ctl" -D "$pgdata" -m fast -w -t 30 stop >/dev/null 2>&1; then
        if [[ "$pid" =~ ^[0-9]+$ ]] && running "$pid"; then
            say "pg_ctl stop failed; killing postmaster $pid"
            kill -TERM "$pid" 2>/dev/null || true
            sleep 2
            if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
    fi
    wait "$server_job" 2>/dev/null || true
    server_job=""
}
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    stop_cluster
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

sock_path="$pgdir/.s.PGSQL.5432"
((${#sock_path} < 100)) || die "socket path $sock_path is too long for a Unix socket; set TMPDIR to a shorter dir"
mkdir -p "$pgdir"
if ((is_root)); then
    chmod 711 "$tmp"       # the cluster user only traverses it
    chown postgres: "$pgdir"
fi
chmod 700 "$pgdir"

# ---------------------------------------------------------------- export
if [[ -z "$export_dir" ]]; then
    export_dir="$tmp/export"
    say "$harness iwan export $run_dir --out $export_dir --db $db --queries $queries --k $k"
    "$harness" iwan export "$run_dir" --out "$export_dir" --db "$db" --queries "$queries" --k "$k" >&2 \
        || die "harness iwan export failed"
    for f in edges.csv query_edges.csv topk.csv meta.json; do
        [[ -f "$export_dir/$f" ]] || die "harness iwan export wrote no $f"
    done
else
    say "using export $export_dir (no harness export, no harness bench; queries and k from meta.json)"
fi

# ---------------------------------------------------------------- cluster
say "initdb ($pg_bin) in $pgdata"
as_pg "$pg_bin/initdb" -D "$pgdata" -U bench --auth=trust -E UTF8 --no-locale --no-sync >"$tmp/initdb.log" 2>&1 \
    || { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
cat >>"$pgdata/postgresql.conf" <<EOF

# bench_pgrouting.sh: throw-away cluster, Unix socket only
listen_addresses = ''
unix_socket_directories = '$pgdir'
port = 5432
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
work_mem = '64MB'
max_connections = 10
EOF
# Run the postmaster as our own background job (not daemonised by pg_ctl), so
# that this shell reaps it when it stops and leaves no zombie behind.
as_pg "$pg_bin/postgres" -D "$pgdata" </dev/null >"$pglog" 2>&1 &
server_job=$!
for ((i = 0; i < 600; i++)); do
    "$pg_bin/pg_isready" -q -h "$pgdir" -p 5432 && break
    running "$server_job" || { cat "$pglog" >&2; die "postgres exited at start (log above)"; }
    sleep 0.1
done
"$pg_bin/pg_isready" -q -h "$pgdir" -p 5432 || { tail -n 30 "$pglog" >&2; die "postgres not ready after 60 s (log above)"; }
say "cluster up, socket $sock_path"

# ---------------------------------------------------------------- pgRouting side
pg_rc=0
# shellcheck disable=SC2086
"$py" "$bench_py" run "$export_dir" --host "$pgdir" --port 5432 --user bench --dbname postgres \
    --json-out "$tmp/pg.json" ${BENCH_PG_ARGS:-} || pg_rc=$?
if [[ "$pg_rc" -ne 0 && "$pg_rc" -ne 3 ]]; then
    tail -n 20 "$pglog" >&2 2>/dev/null || true
    die "bench_pgrouting.py failed (exit $pg_rc)"
fi
# The harness side needs no database: stop the cluster before timing it.
stop_cluster

# ---------------------------------------------------------------- harness side
table_args=(--meta "$export_dir/meta.json" --pg "$tmp/pg.json")
if [[ -n "$harness" ]]; then
    read -r top_iwk top_wwk < <("$py" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m.get("top_iwk") or "", m.get("top_wwk") or "")' "$export_dir/meta.json") || true
    bench_args=(bench iwan "$run_dir" --db "$db" --queries "$queries" --k "$k")
    [[ -n "${top_iwk:-}" ]] && bench_args+=(--top-iwk "$top_iwk")
    [[ -n "${top_wwk:-}" ]] && bench_args+=(--top-wwk "$top_wwk")
    say "$harness ${bench_args[*]}"
    "$harness" "${bench_args[@]}" >"$tmp/harness.jsonl" || die "harness bench iwan failed"
    cat "$tmp/harness.jsonl"
    table_args+=(--harness "$tmp/harness.jsonl")
fi
"$py" "$bench_py" table "${table_args[@]}"
if [[ "$pg_rc" -eq 3 ]]; then
    say "FAIL: pgRouting and harness top-K disagree (details above)"
fi
exit "$pg_rc"
