#!/usr/bin/env python3
"""Independent oracle for the report's retrieval metrics (CIFAR-100).

Written from the text definitions only; it shares no code and no logic
source with the Rust harness (src/ was not read). Python 3 standard library.

Where the definitions come from:
  * Tables 1-2 ("mAP@k", here mAP_report) -- GitHub
    rounaksaha12/Information-Retrieval-CBIR-project @ 14c2141,
    evaluate_retrieval.py lines 18-32: per query (1/k) * sum_{i<=k} rel_i * P@i.
  * Tables 3-4 ("mAP@k" / "mAHP@k", here mP_hit20 / mAHP_hit20) -- GitHub
    ritszaar/Semantic-Similarity-Word-Associations @ 209c5d1, test.py
    compute_metrics / compute_average_precisions: per query the mean of the
    running precision P@i over the ranks i <= k where P@i > 0 (0 if no hit in
    the first k), averaged over ONLY the queries with a hit in the first 20.
    The hierarchical variant uses s_j = sim(y_q, y(r_j)) instead of rel_j.

Metrics (one row per k; counts have an empty k):
  mP          mean over all queries of P@k = hits in first k / k
  mAP_report  mean over all queries of (1/k) sum_{i<=k} rel_i * P@i
  mAHP_mean   mean over all queries of mean_{i<=k} HP@i,
              HP@i = sum_{j<=i} sim(y_q, y(r_j)) / (sum of the i largest
              sim(y_q, y(x)) over the database x); HP = 0 if that max is 0
  mP_hit20, mAHP_hit20, mP_hit20_queries, mAHP_hit20_queries, n_queries

Class similarity: sim(u, v) = 1 - height(lcs(u, v)) / height(root), height =
longest downward path to a leaf (leaves 0), computed from
hierarchy/cifar.parent-child.txt. Ranks beyond a ranking's length are misses
(rel 0, sim 0).

Protocols: train_db (--db train; database = the 50,000 train images),
report (--db test; the query's own test image stays in the database),
leave_one_out (--db test; the query is removed from the database and must not
appear in its own ranking).

Check: on the report's own Table 4 rankings
(shared/data/report/iwan_table4_rankings.csv, --db train) mP_hit20 and
mAHP_hit20 equal, to the last bit, the mean_average_precisions and
mean_average_hierarchical_precisions stored in that repository's
boosted_results.pickle (IWKResults[4]) at k = 1, 5, 20, 100, 250, over 309
and 473 queries.
"""
import argparse
import csv
import os
import sys
from collections import Counter, defaultdict

REC = 3074  # 1 coarse byte, 1 fine byte, 3072 pixel bytes


def fine_labels(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % REC:
        sys.exit(f"{path}: size {len(data)} is not a multiple of {REC}")
    return data[1::REC]  # bytes object: fine label of every record


def similarity_table(path):
    parent, children = {}, defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                p, c = map(int, line.split())
                if c in parent:
                    sys.exit(f"{path}: node {c} has two parents")
                parent[c] = p
                children[p].append(c)
    height = {}

    def h(n):
        if n not in height:
            height[n] = 1 + max(h(c) for c in children[n]) if children[n] else 0
        return height[n]

    roots = {p for p in children if p not in parent}
    if len(roots) != 1:
        sys.exit(f"{path}: expected one root, found {sorted(roots)}")
    max_h = h(roots.pop())
    if any(h(c) for c in range(100)):
        sys.exit(f"{path}: classes 0..99 must be leaves")

    def ancestors(n):
        out = [n]
        while n in parent:
            n = parent[n]
            out.append(n)
        return out

    anc = [ancestors(c) for c in range(100)]
    sim = [[0.0] * 100 for _ in range(100)]
    for u in range(100):
        up = set(anc[u])
        for v in range(100):
            lcs = next(a for a in anc[v] if a in up)
            sim[u][v] = 1.0 - h(lcs) / max_h
    return sim


def read_rankings(path):
    runs = defaultdict(list)
    with open(path, newline="") as f:
        r = csv.reader(f)
        if [x.strip() for x in next(r)] != ["query_id", "rank", "db_id"]:
            sys.exit(f"{path}: header must be query_id,rank,db_id")
        for row in r:
            if row:
                runs[int(row[0])].append((int(row[1]), int(row[2])))
    out = {}
    for q, items in runs.items():
        items.sort()
        if [rk for rk, _ in items] != list(range(1, len(items) + 1)):
            sys.exit(f"query {q}: ranks are not exactly 1..{len(items)}")
        ids = [d for _, d in items]
        if len(set(ids)) != len(ids):
            sys.exit(f"query {q}: duplicate db ids in its ranking")
        out[q] = ids
    return out


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rankings", required=True, help="CSV query_id,rank,db_id")
    ap.add_argument("--data-root", default=os.path.join(repo, "..", "shared", "data"),
                    help="holds cifar-100-binary/ and hierarchy/ (default: ../shared/data)")
    ap.add_argument("--db", choices=["train", "test"], default="train",
                    help="split the db ids index (default: train)")
    ap.add_argument("--protocol", choices=["report", "leave_one_out", "train_db"],
                    help="default: train_db for --db train, report for --db test")
    ap.add_argument("--ks", default="1,5,20,100,250", help="comma-separated cut-offs")
    ap.add_argument("--out", help="output CSV metric,k,value (default stdout)")
    a = ap.parse_args()
    proto = a.protocol or ("train_db" if a.db == "train" else "report")
    if (proto == "train_db") != (a.db == "train"):
        sys.exit(f"--protocol {proto} does not go with --db {a.db}")
    ks = list(dict.fromkeys(int(k) for k in a.ks.split(",")))  # dedupe, keep order
    if min(ks) < 1:
        sys.exit("--ks must be positive")
    K, H = max(ks), 20  # H: the "hit in the first 20" filter of Tables 3-4
    kset = set(ks)

    binp = os.path.join(a.data_root, "cifar-100-binary")
    test_y = fine_labels(os.path.join(binp, "test.bin"))
    db_y = test_y if a.db == "test" else fine_labels(os.path.join(binp, "train.bin"))
    sim = similarity_table(os.path.join(a.data_root, "hierarchy", "cifar.parent-child.txt"))
    runs = read_rankings(a.rankings)
    if not runs:
        sys.exit("no queries")
    db_count = Counter(db_y)
    loo = proto == "leave_one_out"

    ideal_cache = {}

    def ideal(c):  # best[i-1] = sum of the i largest sim(c, y(x)) over the database
        if c not in ideal_cache:
            cnt = dict(db_count)
            if loo:
                cnt[c] -= 1
            groups = sorted(((sim[c][v], n) for v, n in cnt.items() if n > 0), reverse=True)
            best, s = [], 0.0
            for sv, n in groups:
                for _ in range(min(n, K - len(best))):
                    s += sv
                    best.append(s)
            while len(best) < K:  # database smaller than K: the max stops growing
                best.append(s)
            ideal_cache[c] = best
        return ideal_cache[c]

    names = ["mP", "mAP_report", "mAHP_mean", "mP_hit20", "mAHP_hit20"]
    tot = {(m, k): 0.0 for m in names for k in ks}
    n_hit20 = n_shit20 = 0
    for q, ids in sorted(runs.items()):
        if not 0 <= q < len(test_y):
            sys.exit(f"query id {q} out of range")
        if any(not 0 <= d < len(db_y) for d in ids):
            sys.exit(f"query {q}: db id out of range")
        if loo and q in ids:
            sys.exit(f"query {q} appears in its own ranking under leave_one_out")
        yq = test_y[q]
        srow = sim[yq]
        best = ideal(yq)
        hits = 0          # hits in first i
        ssum = 0.0        # sum of sims in first i
        ap_rep = 0.0      # sum rel_i * P@i
        hp_sum = 0.0      # sum HP@i
        p_sum = p_n = 0   # sum / count of P@i > 0
        s_sum, s_n = 0.0, 0  # sum / count of hierarchical running precision > 0
        vals = {}
        hit20 = shit20 = False
        for i in range(1, max(K, H) + 1):
            if i <= len(ids):
                y = db_y[ids[i - 1]]
                rel = 1 if y == yq else 0
                s = srow[y]
            else:
                rel, s = 0, 0.0
            hits += rel
            ssum += s
            if i <= K:
                p = hits / i
                ap_rep += rel * p
                hp_sum += ssum / best[i - 1] if best[i - 1] > 0 else 0.0
                if p > 0:
                    p_sum += p
                    p_n += 1
                sp = ssum / i
                if sp > 0:
                    s_sum += sp
                    s_n += 1
                if i in kset:
                    vals[i] = (p, ap_rep / i, hp_sum / i,
                               p_sum / p_n if p_n else 0.0,
                               s_sum / s_n if s_n else 0.0)
            if i == H:
                hit20, shit20 = hits > 0, ssum > 0
        if hit20:
            n_hit20 += 1
        if shit20:
            n_shit20 += 1
        for k in ks:
            p, apr, ahp, ph, sh = vals[k]
            tot["mP", k] += p
            tot["mAP_report", k] += apr
            tot["mAHP_mean", k] += ahp
            if hit20:
                tot["mP_hit20", k] += ph
            if shit20:
                tot["mAHP_hit20", k] += sh

    n = len(runs)
    div = {"mP": n, "mAP_report": n, "mAHP_mean": n,
           "mP_hit20": n_hit20, "mAHP_hit20": n_shit20}
    rows = [(m, k, repr(tot[m, k] / div[m] if div[m] else float("nan")))
            for m in names for k in ks]
    rows += [("mP_hit20_queries", "", n_hit20), ("mAHP_hit20_queries", "", n_shit20),
             ("n_queries", "", n)]
    f = open(a.out, "w", newline="") if a.out else sys.stdout
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["metric", "k", "value"])
    w.writerows(rows)
    if a.out:
        f.close()


if __name__ == "__main__":
    main()
