"""Thin Dask plumbing shared by the stage drivers: reductions, scheduling, memory policy."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import dask
import numpy as np
import psutil
from dask.delayed import Delayed, delayed

log = logging.getLogger("dshift")

SPLIT_EVERY = 8
"""Fan-in of tree reductions: a few levels even for thousands of chunks."""

DEFAULT_CHUNK_BYTES = 64 * 2**20
"""Target size of a row chunk built from in-memory input (Dask's guidance is ~100 MB;
smaller chunks keep both cores busy on mid-sized data)."""

MIN_CHUNK_ROWS = 4096

DEFAULTS = {
    "persist": "auto",
    "chunk-bytes": DEFAULT_CHUNK_BYTES,
    # Seeds per block: big enough that a block's partial sums amortise a task, small
    # enough that a pass over a million seeds keeps every core busy and reports progress.
    "seed-block-size": 65_536,
    # Seconds between progress lines while a long pass runs.
    "progress-interval": 10.0,
    # Most bytes of points one spatial index holds: consecutive row chunks share an index up
    # to this size (fewer, larger trees cost less per seed and pass), one index per thread
    # at least.
    "index-bytes": 64 * 2**20,  # 128 MiB: shift passes ~10 % faster, peaks ~0.3 GiB higher at 10M rows
    # Uncompressed bytes of a Parquet input's partition (dask's blocksize, files aggregated):
    # a big file's row groups are split over several, consecutive small files share one.
    "partition-bytes": 16 * 2**20,
}
dask.config.update_defaults({"dshift": DEFAULTS})


def config_get(key: str) -> Any:
    """A ``dshift.*`` setting from Dask's configuration (``DASK_DSHIFT__...`` in the environment)."""
    return dask.config.get(f"dshift.{key}", DEFAULTS[key])


def tree_reduce(parts: Sequence[Delayed], combine: Callable[[Any, Any], Any]) -> Delayed:
    """Combine delayed partial results pairwise-by-groups into one, in order.

    Parameters
    ----------
    parts : sequence of Delayed
        Partial results, in chunk order (order is kept, so reductions are deterministic).
    combine : callable
        ``combine(a, b)`` for two partials.

    Returns
    -------
    Delayed
        The combined result.
    """
    level = list(parts)
    if not level:
        raise ValueError("tree_reduce needs at least one part")
    while len(level) > 1:  # ``combine`` as an argument: a module function tokenizes by name, a closure by pickling
        level = [
            delayed(_fold, pure=True)(combine, *level[i : i + SPLIT_EVERY])
            for i in range(0, len(level), SPLIT_EVERY)
        ]
    return level[0]


def _fold(combine: Callable[[Any, Any], Any], *xs: Any) -> Any:
    acc = xs[0]
    for x in xs[1:]:
        acc = combine(acc, x)
    return acc


def active_client():
    """The distributed Client in use, or None when Dask runs on a local scheduler."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def compute(*args: Any, n_jobs: int | None = None) -> tuple:
    """``dask.compute`` honouring scikit-learn's ``n_jobs`` on the local threaded scheduler."""
    if n_jobs is not None and n_jobs > 0 and active_client() is None:
        return dask.compute(*args, num_workers=n_jobs)
    return dask.compute(*args)


def persist(*args: Any, n_jobs: int | None = None) -> tuple:
    """``dask.persist`` with the same scheduling rule as :func:`compute`."""
    if n_jobs is not None and n_jobs > 0 and active_client() is None:
        return dask.persist(*args, num_workers=n_jobs)
    return dask.persist(*args)


def start_persist(objs: Sequence[Delayed]) -> list[Delayed] | None:
    """Start persisting ``objs`` on the cluster and return at once (None on a local
    scheduler, which computes only when :func:`persist_with_progress` is called).

    Returns
    -------
    list of Delayed or None
        The persisted objects, in order, their results still to come; later work may be
        built on them before they are done.
    """
    client = active_client()
    return None if client is None else client.persist(list(objs))


def persist_with_progress(
    objs: Sequence[Delayed], what: str, *, unit: str, count: int, fetch: int = 0, n_jobs: int | None = None,
    started: list[Delayed] | None = None,
) -> tuple[list[Delayed], list[Any]]:
    """Persist ``objs`` and log ``what: i/count unit done`` while it takes long.

    The first ``count`` objects are the ones counted. A line goes to the ``dshift`` logger
    every ``dshift.progress-interval`` seconds until all of them are in memory, so a long
    pass is never silent. On a distributed cluster this returns when the results are on the
    workers (not merely scheduled).

    Parameters
    ----------
    fetch : int
        The last ``fetch`` objects are small results wanted on the driver: their values are
        returned instead (on a local scheduler in the same run as the others, which spares a
        run of the scheduler per call).
    started : list of Delayed, optional
        What :func:`start_persist` returned for ``objs``: wait for those instead of
        submitting ``objs`` again.

    Returns
    -------
    kept : list of Delayed
        The first ``len(objs) - fetch`` objects persisted, in order.
    values : list
        The values of the last ``fetch`` objects.
    """
    import threading

    interval = float(config_get("progress-interval"))
    counted = {o.key for o in objs[:count]}
    finished: set = set()
    start = time.perf_counter()
    n_kept = len(objs) - fetch

    def report() -> None:
        log.info("%s: %d/%d %s done, %.0f s", what, len(finished), count, unit, time.perf_counter() - start)

    client = active_client()
    if client is not None:
        from distributed import futures_of, wait as wait_futures

        kept = client.persist(list(objs)) if started is None else started
        futures = [f for o in kept[:count] for f in futures_of(o)]
        while True:
            try:
                wait_futures(futures, timeout=interval)
                return kept[:n_kept], list(compute(*kept[n_kept:]))
            except TimeoutError:
                finished.update(f.key for f in futures if f.done())
                report()

    from dask.callbacks import Callback

    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(interval):
            report()

    thread = threading.Thread(target=ticker, name="dshift-progress", daemon=True)
    with Callback(posttask=lambda key, *_: finished.add(key) if key in counted else None):
        thread.start()
        try:
            values = compute(*objs, n_jobs=n_jobs)
        finally:
            stop.set()
            thread.join()
    # What dask.persist makes of a local result: the value under its own key.
    return [Delayed(o.key, {o.key: v}) for o, v in zip(objs[:n_kept], values)], list(values[n_kept:])


def wait(collections: Sequence[Any]) -> None:
    """Block until persisted collections are in memory (a no-op on local schedulers,
    whose persist already blocks), so phase timings mean what they say."""
    client = active_client()
    if client is not None:
        from distributed import futures_of, wait as wait_futures

        wait_futures(futures_of(list(collections)))


def available_memory() -> int:
    """Bytes the scheduler in use can hold: free worker memory, or free RAM locally."""
    client = active_client()
    if client is None:
        return int(psutil.virtual_memory().available)
    total = 0
    for info in client.scheduler_info(n_workers=-1)["workers"].values():
        limit = info.get("memory_limit") or psutil.virtual_memory().total
        used = info.get("metrics", {}).get("memory", 0)
        total += max(int(limit * 0.6) - int(used), 0)  # workers spill at 70% of their limit
    return total


def _disk_room() -> int:
    """Free local disk where indexes would be stored (:mod:`dshift._mapped`): the workers'
    local directories on a cluster, the temporary directory locally."""
    from dshift._mapped import local_directory

    client = active_client()
    if client is None:
        return shutil.disk_usage(local_directory()).free

    def probe(dask_worker) -> int:
        return shutil.disk_usage(dask_worker.local_directory).free

    room = list(client.run(probe).values())
    return min(room) * len(room) if room else 0


def persist_where(nbytes: int) -> str | None:
    """Apply the ``dshift.persist`` setting (``"auto"``, True or False) to indexes of ``nbytes``:
    where to keep them, ``"memory"``, ``"disk"`` or None (rebuilt from the input on every pass).

    ``auto`` keeps them in memory when they take at most half the free memory; else on the
    workers' local disks (the points in nameless files a pass maps, see :mod:`dshift._mapped`)
    when every worker has room for twice its share: a pass reads only the leaves it needs,
    from the page cache, far faster than re-reading and re-indexing the input. Lost pieces
    are recomputed from lineage like any persisted data. True keeps them somewhere always.
    """
    setting = config_get("persist")
    if isinstance(setting, str):
        setting = setting.lower()
        if setting not in ("auto", "true", "false"):
            raise ValueError(f"dshift.persist must be 'auto', true or false, got {setting!r}")
        setting = {"auto": None, "true": True, "false": False}[setting]
    if setting is False:
        return None
    if nbytes <= available_memory() // 2:
        return "memory"
    if _disk_room() >= 2 * nbytes:
        return "disk"
    return "memory" if setting else None


def n_cores() -> int:
    """Threads available to the scheduler in use."""
    client = active_client()
    if client is not None:
        return max(sum(w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()), 1)
    return max(psutil.cpu_count() or 1, 1)


def worker_slots() -> list[str]:
    """The distributed cluster's workers, one entry per thread, taking the workers in turn
    (``[a, b, a, b]`` for two workers of two threads); empty on a local scheduler."""
    client = active_client()
    if client is None:
        return []
    workers = client.scheduler_info(n_workers=-1)["workers"]
    threads = {address: int(info["nthreads"]) for address, info in sorted(workers.items())}
    return [a for t in range(max(threads.values(), default=0)) for a, n in threads.items() if t < n]


def preferring(slots: Sequence[str], i: int):
    """Context in which new tasks prefer worker ``slots[i % len(slots)]`` (a loose
    restriction: any worker runs them if that one is gone); no preference without slots.

    Dask places a task that needs every chunk's share on whichever worker its estimate
    favours, and at 10M rows it put three or four of four region trees on one of two
    workers: the build, and every pass's queries of those trees, ran on one core.
    """
    if not slots:
        return contextlib.nullcontext()
    return dask.annotate(workers=[slots[i % len(slots)]], allow_other_workers=True)


def auto_chunk_rows(n_rows: int, n_features: int, itemsize: int = 8) -> int:
    """Rows per chunk for in-memory input: about ``dshift.chunk-bytes``, and at least one
    chunk per core once the data is large enough to be worth splitting."""
    target = int(config_get("chunk-bytes"))
    rows = max(target // max(n_features * itemsize, 1), 1)
    if n_rows >= 2 * MIN_CHUNK_ROWS:
        rows = min(rows, max(math.ceil(n_rows / n_cores()), MIN_CHUNK_ROWS))
    return int(max(min(rows, n_rows), 1))


def index_groups(chunks: Sequence[float], n_features: int) -> list[list[int]]:
    """Consecutive row chunks that share one spatial index: at most ``dshift.index-bytes`` of
    float64 points each (a larger chunk is an index of its own), at least one index per thread
    of the scheduler (for parallel passes), never more indexes than chunks.

    Parameters
    ----------
    chunks : sequence of float
        Rows per chunk (estimates while their lengths are unknown, see :func:`chunk_rows`).

    Returns
    -------
    list of list of int
        Chunk numbers of each index, in order, the rows shared out about equally.
    """
    rows = np.asarray(chunks, dtype=np.float64)
    per_index = max(int(config_get("index-bytes")) // (8 * max(n_features, 1)), 1)
    n_groups = max(min(max(n_cores(), math.ceil(rows.sum() / per_index)), len(rows)), 1)
    while True:  # equal shares cut at chunk boundaries can overshoot the cap: cut finer
        groups = _equal_shares(rows, n_groups)
        if n_groups >= len(rows) or all(len(g) == 1 or rows[g].sum() <= per_index for g in groups):
            return groups
        n_groups += 1


def chunk_rows(chunks: Sequence[float], n_rows: int) -> list[float]:
    """Rows per chunk; while their lengths are unknown (NaN), an equal share of ``n_rows`` each."""
    if any(math.isnan(c) for c in chunks):
        return [n_rows / max(len(chunks), 1)] * len(chunks)
    return list(chunks)


def _equal_shares(rows: np.ndarray, n_groups: int) -> list[list[int]]:
    """``n_groups`` runs of consecutive chunks holding about equal shares of the rows."""
    bounds = np.searchsorted(np.cumsum(rows), np.linspace(0, rows.sum(), n_groups + 1)[1:-1], side="left") + 1
    cuts = [0, *sorted(set(int(b) for b in bounds if 0 < b < len(rows))), len(rows)]
    return [list(range(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]


def chunk_offsets(chunks: Sequence[int]) -> np.ndarray:
    """Global index of the first row of each chunk."""
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
