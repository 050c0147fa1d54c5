"""dshift: exact mean shift clustering at dataset scale, on Dask.

Reproduces scikit-learn's ``MeanShift``, ``mean_shift``, ``estimate_bandwidth`` and
``get_bin_seeds`` (same signatures, defaults and clusters) on NumPy, pandas, Dask
arrays and Dask DataFrames.
"""

from dshift.bandwidth import estimate_bandwidth
from dshift.estimator import MeanShift, mean_shift
from dshift.seeding import get_bin_seeds

__version__ = "0.1.0"

__all__ = ["MeanShift", "mean_shift", "estimate_bandwidth", "get_bin_seeds", "__version__"]
