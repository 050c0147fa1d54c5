"""Shifting stage: every seed climbs one step per pass; seeds live in blocks on the workers.

The seeds form a partitioned collection of :class:`SeedBlock` objects, each a few
thousand to tens of thousands of seeds, held by the Dask workers (persisted between
passes; built there from the data, the bin table or, for explicit seeds, an array).
One pass is, for every block that still has climbing seeds::

    query   = block_query(block)                     # its distinct active positions
    partial = block_sums(query, share) per share     # count and compensated sum per ball
                                                     # (a share: one index per group of row
                                                     # chunks, or, for in-memory input, a
                                                     # thread's spatial pieces)
    total   = tree reduction of the partials         # on the workers
    block   = advance(block, query, total)           # scikit-learn's per-seed rule

and the driver only learns a :class:`BlockSummary` per block (active seeds, largest
shift), never a seed. scikit-learn's rule per seed (see ``meanshift-semantics.md``)::

    ball empty at the first step  -> the seed yields nothing
    old = m ; m = mean(ball(old))
    stop when |m - old| <= 1e-3 * bandwidth or the seed has done max_iter steps

All seeds advance in lock step, so every active seed has done the same number of steps;
seeds of a block that reach the bit-identical position have identical futures and are
queried once. Lost workers are harmless: every block is recomputed from its lineage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from collections.abc import Sequence
from typing import NamedTuple

import dask
import numpy as np
from dask.delayed import Delayed, delayed

from dshift import _compensated, _dask, partition
from dshift.ballsums import ball_sums, group_seeds
from dshift.index import ChunkIndex

log = logging.getLogger("dshift")


class SeedBlock(NamedTuple):
    """A slice of the seeds and the state of their climbs (plain NumPy, picklable)."""

    seed: np.ndarray  # (k,) int64 global seed numbers (scikit-learn's seed order)
    position: np.ndarray  # (k, d) float64: current mean while active, final mean after
    intensity: np.ndarray  # (k,) float64 mass (points, or weight) in the last ball; 0 = no result (yet)
    done: np.ndarray  # (k,) int64 completed steps
    active: np.ndarray  # (k,) bool, still climbing
    largest_shift: float  # of the last step, over the seeds that had a ball
    n_queried: int  # distinct positions queried in the last step


class Query(NamedTuple):
    """The distinct positions of a block's active seeds, grouped for shared traversals."""

    centers: np.ndarray  # (u, d) float64
    inverse: np.ndarray  # (n_active,) row of ``centers`` of each active seed, in seed order
    groups: tuple[np.ndarray, np.ndarray]  # (order, bounds) from :func:`group_seeds`


class BlockSummary(NamedTuple):
    """What the driver learns of a block after a pass."""

    n_seeds: int
    n_active: int
    n_queried: int
    largest_shift: float
    n_iter: int  # max completed steps of its finished seeds


class ClimbResult(NamedTuple):
    """Outcome of the climbs: final blocks (lazy or persisted) and scikit-learn's n_iter_."""

    blocks: list[Delayed]
    n_iter: int
    n_seeds: int


# ------------------------------------------------------------------------- per-block work


def new_block(seeds: np.ndarray, ids: np.ndarray) -> SeedBlock:
    """The state of seeds that have not moved yet.

    Parameters
    ----------
    seeds : ndarray of shape (k, d)
        Starting points (any real dtype; climbed in float64).
    ids : ndarray of shape (k,)
        Their global seed numbers.

    Returns
    -------
    SeedBlock
    """
    k = len(seeds)
    return SeedBlock(
        seed=np.asarray(ids, dtype=np.int64),
        position=np.array(seeds, dtype=np.float64, order="C", copy=True),
        intensity=np.zeros(k),
        done=np.zeros(k, dtype=np.int64),
        active=np.ones(k, dtype=bool),
        largest_shift=0.0,
        n_queried=0,
    )


def block_from_shares(*shares: tuple[np.ndarray, np.ndarray]) -> SeedBlock:
    """A block from the ``(seeds, ids)`` shares of one spatial cell (see :mod:`dshift.partition`)."""
    return new_block(np.concatenate([s for s, _ in shares]), np.concatenate([i for _, i in shares]))


def block_query(block: SeedBlock, bandwidth: float) -> Query:
    """The positions one pass must query for a block (identical positions once)."""
    current = block.position[block.active]
    # np.unique(axis=0)'s result (rows in lexicographic order), from a plain lexsort: 40 % faster
    order = np.lexsort(current.T[::-1])
    ranked = current[order]
    first = np.ones(len(ranked), dtype=bool)
    np.any(ranked[1:] != ranked[:-1], axis=1, out=first[1:])
    inverse = np.empty(len(current), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    centers = np.ascontiguousarray(ranked[first])
    return Query(centers, inverse, group_seeds(centers, bandwidth))


def block_sums(query: Query, bandwidth: float, *indexes: ChunkIndex) -> tuple[np.ndarray, np.ndarray]:
    """The partial ball sums of a block's query over one or more indexes (see
    :func:`dshift.ballsums.ball_sums`), combined."""
    total = None
    for index in indexes:
        part = ball_sums(index, query.centers, bandwidth, query.groups)
        total = part if total is None else _compensated.combine(total, part)
    return total


def advance(
    block: SeedBlock,
    query: Query,
    totals: tuple[np.ndarray, np.ndarray],
    bandwidth: float,
    step: int,
    max_iter: int,
    dtype: np.dtype,
) -> SeedBlock:
    """Apply one step of scikit-learn's rule to every active seed of a block.

    Parameters
    ----------
    block : SeedBlock
    query : Query
        From :func:`block_query` on ``block``.
    totals : tuple of ndarray
        Compensated ``(s, c)`` of ``(w * p, w)`` over all chunks for ``query.centers``.
    bandwidth : float
    step : int
        Steps every active seed has completed before this one.
    max_iter : int
    dtype : numpy dtype
        Working dtype: means are rounded to it, as scikit-learn's ``np.mean`` of float32
        data yields float32.

    Returns
    -------
    SeedBlock
        A new block (the input is not modified).
    """
    total = _compensated.finish(*totals)
    count = total[:, -1]  # the mass: points, or their weight
    found = count > 0
    mean = np.zeros_like(query.centers)
    mean[found] = (total[found, :-1] / count[found, None]).astype(dtype)
    shift = np.linalg.norm(mean - query.centers, axis=1)
    finished = ~found | (shift <= 1e-3 * bandwidth) | (step == max_iter)

    seeds = np.flatnonzero(block.active)
    position, intensity = block.position.copy(), block.intensity.copy()
    done, active = block.done.copy(), block.active.copy()
    position[seeds] = mean[query.inverse]
    ended = seeds[finished[query.inverse]]
    intensity[ended] = count[query.inverse][finished[query.inverse]]
    done[ended] = step
    active[ended] = False
    return SeedBlock(block.seed, position, intensity, done, active,
                     float(shift[found].max(initial=0.0)), len(query.centers))


def summarize(block: SeedBlock) -> BlockSummary:
    """The per-pass numbers the driver keeps for a block."""
    ended = ~block.active
    return BlockSummary(
        n_seeds=len(block.active),
        n_active=int(np.count_nonzero(block.active)),
        n_queried=block.n_queried,
        largest_shift=block.largest_shift,
        n_iter=int(block.done[ended].max(initial=0)),
    )


# ------------------------------------------------------------------------------ building blocks


def blocks_from_array(seeds: np.ndarray) -> list[Delayed]:
    """Seed blocks from seeds held by the driver (explicit seeds), cut spatially.

    Parameters
    ----------
    seeds : ndarray of shape (k, d)

    Returns
    -------
    list of Delayed
        Each computes to a :class:`SeedBlock`.
    """
    n_cells = partition.n_cells_for(len(seeds))
    cells = partition.plan(partition.strided_sample(seeds, partition.sample_size(n_cells)), n_cells)
    shares = partition.split(seeds, np.arange(len(seeds), dtype=np.int64), cells)
    return [delayed(new_block, pure=True)(s, i) for s, i in shares if len(i)]


# ------------------------------------------------------------------------------ the driver


def climb(
    indexes: Sequence[Delayed],
    blocks: Sequence[Delayed],
    bandwidth: float,
    max_iter: int,
    dtype: np.dtype,
    n_jobs: int | None = None,
) -> ClimbResult:
    """Dask driver of the shifting stage: passes until no seed climbs.

    Parameters
    ----------
    indexes : sequence of Delayed
        One :class:`~dshift.index.ChunkIndex` per row chunk (persisted or lazy).
    blocks : sequence of Delayed
        The seed blocks (:class:`SeedBlock`).
    bandwidth : float
        Ball radius (>= 0).
    max_iter : int
        Maximum steps per seed after the first update (scikit-learn's meaning).
    dtype : numpy dtype
        Working dtype (see :func:`advance`).
    n_jobs : int, optional
        Threads for the local scheduler.

    Returns
    -------
    ClimbResult
        The final blocks stay where they are (persisted on the workers).
    """
    return climb_many([[ix] for ix in indexes], [(blocks, bandwidth)], max_iter, dtype, n_jobs)[0]


def climb_many(
    shares: Sequence[Sequence[Delayed]],
    runs: Sequence[tuple[Sequence[Delayed], float]],
    max_iter: int,
    dtype: np.dtype,
    n_jobs: int | None = None,
) -> list[ClimbResult]:
    """The climbs of several bandwidths over the same chunks, sharing every pass.

    Parameters
    ----------
    shares : sequence of sequences of Delayed
        :class:`~dshift.index.ChunkIndex` objects, in shares that one task per block
        queries together (every index in exactly one share).
    runs : sequence of (blocks, bandwidth)
        Each run's seed blocks and its ball radius. All runs advance in lock step, so a
        pass reads each chunk's index once for all of them.
    max_iter, dtype, n_jobs
        As in :func:`climb`.

    Returns
    -------
    list of ClimbResult
        One per run, in order.
    """
    owner = [r for r, (blocks, _) in enumerate(runs) for _ in blocks]
    radius = [runs[r][1] for r in owner]
    blocks = [b for run_blocks, _ in runs for b in run_blocks]
    seeded = _Pass.start(list(range(len(blocks))), blocks).wait("seeding", n_jobs)
    blocks = [block for block, _ in seeded.values()]  # in block order, as started
    summaries = [summary for _, summary in seeded.values()]
    # On a cluster the next pass is started before this one's summaries reach the driver, on
    # its results still to come: the driver's round trip between passes is hidden. A block
    # whose seeds all finish in this pass has nothing to query in the next; that pass's
    # result for it is dropped unused.
    ahead = _dask.active_client() is not None

    def start(live: list[int], base: Sequence[Delayed] | dict[int, Delayed], step: int) -> _Pass:
        stepped = []
        for b in live:
            query = delayed(block_query, pure=True)(base[b], radius[b])
            parts = []
            for t, share in enumerate(shares):
                # Every other pass visits the trees in reverse order, so a pass starts with the
                # trees the last one used: when they spill to the workers' disks, a pass in the
                # same order would find every tree evicted (the spill is least recently used).
                with dask.annotate(priority=t if step % 2 else -t):
                    parts.append(delayed(block_sums, pure=True)(query, radius[b], *share))
            totals = _dask.tree_reduce(parts, _compensated.combine)
            stepped.append(delayed(advance, pure=True)(base[b], query, totals, radius[b], step, max_iter, dtype))
        return _Pass.start(live, stepped)

    live = [b for b, s in enumerate(summaries) if s.n_active]
    pending, step = (start(live, blocks, 0) if live else None), 0
    while pending is not None:
        t0 = time.perf_counter()
        before = {b: summaries[b].n_active for b in live}
        following = start(live, pending.handles(), step + 1) if ahead else None
        what = f"shift iteration {step} ({sum(before.values()):,} seeds in {len(live)} blocks)"
        for b, (block, summary) in pending.wait(what, n_jobs).items():
            blocks[b], summaries[b] = block, summary
        for r, (_, bandwidth) in enumerate(runs):
            mine = [b for b in live if owner[b] == r]
            if mine:
                log.info(
                    "shift iteration %d%s: %s climbing seeds (%s distinct), largest shift %.3g, %.2fs",
                    step, f" (bandwidth {bandwidth:.4g})" if len(runs) > 1 else "",
                    f"{sum(before[b] for b in mine):,}",
                    f"{sum(summaries[b].n_queried for b in mine):,}",
                    max(summaries[b].largest_shift for b in mine), time.perf_counter() - t0,
                )
        live = [b for b in live if summaries[b].n_active]
        step += 1
        if not live:
            break
        pending = following.only(live) if following is not None else start(live, blocks, step)
    return [
        ClimbResult([blocks[b] for b in range(len(blocks)) if owner[b] == r],
                    max((summaries[b].n_iter for b in range(len(blocks)) if owner[b] == r), default=0),
                    sum(summaries[b].n_seeds for b in range(len(blocks)) if owner[b] == r))
        for r in range(len(runs))
    ]


@dataclass
class _Pass:
    """One pass's new blocks, then their summaries, for the blocks numbered ``live``; started on
    a cluster when made (:func:`dshift._dask.start_persist`), on a local scheduler when waited for."""

    live: list[int]
    objs: list[Delayed]
    started: list[Delayed] | None

    @classmethod
    def start(cls, live: list[int], stepped: list[Delayed]) -> _Pass:
        objs = [*stepped, *(delayed(summarize, pure=True)(b) for b in stepped)]
        return cls(live, objs, _dask.start_persist(objs))

    def handles(self) -> dict[int, Delayed]:
        """Block number -> its new block, persisted on the cluster (results may be still to come)."""
        return dict(zip(self.live, self.started))

    def only(self, live: list[int]) -> _Pass:
        """This pass for some of its blocks (dropped, the others' results are released)."""
        at = {b: i for i, b in enumerate(self.live)}
        n, keep = len(self.live), [at[b] for b in live]
        pick = [*keep, *(n + i for i in keep)]
        return _Pass(live, [self.objs[i] for i in pick],
                     None if self.started is None else [self.started[i] for i in pick])

    def wait(self, what: str, n_jobs: int | None) -> dict[int, tuple[Delayed, BlockSummary]]:
        """Block until the pass is done; per block number, ``(new block persisted, summary)``."""
        n = len(self.live)
        kept, summaries = _dask.persist_with_progress(self.objs, what, unit="seed blocks", count=n, fetch=n,
                                                      n_jobs=n_jobs, started=self.started)
        return dict(zip(self.live, zip(kept, summaries)))
