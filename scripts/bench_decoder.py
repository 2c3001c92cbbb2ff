#!/usr/bin/env python3
"""Decoder training on cached features: harness's train stage against the same in PyTorch.

Both sides train the main job's decoder (configs/default.yaml, or --config) on the same cached
EfficientNet-Lite features (train.npy and test.npy of the run's features stage), with the same
network, loss, optimiser, schedule, batch size, epochs and thread count:

  network  Linear 1280 -> T, batch norm, ReLU (the trunk; dropout as the config says), then
           Linear T -> d (the embedding), Linear T -> h, batch norm, sigmoid, Linear h -> d
           (the hash branch), Linear T -> 100 (the auxiliary classifier)
  loss     [1 - cos(embedding, C[y])] + [1 - cos(hash branch, C[y])] + aux_ce_weight * CE
  step     Adam (betas 0.9, 0.999, eps 1e-5, burn's default), lr cosine-annealed per step
  epochs   each followed by the test accuracy (argmax of embedding . C^T), as the train stage
           logs it

harness: `harness run CONFIG` with a fresh cache folder holding links to the existing feature
folders, so that the features are reused and the train stage runs; its time is the stage's
`seconds` in stages/train.json, its accuracy the last row of train_log.csv. PyTorch: the same
loop in eager mode, timed from the first batch to the last epoch's accuracy. Rounds alternate
(harness, then PyTorch) so that both see the same machine; the ratio is PyTorch seconds /
harness seconds (above 1 means harness is faster), the median over rounds.
"""
import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from peer_common import class_embedding, data_root


def config_value(text, section, key, default=None):
    """A scalar `key:` under the top-level `section:` of a simple YAML config."""
    inside = False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            inside = line.startswith(section + ":")
        elif inside:
            m = re.match(r"^\s+" + key + r":\s*([^#\s]+)", line)
            if m:
                return m.group(1)
    return default


def harness_round(harness, config, root, cache_from, overrides, threads):
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp, "cache")
        cache.mkdir()
        for f in Path(cache_from).glob("features-*"):
            (cache / f.name).symlink_to(f.resolve())
        out = Path(tmp, "out")
        cmd = [harness, "--quiet", "--data-root", str(root), "run", config, *overrides,
               "--out", str(out), "--cache", str(cache)]
        env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
        log = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        run = Path(re.search(r"^results: (\S+)", log, re.M).group(1))
        seconds = json.loads((run / "stages" / "train.json").read_text())["seconds"]
        rows = (run / "train" / "train_log.csv").read_text().splitlines()
        header = rows[0].split(",")
        accuracy = float(rows[-1].split(",")[header.index("test_accuracy")])
        features = (run / "features").resolve()
        return seconds, accuracy, features


def torch_round(torch, features, c, cfg, threads, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    nn = torch.nn
    train_x = torch.from_numpy(np.load(features / "train.npy"))
    test_x = torch.from_numpy(np.load(features / "test.npy"))
    root = cfg["root"]
    train_y = torch.from_numpy(load_labels(root, "train", len(train_x)))
    test_y = torch.from_numpy(load_labels(root, "test", len(test_x)))
    t, h, d = cfg["trunk"], cfg["h"], cfg["d"]

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(train_x.shape[1], t), nn.BatchNorm1d(t),
                                       nn.ReLU(), nn.Dropout(cfg["dropout"]))
            self.embed = nn.Linear(t, d)
            self.hash = nn.Sequential(nn.Linear(t, h), nn.BatchNorm1d(h), nn.Sigmoid())
            self.hash_embed = nn.Linear(h, d)
            self.classify = nn.Linear(t, 100)

        def forward(self, x):
            z = self.trunk(x)
            return self.embed(z), self.hash_embed(self.hash(z)), self.classify(z)

    net = Decoder()
    c = torch.from_numpy(c)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], eps=1e-5)
    batch, epochs = cfg["batch_size"], cfg["epochs"]
    per_epoch = math.ceil(len(train_x) / batch)
    total = per_epoch * epochs
    ce = nn.CrossEntropyLoss()

    def cosine(out, target):
        dot = (out * target).sum(1)
        norm = out.pow(2).sum(1).sqrt().clamp_min(1e-8)
        return (1 - dot / norm).mean()

    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    accuracy = 0.0
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=g)
        for b in range(per_epoch):
            step = epoch * per_epoch + b
            for group in opt.param_groups:
                group["lr"] = cfg["lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            idx = order[b * batch:(b + 1) * batch]
            x, y = train_x[idx], train_y[idx]
            target = c[y]
            embedding, hashed, logits = net(x)
            loss = cosine(embedding, target) + cosine(hashed, target) \
                + cfg["aux_ce_weight"] * ce(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            predicted = (net(test_x)[0] @ c.T).argmax(1)
            accuracy = (predicted == test_y).float().mean().item()
    return time.perf_counter() - start, accuracy


def load_labels(root, split, n):
    raw = np.fromfile(root / "cifar-100-binary" / f"{split}.bin", dtype=np.uint8)
    return raw.reshape(-1, 3074)[:n, 1].astype(np.int64)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="results/cache",
                   help="where the features stage's folders are (linked, never written)")
    p.add_argument("--data-root")
    p.add_argument("--json", help="also write the records to this file")
    a = p.parse_args()
    import torch

    harness = os.environ.get("HARNESS_BIN", "target/release/harness")
    root = data_root(a.data_root)
    text = Path(a.config).read_text()
    num = lambda section, key, default: float(config_value(text, section, key, default))
    cfg = {
        "root": root,
        "trunk": int(num("model", "trunk", 1024)),
        "h": int(num("model", "h", 48)),
        "d": int(num("model", "d", 100)),
        "dropout": num("model", "dropout", 0.0),
        "aux_ce_weight": num("model", "aux_ce_weight", 0.0),
        "lr": num("train", "lr", 0.003),
        "batch_size": int(num("train", "batch_size", 128)),
        "epochs": int(num("train", "epochs", 12)),
    }
    for section, key, want in [("model", "decoder", "wide"), ("train", "optimizer", "adam"),
                               ("train", "schedule", "cosine"), ("model", "freeze", "true")]:
        if config_value(text, section, key) != want:
            sys.exit(f"{a.config}: this peer needs {section}.{key}: {want}")
    if num("train", "weight_decay", 0.0) != 0.0 or config_value(text, "train", "augment") == "true":
        sys.exit(f"{a.config}: this peer trains without weight decay and augmentation")
    # The train stage alone: the cheapest index and evaluation settings (the train stage's
    # cache key does not depend on them).
    overrides = ["index.methods=[exact]", "index.report_setting=false", "iwan.enabled=false",
                 "iwan.report_graph=false", "eval.protocols=[report]"]
    c = class_embedding(harness, root, cfg["d"])
    records = []
    for r in range(a.rounds):
        hs, hacc, features = harness_round(harness, a.config, root, a.cache, overrides,
                                           a.threads)
        ts, tacc = torch_round(torch, features, c, cfg, a.threads, 42 + r)
        for framework, seconds, acc in [("harness", hs, hacc), ("torch", ts, tacc)]:
            rec = {"round": r + 1, "framework": framework, "threads": a.threads,
                   "seconds": round(seconds, 2), "test_accuracy": round(acc, 4)}
            records.append(rec)
            print(json.dumps(rec), flush=True)
    ratios = [t["seconds"] / h["seconds"] for h, t in zip(records[::2], records[1::2])]
    print(f"\nPyTorch seconds / harness seconds per round: "
          + ", ".join(f"{x:.2f}" for x in ratios)
          + f"; median {statistics.median(ratios):.2f}x (above 1: harness faster)")
    if a.json:
        Path(a.json).write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main()
