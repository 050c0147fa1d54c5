"""Bandwidth estimation: scikit-learn's ``estimate_bandwidth`` on a reproducible sample.

scikit-learn takes the mean, over rows, of the distance to each row's k-th nearest
neighbour (the row itself counting as the first), k = int(m * quantile) >= 1. That is
quadratic in the rows used, so dshift never runs it on all rows of a large input:
beyond :data:`MAX_EXACT_ROWS` rows, or on Dask input, it uses a reproducible sample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import dask
import numpy as np
from numba import njit

from dshift import _input

log = logging.getLogger("dshift")

MAX_EXACT_ROWS = 10_000
"""Rows above which ``n_samples=None`` means a sample of this many rows."""

MAX_REPEATED_ROWS = 1 << 24
"""Integer weights summing to at most this many rows have their repeated rows' distances
summed as scikit-learn sums them (128 MiB at most); larger counts (aggregated data) take the
weighted mean of the same k-th neighbour distances."""

PERMUTATION_ROWS = 10_000_000
"""Up to this many rows, samples are scikit-learn's ``RandomState.permutation`` prefix
(the same rows scikit-learn would pick); above it, an O(n_samples) draw."""

_BATCH = 500  # scikit-learn sums the distances in batches of 500 rows: same rounding


@njit(inline="always", cache=True)
def _squared_distances(x: np.ndarray, i: int, dist: np.ndarray) -> None:
    """Squared distances from row ``i`` of ``x`` to every row, into ``dist``."""
    m, d = x.shape
    for r in range(m):
        acc = 0.0
        for j in range(d):
            t = x[i, j] - x[r, j]
            acc += t * t
        dist[r] = acc


@njit(nogil=True, cache=True)
def _kth_distances(x: np.ndarray, k: int) -> np.ndarray:
    m = x.shape[0]
    out = np.empty(m)
    dist = np.empty(m)
    for i in range(m):
        _squared_distances(x, i, dist)
        out[i] = np.sqrt(np.partition(dist, k - 1)[k - 1])
    return out


@njit(nogil=True, cache=True)
def _kth_distances_weighted(x: np.ndarray, w: np.ndarray, threshold: float) -> np.ndarray:
    """Per row, the distance at which the weight of the rows around it reaches ``threshold``
    (the row itself first): the k-th neighbour distance of the data with every row repeated."""
    m = x.shape[0]
    out = np.empty(m)
    dist = np.empty(m)
    for i in range(m):
        _squared_distances(x, i, dist)
        dist[i] = -1.0  # the row itself comes first, whatever its duplicates
        order = np.argsort(dist)
        dist[i] = 0.0
        covered = 0.0
        out[i] = np.sqrt(dist[order[m - 1]])
        for r in order:
            covered += w[r]
            if covered >= threshold:
                out[i] = np.sqrt(dist[r])
                break
    return out


def _batched_mean(dist: np.ndarray) -> np.float64:
    """scikit-learn's mean: per-batch sums of 500 rows, added up, over the row count."""
    total = np.float64(0.0)
    for b in range(0, len(dist), _BATCH):
        total += dist[b : b + _BATCH].sum()
    return total / len(dist)


def weighted_kth_neighbour_mean(x: np.ndarray, w: np.ndarray, quantile: float) -> np.float64:
    """The bandwidth formula for rows ``x`` standing for ``w`` rows each (pure NumPy in, float out).

    Integer weights summing to at most :data:`MAX_REPEATED_ROWS` give scikit-learn's number on
    ``np.repeat(x, w, axis=0)`` exactly (same distances, same summation order); larger integer
    weights (counts of aggregated rows) the repeated rows' k-th neighbour, ``k = int(sum(w) *
    quantile)``, and the weighted mean (never the ``sum(w)`` repeated distances); other weights
    the weighted quantile ``sum(w) * quantile`` and the weighted mean.

    Parameters
    ----------
    x : ndarray of shape (m, d)
    w : ndarray of shape (m,)
        Positive weights.
    quantile : float

    Returns
    -------
    float
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    total = math.fsum(w)
    integral = bool(np.all(w == np.round(w)))
    dist = _kth_distances_weighted(x, w, float(max(int(total * quantile), 1)) if integral else total * quantile)
    if integral and total <= MAX_REPEATED_ROWS:  # repeated rows' distances, summed as scikit-learn does
        return _batched_mean(np.repeat(dist, w.astype(np.int64)))
    return np.float64(math.fsum(w * dist) / total)


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
    return _batched_mean(_kth_distances(np.ascontiguousarray(x, dtype=np.float64), min(k, m)))


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
    X, *, quantile: float = 0.3, n_samples: int | None = None, random_state=0, n_jobs=None, sample_weight=None
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
    sample_weight : array-like, Dask array or Series of shape (n,), or str, optional
        Non-negative weights (dshift extension); for a DataFrame, the name of one of its
        columns (then not a feature). Integer weights in memory stand for
        repeated rows: the result is scikit-learn's on ``np.repeat(X, w, axis=0)`` (its rows
        sampled as above when there are more than 10,000 of them). Other weights, and Dask
        weights, use the weighted formula (k-th neighbour by weight, weighted mean) on all
        rows of positive weight, or on a reproducible sample of rows.

    Returns
    -------
    numpy.float64
        The bandwidth (0.0 when the sampled rows are all identical); a NumPy scalar,
        as scikit-learn returns (it matters for float32 data's bin seeds).

    Raises
    ------
    ValueError
        Bad input, quantile or weights (scikit-learn's messages), or Dask weights that are 0
        on every sampled row.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
    return bandwidth_estimator(X, n_samples=n_samples, random_state=random_state, sample_weight=sample_weight)(quantile)


def bandwidth_estimator(
    X, *, n_samples: int | None = None, random_state=0, sample_weight=None
) -> Callable[[float], np.float64]:
    """:func:`estimate_bandwidth` as a function of the quantile, its rows sampled and fetched once.

    ``bandwidth_estimator(X, **kw)(q)`` is ``estimate_bandwidth(X, quantile=q, **kw)`` for every
    quantile ``q`` in [0, 1]; several quantiles (a bandwidth sweep) share one sample, so Dask
    input is read once for all of them.

    Parameters
    ----------
    X, n_samples, random_state, sample_weight
        As in :func:`estimate_bandwidth`.

    Returns
    -------
    callable
        ``quantile -> numpy.float64``.
    """
    if n_samples is not None and (int(n_samples) != n_samples or n_samples < 1):
        raise ValueError(f"n_samples must be a positive integer or None, got {n_samples!r}")
    X, sample_weight = _input.split_weight_column(X, sample_weight)
    lazy = _input.is_dask(X) or _input.is_dask(sample_weight)
    arr = _input.as_row_chunked(X) if lazy else None
    if not lazy:
        from sklearn.utils import check_array
        from sklearn.utils.validation import _check_sample_weight

        x = check_array(X)
        if sample_weight is not None:
            w = np.asarray(_check_sample_weight(sample_weight, x, ensure_non_negative=True), dtype=np.float64)
            if np.all(w == np.round(w)):  # repeated rows: sample them as scikit-learn would
                rows = _sample(int(w.sum()), n_samples, random_state, repeated=True)
                if rows is None:
                    return _formula(weighted_kth_neighbour_mean, x[w > 0], w[w > 0])
                return _formula(kth_neighbour_mean, x[np.searchsorted(np.cumsum(w), rows, side="right")])
            keep = np.flatnonzero(w > 0)
            rows = _sample(len(keep), n_samples, random_state)
            keep = keep if rows is None else keep[rows]
            return _formula(weighted_kth_neighbour_mean, x[keep], w[keep])
        rows = _sample(len(x), n_samples, random_state)
        return _formula(kth_neighbour_mean, x if rows is None else x[rows])
    rows = _sample(arr.shape[0], n_samples or MAX_EXACT_ROWS, random_state)
    order = np.argsort(rows, kind="stable")
    x = np.empty((len(rows), arr.shape[1]), dtype=arr.dtype)
    if sample_weight is None:
        x[order] = arr[rows[order]].compute()
        return _formula(kth_neighbour_mean, x)
    weights = _input.prepare_weights(sample_weight, arr)
    w = np.empty(len(rows))
    x[order], w[order] = dask.compute(arr[rows[order]], weights[rows[order]])
    if not (w > 0).any():  # the formula needs weight; an empty mean would be NaN
        raise ValueError(f"None of the {len(w):,} sampled rows has a positive weight: sample more rows (n_samples).")
    return _formula(weighted_kth_neighbour_mean, x[w > 0], w[w > 0])


def _sample(n_rows: int, n_samples: int | None, random_state, repeated: bool = False) -> np.ndarray | None:
    """Rows to use (None: all of them), logging when a large input is sampled."""
    if n_samples is None:
        if n_rows <= MAX_EXACT_ROWS:
            return None
        n_samples = MAX_EXACT_ROWS
        log.info("estimate_bandwidth: using a reproducible sample of %d of %d %srows", n_samples, n_rows,
                 "repeated " if repeated else "")
    return sample_rows(n_rows, int(n_samples), random_state)


def _formula(formula, x: np.ndarray, *args) -> Callable[[float], np.float64]:
    """``quantile -> formula(x, *args, quantile)`` for finite sampled rows ``x``."""
    if not np.isfinite(x).all():
        raise _input.NonFiniteError.rows()
    return lambda quantile: np.float64(formula(x, *args, quantile))
