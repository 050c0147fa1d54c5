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

import math
import warnings
from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed
from numba import njit

from dshift import _dask, partition
from dshift._compensated import add_pair
from dshift.grouping import BinTable, empty_store, find, insert, merge_tables
from dshift.partition import Partition
from dshift.shifting import block_from_shares


class ScanResult(NamedTuple):
    """What one pass over the rows learns: size, bad rows and a bin table per bin size."""

    n_rows: int
    n_nonfinite: int
    tables: tuple[BinTable, ...]  # one per bin size asked for; none once a row is not finite
    chunk_rows: tuple[int, ...] = ()  # rows of each chunk scanned, in order


@njit(nogil=True, cache=True)
def _scan_rows(chunk, weights, bin_size, div32, with_bins, keys, counts, counts_c, first, slots):
    n = chunk.shape[0]
    key = np.empty(chunk.shape[1])
    n_groups, n_bad, i = 0, 0, 0
    while True:  # rows of known bins in a tight loop; the table grows between runs of them
        i, n_bad = _scan_known(chunk, weights, bin_size, div32, with_bins, i, n_bad, key, keys, counts, counts_c,
                               slots)
        if i == n:
            return n_bad, keys[:n_groups], counts[:n_groups], counts_c[:n_groups], first[:n_groups]
        w = weights[i] if weights.shape[0] > 0 else 1.0
        keys, counts, counts_c, first, slots, n_groups = insert(
            keys, counts, counts_c, first, slots, n_groups, key.view(np.int64), w, 0.0, i)
        i += 1


@njit(nogil=True, cache=True)
def _scan_known(chunk, weights, bin_size, div32, with_bins, start, n_bad, key, keys, counts, counts_c, slots):
    """From row ``start``: count rows with NaN/inf and add each row to its bin, up to the first
    row whose bin is not in the table yet (its key left in ``key``). Returns that row (or the
    row count) and the bad rows so far. No array is reassigned in this loop, which spares
    numba's reference counting per row (2.6x faster than growing the table in it)."""
    n, d = chunk.shape
    weighted = weights.shape[0] > 0
    key_bits = key.view(np.int64)
    b32 = np.float32(bin_size)
    for i in range(start, n):
        finite = True
        for j in range(d):
            v = chunk[i, j]
            if not np.isfinite(v):
                finite = False
                break
            if div32:  # float32 data over a weakly typed bin size divides in float32
                key[j] = np.float64(np.rint(np.float32(v) / b32)) + 0.0
            else:
                key[j] = np.rint(np.float64(v) / bin_size) + 0.0  # -0.0 and 0.0: one bin
        if not finite:
            n_bad += 1
        elif with_bins and n_bad == 0:
            w = weights[i] if weighted else 1.0
            if w > 0.0:  # a row of weight 0 is not in the (repeated) data at all
                g, _ = find(keys, slots, key_bits)
                if g < 0:
                    return i, n_bad
                add_pair(counts, counts_c, g, w, 0.0)
    return n, n_bad


def _divides_in_float32(dtype: np.dtype, bin_size) -> bool:
    # NumPy's promotion: a float32 array over a Python number (or float32) stays float32.
    return np.dtype(dtype) == np.float32 and not isinstance(bin_size, (np.float64, np.longdouble))


def bin_table(chunk: np.ndarray, bin_size: float, offset: int = 0, weights: np.ndarray | None = None) -> BinTable:
    """Count the grid bins of one chunk of rows.

    Parameters
    ----------
    chunk : ndarray of shape (n, d)
        Finite rows (not modified).
    bin_size : float
        Grid spacing (> 0).
    offset : int
        Global index of the chunk's first row.
    weights : ndarray of shape (n,), optional
        Sample weights: a bin's frequency is their sum; rows of weight 0 are left out.

    Returns
    -------
    BinTable
    """
    table = scan_chunk(chunk, (bin_size,), weights).tables[0]
    return table._replace(first=table.first + offset)


def scan_chunk(chunk: np.ndarray, bin_sizes: tuple = (), weights: np.ndarray | None = None) -> ScanResult:
    """One chunk's share of the scan pass: row count, rows with NaN/inf, and bin tables.

    One compiled pass over the rows per bin size (the chunk is in memory: the read is the
    cost); tables are only kept while all rows are finite. Rows are numbered from the
    chunk's start (:func:`merge_scans` makes them global), so no chunk needs to know where
    it starts: chunk lengths may be unknown until this pass.
    """
    chunk = np.ascontiguousarray(chunk)
    if not np.issubdtype(chunk.dtype, np.floating):
        chunk = chunk.astype(np.float64)
    w = np.zeros(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    n_bad, tables = 0, []
    for bin_size in bin_sizes or (None,):
        with_bins = bin_size is not None
        n_bad, keys, counts, counts_c, first = _scan_rows(
            chunk, w, float(bin_size) if with_bins else 1.0,
            with_bins and _divides_in_float32(chunk.dtype, bin_size), with_bins, *empty_store(chunk.shape[1]),
        )
        if n_bad:
            return ScanResult(len(chunk), int(n_bad), (), (len(chunk),))
        if with_bins:
            tables.append(BinTable(keys, counts, counts_c, first))
    return ScanResult(len(chunk), 0, tuple(tables), (len(chunk),))


def merge_scans(a: ScanResult, b: ScanResult) -> ScanResult:
    """Merge the scans of two consecutive row ranges, ``a`` before ``b``."""
    bad = a.n_nonfinite + b.n_nonfinite
    tables = () if bad else tuple(merge_tables(x, y._replace(first=y.first + a.n_rows))
                                  for x, y in zip(a.tables, b.tables))
    return ScanResult(a.n_rows + b.n_rows, bad, tables, a.chunk_rows + b.chunk_rows)


def weight_blocks(X: da.Array, weights: da.Array | None) -> list:
    """Per row chunk of ``X``, its weights (a Delayed) or None.

    Weights chunked like ``X`` pair up block by block (also while chunk lengths are unknown,
    as for a data set's feature and weight columns); others are rechunked to ``X``'s rows.
    """
    if weights is None:
        return [None] * len(X.chunks[0])
    if weights.chunks[0] != X.chunks[0]:
        weights = weights.rechunk((X.chunks[0],))
    return list(weights.to_delayed().ravel())


def scan_graph(X: da.Array, bin_sizes: tuple = (), weights: da.Array | None = None) -> Delayed:
    """The scan pass as one lazy result: per-chunk scans of ``X``, tree-merged in order.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Rows chunked along axis 0 only; chunk sizes may be unknown (the scan counts them).
    bin_sizes : tuple of float
        Grid spacings, one bin table each (none: only the NaN/inf check).
    weights : dask.array.Array of shape (n,), optional
        Sample weights (a bin's frequency is their sum).

    Returns
    -------
    Delayed
        Computes to a :class:`ScanResult`. Built on ``X.to_delayed()``, so computed
        together with other per-block work it shares the blocks' reads.
    """
    parts = [delayed(scan_chunk, pure=True)(b, tuple(bin_sizes), w)
             for b, w in zip(X.to_delayed().ravel(), weight_blocks(X, weights))]
    return _dask.tree_reduce(parts, merge_scans)


def scan(X: da.Array, bin_sizes: tuple = (), n_jobs: int | None = None, weights: da.Array | None = None) -> ScanResult:
    """Dask driver of the scan pass on its own: one read of ``X`` (see :func:`scan_graph`)."""
    (result,) = _dask.compute(scan_graph(X, bin_sizes, weights), n_jobs=n_jobs)
    return result


class BinSummary(NamedTuple):
    """What the driver needs to know of a scan: sizes, never the bins themselves."""

    n_rows: int
    n_nonfinite: int
    n_kept: int  # bins holding at least min_bin_freq points
    fullest: float  # points (or weight) in the fullest bin
    total: float  # points (or weight) in all bins: the size of the (repeated) data
    chunk_rows: tuple[int, ...]  # rows of each chunk


def summarize_scan(result: ScanResult, min_bin_freq: int, which: int = 0) -> BinSummary:
    """Reduce a scan's ``which``-th bin table to its sizes (runs where the scan result lives)."""
    freq = result.tables[which].frequency if result.tables else np.zeros(0)
    return BinSummary(result.n_rows, result.n_nonfinite, int(np.count_nonzero(freq >= min_bin_freq)),
                      float(freq.max(initial=0)), math.fsum(freq), result.chunk_rows)


def bins_fit(summary: BinSummary, bin_size, min_bin_freq: int) -> bool:
    """Whether the bins make the seeds, as scikit-learn decides (driver side).

    Returns False, with scikit-learn's warning, when there are as many kept bins as points
    (the weights' sum for weighted data: the rows scikit-learn would see repeated); it then
    seeds with the points themselves. Raises ValueError when no bin holds ``min_bin_freq``
    points (scikit-learn crashes there).
    """
    if summary.n_kept == summary.total:
        warnings.warn(
            f"Binning data failed with provided bin_size={bin_size:f}, using data points as seeds.",
            UserWarning,
            stacklevel=3,
        )
        return False
    if summary.n_kept == 0:
        raise ValueError(
            f"No bin of size {bin_size:g} holds min_bin_freq={min_bin_freq} points "
            f"(the fullest holds {summary.fullest:g}): lower min_bin_freq, "
            "increase the bandwidth or turn bin_seeding off."
        )
    return True


def bin_seeds(table: BinTable, bin_size, min_bin_freq: int) -> np.ndarray:
    """scikit-learn's bin seeds from a bin table: kept bins, first-appearance order."""
    keep = table.frequency >= min_bin_freq
    # As scikit-learn: the integral bins become float32, then NumPy's promotion rules
    # decide the product's dtype (float32 for a Python float, float64 for np.float64).
    return table.bins[keep].astype(np.float32) * bin_size


def _route_bins(result: ScanResult, which: int, bin_size, min_bin_freq: int, cells: Partition) -> list:
    seeds = bin_seeds(result.tables[which], bin_size, min_bin_freq)
    return partition.split(seeds, np.arange(len(seeds), dtype=np.int64), cells)


def _bin_sample(result: ScanResult, which: int, bin_size, min_bin_freq: int, size: int) -> np.ndarray:
    return partition.strided_sample(bin_seeds(result.tables[which], bin_size, min_bin_freq), size)


def bin_seed_blocks(scanned: Delayed, which: int, n_kept: int, bin_size, min_bin_freq: int,
                    n_jobs: int | None = None) -> list[Delayed]:
    """Seed blocks cut from a scan's bin table where it lives (the bins never reach the driver).

    Parameters
    ----------
    scanned : Delayed
        The scan result (:func:`scan_graph`), persisted.
    which : int
        Which of its bin tables (the position of ``bin_size`` in the scan's bin sizes).
    n_kept : int
        That table's number of kept bins (:func:`summarize_scan`).
    bin_size : float
        As given to the scan.
    min_bin_freq : int
    n_jobs : int, optional
        Threads for the local scheduler (the partition's sample is computed here).

    Returns
    -------
    list of Delayed
        :class:`~dshift.shifting.SeedBlock` objects, one per spatial cell.
    """
    n_cells = partition.n_cells_for(n_kept)
    size = partition.sample_size(n_cells)
    (sample,) = _dask.compute(delayed(_bin_sample, pure=True)(scanned, which, bin_size, min_bin_freq, max(size, 1)),
                              n_jobs=n_jobs)
    cells = partition.plan(sample, n_cells)
    routed = delayed(_route_bins, pure=True)(scanned, which, bin_size, min_bin_freq, cells)
    return partition.gather_cells([routed], cells.n_cells, block_from_shares)


def _route_rows(chunk: np.ndarray, offset: int, cells: Partition, weights: np.ndarray | None) -> list:
    ids = offset + np.arange(len(chunk), dtype=np.int64)
    if weights is not None:  # a row of weight 0 is no seed (it is not in the repeated data)
        ids = ids[weights > 0]
        chunk = chunk[weights > 0]
    return partition.split(chunk, ids, cells)


def point_samples(X: da.Array, n_seeds: int) -> list[Delayed]:
    """Per row chunk, the rows that plan the seeds' partition when every row is a seed.

    Compute them with the first pass over the data, which reads the chunks anyway.
    ``n_seeds`` may be an upper bound (chunk lengths unknown: an equal share per chunk).
    """
    return partition.chunk_samples(X, n_seeds, partition.sample_size(partition.n_cells_for(n_seeds)))


def point_seed_blocks(X: da.Array, samples: list[np.ndarray], n_seeds: int,
                      weights: da.Array | None = None) -> list[Delayed]:
    """Every row a seed: blocks of spatial cells, routed from the row chunks where they are read.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Row-chunked data.
    samples : list of ndarray
        The computed :func:`point_samples`.
    n_seeds : int
        Rows of positive weight (all rows when unweighted).
    weights : dask.array.Array of shape (n,), optional
        Sample weights: rows of weight 0 are no seeds; a row of weight w stands for its
        w copies, which climb as one.

    Returns
    -------
    list of Delayed
        :class:`~dshift.shifting.SeedBlock` objects, one per spatial cell; every seed once.
    """
    cells = partition.plan_samples(partition.n_cells_for(n_seeds), *samples)
    routed = [delayed(_route_rows, pure=True)(chunk, int(offset), cells, w)
              for chunk, offset, w in zip(X.to_delayed().ravel(), _dask.chunk_offsets(X.chunks[0]),
                                          weight_blocks(X, weights))]
    return partition.gather_cells(routed, cells.n_cells, block_from_shares)


def get_bin_seeds(X, bin_size: float, min_bin_freq: int = 1, *, sample_weight=None):
    """Find seeds for mean shift by binning data onto a grid (as scikit-learn).

    Parameters
    ----------
    X : array-like or dask array of shape (n_samples, n_features)
        Input points (NumPy, pandas or Dask). Not modified.
    bin_size : float
        Grid spacing; 0 returns ``X`` unchanged.
    min_bin_freq : int, default=1
        Only bins holding at least this many points become seeds.
    sample_weight : array-like, Dask array or Series of shape (n_samples,), or str, optional
        Non-negative weights (dshift extension): a bin's frequency is the sum of its rows'
        weights, as if each row were repeated that many times; rows of weight 0 are left out.
        For a DataFrame, the name of one of its columns (then not a feature).

    Returns
    -------
    bin_seeds : ndarray of shape (n_seeds, n_features), float32
        Bin corners ``round(x / bin_size) * bin_size`` in order of first appearance.
        When every point is alone in its bin, warns and returns ``X`` itself (its rows of
        positive weight, with weights).

    Raises
    ------
    ValueError
        When no bin holds ``min_bin_freq`` points.
    """
    from dshift._input import NonFiniteError, as_row_chunked, prepare_weights, split_weight_column

    X, sample_weight = split_weight_column(X, sample_weight)
    weights = None if sample_weight is None else prepare_weights(sample_weight, as_row_chunked(X))
    if bin_size == 0:
        return X
    arr = as_row_chunked(X)
    result = scan(arr, (bin_size,), weights=weights)
    if result.n_nonfinite:
        raise NonFiniteError.rows(result.n_nonfinite, result.n_rows)
    if bins_fit(summarize_scan(result, min_bin_freq), bin_size, min_bin_freq):
        return bin_seeds(result.tables[0], bin_size, min_bin_freq)
    return X if weights is None else arr[weights > 0].compute()
