#!/usr/bin/env python3
"""Peer benchmark: IWAN graph search (`harness iwan export`) against pgRouting.

Subcommands:

  run EXPORT_DIR --host SOCKET_DIR [--port P] [--user U] [--dbname D]
      Loads the export (edges.csv, query_edges.csv) into PostgreSQL over the
      Unix socket in SOCKET_DIR, then for each of the export's queries runs
      pgr_dijkstraCost (one-to-many, node 0 -> image nodes 1..N) and
      pgr_drivingDistance (one-to-all from node 0), times each query client
      side (execute + fetchall), builds the top-K by (distance, node) and
      compares it with topk.csv. Prints one JSON line; exit status 3 when any
      query disagrees beyond the tolerance, 1 on errors.

  table --meta meta.json --pg pg.json [--harness harness.jsonl]
      Prints the Markdown comparison table (pgRouting / harness).

  fake-export DIR [--images N --words M --queries Q --k K ...]
      Writes a seeded random graph in the export format, with topk.csv from
      a plain Dijkstra in float32 (as the harness computes), for testing the
      plumbing without the harness. --corrupt C damages C queries' top-K so
      that the comparison must fail.

Run through scripts/bench_pgrouting.sh, which installs pgRouting and
psycopg, starts a throw-away cluster and runs the harness side.

Protocol: min(10, Q) warm-up queries per method, then each of the Q queries
timed once (--repeat R: R times each); median and p95 by linear
interpolation, as in `harness bench iwan`. The query node is 0, image i is node i+1, words follow.
"""

import argparse
import csv
import heapq
import json
import math
import os
import random
import struct
import sys
import time

from peer_common import quantile

RTOL = 1e-4  # relative tolerance: harness f32 vs PostgreSQL float8
ATOL = 1e-9  # absolute floor, for distances at (or near) zero
EXIT_DISAGREE = 3


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def close(a, b, rtol=RTOL):
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + ATOL


# ---------------------------------------------------------------- export files


def read_meta(d):
    path = os.path.join(d, "meta.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except OSError as e:
        sys.exit(f"cannot read {path}: {e}")
    except ValueError as e:
        sys.exit(f"{path} is not valid JSON: {e}")
    for key in ("images", "words", "edges", "queries", "k"):
        if not isinstance(meta.get(key), int):
            sys.exit(f"{path}: missing or non-integer field {key!r}")
    return meta


def check_header(path, want):
    with open(path, newline="") as f:
        got = next(csv.reader(f), None)
    if got is None or [c.strip() for c in got] != want:
        sys.exit(f"{path}: header is {got}, expected {','.join(want)}")


def read_topk(d, queries, k):
    """query_id -> [(image, distance)] in rank order."""
    path = os.path.join(d, "topk.csv")
    check_header(path, ["query_id", "rank", "image", "distance"])
    rows = {}
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        for line in r:
            if not line:
                continue
            q, rank, img, dist = int(line[0]), int(line[1]), int(line[2]), float(line[3])
            if not 0 <= q < queries:
                sys.exit(f"{path}: query_id {q} outside 0..{queries - 1}")
            rows.setdefault(q, []).append((rank, img, dist))
    out = {}
    for q, lst in rows.items():
        lst.sort()
        ranks = [r for r, _, _ in lst]
        if ranks != list(range(len(ranks))) and ranks != list(range(1, len(ranks) + 1)):
            sys.exit(f"{path}: query {q} has ranks {ranks[:5]}..., expected 0..n-1 or 1..n")
        if len(lst) > k:
            sys.exit(f"{path}: query {q} has {len(lst)} rows, more than k={k}")
        out[q] = [(img, dist) for _, img, dist in lst]
    return out


# ---------------------------------------------------------------- comparison


def compare(ours, pg_dist, k):
    """Compares our top-k [(image, dist)] with pgRouting's image -> distance.

    Returns (problems, tolerated): real disagreements as strings, and the
    number of set differences tolerated because the image's distance is
    within RTOL of pgRouting's k-th distance (ties under f32 vs float8).
    """
    problems = []
    pg_top = sorted(pg_dist.items(), key=lambda t: (t[1], t[0]))[:k]
    for (a, da), (b, db) in zip(ours, ours[1:]):
        if db < da and not close(da, db):
            problems.append(f"harness ranks not sorted by distance: image {a} at {da} before image {b} at {db}")
            break
    for img, d in ours:
        if img not in pg_dist:
            problems.append(f"image {img}: harness distance {d}, unreachable for pgRouting")
        elif not close(d, pg_dist[img]):
            problems.append(f"image {img}: harness distance {d}, pgRouting {pg_dist[img]}")
    if len(ours) < k or len(pg_top) < k:
        # Fewer than k reachable images: both sides must list all of them.
        if len(ours) != len(pg_top):
            problems.append(
                f"harness lists {len(ours)} images, pgRouting reaches {len(pg_dist)} (k={k})")
    ours_set = {img for img, _ in ours}
    pg_set = {img for img, _ in pg_top}
    tolerated = 0
    if ours_set != pg_set:
        kth = pg_top[-1][1] if pg_top else None
        set_problems = []
        for img in sorted(ours_set ^ pg_set):
            d = pg_dist.get(img)
            side = "harness only" if img in ours_set else "pgRouting only"
            if d is not None and kth is not None and len(pg_top) == k and close(d, kth):
                tolerated += 1
            else:
                set_problems.append(f"image {img} in top-{k} of {side}: pgRouting distance {d}, k-th {kth}")
        if set_problems:
            problems += set_problems
            tolerated = 0  # a swap partner of a real difference is no tie
    return problems, tolerated


# ---------------------------------------------------------------- run


def copy_csv(cur, table, columns, path):
    with open(path, "rb") as f, cur.copy(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, HEADER true)"
    ) as cp:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            cp.write(chunk)


def cmd_run(args):
    try:
        import psycopg
    except ImportError:
        sys.exit("psycopg is not installed; run scripts/bench_pgrouting.sh")

    d = args.export_dir
    meta = read_meta(d)
    n, k, nq = meta["images"], meta["k"], meta["queries"]
    edges_csv = os.path.join(d, "edges.csv")
    qedges_csv = os.path.join(d, "query_edges.csv")
    check_header(edges_csv, ["source", "target", "cost", "reverse_cost"])
    check_header(qedges_csv, ["query_id", "word_node", "cost"])
    score = meta.get("score", "iwan")
    if score != "iwan":
        sys.exit(f"meta.json: score is {score!r}; pgRouting computes shortest path lengths, which only "
                 "the 'iwan' (shortest path) score ranks by: export a run with iwan.score = shortest path")
    topk = read_topk(d, nq, k)

    try:
        conn = psycopg.connect(host=args.host, port=args.port, user=args.user,
                               dbname=args.dbname, autocommit=True)
    except psycopg.Error as e:
        sys.exit(f"cannot connect to PostgreSQL at {args.host} port {args.port}: {e}")
    cur = conn.cursor()
    try:
        # Debian builds pgRouting against PostGIS, which it then requires.
        cur.execute("CREATE EXTENSION IF NOT EXISTS pgrouting CASCADE")
    except psycopg.Error as e:
        sys.exit(f"CREATE EXTENSION pgrouting failed (is postgresql-NN-pgrouting installed?): {e}")
    cur.execute("SELECT pgr_version()")
    pgr_version = str(cur.fetchone()[0])
    cur.execute("SHOW server_version")
    pg_version = cur.fetchone()[0]
    log(f"PostgreSQL {pg_version}, pgRouting {pgr_version}")

    t0 = time.perf_counter()
    cur.execute("DROP TABLE IF EXISTS edges, query_edges")
    cur.execute("CREATE TABLE edges (id serial PRIMARY KEY, source bigint NOT NULL, target bigint NOT NULL,"
                " cost float8 NOT NULL, reverse_cost float8 NOT NULL)")
    cur.execute("CREATE TABLE query_edges (query_id integer NOT NULL, word_node bigint NOT NULL,"
                " cost float8 NOT NULL)")
    copy_csv(cur, "edges", ["source", "target", "cost", "reverse_cost"], edges_csv)
    copy_csv(cur, "query_edges", ["query_id", "word_node", "cost"], qedges_csv)
    cur.execute("CREATE INDEX ON query_edges (query_id)")
    cur.execute("ANALYZE edges")
    cur.execute("ANALYZE query_edges")
    log(f"loaded in {time.perf_counter() - t0:.2f} s")

    # Sanity checks: pgRouting silently drops edges with negative cost, and
    # node ids must fit the layout 0 | 1..N | N+1..N+M.
    nodes = meta.get("nodes", 1 + n + meta["words"])
    cur.execute("SELECT count(*), coalesce(max(id), 0), min(least(source, target)),"
                " max(greatest(source, target)), count(*) FILTER (WHERE cost < 0 OR reverse_cost < 0"
                " OR cost <> reverse_cost) FROM edges")
    e_count, max_id, min_node, max_node, bad_cost = cur.fetchone()
    if e_count != meta["edges"]:
        sys.exit(f"edges.csv has {e_count} edges, meta.json says {meta['edges']}")
    if e_count and (min_node < 1 or max_node >= nodes):
        sys.exit(f"edges.csv node ids span {min_node}..{max_node}, expected 1..{nodes - 1}")
    if bad_cost:
        sys.exit(f"edges.csv has {bad_cost} edges with negative cost or cost != reverse_cost")
    cur.execute("SELECT count(*), count(DISTINCT query_id), min(word_node), max(word_node),"
                " count(*) FILTER (WHERE cost < 0) FROM query_edges")
    qe_count, q_with_edges, qmin, qmax, qbad = cur.fetchone()
    if qe_count and (qmin <= n or qmax >= nodes):
        sys.exit(f"query_edges.csv word nodes span {qmin}..{qmax}, expected {n + 1}..{nodes - 1}")
    if qbad:
        sys.exit(f"query_edges.csv has {qbad} edges with negative cost")
    log(f"{e_count} edges, {qe_count} query edges ({q_with_edges} of {nq} queries have edges)")

    # Query edges get ids above the table's: ids stay unique and positive.
    edges_sql = ("SELECT id::bigint, source, target, cost, reverse_cost FROM edges UNION ALL "
                 f"SELECT {max_id} + row_number() OVER (), 0::bigint, word_node, cost, cost "
                 "FROM query_edges WHERE query_id = {q}")
    methods = {
        "pgr_dijkstraCost": (
            "SELECT end_vid, agg_cost FROM pgr_dijkstraCost(%s::text, 0::bigint, "
            f"ARRAY(SELECT generate_series(1::bigint, {n}::bigint)), directed => true)"),
        "pgr_drivingDistance": (
            "SELECT node, agg_cost FROM pgr_drivingDistance(%s::text, 0::bigint, "
            "'Infinity'::float8, directed => true)"),
    }
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            sys.exit(f"unknown method(s) {unknown}; known: {list(methods)}")
        methods = {m: methods[m] for m in wanted}

    warm = min(10, nq)
    results = {}
    bad_queries = set()
    for name, sql in methods.items():
        def query(q):
            t = time.perf_counter()
            cur.execute(sql, (edges_sql.format(q=int(q)),))
            rows = cur.fetchall()
            return time.perf_counter() - t, rows

        try:
            for q in range(warm):
                query(q)
        except psycopg.Error as e:
            sys.exit(f"{name} failed: {e}")
        times = []
        disagreeing = 0
        tolerated = 0
        shown = 0
        for q in range(nq):
            for _ in range(args.repeat):
                dt, rows = query(q)
                times.append(dt)
            # Unreachable nodes: left out (pgr_dijkstraCost) or, with an
            # infinite distance limit, listed with agg_cost = Infinity
            # (pgr_drivingDistance 3.4).
            pg_dist = {int(node) - 1: float(c) for node, c in rows
                       if 1 <= node <= n and math.isfinite(c)}
            problems, tol = compare(topk.get(q, []), pg_dist, k)
            tolerated += tol
            if problems:
                disagreeing += 1
                bad_queries.add(q)
                for p in problems:
                    if shown < args.show:
                        log(f"{name} query {q}: {p}")
                    shown += 1
        times.sort()
        results[name] = {
            "median_s": quantile(times, 0.5),
            "p95_s": quantile(times, 0.95),
            "mean_s": sum(times) / len(times) if times else None,
            "queries_checked": nq,
            "disagreeing_queries": disagreeing,
            "problems": shown,
            "tolerated_ties": tolerated,
        }
        log(f"{name}: median {results[name]['median_s'] * 1e3:.3f} ms, p95 "
            f"{results[name]['p95_s'] * 1e3:.3f} ms, {disagreeing} of {nq} queries disagree "
            f"({shown} problems), {tolerated} tie differences tolerated")
    conn.close()

    primary = next(iter(results))
    out = {
        "peer": "pgrouting",
        "postgresql": pg_version,
        "pgrouting": pgr_version,
        "database": meta.get("database"),
        "images": n,
        "words": meta["words"],
        "nodes": nodes,
        "edges": e_count,
        "top_iwk": meta.get("top_iwk"),
        "top_wwk": meta.get("top_wwk"),
        "queries": nq,
        "k": k,
        "warmup": warm,
        "repeat": args.repeat,
        "method": primary,
        "median_s": results[primary]["median_s"],
        "p95_s": results[primary]["p95_s"],
        "queries_checked": nq,
        "disagreeing_queries": len(bad_queries),
        "methods": results,
    }
    line = json.dumps(out)
    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    if bad_queries:
        log("FAIL: " + ", ".join(f"{r['disagreeing_queries']} {m}" for m, r in results.items())
            + f" of {nq} queries disagree with topk.csv beyond tolerance")
        return EXIT_DISAGREE
    return 0


# ---------------------------------------------------------------- table


def cmd_table(args):
    with open(args.meta) as f:
        meta = json.load(f)
    with open(args.pg) as f:
        pg = json.loads(f.read().strip().splitlines()[-1])
    ours = None
    if args.harness:
        lines = []
        with open(args.harness) as f:
            for raw in f:
                raw = raw.strip()
                if raw.startswith("{"):
                    lines.append(json.loads(raw))
        if not lines:
            sys.exit(f"{args.harness}: no JSON lines from harness bench iwan")
        match = [x for x in lines
                 if x.get("top_iwk") == meta.get("top_iwk") and x.get("top_wwk") == meta.get("top_wwk")]
        ours = (match or lines)[0]
        if not match:
            log(f"warning: no harness line with top_iwk={meta.get('top_iwk')} top_wwk={meta.get('top_wwk')};"
                " using the first")
        if ours.get("edges") not in (None, pg["edges"]):
            log(f"warning: harness bench graph has {ours.get('edges')} edges, the export {pg['edges']}")

    def ms(x):
        return "n/a" if x is None else f"{x * 1e3:.3f}"

    print()
    print("| database | images | edges | queries | method | pgRouting median ms | pgRouting p95 ms "
          "| harness median ms | harness p95 ms | ratio (pgRouting / harness) | disagreeing |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, r in pg["methods"].items():
        om = ours.get("median_s") if ours else None
        op = ours.get("p95_s") if ours else None
        ratio = f"{r['median_s'] / om:.1f}x" if om else "n/a"
        print(f"| {pg.get('database')} | {pg['images']} | {pg['edges']} | {pg['queries']} | {name} "
              f"| {ms(r['median_s'])} | {ms(r['p95_s'])} | {ms(om)} | {ms(op)} | {ratio} "
              f"| {r['disagreeing_queries']} |")
    if ours and ours.get("with_model_median_s") is not None:
        print(f"\nharness with model: median {ms(ours['with_model_median_s'])} ms, "
              f"p95 {ms(ours.get('with_model_p95_s'))} ms")
    return 0


# ---------------------------------------------------------------- fake export


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_str(x):
    """Shortest decimal that reads back as the same f32 (like Rust's Display)."""
    for p in range(1, 10):
        s = f"{x:.{p}g}"
        if f32(float(s)) == x:
            return s
    return repr(x)


def dijkstra_f32(adj, n_nodes, src_edges):
    dist = [math.inf] * n_nodes
    heap = []
    for v, c in src_edges:
        if c < dist[v]:
            dist[v] = c
            heapq.heappush(heap, (c, v))
    while heap:
        dv, v = heapq.heappop(heap)
        if dv > dist[v]:
            continue
        for u, c in adj[v]:
            nd = f32(dv + c)
            if nd < dist[u]:
                dist[u] = nd
                heapq.heappush(heap, (nd, u))
    return dist


def cmd_fake(args):
    rng = random.Random(args.seed)
    n, m, nq, k = args.images, args.words, args.queries, args.k
    if n < 40 or m < 20:
        sys.exit("fake-export needs at least 40 images and 20 words")
    word = lambda w: 1 + n + w  # noqa: E731
    island_words = set(range(m - 5, m))  # small separate component
    island_images = set(range(n - 20, n))
    isolated_images = {n - 21}  # no edges at all
    main_words = [w for w in range(m) if w not in island_words]
    island_list = sorted(island_words)
    cost = lambda: f32(rng.uniform(0.05, 1.0))  # noqa: E731

    edges = {}
    for img in range(n):
        if img in isolated_images:
            continue
        pool = island_list if img in island_images else main_words
        for w in rng.sample(pool, min(args.top_iwk, len(pool))):
            edges[(img + 1, word(w))] = cost()
    for w in range(m):
        pool = island_list if w in island_words else main_words
        for w2 in rng.sample(pool, min(args.top_wwk + 1, len(pool))):
            if w2 != w:
                a, b = sorted((word(w), word(w2)))
                edges.setdefault((a, b), cost())
    # Some exact ties, as quantised similarities would give.
    for key in rng.sample(sorted(edges), len(edges) // 10):
        edges[key] = 0.5
    nodes = 1 + n + m
    adj = [[] for _ in range(nodes)]
    for (a, b), c in edges.items():
        adj[a].append((b, c))
        adj[b].append((a, c))

    os.makedirs(args.dir, exist_ok=True)
    with open(os.path.join(args.dir, "edges.csv"), "w") as f:
        f.write("source,target,cost,reverse_cost\n")
        for (a, b), c in edges.items():
            s = f32_str(c)
            f.write(f"{a},{b},{s},{s}\n")
    corrupt = set(rng.sample(range(2, nq), min(args.corrupt, max(nq - 2, 0))))
    with open(os.path.join(args.dir, "query_edges.csv"), "w") as fq, \
            open(os.path.join(args.dir, "topk.csv"), "w") as ft:
        fq.write("query_id,word_node,cost\n")
        ft.write("query_id,rank,image,distance\n")
        for q in range(nq):
            if q == 0:
                qe = []  # a query without edges: no results
            elif q == 1:
                qe = [(word(w), cost()) for w in island_list[:2]]  # fewer than k reachable
            else:
                qe = [(word(w), cost()) for w in rng.sample(main_words, args.query_words)]
            for v, c in qe:
                fq.write(f"{q},{v},{f32_str(c)}\n")
            dist = dijkstra_f32(adj, nodes, qe)
            ranked = sorted((dist[img + 1], img) for img in range(n) if dist[img + 1] < math.inf)[:k]
            if q in corrupt and len(ranked) == k:
                # Replace the k-th image by the farthest reachable one.
                far = max((dist[img + 1], img) for img in range(n) if dist[img + 1] < math.inf)
                ranked[-1] = far
            for r, (dd, img) in enumerate(ranked):
                ft.write(f"{q},{r},{img},{f32_str(dd)}\n")
    meta = {"database": "fake", "images": n, "words": m, "nodes": nodes, "edges": len(edges),
            "queries": nq, "k": k, "top_iwk": args.top_iwk, "top_wwk": args.top_wwk}
    with open(os.path.join(args.dir, "meta.json"), "w") as f:
        json.dump(meta, f)
        f.write("\n")
    log(f"fake export in {args.dir}: {n} images, {m} words, {len(edges)} edges, {nq} queries, "
        f"k={k}, {len(corrupt)} corrupted")
    return 0


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="load the export into PostgreSQL, time pgRouting, compare top-k")
    r.add_argument("export_dir")
    r.add_argument("--host", required=True, help="Unix socket directory of the cluster")
    r.add_argument("--port", type=int, default=5432)
    r.add_argument("--user", default="bench")
    r.add_argument("--dbname", default="postgres")
    r.add_argument("--repeat", type=int, default=1, help="timed runs per query")
    r.add_argument("--methods", default="", help="comma list (default: pgr_dijkstraCost,pgr_drivingDistance)")
    r.add_argument("--show", type=int, default=20, help="disagreements to print per method")
    r.add_argument("--json-out", help="also write the JSON line to this file")

    t = sub.add_parser("table", help="print the Markdown comparison table")
    t.add_argument("--meta", required=True)
    t.add_argument("--pg", required=True)
    t.add_argument("--harness")

    f = sub.add_parser("fake-export", help="write a random graph in the export format (plumbing test)")
    f.add_argument("dir")
    f.add_argument("--images", type=int, default=1000)
    f.add_argument("--words", type=int, default=200)
    f.add_argument("--queries", type=int, default=200)
    f.add_argument("--k", type=int, default=100)
    f.add_argument("--top-iwk", type=int, default=4)
    f.add_argument("--top-wwk", type=int, default=4)
    f.add_argument("--query-words", type=int, default=4)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--corrupt", type=int, default=0, help="queries whose top-k to damage")

    args = ap.parse_args()
    if args.cmd == "run":
        if args.repeat < 1:
            ap.error("--repeat must be >= 1")
        return cmd_run(args)
    if args.cmd == "table":
        return cmd_table(args)
    return cmd_fake(args)


if __name__ == "__main__":
    sys.exit(main())
