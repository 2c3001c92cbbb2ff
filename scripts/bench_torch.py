#!/usr/bin/env python3
"""cifar_cnn training and inference throughput: harness (burn, CPU) against PyTorch (CPU).

Both sides run the same network on the same real CIFAR-100 training images, with the same
batch size, thread count, warm-up and number of timed steps, one setting after the other in
one run:

  encoder  3 x [conv 3x3 (no bias), batch norm, ReLU, max-pool 2x2], 32/64/128 channels,
           flattened to 2048 features
  decoder  Linear 2048 -> h (48), batch norm, sigmoid (the hash layer); Linear h -> d (100)
  loss     1 - cos(output, C[label]), C = harness's class embedding (harness semantics)
  step     SGD, lr 0.01, momentum 0.9

A training step includes building the batch from the u8 pixels (CIFAR mean/std
normalisation), forward, loss, backward and the optimiser step. Inference runs forward passes
without gradients, batch norm on running statistics. Prints one JSON line per measurement and
a table of ratios (harness images/s / PyTorch images/s; above 1 means harness is faster).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from peer_common import class_embedding, data_root

MEAN = np.array([0.5071, 0.4865, 0.4409], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2673, 0.2564, 0.2762], dtype=np.float32).reshape(1, 3, 1, 1)


def load_train(root, n):
    raw = np.fromfile(root / "cifar-100-binary" / "train.bin", dtype=np.uint8)
    records = raw.reshape(-1, 3074)[:n]
    return records[:, 2:].reshape(-1, 3, 32, 32), records[:, 1].astype(np.int64)


def torch_net(torch, h, d):
    nn = torch.nn
    layers = []
    for i, o in [(3, 32), (32, 64), (64, 128)]:
        layers += [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                   nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2048, h), nn.BatchNorm1d(h),
                         nn.Sigmoid(), nn.Linear(h, d))


def torch_measure(torch, mode, pixels, labels, c, batch, threads, warmup, steps, h, d):
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    net = torch_net(torch, h, d)
    c = torch.from_numpy(c)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    mean, std = torch.from_numpy(MEAN), torch.from_numpy(STD)

    def inputs(i):
        x = torch.from_numpy(pixels[i * batch:(i + 1) * batch]).float().div_(255.0)
        return (x - mean) / std, torch.from_numpy(labels[i * batch:(i + 1) * batch])

    if mode == "train":
        net.train()
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            x, y = inputs(i)
            out = net(x)
            loss = (1 - torch.nn.functional.cosine_similarity(out, c[y], dim=1, eps=1e-8)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        net.eval()
        with torch.inference_mode():
            for i in range(warmup + steps):
                if i == warmup:
                    start = time.perf_counter()
                x, _ = inputs(i)
                net(x)
    seconds = time.perf_counter() - start
    return {
        "framework": "torch", "mode": mode, "encoder": "cifar_cnn", "input_size": 32,
        "batch": batch, "threads": threads, "images": steps * batch, "seconds": seconds,
        "images_per_second": steps * batch / seconds,
    }


def harness_measure(harness, root, mode, batch, threads, warmup, steps, h, d):
    out = subprocess.run(
        [harness, "--data-root", str(root), "bench", "model", "--encoder", "cifar_cnn",
         "--mode", mode, "--batch", str(batch), "--threads", str(threads), "--warmup",
         str(warmup), "--steps", str(steps), "--h", str(h), "--d", str(d)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", help="default: $HARNESS_DATA, else ../shared/data")
    p.add_argument("--batches", default="32,64,128", help="comma-separated batch sizes")
    p.add_argument("--threads", default=f"1,{os.cpu_count()}", help="comma-separated")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--h", type=int, default=48)
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--json", help="also write the records to this JSON-lines file")
    a = p.parse_args()
    import torch

    harness = os.environ.get("HARNESS_BIN", "target/release/harness")
    root = data_root(a.data_root)
    batches = [int(b) for b in a.batches.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    pixels, labels = load_train(root, (a.warmup + a.steps) * max(batches))
    c = class_embedding(harness, root, a.d)
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPUs, {a.warmup} warm-up + "
          f"{a.steps} timed steps", file=sys.stderr)
    records, rows = [], []
    for t in threads:
        for b in batches:
            for mode in ["train", "infer"]:
                ours = harness_measure(harness, root, mode, b, t, a.warmup, a.steps, a.h, a.d)
                peer = torch_measure(torch, mode, pixels, labels, c, b, t, a.warmup, a.steps,
                                     a.h, a.d)
                for r in (ours, peer):
                    print(json.dumps(r))
                records += [ours, peer]
                rows.append((mode, b, t, ours["images_per_second"], peer["images_per_second"]))
    if a.json:
        Path(a.json).write_text("".join(json.dumps(r) + "\n" for r in records))
    print("\n| mode | batch | threads | harness img/s | PyTorch img/s | ratio |")
    print("|---|---|---|---|---|---|")
    for mode, b, t, ours, peer in rows:
        print(f"| {mode} | {b} | {t} | {ours:.0f} | {peer:.0f} | {ours / peer:.2f}x |")


if __name__ == "__main__":
    main()
