"""Exact deduplication: identical rows become one row that carries their summed weight.

A row that occurs ``w`` times is one row of weight ``w`` (issue 11's semantics): the fit of
the distinct rows with their weights climbs the same seeds over the same sums as the fit of
all rows, so it gives the same centers and ``n_iter_``. Only the order of the distinct rows
needs care. Sums are compensated and do not depend on it; the seed order does matter in one
place, the merge's tie rule: seeds that end on the bit-identical position are one entry and
the *last* seed's intensity wins (scikit-learn's result dictionary). Every copy of a row
starts at the same point, climbs with it and ends with the same intensity, so between
distinct rows only their order matters, and it must be:

* every row a seed: the order of the rows' **last** occurrences. The last seed ending at a
  position is the last occurrence of some row r; among the distinct rows ending there, r's
  last occurrence is the latest, so r is the last distinct row in that order too.
* bin seeding: the order of the rows' **first** occurrences. Bins are seeded in order of
  first appearance; a bin's first row is the earliest first occurrence of its rows. (Bin
  seeding falls back to every row when each row is alone in its bin; with integer weights
  no row repeats then, so both orders are one.)

Hence ``keep``: the distinct rows come out in the input order of their first or last
occurrence (of positive weight), as ``pandas.DataFrame.drop_duplicates(keep=...)`` would
leave them; for Dask input whatever the chunking. ``tests/test_dedup.py`` holds data sets
where the other order changes scikit-learn's result.

Stages: per row chunk, :func:`chunk_groups` groups the rows of positive weight by value;
for Dask input the driver hash-partitions those groups by value (Dask's shuffle), merges
each partition (:func:`merge_groups`), and sorts the distinct rows by the index of their
kept occurrence (a second shuffle, into balanced chunks).
"""

from __future__ import annotations

from typing import Literal

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import delayed
from numba import njit

from dshift import _dask, _input
from dshift.grouping import BinTable, empty_store, key_hash, merge_rows

__all__ = ["deduplicate", "chunk_groups", "merge_groups", "sample_hashes", "distinct_fraction"]

Keep = Literal["last", "first"]

_WEIGHT, _WEIGHT_C, _KEY = "weight", "weight_c", "key"


def _columns(d: int) -> list[str]:
    return [f"x{j}" for j in range(d)]


def _fold(chunk: np.ndarray) -> np.ndarray:
    """Rows as float64 (exact for float32; what the fit computes in), -0.0 folded into 0.0."""
    rows = np.asarray(chunk, dtype=np.float64) + 0.0  # -0.0 and 0.0 are one row, as in the merge
    if not np.isfinite(rows).all():
        raise _input.NonFiniteError.rows()
    return np.ascontiguousarray(rows)


def _group(rows: np.ndarray, weight: np.ndarray, weight_c: np.ndarray, key: np.ndarray, keep: Keep) -> BinTable:
    """Group identical rows: compensated weight sums, and the smallest (first) or largest (last) key.

    The hash table keeps the key of the first row it sees of a group; sorting by key first
    makes that the smallest or largest, whatever order the rows arrive in.
    """
    order = np.argsort(key if keep == "first" else -key, kind="stable")
    return BinTable(*merge_rows(np.ascontiguousarray(rows[order]), weight[order], weight_c[order], key[order],
                                 *empty_store(rows.shape[1])))


def _frame(table: BinTable, d: int) -> pd.DataFrame:
    frame = pd.DataFrame(table.bins.reshape(-1, d), columns=_columns(d))
    frame[_WEIGHT], frame[_WEIGHT_C], frame[_KEY] = table.counts, table.counts_c, table.first
    return frame


def chunk_groups(chunk: np.ndarray, offset: int, weights: np.ndarray | None, keep: Keep) -> pd.DataFrame:
    """The distinct rows of one chunk with their weight and the index of their kept occurrence.

    Parameters
    ----------
    chunk : ndarray of shape (n, d)
        Finite rows (not modified).
    offset : int
        Global index of the chunk's first row.
    weights : ndarray of shape (n,), optional
        Non-negative weights (none: 1 per row); rows of weight 0 are left out.
    keep : {"last", "first"}
        Which occurrence's global index a distinct row keeps.

    Returns
    -------
    pandas.DataFrame
        Columns ``x0 .. x{d-1}`` (float64), ``weight`` and ``weight_c`` (a compensated sum),
        ``key`` (int64), one row per distinct row.

    Raises
    ------
    NonFiniteError
        If a row holds NaN or infinity.
    """
    rows = _fold(chunk)
    key = offset + np.arange(len(rows), dtype=np.int64)
    w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
    positive = w > 0  # a row of weight 0 takes no part in a fit
    table = _group(rows[positive], w[positive], np.zeros(int(positive.sum())), key[positive], keep)
    return _frame(table, rows.shape[1])


def merge_groups(frame: pd.DataFrame, keep: Keep) -> pd.DataFrame:
    """Merge groups of the same rows (from several chunks), in any order: the same result.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`chunk_groups` frames.
    keep : {"last", "first"}

    Returns
    -------
    pandas.DataFrame
        As :func:`chunk_groups`: one row per distinct row, weights summed, the kept key.
    """
    d = frame.shape[1] - 3
    rows = frame[_columns(d)].to_numpy(dtype=np.float64)
    table = _group(rows, frame[_WEIGHT].to_numpy(), frame[_WEIGHT_C].to_numpy(), frame[_KEY].to_numpy(), keep)
    return _frame(table, d)


def _as_output(frame: pd.DataFrame, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    frame = frame.sort_values(_KEY, kind="stable")
    d = frame.shape[1] - 3
    return (frame[_columns(d)].to_numpy(dtype=np.float64).astype(dtype),
            frame[_WEIGHT].to_numpy() + frame[_WEIGHT_C].to_numpy())


def deduplicate(X, sample_weight=None, *, keep: Keep = "last"):
    """Collapse identical rows into one row weighted by their number (or summed weights).

    ``MeanShift().fit(*deduplicate(X))`` gives the same ``cluster_centers_`` and ``n_iter_``
    as ``MeanShift().fit(X)`` (likewise with weights, and for ``mean_shift``); label the
    original rows with ``predict(X)``. Exact for unweighted data and integer weights. Other
    weights are summed in float64 (correctly rounded), so a weighted mean may differ in its
    last bit. The fit must be given the bandwidth, or estimate it on ``X`` itself:
    ``estimate_bandwidth`` samples rows, and the distinct rows are other rows.

    Parameters
    ----------
    X : array-like, pandas DataFrame, Dask array or Dask DataFrame of shape (n_samples, n_features)
        Finite numbers; not modified. Rows equal as numbers are identical (-0.0 equals 0.0).
    sample_weight : array-like, Dask array or Series of shape (n_samples,), or str, default=None
        Non-negative weights (scikit-learn's checks); identical rows' weights are summed.
        Rows of weight 0 are left out: they take no part in a fit. For a DataFrame, the name
        of one of its columns (then not a feature).
    keep : {"last", "first"}, default="last"
        The distinct rows come in the input order of their last or first occurrence (of
        positive weight). ``"last"`` reproduces fits where every row is a seed
        (``bin_seeding=False``, the default), ``"first"`` fits with bin seeding: the order
        decides, as in scikit-learn, which seed's intensity counts when two seeds from
        different rows end on the bit-identical position. Explicit seeds take either.

    Returns
    -------
    X_distinct : ndarray or dask.array.Array of shape (n_distinct, n_features)
        float32 for float32 input, else float64 (the dtype a fit computes in). For Dask
        input the pass runs now (a hash partition of the rows by value, on the active
        scheduler) and the result is kept in (cluster) memory, with known chunks.
    weights : ndarray or dask.array.Array of shape (n_distinct,)
        float64: the number of occurrences, or the sum of their weights.

    Raises
    ------
    ValueError
        NaN or infinity in ``X``, bad weights (scikit-learn's messages), a bad ``keep``.
    """
    if keep not in ("last", "first"):
        raise ValueError(f"keep must be 'last' or 'first', got {keep!r}")
    X, sample_weight = _input.split_weight_column(X, sample_weight)
    if not (_input.is_dask(X) or _input.is_dask(sample_weight)):
        from sklearn.utils import check_array
        from sklearn.utils.validation import _check_sample_weight

        x = check_array(X)
        w = None if sample_weight is None else _check_sample_weight(sample_weight, x, ensure_non_negative=True)
        return _as_output(chunk_groups(x, 0, w, keep), _input.working_dtype(x.dtype))
    arr = _input.as_row_chunked(X)
    weights = None if sample_weight is None else _input.prepare_weights(sample_weight, arr)
    return distributed_deduplicate(arr, weights, keep)


def distributed_deduplicate(X: da.Array, weights: da.Array | None, keep: Keep) -> tuple[da.Array, da.Array]:
    """The Dask driver of :func:`deduplicate` on checked, row-chunked input.

    Per chunk :func:`chunk_groups`; Dask's shuffle puts equal rows in one partition, where
    :func:`merge_groups` merges them (kept in memory); a second shuffle sorts the distinct rows
    by key into balanced chunks (about ``dshift.chunk-bytes`` each, at least one per core,
    as for in-memory input). The result is kept in memory too.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Rows chunked along axis 0 only, with known chunk sizes (values checked on the way).
    weights : dask.array.Array of shape (n,), optional
        Checked non-negative weights, chunked like ``X``.
    keep : {"last", "first"}

    Returns
    -------
    X_distinct, weights : dask.array.Array
        Sorted by the kept occurrence, with known chunks.
    """
    d = X.shape[1]
    w_blocks = [None] * len(X.chunks[0]) if weights is None else \
        list(weights.rechunk((X.chunks[0],)).to_delayed().ravel())
    meta = chunk_groups(np.zeros((0, d)), 0, None, keep)
    parts = [delayed(chunk_groups, pure=True)(b, int(o), w, keep)
             for b, o, w in zip(X.to_delayed().ravel(), _dask.chunk_offsets(X.chunks[0]), w_blocks)]
    merged = dd.from_delayed(parts, meta=meta, verify_meta=False)
    if len(parts) > 1:  # one chunk is grouped already
        merged = merged.shuffle(on=_columns(d), npartitions=len(parts)).map_partitions(merge_groups, keep, meta=meta)
    (merged,) = _dask.persist(merged)
    n_distinct = sum(_lengths(merged))
    n_chunks = -(-n_distinct // _dask.auto_chunk_rows(n_distinct, d))
    (frame,) = _dask.persist(merged.set_index(_KEY, npartitions=n_chunks))  # quantiles of a kept frame: cheap
    del merged
    sizes = _lengths(frame)
    rows = frame[_columns(d)].to_dask_array(lengths=sizes).astype(_input.working_dtype(X.dtype))
    return rows, (frame[_WEIGHT] + frame[_WEIGHT_C]).to_dask_array(lengths=sizes)


def _lengths(frame: dd.DataFrame) -> list[int]:
    return list(_dask.compute(*(delayed(len)(p) for p in frame.to_delayed())))


def sample_hashes(rows: np.ndarray, rate: float) -> np.ndarray:
    """Hashes of the rows whose value hashes below ``rate`` (a sample that keeps every copy).

    Sampling by value takes all copies of a row or none, so the share of distinct rows in
    the sample estimates that of the whole data (a uniform row sample would see too few
    repeats).

    Parameters
    ----------
    rows : ndarray of shape (n, d)
        Finite rows.
    rate : float
        Fraction of distinct values sampled, in [0, 1].

    Returns
    -------
    ndarray of uint64
        One hash per sampled row (equal rows, equal hashes).
    """
    hashes = _row_hashes(np.asarray(rows, dtype=np.float64))
    return hashes if rate >= 1.0 else hashes[hashes < np.uint64(rate * 2.0**64)]


@njit(nogil=True, cache=True)
def _row_hashes(rows: np.ndarray) -> np.ndarray:
    """The bin table's key hash of each row, -0.0 folded into 0.0 (as :func:`_fold` does)."""
    n, d = rows.shape
    out = np.empty(n, np.uint64)
    row = np.empty(d)
    bits = row.view(np.uint64)
    for i in range(n):
        for j in range(d):
            row[j] = rows[i, j] + 0.0
        out[i] = key_hash(bits)
    return out


def distinct_fraction(hashes: np.ndarray) -> float:
    """Distinct rows over rows in a :func:`sample_hashes` sample (1.0 for an empty sample)."""
    return len(np.unique(hashes)) / len(hashes) if len(hashes) else 1.0
