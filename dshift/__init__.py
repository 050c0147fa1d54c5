"""dshift: exact mean shift clustering at dataset scale, on Dask.

Reproduces scikit-learn's ``MeanShift``, ``mean_shift``, ``estimate_bandwidth`` and
``get_bin_seeds`` (same signatures, defaults and clusters) on NumPy, pandas, Dask
arrays and Dask DataFrames; ``bandwidth_sweep`` fits many bandwidths in one job and suggests one;
``deduplicate`` collapses repeated rows into weighted ones.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Loaded on first use: scikit-learn and numba take seconds to import, which the CLI's
# --help, config validation and every worker process would otherwise pay up front.
_LAZY = {
    "MeanShift": "dshift.estimator",
    "mean_shift": "dshift.estimator",
    "estimate_bandwidth": "dshift.bandwidth",
    "get_bin_seeds": "dshift.seeding",
    "bandwidth_sweep": "dshift.sweep",
    "deduplicate": "dshift.dedup",
}

__all__ = ["MeanShift", "mean_shift", "estimate_bandwidth", "get_bin_seeds", "bandwidth_sweep", "deduplicate",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dshift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
