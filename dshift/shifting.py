"""Shifting stage: every active seed climbs one step per pass over the chunks.

Per pass, each chunk's index returns, per seed, the count and compensated coordinate
sum of its points within ``bandwidth``; the partials are tree-reduced and the driver
applies scikit-learn's per-seed rule (see ``meanshift-semantics.md``)::

    ball empty at the first step  -> the seed yields nothing
    old = m ; m = mean(ball(old))
    stop when |m - old| <= 1e-3 * bandwidth or the seed has done max_iter steps

All seeds advance in lock step, so every active seed has done the same number of
steps; seeds that reach the bit-identical position therefore have identical futures
and are queried once (they are "collapsed"). Converged seeds leave the pass. Seeds
travel as task arguments; the data stays where it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from dask.delayed import Delayed, delayed

from dshift import _compensated, _dask
from dshift.index import ball_sums, group_seeds

log = logging.getLogger("dshift")


class Climb(NamedTuple):
    """Outcome of every seed's climb, in seed order."""

    position: np.ndarray  # (k, d) final mean, in the working dtype
    intensity: np.ndarray  # (k,) points in the last ball (around the second-to-last mean); 0 = no result
    n_iter: int  # max over seeds of completed steps (scikit-learn's n_iter_)


def _unique_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(x, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _pass(indexes: Sequence[Delayed], centers: np.ndarray, bandwidth: float, n_jobs: int | None):
    """Count and compensated sum within bandwidth of each center, over all chunks."""
    # One key each: shipped once per worker and recomputable from lineage (not scattered).
    centers_d = delayed(centers, pure=True)
    groups_d = delayed(group_seeds(centers, bandwidth), pure=True)
    parts = [delayed(ball_sums, pure=True)(ix, centers_d, bandwidth, groups_d) for ix in indexes]
    (total,) = _dask.compute(_dask.tree_reduce(parts, _compensated.combine), n_jobs=n_jobs)
    return total


def climb(
    indexes: Sequence[Delayed],
    seeds: np.ndarray,
    bandwidth: float,
    max_iter: int,
    dtype: np.dtype,
    n_jobs: int | None = None,
) -> Climb:
    """Dask driver of the shifting stage.

    Parameters
    ----------
    indexes : sequence of Delayed
        One :class:`~dshift.index.ChunkIndex` per row chunk (persisted or lazy).
    seeds : ndarray of shape (k, d)
        Starting points.
    bandwidth : float
        Ball radius (>= 0).
    max_iter : int
        Maximum steps per seed after the first update (scikit-learn's meaning).
    dtype : numpy dtype
        Working dtype: means are rounded to it after every step, as scikit-learn's
        ``np.mean`` of float32 data yields float32.
    n_jobs : int, optional
        Threads for the local scheduler.

    Returns
    -------
    Climb
    """
    k, d = seeds.shape
    stop_thresh = 1e-3 * bandwidth
    position = np.zeros((k, d), dtype=dtype)
    intensity = np.zeros(k, dtype=np.int64)
    done = np.zeros(k, dtype=np.int64)
    # Seeds starting at the same point share one climb from the start.
    active, group = _unique_rows(np.asarray(seeds, dtype=np.float64))
    step = 0
    while len(active):
        t0 = time.perf_counter()
        count, s, c = _pass(indexes, active, bandwidth, n_jobs)
        found = count > 0
        mean = np.zeros_like(active)
        mean[found] = (_compensated.finish(s[found], c[found]) / count[found, None]).astype(dtype)
        shift = np.linalg.norm(mean - active, axis=1)
        finished = ~found | (shift <= stop_thresh) | (step == max_iter)
        # Record finished groups for all their seeds; an empty first ball leaves intensity 0.
        seed_finished = np.zeros(len(group), dtype=bool)
        live = group >= 0
        seed_finished[live] = finished[group[live]]
        g = group[seed_finished]
        position[seed_finished] = mean[g]
        intensity[seed_finished] = count[g]
        done[seed_finished] = step
        log.info(
            "shift iteration %d: %d active seeds (%d distinct), largest shift %.3g, %.2fs",
            step,
            int(np.count_nonzero(live)),
            len(active),
            float(shift[found].max(initial=0.0)),
            time.perf_counter() - t0,
        )
        # Continue with the rest; seeds now at identical positions merge.
        group[seed_finished] = -1
        going = ~finished
        renumber = np.full(len(active), -1, dtype=np.int64)
        active, inverse = _unique_rows(mean[going])
        renumber[going] = inverse
        live = group >= 0
        group[live] = renumber[group[live]]
        active = active.astype(np.float64)
        step += 1
    return Climb(position, intensity, int(done.max(initial=0)))
