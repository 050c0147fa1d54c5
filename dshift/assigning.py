"""Assigning stage: each point's nearest cluster center, one chunk at a time.

Ties go to the lower center index (the more populated cluster). With
``cluster_all=False`` a point farther than ``bandwidth`` from its nearest center gets
-1 (distance equal to the bandwidth keeps the label), as in scikit-learn.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _nearest(points: np.ndarray, centers: np.ndarray, radius: float) -> np.ndarray:
    n, d = points.shape
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


def assign_labels(chunk: np.ndarray, centers: np.ndarray, bandwidth: float, cluster_all: bool) -> np.ndarray:
    """Label the rows of one chunk with their nearest center.

    Parameters
    ----------
    chunk : ndarray of shape (m, d)
        Rows (not modified).
    centers : ndarray of shape (k, d)
        Cluster centers.
    bandwidth : float
        Radius beyond which a point is an outlier when ``cluster_all`` is False.
    cluster_all : bool
        Label every point (True) or mark outliers -1 (False).

    Returns
    -------
    ndarray of shape (m,), int64
    """
    radius = np.inf if cluster_all else float(bandwidth)
    points = np.ascontiguousarray(chunk)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    return _nearest(points, np.ascontiguousarray(centers, dtype=np.float64), radius)


def label_array(X: da.Array, centers: np.ndarray, bandwidth: float, cluster_all: bool) -> da.Array:
    """Lazy labels of a row-chunked Dask array: one ``map_blocks`` pass.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        One chunk along axis 1.
    centers, bandwidth, cluster_all
        As in :func:`assign_labels`.

    Returns
    -------
    dask.array.Array of shape (n,), int64
    """
    return X.map_blocks(
        assign_labels,
        centers,
        bandwidth,
        cluster_all,
        drop_axis=1,
        dtype=np.int64,
        meta=np.empty((0,), dtype=np.int64),
    )
