"""Shared by the Python peer scripts."""
import math
import os
from pathlib import Path


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
