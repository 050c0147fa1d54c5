"""Bandwidth estimation: scikit-learn's ``estimate_bandwidth`` on a reproducible sample.

scikit-learn takes the mean, over rows, of the distance to each row's k-th nearest
neighbour (the row itself counting as the first), k = int(m * quantile) >= 1. That is
quadratic in the rows used, so dshift never runs it on all rows of a large input:
beyond :data:`MAX_EXACT_ROWS` rows, or on Dask input, it uses a reproducible sample.
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit

from dshift import _input

log = logging.getLogger("dshift")

MAX_EXACT_ROWS = 10_000
"""Rows above which ``n_samples=None`` means a sample of this many rows."""

PERMUTATION_ROWS = 10_000_000
"""Up to this many rows, samples are scikit-learn's ``RandomState.permutation`` prefix
(the same rows scikit-learn would pick); above it, an O(n_samples) draw."""

_BATCH = 500  # scikit-learn sums the distances in batches of 500 rows: same rounding


@njit(nogil=True, cache=True)
def _kth_distances(x: np.ndarray, k: int) -> np.ndarray:
    m, d = x.shape
    out = np.empty(m)
    dist = np.empty(m)
    for i in range(m):
        for r in range(m):
            acc = 0.0
            for j in range(d):
                t = x[i, j] - x[r, j]
                acc += t * t
            dist[r] = acc
        out[i] = np.sqrt(np.partition(dist, k - 1)[k - 1])
    return out


def kth_neighbour_mean(x: np.ndarray, quantile: float) -> np.float64:
    """scikit-learn's bandwidth formula on exactly the rows ``x`` (pure NumPy in, float out).

    Parameters
    ----------
    x : ndarray of shape (m, d)
        The rows, in the order scikit-learn would see them.
    quantile : float
        In [0, 1].

    Returns
    -------
    float
    """
    m = len(x)
    k = max(int(m * quantile), 1)
    dist = _kth_distances(np.ascontiguousarray(x, dtype=np.float64), min(k, m))
    total = np.float64(0.0)
    for b in range(0, m, _BATCH):
        total += dist[b : b + _BATCH].sum()
    return total / m


def sample_rows(n_rows: int, n_samples: int, random_state) -> np.ndarray:
    """Row numbers of the reproducible sample, in scikit-learn's order.

    Up to :data:`PERMUTATION_ROWS` rows this is ``RandomState(random_state)
    .permutation(n_rows)[:n_samples]``, scikit-learn's own choice; above, distinct rows
    drawn uniformly from the same RandomState without materialising a permutation.
    """
    rng = random_state if isinstance(random_state, np.random.RandomState) else np.random.RandomState(random_state)
    if n_rows <= PERMUTATION_ROWS or n_samples >= n_rows:
        return rng.permutation(n_rows)[:n_samples]
    picked = np.empty(0, dtype=np.int64)
    while len(picked) < n_samples:
        draw = rng.randint(0, n_rows, size=2 * (n_samples - len(picked)) + 16, dtype=np.int64)
        both = np.concatenate([picked, draw])
        _, first = np.unique(both, return_index=True)
        picked = both[np.sort(first)]
    return picked[:n_samples]


def estimate_bandwidth(
    X, *, quantile: float = 0.3, n_samples: int | None = None, random_state=0, n_jobs=None
) -> np.float64:
    """Estimate the bandwidth to use with mean shift (scikit-learn's definition).

    Parameters
    ----------
    X : array-like, pandas DataFrame, Dask array or Dask DataFrame of shape (n, d)
        Input points; not modified.
    quantile : float, default=0.3
        Fraction of rows whose distance defines a row's neighbourhood; in [0, 1].
    n_samples : int, optional
        Rows to use. If None: all rows when there are at most 10,000 (exactly
        scikit-learn's number), otherwise a reproducible sample of 10,000 rows. Dask
        input is always sampled (``n_samples`` or 10,000 rows) and only the sampled
        rows are fetched.
    random_state : int or RandomState, default=0
        Seed of the sample; scikit-learn's rows for up to 10,000,000 input rows.
    n_jobs : int, optional
        Accepted for compatibility; the computation is a compiled single-thread kernel.

    Returns
    -------
    numpy.float64
        The bandwidth (0.0 when the sampled rows are all identical); a NumPy scalar,
        as scikit-learn returns (it matters for float32 data's bin seeds).
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
    if n_samples is not None and (int(n_samples) != n_samples or n_samples < 1):
        raise ValueError(f"n_samples must be a positive integer or None, got {n_samples!r}")
    lazy = _input.is_dask(X)
    arr = _input.as_row_chunked(X) if lazy else None
    n_rows = arr.shape[0] if lazy else len(X)
    if n_samples is None and (lazy or n_rows > MAX_EXACT_ROWS):
        n_samples = MAX_EXACT_ROWS
        log.info("estimate_bandwidth: using a reproducible sample of %d of %d rows", min(n_samples, n_rows), n_rows)
    rows = None if n_samples is None else sample_rows(n_rows, int(n_samples), random_state)
    if lazy:
        order = np.argsort(rows, kind="stable")
        fetched = np.empty((len(rows), arr.shape[1]), dtype=arr.dtype)
        fetched[order] = arr[rows[order]].compute()
        x = fetched
    else:
        from sklearn.utils import check_array

        x = check_array(X)
        if rows is not None:
            x = x[rows]
    if not np.isfinite(x).all():
        raise _input.NonFiniteError.rows()
    return np.float64(kth_neighbour_mean(x, quantile))
