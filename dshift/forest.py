"""The trees of a fit: which rows each k-d tree (:mod:`dshift.index`) holds.

A ball's sums add up over every tree it meets, so the trees may split the rows in any way;
fewer trees a ball meets mean less work per seed, fewer trees in all fewer tasks per pass.

* In-memory input: compact pieces, a few per thread (:func:`piece_indexes`), runs of grid
  cells in Morton order cut by the driver, which holds the rows.
* Dask input whose trees fit in memory: compact regions (:func:`region_indexes`), median
  splits planned from a sample of every chunk; each chunk routes its rows to their regions
  in the fit's first pass, and a tree is built per region from every chunk's share.
* Larger Dask input: a tree per group of consecutive row chunks (:func:`group_indexes`),
  its points on the workers' local disks or rebuilt on every pass: each tree is built as
  soon as its chunks are read, without holding the others.

Each driver returns one Delayed :class:`~dshift.index.ChunkIndex` per tree.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from dshift import _dask, partition
from dshift.index import ChunkIndex, build_index, morton_keys
from dshift.seeding import weight_blocks

PIECES_PER_THREAD = 4
"""Spatial indexes per thread for in-memory input (see :func:`spatial_pieces`): enough that
pieces of unequal cost share the threads evenly."""

MIN_PIECE_ROWS = 4096
"""Fewest rows of such an index."""

REGION_SAMPLE = 4096
"""Sampled rows per region planned for Dask input: a region's tree costs in proportion to its
rows, in its build and in every pass. With :data:`dshift.partition.SAMPLE_PER_CELL` (64), the
four regions of 10M rows held 1.9M to 3.3M rows, and the worker given the two larger spent
1.55 s building them against the other's 0.82 s; with 4,096, 2.44M to 2.58M."""

PIECE_CELL_BITS = 12
"""Key bits of the grid cells that pieces are made of (4,096 cells; 16 per dimension in 3-D)."""


# ------------------------------------------------------------------------------ per-chunk work


def build_group_index(chunks: list[np.ndarray], weights: list, on_disk: bool = False) -> ChunkIndex:
    """One index over several row chunks (rows of consecutive chunks, or a region's shares).

    Parameters
    ----------
    chunks : list of ndarray of shape (n_i, d)
        The rows, in the order the tree is to get them.
    weights : list
        Each chunk's weights (ndarray of shape (n_i,)), or ``[None, ...]`` for unit weights.
    on_disk : bool
        Keep the points on local disk (:meth:`~dshift.index.ChunkIndex.to_disk`).

    Returns
    -------
    ChunkIndex
    """
    if len(chunks) == 1:
        rows = chunks[0]
    else:  # straight into the row-major float64 the tree takes: Parquet chunks are column-major,
        # and their concatenation would be copied once more (100M job: 69 -> ~35 ms per tree)
        rows = np.concatenate(chunks, out=np.empty((sum(len(c) for c in chunks), chunks[0].shape[1])))
    if weights[0] is None:
        index = build_index(rows)
    else:
        index = build_index(rows, weights[0] if len(weights) == 1 else np.concatenate(weights))
    return index.to_disk() if on_disk else index


def build_region_index(*shares: tuple[np.ndarray, np.ndarray | None]) -> ChunkIndex:
    """The index of one region from every chunk's rows in it (:func:`dshift.partition.split`).

    Parameters
    ----------
    *shares : tuple of (ndarray, ndarray or None)
        Rows and weights (None: unit weights) per chunk.

    Returns
    -------
    ChunkIndex
    """
    return build_group_index([rows for rows, _ in shares], [w for _, w in shares])


def spatial_pieces(points: np.ndarray, n_pieces: int) -> list[np.ndarray]:
    """Rows cut into about ``n_pieces`` compact regions of about equal size: runs of whole
    grid cells (:data:`PIECE_CELL_BITS`) in Morton order (build them with :func:`build_piece_index`).

    A ball then meets few pieces (the others are rejected at their root), where pieces of
    consecutive rows each span the whole data and every ball cuts through every one of them.
    Ball sums are the same exact sums whatever the pieces (measured on P1, 1M rows, 8 pieces
    against 2 halves: kernel time 19 % lower at bandwidth 3.4, 30 % at 4.6). Only the rows'
    cells are sorted (a radix sort of two bytes per row): ~15 ms per 1M rows in the driver.

    Parameters
    ----------
    points : ndarray of shape (n, d)
    n_pieces : int
        At most 65,536.

    Returns
    -------
    list of ndarray of int64
        Each piece's row numbers, ascending; no piece is empty.
    """
    n = len(points)
    n_pieces = min(int(n_pieces), 1 << 16)
    keys, n_bits = morton_keys(np.ascontiguousarray(points, dtype=np.float64))
    if n_pieces <= 1 or n_bits == 0:
        return [np.arange(n)]
    cells = (keys >> np.uint64(max(n_bits - PIECE_CELL_BITS, 0))).astype(np.int64)
    counts = np.bincount(cells)
    middle = np.cumsum(counts) - (counts + 1) // 2  # rank of each cell's middle row, in Morton order
    piece = (middle * n_pieces // n).astype(np.uint16)[cells]  # the piece that holds most of the cell
    order = np.argsort(piece, kind="stable")  # 16-bit integers: a radix sort
    ends = np.cumsum(np.bincount(piece, minlength=n_pieces))
    return [order[a:b] for a, b in zip([0, *ends[:-1]], ends) if b > a]


def build_piece_index(points: np.ndarray, weights: np.ndarray | None, rows: np.ndarray) -> ChunkIndex:
    """The index of rows ``rows`` of ``points`` (a piece from :func:`spatial_pieces`).

    Parameters
    ----------
    points : ndarray of shape (n, d)
    weights : ndarray of shape (n,), optional
    rows : ndarray of int

    Returns
    -------
    ChunkIndex
    """
    return build_index(points[rows], None if weights is None else np.asarray(weights)[rows])


# ------------------------------------------------------------------------------ drivers


def piece_indexes(points: np.ndarray, weights: np.ndarray | None, min_pieces: int) -> list[Delayed]:
    """In-memory input's trees: :data:`PIECES_PER_THREAD` compact pieces per thread of the
    scheduler, at least ``min_pieces`` and at most one per :data:`MIN_PIECE_ROWS` rows.

    Parameters
    ----------
    points : ndarray of shape (n, d)
    weights : ndarray of shape (n,), optional
    min_pieces : int

    Returns
    -------
    list of Delayed
    """
    n_pieces = max(min_pieces, min(PIECES_PER_THREAD * _dask.n_cores(), len(points) // MIN_PIECE_ROWS))
    local, local_weights = delayed(points), delayed(weights)  # in the graph once
    return [delayed(build_piece_index)(local, local_weights, rows) for rows in spatial_pieces(points, n_pieces)]


def region_indexes(X: da.Array, weights: da.Array | None, n_rows: int, n_regions: int) -> list[Delayed]:
    """Dask input's trees over ``n_regions`` compact regions, lazily: regions planned from a
    sample of every chunk, each chunk's rows routed to them, a tree built per region. Every
    chunk is read once, in the pass that computes them.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
    weights : dask.array.Array of shape (n,), optional
    n_rows : int
        Rows of ``X`` (an upper bound while chunk lengths are unknown).
    n_regions : int

    Returns
    -------
    list of Delayed
        ``n_regions`` trees (a region the plan did not make is an empty tree).
    """
    chunks = X.to_delayed().ravel()
    samples = partition.chunk_samples(X, n_rows, partition.sample_size(n_regions, REGION_SAMPLE))
    regions = delayed(partition.plan_samples, pure=True)(n_regions, *samples)
    routed = [delayed(partition.split, pure=True)(c, w, regions, n_regions)
              for c, w in zip(chunks, weight_blocks(X, weights))]
    return partition.gather_cells(routed, n_regions, build_region_index)


def group_indexes(X: da.Array, weights: da.Array | None, groups: Sequence[Sequence[int]],
                  on_disk: bool) -> list[Delayed]:
    """Dask input's trees over groups of consecutive row chunks, lazily.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
    weights : dask.array.Array of shape (n,), optional
    groups : sequence of sequences of int
        Chunk numbers per tree (:func:`dshift._dask.index_groups`).
    on_disk : bool
        Keep each tree's points on its worker's local disk.

    Returns
    -------
    list of Delayed
    """
    chunks, weight_chunks = X.to_delayed().ravel(), weight_blocks(X, weights)
    return [delayed(build_group_index, pure=True)([chunks[i] for i in g], [weight_chunks[i] for i in g], on_disk)
            for g in groups]
