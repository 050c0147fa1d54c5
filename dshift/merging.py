"""Merging stage: converged modes to cluster centers, exactly as scikit-learn orders them.

1. Seeds ending on the identical position are one entry; the later seed's intensity wins.
2. Entries sort by (intensity, coordinates as a tuple), descending.
3. Walking that order, a center still kept removes every other center within
   ``bandwidth`` of it (boundary included).

Step 1 runs per seed block where the blocks live, then one task merges the blocks' tables
(one sort of them all); steps 2 and 3 take O(k log k) time and O(k) memory for k distinct positions:
a sort, then a k-d tree over the positions whose ball queries visit each removed
position a bounded number of times (kept centers are more than a bandwidth apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from dask.delayed import Delayed, delayed
from numba import njit

from dshift.index import box_gap2, build_tree
from dshift.shifting import SeedBlock

LEAF_SIZE = 16
"""Positions per leaf of the merge's k-d tree: ball queries here are small and many."""


class Modes(NamedTuple):
    """Distinct final positions of some seeds (plain NumPy)."""

    position: np.ndarray  # (u, d) working dtype, -0.0 folded into 0.0
    intensity: np.ndarray  # (u,) int64 of the last seed ending there
    seed: np.ndarray  # (u,) int64 global number of that seed


def distinct_modes(position: np.ndarray, intensity: np.ndarray, seed: np.ndarray) -> Modes:
    """Keep, for every distinct position with a result, its last seed (a dict's last write wins).

    Parameters
    ----------
    position : ndarray of shape (k, d)
    intensity : ndarray of shape (k,)
        0 marks a seed without result (dropped).
    seed : ndarray of shape (k,)
        Global seed numbers.

    Returns
    -------
    Modes
    """
    ok = intensity > 0
    pos = position[ok] + position.dtype.type(0.0)  # -0.0 and 0.0 are one dict key
    inten, seed = intensity[ok], seed[ok]
    # Sort by coordinates, then seed number; the last row of each run of equal positions
    # belongs to the latest seed.
    order = np.lexsort((seed, *(pos[:, j] for j in range(pos.shape[1] - 1, -1, -1))))
    pos, inten, seed = pos[order], inten[order], seed[order]
    last = np.ones(len(pos), dtype=bool)
    if len(pos) > 1:
        last[:-1] = np.any(pos[1:] != pos[:-1], axis=1)
    return Modes(pos[last], inten[last], seed[last])


def block_modes(block: SeedBlock, dtype: np.dtype) -> Modes:
    """The distinct modes of one seed block (positions rounded to the working dtype)."""
    return distinct_modes(block.position.astype(dtype), block.intensity, block.seed)


def merge_mode_tables(*tables: Modes) -> Modes:
    """Distinct modes of several sets of seeds (one sort of them all)."""
    return distinct_modes(np.concatenate([t.position for t in tables]), np.concatenate([t.intensity for t in tables]),
                          np.concatenate([t.seed for t in tables]))


@njit(nogil=True, cache=True)
def _greedy_keep(points, perm, start, stop, left, lower, upper, centers, radius2):
    """scikit-learn's de-duplication walk over ``centers`` (in sorted order) with a k-d tree."""
    k, d = centers.shape
    removed = np.zeros(k, dtype=np.bool_)
    keep = np.zeros(k, dtype=np.bool_)
    stack = np.empty(256, np.int64)
    for i in range(k):
        if removed[i]:
            continue
        keep[i] = True
        stack[0] = 0
        top = 1
        while top > 0:
            top -= 1
            node = stack[top]
            if box_gap2(lower, upper, node, centers[i]) > radius2:
                continue
            child = left[node]
            if child >= 0:
                stack[top] = child + 1
                stack[top + 1] = child
                top += 2
                continue
            for r in range(start[node], stop[node]):
                other = perm[r]
                if other <= i or removed[other]:
                    continue
                dist = 0.0
                for j in range(d):
                    t = points[r, j] - centers[i, j]
                    dist += t * t
                if dist <= radius2:
                    removed[other] = True
    return keep


def centers_from_modes(modes: Modes, bandwidth: float) -> np.ndarray:
    """Sort distinct modes as scikit-learn does and de-duplicate them within ``bandwidth``.

    Parameters
    ----------
    modes : Modes
        All distinct final positions with their intensities.
    bandwidth : float
        Merge radius.

    Returns
    -------
    ndarray of shape (n_clusters, d)
        Cluster centers, most populated first, in the positions' dtype.

    Raises
    ------
    ValueError
        When no seed has a result (scikit-learn's message).
    """
    if len(modes.position) == 0:
        raise ValueError(
            "No point was within bandwidth=%f of any seed. Try a different seeding "
            "strategy or increase the bandwidth." % bandwidth
        )
    pos = modes.position
    # Descending by (intensity, x0, x1, ...): lexsort's last key is the primary one.
    order = np.lexsort(tuple(pos[:, j] for j in range(pos.shape[1] - 1, -1, -1)) + (modes.intensity,))[::-1]
    centers = np.ascontiguousarray(pos[order])
    wide = centers.astype(np.float64)
    tree, perm = build_tree(wide, leaf_size=LEAF_SIZE)
    keep = _greedy_keep(tree.points, perm, tree.start, tree.stop, tree.left, tree.lower, tree.upper, wide,
                        float(bandwidth) * float(bandwidth))
    return np.ascontiguousarray(centers[keep])


def merge_modes(position: np.ndarray, intensity: np.ndarray, bandwidth: float) -> np.ndarray:
    """Reduce the seeds' final positions (in seed order) to scikit-learn's ``cluster_centers_``.

    Parameters
    ----------
    position : ndarray of shape (k, d)
        Final mean of each seed.
    intensity : ndarray of shape (k,)
        Points in each seed's last ball; 0 marks a seed without result.
    bandwidth : float
        Merge radius.

    Returns
    -------
    ndarray of shape (n_clusters, d)
    """
    seed = np.arange(len(intensity), dtype=np.int64)
    return centers_from_modes(distinct_modes(np.asarray(position), np.asarray(intensity), seed), bandwidth)


def merge_blocks(blocks: Sequence[Delayed], bandwidth: float, dtype: np.dtype) -> Delayed:
    """Dask driver of the merge: per-block modes where the blocks are, then one task that
    merges them (one sort of all distinct modes, O(k log k)) and finds the centers (lazy).

    Returns
    -------
    Delayed
        Computes to the cluster centers (keep it persisted: labelling uses it where it is).
    """
    tables = [delayed(block_modes, pure=True)(b, dtype) for b in blocks]
    merged = delayed(merge_mode_tables, pure=True)(*tables) if len(tables) > 1 else tables[0]
    return delayed(centers_from_modes, pure=True)(merged, bandwidth)
