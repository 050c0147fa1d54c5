"""Merging stage: converged modes to cluster centers, exactly as scikit-learn orders them.

1. Seeds ending on the identical position are one entry; the later seed's intensity wins.
2. Entries sort by (intensity, coordinates as a tuple), descending.
3. Walking that order, a center still kept removes every other center within
   ``bandwidth`` of it (boundary included).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.spatial import cKDTree


@njit(cache=True)
def _greedy_keep(n: int, indptr: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    keep = np.ones(n, dtype=np.bool_)
    for i in range(n):
        if keep[i]:
            for p in range(indptr[i], indptr[i + 1]):
                keep[neighbours[p]] = False
    return keep


def merge_modes(position: np.ndarray, intensity: np.ndarray, bandwidth: float) -> np.ndarray:
    """Reduce the seeds' final positions to scikit-learn's ``cluster_centers_``.

    Parameters
    ----------
    position : ndarray of shape (k, d)
        Final mean of each seed, in seed order.
    intensity : ndarray of shape (k,)
        Points in each seed's last ball; 0 marks a seed without result.
    bandwidth : float
        Merge radius.

    Returns
    -------
    ndarray of shape (n_clusters, d)
        Cluster centers, most populated first, in ``position``'s dtype.

    Raises
    ------
    ValueError
        When no seed has a result (scikit-learn's message).
    """
    ok = intensity > 0
    if not np.any(ok):
        raise ValueError(
            "No point was within bandwidth=%f of any seed. Try a different seeding "
            "strategy or increase the bandwidth." % bandwidth
        )
    pos = position[ok] + position.dtype.type(0.0)  # -0.0 and 0.0 are one dict key
    inten = intensity[ok]
    # Last occurrence of each distinct position (a dict's last write wins).
    rev = pos[::-1]
    uniq, first_in_rev = np.unique(rev, axis=0, return_index=True)
    centers = uniq
    weights = inten[::-1][first_in_rev]
    # Descending by (intensity, x0, x1, ...): lexsort's last key is the primary one.
    order = np.lexsort(tuple(centers[:, j] for j in range(centers.shape[1] - 1, -1, -1)) + (weights,))[::-1]
    centers = centers[order]
    pairs = cKDTree(centers).query_pairs(r=bandwidth, output_type="ndarray")
    if len(pairs):
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        indptr = np.searchsorted(pairs[:, 0], np.arange(len(centers) + 1))
        keep = _greedy_keep(len(centers), indptr, pairs[:, 1].copy())
        centers = centers[keep]
    return np.ascontiguousarray(centers)
