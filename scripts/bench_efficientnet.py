#!/usr/bin/env python3
"""Frozen EfficientNet-Lite feature pass: harness (burn, CPU) against PyTorch (CPU).

Both sides run the same network with the same weights on the same real CIFAR-100 images, at
each input size, with the same batch, threads, warm-up and timed steps, one after the other in
one run:

  weights   ../shared/data/pretrained/efficientnet_lite{0,2}.safetensors (--encoder), loaded
            into timm's `tf_efficientnet_lite{0,2}` (TF "SAME" padding, ReLU6) by a fixed name
            mapping (`pretrained=False`: nothing is downloaded)
  input     u8 CIFAR images upsampled bicubically from 32 px (align_corners=False, Keys
            a = -0.75), then (x - 127) / 128; the upsampling is inside the timed loop
  output    the 1280-d pooled features (head conv, batch norm, ReLU6, global mean pool)

Before timing, the script checks that both forwards agree: the harness writes its pooled
features of the check images (`harness bench model --save-features`), PyTorch computes its
own, and the largest absolute difference must stay within --tolerance (1e-3). That also checks
the harness's EfficientNet against an implementation that shares no code with it.

PyTorch is timed two ways (three with --nchw): eager channels_last, and channels_last traced
and frozen with TorchScript (`torch.jit.trace` + `torch.jit.freeze`, which folds batch norm and
fuses ReLU6 into oneDNN's convolutions: PyTorch's fastest CPU path here, about twice eager
channels_last). The harness is timed in fp32 and, with --bf16, with `--precision bf16`.

The sizes run --rounds times (default 3), interleaved: every side at every size in round 1,
then again in round 2, so that a noisy neighbour hits all of them alike. Per round the ratio is
harness images/s over the fastest PyTorch form's (above 1: the harness is faster); the table
gives the median ratio and its range. `harness bench peak` runs at the start of every round:
the table gives each harness pass's arithmetic rate (2 x multiply-adds per image x images/s) as
a fraction of the cores' instruction peak (fp32: FMA; bf16: the AMX tile product where the CPU
has AMX, else vdpbf16ps) and of the sustained 2048^2 matrix-product rate, each the median over
the rounds of the pass's rate over the peak timed in the same round (the product's rate moves
with the machine's neighbours as the pass does). In the same rounds PyTorch multiplies 2048^2
matrices (`torch.matmul`, f32 and bf16, same threads). A table sets both sides' products beside
the instruction peaks, each with its bf16 / f32 ratio: a product's ratio above the peaks' says
its f32 runs further below its peak than its bf16 does, not that bf16 can gain more.
Prints one JSON line per measurement, then the tables.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from peer_common import data_root


def load_images(root, split, n):
    raw = np.fromfile(root / "cifar-100-binary" / f"{split}.bin", dtype=np.uint8)
    return raw.reshape(-1, 3074)[:n, 2:].reshape(-1, 3, 32, 32)


# Blocks per stage of each network (timm groups the blocks by stage).
STAGE_SIZES = {
    "efficientnet_lite0": [1, 2, 2, 3, 3, 4, 1],
    "efficientnet_lite2": [1, 3, 3, 4, 4, 5, 1],
}


def timm_name(name, stage_sizes):
    """lukemelas/efficientnet_pytorch tensor name -> timm tf_efficientnet_lite* name, or None."""
    if name.endswith("num_batches_tracked"):
        return None
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    head, _, leaf = name.rpartition(".")
    if head in top:
        return f"{top[head]}.{leaf}"
    _, index, layer = head.split(".")
    i = int(index)
    stage = 0
    while i >= stage_sizes[stage]:
        i -= stage_sizes[stage]
        stage += 1
    if stage == 0:  # depthwise-separable block: dw, bn1, pw (projection), bn2
        layers = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                  "_bn2": "bn2"}
    else:  # inverted residual: pw (expansion), bn1, dw, bn2, pwl (projection), bn3
        layers = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                  "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    return f"blocks.{stage}.{i}.{layers[layer]}.{leaf}"


def torch_model(torch, encoder, weights):
    import timm
    from safetensors.torch import load_file

    model = timm.create_model(f"tf_{encoder}", pretrained=False)
    state = {}
    for name, tensor in load_file(str(weights)).items():
        mapped = timm_name(name, STAGE_SIZES[encoder])
        if mapped is not None:
            state[mapped] = tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
    return model.eval()


def pooled(model):
    """timm's pooled 1280-d features (before the classifier) as a module."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.forward_head(self.m.forward_features(x), pre_logits=True)

    return Pooled(model).eval()


def torch_features(torch, net, pixels, size, layout):
    f = torch.nn.functional
    x = torch.from_numpy(pixels).float()
    x = f.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    x = (x - 127.0) / 128.0
    if layout != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    return net(x)


def torch_network(torch, model, layout, batch, size):
    """The pooled-feature network in one of the three ways PyTorch is timed."""
    if layout == "nchw":
        return pooled(model.to(memory_format=torch.contiguous_format))
    net = pooled(model.to(memory_format=torch.channels_last))
    if layout == "channels_last":
        return net
    import warnings

    example = torch.zeros(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notices
        return torch.jit.freeze(torch.jit.trace(net, example))


def torch_measure(torch, encoder, model, pixels, size, layout, batch, threads, warmup, steps):
    torch.set_num_threads(threads)
    net = torch_network(torch, model, layout, batch, size)
    with torch.inference_mode():
        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            torch_features(torch, net, pixels[i * batch:(i + 1) * batch], size, layout)
    seconds = time.perf_counter() - start
    return {
        "framework": "torch", "layout": layout, "mode": "infer",
        "encoder": encoder, "input_size": size, "batch": batch,
        "threads": threads, "images": steps * batch, "seconds": seconds,
        "images_per_second": steps * batch / seconds,
    }


def harness_run(harness, encoder, root, split, size, batch, threads, warmup, steps, save=None,
                precision="fp32"):
    cmd = [harness, "--data-root", str(root), "bench", "model", "--encoder",
           encoder, "--mode", "infer", "--split", split, "--input-size",
           str(size), "--batch", str(batch), "--threads", str(threads), "--warmup",
           str(warmup), "--steps", str(steps), "--precision", precision]
    if save:
        cmd += ["--save-features", str(save)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_agreement(torch, harness, encoder, root, model, pixels, size, batch, threads,
                    tolerance):
    """Largest |harness - PyTorch| over the pooled features of the first `batch` images."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "features.npy")
        harness_run(harness, encoder, root, "test", size, batch, threads, 0, 1, save=path)
        ours = np.load(path)
    torch.set_num_threads(threads)
    with torch.inference_mode():
        peer = torch_features(torch, torch_network(torch, model, "nchw", batch, size),
                              pixels[:batch], size, "nchw").numpy()
    if ours.shape != peer.shape:
        sys.exit(f"feature shapes differ: harness {ours.shape}, PyTorch {peer.shape}")
    diff = float(np.abs(ours - peer).max())
    print(f"# {size} px: max |harness - PyTorch| over {batch} x 1280 pooled features = "
          f"{diff:.2e} (tolerance {tolerance:g}); feature scale {np.abs(peer).max():.2f}",
          file=sys.stderr)
    if not diff <= tolerance:
        sys.exit(f"the two forwards disagree at {size} px: {diff:.3e} > {tolerance:g}")
    return diff


def peak(harness, threads):
    """`harness bench peak`: {kind: gflops} at `threads` threads, the best path of each kind
    (the f32 product runs on gemm and on the packed AVX-512 kernel: the faster is the yardstick)."""
    out = subprocess.run([harness, "bench", "peak", "--threads", str(threads)], check=True,
                         capture_output=True, text=True).stdout
    rates = {}
    for line in out.splitlines():
        r = json.loads(line)
        if r["threads"] == threads:
            rates[r["kind"]] = max(rates.get(r["kind"], 0.0), r["gflops"])
    return rates


def bf16_peak(rates):
    """bf16's yardstick in one round's `peak` rates: the instruction its products run on, AMX
    tiles where the CPU has them (`harness bench peak` then reports `amx-bf16`), else
    vdpbf16ps; None where the CPU has neither."""
    return rates.get("amx-bf16", rates.get("dpbf16"))


def torch_matmul(torch, n, threads, dtype, repeats=5):
    """PyTorch's n x n matrix product (`torch.matmul`, the fastest of `repeats`) in GFLOP/s."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g).to(dtype)
    b = torch.rand(n, n, generator=g).to(dtype)
    best = float("inf")
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up: oneDNN's kernels are picked on the first call
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", help="default: $HARNESS_DATA, else ../shared/data")
    p.add_argument("--encoder", choices=sorted(STAGE_SIZES), default="efficientnet_lite0")
    p.add_argument("--sizes", default="96,128,160,224", help="comma-separated input sizes")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="also time `--precision bf16`")
    p.add_argument("--nchw", action="store_true", help="also time PyTorch eager NCHW")
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--json", help="also write the records to this JSON-lines file")
    a = p.parse_args()
    import torch

    harness = os.environ.get("HARNESS_BIN", "target/release/harness")
    root = data_root(a.data_root)
    model = torch_model(torch, a.encoder, root / "pretrained" / f"{a.encoder}.safetensors")
    pixels = load_images(root, "test", (a.warmup + a.steps) * a.batch)
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPUs, batch {a.batch}, "
          f"{a.threads} threads, {a.warmup} warm-up + {a.steps} timed steps, {a.rounds} "
          f"interleaved rounds, real CIFAR-100 test images", file=sys.stderr)
    diffs = {size: check_agreement(torch, harness, a.encoder, root, model, pixels, size,
                                   a.batch, a.threads, a.tolerance) for size in sizes}
    layouts = (["nchw"] if a.nchw else []) + ["channels_last", "frozen_channels_last"]
    precisions = ["fp32"] + (["bf16"] if a.bf16 else [])
    records = []
    runs = {}  # (size, side) -> [record per round]
    peaks = []  # the peaks of each round
    torch_peaks = []  # PyTorch's 2048² products in each round
    for r in range(a.rounds):
        rates = peak(harness, a.threads)
        peaks.append(rates)
        print(f"# round {r + 1}: peak at {a.threads} threads (GFLOP/s): " + ", ".join(
            f"{k} {v:.0f}" for k, v in rates.items()), file=sys.stderr)
        records.append({"framework": "peak", "threads": a.threads, "round": r + 1, **rates})
        theirs = {f"matmul-{name}": torch_matmul(torch, 2048, a.threads, dtype)
                  for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16))}
        torch_peaks.append(theirs)
        print(f"# round {r + 1}: PyTorch 2048² products (GFLOP/s): " + ", ".join(
            f"{k} {v:.0f}" for k, v in theirs.items()), file=sys.stderr)
        records.append({"framework": "torch-matmul", "threads": a.threads, "round": r + 1,
                        **theirs})
        for size in sizes:
            for precision in precisions:
                ours = harness_run(harness, a.encoder, root, "test", size, a.batch, a.threads,
                                   a.warmup, a.steps, precision=precision)
                ours["round"] = r + 1
                runs.setdefault((size, precision), []).append(ours)
                records.append(ours)
                print(json.dumps(ours), flush=True)
            for layout in layouts:
                peer = torch_measure(torch, a.encoder, model, pixels, size, layout, a.batch,
                                     a.threads, a.warmup, a.steps)
                peer["round"] = r + 1
                runs.setdefault((size, layout), []).append(peer)
                records.append(peer)
                print(json.dumps(peer), flush=True)
    if a.json:
        Path(a.json).write_text("".join(json.dumps(r) + "\n" for r in records))
    ips = lambda rs: [x["images_per_second"] for x in rs]
    print(f"\n| input | harness | img/s | PyTorch fastest img/s | harness / PyTorch, median "
          f"(range) | GFLOP/s | of peak (fp32: FMA, bf16: AMX or vdpbf16ps), median (range) | of 2048² matmul (same precision), median (range) | max abs diff (fp32) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        best = [max(x["images_per_second"] for x in round_peers)
                for round_peers in zip(*[runs[(size, l)] for l in layouts])]
        for precision in precisions:
            ours = runs[(size, precision)]
            ratios = sorted(o / b for o, b in zip(ips(ours), best))
            gflops = statistics.median(o["gflops"] for o in ours)
            fma = [bf16_peak(r) if precision == "bf16" else r["fma-f32"] for r in peaks]
            matmul = [r["matmul-bf16" if precision == "bf16" else "matmul-f32"] for r in peaks]
            of_fma = sorted(o["gflops"] / f for o, f in zip(ours, fma))
            of_matmul = sorted(o["gflops"] / m for o, m in zip(ours, matmul))
            print(f"| {size} | {precision} | {statistics.median(ips(ours)):.0f} "
                  f"| {statistics.median(best):.0f} | {statistics.median(ratios):.2f}x "
                  f"({ratios[0]:.2f}–{ratios[-1]:.2f}) | {gflops:.0f} "
                  f"| {statistics.median(of_fma):.0%} ({of_fma[0]:.0%}–{of_fma[-1]:.0%}) "
                  f"| {statistics.median(of_matmul):.0%} ({of_matmul[0]:.0%}–{of_matmul[-1]:.0%}) "
                  f"| {diffs[size]:.1e} |")
    # The products and peaks, median (range) over the rounds, and bf16 / f32 on each side.
    span = lambda xs: (f"{statistics.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})")
    ratio = lambda xs: (f"{statistics.median(xs):.2f}x ({min(xs):.2f}–{max(xs):.2f})")
    dp = [bf16_peak(r) for r in peaks]
    print(f"\n| {a.threads} threads, GFLOP/s | f32 | bf16 | bf16 / f32 |\n|---|---:|---:|---:|")
    if None not in dp:
        print(f"| instruction peak (FMA; bf16: AMX or vdpbf16ps) | "
              f"{span([r['fma-f32'] for r in peaks])} | {span(dp)} | "
              f"{ratio([d / r['fma-f32'] for d, r in zip(dp, peaks)])} |")
    for side, rs in (("harness", peaks), ("PyTorch", torch_peaks)):
        if all("matmul-bf16" in r for r in rs):
            print(f"| {side} 2048² product | {span([r['matmul-f32'] for r in rs])} | "
                  f"{span([r['matmul-bf16'] for r in rs])} | "
                  f"{ratio([r['matmul-bf16'] / r['matmul-f32'] for r in rs])} |")
    print("| harness / PyTorch, product | " + " | ".join(
        ratio([h[k] / t[k] for h, t in zip(peaks, torch_peaks)]) if all(k in h for h in peaks)
        else "" for k in ("matmul-f32", "matmul-bf16")) + " | |")
    if a.bf16:
        # bf16 against fp32, round by round: the two ran one after the other in each round.
        print("\n| input | bf16 / fp32, median (range) |\n|---:|---:|")
        for size in sizes:
            ratios = sorted(b["images_per_second"] / f["images_per_second"]
                            for f, b in zip(runs[(size, "fp32")], runs[(size, "bf16")]))
            print(f"| {size} | {statistics.median(ratios):.2f}x "
                  f"({ratios[0]:.2f}–{ratios[-1]:.2f}) |")


if __name__ == "__main__":
    main()
