"""Seeding stage: grid-bin counting per chunk, merged in a tree reduction.

scikit-learn's ``get_bin_seeds`` puts each point in the bin ``round(x / bin_size)``
(half to even), keeps the bins holding at least ``min_bin_freq`` points in order of
first appearance, and returns ``bin * bin_size`` as float32. Here every chunk builds a
small table (distinct bins in first-appearance order, their counts and the global row
of their first point); tables merge pairwise in chunk order, which keeps the global
first-appearance order without ever sorting the data.

The same pass also counts rows holding NaN or infinity, so Dask input is checked
without an extra read.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.delayed import delayed
from numba import njit

from dshift import _dask


class BinTable(NamedTuple):
    """Distinct grid bins of some rows, in order of first appearance."""

    bins: np.ndarray  # (g, d) float64, integral values
    counts: np.ndarray  # (g,) int64
    first: np.ndarray  # (g,) int64, global row of the bin's first point


class ScanResult(NamedTuple):
    """What one pass over the rows learns: size, bad rows and (optionally) the bin table."""

    n_rows: int
    n_nonfinite: int
    table: BinTable | None


@njit(nogil=True, cache=True)
def _group_rows(keys: np.ndarray):
    """Number identical rows of ``keys`` by first appearance (open-addressing hash table).

    Returns ``(group of each row, first row of each group)``.
    """
    n, d = keys.shape
    size = 1
    while size < 2 * n + 2:
        size *= 2
    mask = size - 1
    slots = np.full(size, -1, np.int64)  # group id held by each slot
    group = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    bits = keys.view(np.int64)
    n_groups = 0
    for i in range(n):
        h = np.uint64(1469598103934665603)
        for j in range(d):
            h = (h ^ np.uint64(bits[i, j])) * np.uint64(1099511628211)
        h ^= h >> np.uint64(29)
        slot = np.int64(h & np.uint64(mask))
        while True:
            g = slots[slot]
            if g < 0:
                slots[slot] = n_groups
                first[n_groups] = i
                group[i] = n_groups
                n_groups += 1
                break
            r = first[g]
            same = True
            for j in range(d):
                if bits[r, j] != bits[i, j]:
                    same = False
                    break
            if same:
                group[i] = g
                break
            slot = (slot + 1) & mask
    return group, first[:n_groups]


def _bins_of(chunk: np.ndarray, bin_size: float) -> np.ndarray:
    # "+ 0.0" turns -0.0 into 0.0: scikit-learn's dict treats them as one bin.
    return np.ascontiguousarray(np.rint(chunk / bin_size) + 0.0, dtype=np.float64)


def bin_table(chunk: np.ndarray, bin_size: float, offset: int = 0) -> BinTable:
    """Count the grid bins of one chunk of rows.

    Parameters
    ----------
    chunk : ndarray of shape (n, d)
        Rows (not modified).
    bin_size : float
        Grid spacing (> 0).
    offset : int
        Global index of the chunk's first row.

    Returns
    -------
    BinTable
    """
    bins = _bins_of(chunk, bin_size)
    group, first = _group_rows(bins)
    counts = np.bincount(group, minlength=len(first)).astype(np.int64)
    return BinTable(bins[first], counts, first.astype(np.int64) + offset)


def merge_tables(a: BinTable, b: BinTable) -> BinTable:
    """Merge the tables of two row ranges, ``a`` before ``b``."""
    bins = np.concatenate([a.bins, b.bins])
    group, first = _group_rows(bins)
    counts = np.bincount(group, weights=np.concatenate([a.counts, b.counts]), minlength=len(first))
    return BinTable(bins[first], counts.astype(np.int64), np.concatenate([a.first, b.first])[first])


def scan_chunk(chunk: np.ndarray, offset: int, bin_size: float | None) -> ScanResult:
    """One chunk's share of the scan pass: row count, rows with NaN/inf, and bin table."""
    finite_rows = np.isfinite(chunk).all(axis=1)
    n_bad = int(len(chunk) - np.count_nonzero(finite_rows))
    table = bin_table(chunk, bin_size, offset) if bin_size and n_bad == 0 else None
    return ScanResult(len(chunk), n_bad, table)


def merge_scans(a: ScanResult, b: ScanResult) -> ScanResult:
    """Merge the scans of two row ranges, ``a`` before ``b``."""
    table = merge_tables(a.table, b.table) if a.table is not None and b.table is not None else None
    return ScanResult(a.n_rows + b.n_rows, a.n_nonfinite + b.n_nonfinite, table)


def scan(X: da.Array, bin_size: float | None, n_jobs: int | None = None) -> ScanResult:
    """Dask driver of the scan pass: one read of ``X``, per-chunk scans, tree-merged.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Rows chunked along axis 0 only; chunk sizes must be known.
    bin_size : float or None
        Grid spacing, or None when no bin seeding is wanted.
    n_jobs : int, optional
        Threads for the local scheduler.

    Returns
    -------
    ScanResult
    """
    offsets = _dask.chunk_offsets(X.chunks[0])
    blocks = X.to_delayed().ravel()
    parts = [delayed(scan_chunk, pure=True)(b, int(o), bin_size) for b, o in zip(blocks, offsets)]
    (result,) = _dask.compute(_dask.tree_reduce(parts, merge_scans), n_jobs=n_jobs)
    return result


def seeds_from_table(table: BinTable, bin_size: float, min_bin_freq: int, n_rows: int) -> np.ndarray | None:
    """Turn a bin table into scikit-learn's bin seeds.

    Returns None when every point sits alone in its bin (scikit-learn then warns and
    seeds with the points themselves). Raises ValueError when no bin holds
    ``min_bin_freq`` points (scikit-learn crashes there).
    """
    keep = table.counts >= min_bin_freq
    n_kept = int(np.count_nonzero(keep))
    if n_kept == n_rows:
        warnings.warn(
            f"Binning data failed with provided bin_size={bin_size:f}, using data points as seeds.",
            UserWarning,
            stacklevel=3,
        )
        return None
    if n_kept == 0:
        raise ValueError(
            f"No bin of size {bin_size:g} holds min_bin_freq={min_bin_freq} points "
            f"(the fullest holds {int(table.counts.max(initial=0))}): lower min_bin_freq, "
            "increase the bandwidth or turn bin_seeding off."
        )
    # As scikit-learn: the integral bins become float32 before the float32 product.
    return table.bins[keep].astype(np.float32) * np.float32(bin_size)


def get_bin_seeds(X, bin_size: float, min_bin_freq: int = 1):
    """Find seeds for mean shift by binning data onto a grid (as scikit-learn).

    Parameters
    ----------
    X : array-like or dask array of shape (n_samples, n_features)
        Input points (NumPy, pandas or Dask). Not modified.
    bin_size : float
        Grid spacing; 0 returns ``X`` unchanged.
    min_bin_freq : int, default=1
        Only bins holding at least this many points become seeds.

    Returns
    -------
    bin_seeds : ndarray of shape (n_seeds, n_features), float32
        Bin corners ``round(x / bin_size) * bin_size`` in order of first appearance.
        When every point is alone in its bin, warns and returns ``X`` itself.

    Raises
    ------
    ValueError
        When no bin holds ``min_bin_freq`` points.
    """
    if bin_size == 0:
        return X
    from dshift._input import as_row_chunked

    arr = as_row_chunked(X)
    result = scan(arr, bin_size)
    if result.n_nonfinite:
        raise ValueError(f"Input X contains NaN or infinity ({result.n_nonfinite} rows).")
    seeds = seeds_from_table(result.table, bin_size, min_bin_freq, result.n_rows)
    return X if seeds is None else seeds
