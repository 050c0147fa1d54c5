"""Assigning stage: each point's nearest cluster center, one chunk at a time.

Ties go to the lower center index (the more populated cluster). With
``cluster_all=False`` a point farther than ``bandwidth`` from its nearest center gets
-1 (distance equal to the bandwidth keeps the label), as in scikit-learn.

A handful of centers is searched by brute force; many centers (a small bandwidth can
make a cluster per point) through a k-d tree over the centers, built once per pass and
shared by every chunk. Both give the same labels: distances are the same float64 sums
in coordinate order, and the tree prunes a box only when its nearest possible distance
is strictly larger than the best found (rounding is monotone), so ties are still seen.
"""

from __future__ import annotations

from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed
from numba import njit

from dshift.index import ChunkIndex, box_gap2, build_tree

BRUTE_MAX = 32
"""Up to this many centers a point is compared with each one (no tree)."""

LEAF_SIZE = 8


class CenterIndex(NamedTuple):
    """The centers, with a k-d tree over them when there are many (picklable)."""

    centers: np.ndarray  # (k, d) float64, in label order
    tree: ChunkIndex | None
    perm: np.ndarray | None  # label of each row of tree.points


def center_index(centers: np.ndarray) -> CenterIndex:
    """Prepare centers for nearest-center queries.

    Parameters
    ----------
    centers : ndarray of shape (k, d)

    Returns
    -------
    CenterIndex
    """
    wide = np.ascontiguousarray(centers, dtype=np.float64)
    if len(wide) <= BRUTE_MAX:
        return CenterIndex(wide, None, None)
    tree, perm = build_tree(wide, leaf_size=LEAF_SIZE)
    return CenterIndex(wide, tree, perm)


@njit(nogil=True, cache=True)
def _nearest(points: np.ndarray, centers: np.ndarray, radius: float, dims) -> np.ndarray:
    n, d = points.shape[0], len(dims)
    k = centers.shape[0]
    labels = np.empty(n, np.int64)
    for i in range(n):
        best = np.inf
        arg = 0
        for c in range(k):
            dist = 0.0
            for j in range(d):
                t = np.float64(points[i, j]) - centers[c, j]
                dist += t * t
                if dist >= best:
                    break
            if dist < best:
                best = dist
                arg = c
        labels[i] = arg if np.sqrt(best) <= radius else -1
    return labels


@njit(nogil=True, cache=True)
def _nearest_tree(points, tpoints, perm, start, stop, left, lower, upper, radius, dims):
    n, d = points.shape[0], len(dims)
    labels = np.empty(n, np.int64)
    stack = np.empty(256, np.int64)
    x = np.empty(d)
    for i in range(n):
        for j in range(d):
            x[j] = np.float64(points[i, j])
        best = np.inf
        arg = -1
        stack[0] = 0
        top = 1
        while top > 0:
            top -= 1
            node = stack[top]
            if box_gap2(lower, upper, node, x) > best:
                continue
            child = left[node]
            if child >= 0:
                # Visit the nearer child first (pushed last): the best distance shrinks sooner.
                if box_gap2(lower, upper, child, x) <= box_gap2(lower, upper, child + 1, x):
                    stack[top] = child + 1
                    stack[top + 1] = child
                else:
                    stack[top] = child
                    stack[top + 1] = child + 1
                top += 2
                continue
            for r in range(start[node], stop[node]):
                dist = 0.0
                for j in range(d):
                    t = x[j] - tpoints[r, j]
                    dist += t * t
                if dist < best or (dist == best and perm[r] < arg):
                    best = dist
                    arg = perm[r]
        labels[i] = arg if np.sqrt(best) <= radius else -1
    return labels


def assign_labels(chunk: np.ndarray, centers, bandwidth: float, cluster_all: bool) -> np.ndarray:
    """Label the rows of one chunk with their nearest center.

    Parameters
    ----------
    chunk : ndarray of shape (m, d)
        Rows (not modified).
    centers : ndarray of shape (k, d) or CenterIndex
        Cluster centers (a :class:`CenterIndex` saves rebuilding the tree per chunk).
    bandwidth : float
        Radius beyond which a point is an outlier when ``cluster_all`` is False.
    cluster_all : bool
        Label every point (True) or mark outliers -1 (False).

    Returns
    -------
    ndarray of shape (m,), int64
    """
    index = centers if isinstance(centers, CenterIndex) else center_index(centers)
    radius = np.inf if cluster_all else float(bandwidth)
    points = np.ascontiguousarray(chunk)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    dims = (0,) * points.shape[1]  # compiled per number of features (see dshift.ballsums._ball_sums)
    if index.tree is None:
        return _nearest(points, index.centers, radius, dims)
    t = index.tree
    return _nearest_tree(points, t.points, index.perm, t.start, t.stop, t.left, t.lower, t.upper, radius, dims)


def label_array(X: da.Array, centers, bandwidth: float, cluster_all: bool) -> da.Array:
    """Lazy labels of a row-chunked Dask array: one ``map_blocks`` pass.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        One chunk along axis 1.
    centers : ndarray of shape (k, d) or Delayed
        Cluster centers, on the driver or (persisted) on the workers; the center index is
        built once, where the centers are, and shared by every chunk.
    bandwidth, cluster_all
        As in :func:`assign_labels`.

    Returns
    -------
    dask.array.Array of shape (n,), int64
    """
    return X.map_blocks(
        assign_labels,
        shared_center_index(centers),
        bandwidth,
        cluster_all,
        drop_axis=1,
        dtype=np.int64,
        meta=np.empty((0,), dtype=np.int64),
    )


def label_totals(labels: np.ndarray, weights: np.ndarray | None, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """The labels present in a chunk (-1 .. n_clusters - 1) and their rows (or weight)."""
    if n_clusters >= len(labels):  # a cluster per few rows: count only the labels present (a sort)
        labels, inverse = np.unique(labels, return_inverse=True)
        return labels, np.bincount(inverse, weights=weights, minlength=len(labels))
    totals = np.bincount(labels + 1, weights=weights, minlength=n_clusters + 1)  # linear, no sort
    present = np.flatnonzero(totals)
    return present - 1, totals[present]


def index_label_totals(index: ChunkIndex, centers, bandwidth: float, cluster_all: bool,
                       n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`label_totals` of the points (and weights) a chunk's tree holds.

    Cluster sizes need no row order, so the trees a fit keeps give them without another
    read of the data.
    """
    index = index.opened()
    weights = index.weights if len(index.weights) else None
    return label_totals(assign_labels(index.points, centers, bandwidth, cluster_all), weights, n_clusters)


def add_totals(pieces, n_clusters: int, weighted: bool) -> np.ndarray:
    """Sum chunks' :func:`label_totals`: ``sizes[0]`` the outliers (-1), ``sizes[j + 1]`` cluster j.

    Parameters
    ----------
    pieces : iterable of (labels, totals)
    n_clusters : int
    weighted : bool
        Totals of weight (float64) rather than rows (int64).

    Returns
    -------
    ndarray of shape (n_clusters + 1,)
    """
    size = np.zeros(n_clusters + 1, dtype=np.float64 if weighted else np.int64)
    for values, counts in pieces:
        np.add.at(size, values + 1, counts)
    return size


def shared_center_index(centers) -> Delayed:
    """A lazy :class:`CenterIndex` for ``centers`` (array or Delayed), for labelling passes."""
    return delayed(center_index, pure=True)(centers)
