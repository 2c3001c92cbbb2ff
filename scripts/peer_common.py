"""Shared by the Python peer scripts."""
import math
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np


def data_root(arg):
    """--data-root, else $HARNESS_DATA, else ../shared/data beside the checkout."""
    if arg:
        return Path(arg)
    if os.environ.get("HARNESS_DATA"):
        return Path(os.environ["HARNESS_DATA"])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def quantile(sorted_times, p):
    """The harness's one quantile rule (eval::stats): linear interpolation, h = (n - 1) p."""
    if not sorted_times:
        return None
    h = (len(sorted_times) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_times) - 1)
    return sorted_times[lo] + (h - lo) * (sorted_times[hi] - sorted_times[lo])


def class_embedding(harness, root, d):
    """The harness's class embedding C (100 x d, unit rows), from `harness semantics`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [harness, "--data-root", str(root), "semantics", "--d", str(d), "--out", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows = Path(tmp, "class_embedding.csv").read_text().splitlines()[1:]
    return np.array([[float(v) for v in r.split(",")[2:]] for r in rows], dtype=np.float32)
