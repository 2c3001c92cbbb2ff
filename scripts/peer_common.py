"""Shared by the Python peer scripts (bench_torch.py, bench_efficientnet.py)."""
import os
from pathlib import Path


def data_root(arg):
    """--data-root, else $HARNESS_DATA, else ../shared/data beside the checkout."""
    if arg:
        return Path(arg)
    if os.environ.get("HARNESS_DATA"):
        return Path(os.environ["HARNESS_DATA"])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"
