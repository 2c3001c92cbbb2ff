#!/usr/bin/env python3
"""The tensor digest that `harness data fetch` pins for a weights file (stdlib only).

A safetensors file's bytes depend on the writer's header layout, so the harness verifies weights
by their tensors instead: sha256 over every tensor sorted by name, each written as
name, NUL, dtype, NUL, ndim (u64 LE), each dim (u64 LE), byte length (u64 LE), raw bytes.
This script computes that digest independently of the Rust code, from the file itself; the
pinned values in src/data/fetch/catalogue.rs came from it:

    python3 scripts/tensor_digest.py ../shared/data/pretrained/efficientnet_lite0.safetensors
    python3 scripts/tensor_digest.py --scalar-as-0d ../shared/data/pretrained/efficientnet_lite2.safetensors

--scalar-as-0d reads a one-element tensor named `*.num_batches_tracked` as a 0-d tensor: the
shared Lite2 file stores those PyTorch scalars with shape [1], while the wheel (and the harness's
conversion of it) has shape [].
"""
import hashlib
import json
import struct
import sys


def digest(path, scalar_as_0d=False):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    body = raw[8 + n :]
    h = hashlib.sha256()
    for name in sorted(header):
        info = header[name]
        shape = info["shape"]
        if scalar_as_0d and name.endswith(".num_batches_tracked") and shape == [1]:
            shape = []
        start, end = info["data_offsets"]
        h.update(name.encode() + b"\0" + info["dtype"].encode() + b"\0")
        h.update(struct.pack("<Q", len(shape)))
        for d in shape:
            h.update(struct.pack("<Q", d))
        h.update(struct.pack("<Q", end - start))
        h.update(body[start:end])
    return h.hexdigest(), len(header)


if __name__ == "__main__":
    args = sys.argv[1:]
    flag = "--scalar-as-0d" in args
    for p in (a for a in args if a != "--scalar-as-0d"):
        d, count = digest(p, flag)
        print(f"{d}  {count} tensors  {p}")
