#!/usr/bin/env python3
"""FAISS peer of `harness bench scale`: searches one of its index files with FAISS.

`harness bench scale --faiss-python PY` runs this once per size and FAISS index type, in its
own process so that each one's peak memory is its own, on the file the harness methods have
just searched (scripts/bench_scale.sh sets that up). The file is read with numpy.memmap; its
layout is the harness index format version 2 (src/index/persist.rs): a 64-byte header, the
packed codes, then the normalised rows, each section starting at a multiple of 64 bytes.

Index types, all with the harness's protocol (the first Q rows as queries, k neighbours,
10 warm-up queries, S single queries on one thread, the batch on T threads, best of up to 3):
  IndexFlatIP              exact inner product on the rows (the counterpart of exact and
                           exact_bounded)
  IndexBinaryFlat          exact Hamming scan on the codes (of hamming and mih)
  IndexBinaryFlat+rerank   a Hamming shortlist of ceil(c k) from IndexBinaryFlat, re-ranked
                           by inner product in numpy (of hamming_rerank and mih_rerank)
FAISS's IndexBinaryMultiHash is left out: it flips a fixed number of bits per substring, so
its results are not the exact Hamming neighbours that MIH returns.

Prints one JSON line; writes <dump-dir>/<type>_ids.npy (u64, u64::MAX padding).
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_faiss import faiss, time_faiss  # noqa: E402

TYPES = ["IndexFlatIP", "IndexBinaryFlat", "IndexBinaryFlat+rerank"]
MAGIC = b"HRNSIDX\0"
ALIGN = 64
LANES = 8


def open_index(path):
    """(codes as (n, 8w) uint8, rows as (n, d) float32), both memory-mapped."""
    with open(path, "rb") as f:
        head = f.read(52)
    if head[:8] != MAGIC:
        sys.exit(f"{path}: not a harness index file")
    version, kind, n, d, bits = struct.unpack_from("<IIQQQ", head, 8)
    if version != 2 or kind != 3:
        sys.exit(f"{path}: expected a version 2 hash + re-rank file (kind 3), got version {version} kind {kind}")
    w = (bits + 63) // 64
    at = ALIGN
    codes = np.memmap(path, dtype=np.uint8, mode="r", offset=at, shape=(n, 8 * w))
    at += 8 * n * w
    at = (at + ALIGN - 1) // ALIGN * ALIGN
    rows = np.memmap(path, dtype="<f4", mode="r", offset=at, shape=(n, d))
    return codes, rows, bits


def memory():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    anon = None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
    return peak, anon


class Rerank:
    """IndexBinaryFlat shortlist, then inner product on the mapped rows."""

    def __init__(self, binary, rows, size):
        self.binary, self.rows, self.size = binary, rows, size

    def search(self, xq_pair, k):
        codes_q, rows_q = (xq_pair.codes, xq_pair.rows) if isinstance(xq_pair, Pairs) else xq_pair
        _, cand = self.binary.search(codes_q, self.size)
        out_i = np.full((len(cand), k), -1, dtype=np.int64)
        out_d = np.zeros((len(cand), k), dtype=np.float32)
        for i, c in enumerate(cand):
            c = np.sort(c[c >= 0])
            s = self.rows[c] @ rows_q[i]
            order = np.lexsort((c, -s))[:k]  # score descending, then id
            out_i[i, : len(order)] = c[order]
            out_d[i, : len(order)] = s[order]
        return out_d, out_i


class Pairs:
    """Query slices of (codes, rows) that time_faiss can index like an array."""

    def __init__(self, codes, rows):
        self.codes, self.rows = codes, rows

    def __len__(self):
        return len(self.codes)

    def __getitem__(self, s):
        return (self.codes[s], self.rows[s])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("--type", choices=TYPES, required=True)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single-queries", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shortlist", type=float, default=2.0)
    ap.add_argument("--dump-dir", required=True)
    a = ap.parse_args()

    codes, rows, bits = open_index(a.index)
    n, d = rows.shape
    q = min(a.queries, n)
    k = min(a.k, n)
    t = time.perf_counter()
    if a.type == "IndexFlatIP":
        index = faiss.IndexFlatIP(d)
        index.add(np.ascontiguousarray(rows))
        xq = np.ascontiguousarray(rows[:q])
        per_item = 4 * d
        params = ""
    else:
        binary = faiss.IndexBinaryFlat(8 * codes.shape[1])
        binary.add(np.ascontiguousarray(codes))
        per_item = codes.shape[1]
        if a.type == "IndexBinaryFlat":
            index, xq, params = binary, np.ascontiguousarray(codes[:q]), ""
        else:
            size = min(n, max(k, math.ceil(a.shortlist * k)))
            index = Rerank(binary, rows, size)
            xq = Pairs(np.ascontiguousarray(codes[:q]), np.ascontiguousarray(rows[:q]))
            per_item += 4 * d
            params = f"shortlist={a.shortlist}"
    build_s = time.perf_counter() - t
    r = time_faiss(index, xq, k, min(a.single_queries, q), a.threads)
    ids = r["I"].astype(np.int64)
    ids = np.where(ids < 0, np.iinfo(np.uint64).max, ids.astype(np.uint64)).astype("<u8")
    os.makedirs(a.dump_dir, exist_ok=True)
    np.save(os.path.join(a.dump_dir, f"{a.type}_ids.npy"), ids)
    peak, anon = memory()
    print(json.dumps({
        "method": a.type,
        "median_s": r["median_s"],
        "p95_s": r["p95_s"],
        "qps": r["qps"],
        "build_s": build_s,
        "bytes_per_item": per_item,
        "params": params,
        "peak_rss_bytes": peak,
        "rss_anon_bytes": anon,
    }), flush=True)


if __name__ == "__main__":
    main()
