"""The engine's driver: a fit as a sequence of passes over row chunks, for one or many bandwidths.

1. scan (:mod:`dshift.seeding`): rows per chunk, NaN/inf check, grid-bin counts;
2. index (:mod:`dshift.forest` over :mod:`dshift.index`): k-d trees over compact regions of
   the rows when they fit in memory; else one per group of consecutive chunks, its points on
   the workers' disks or rebuilt on every pass (built in the same read as the scan);
3. shift (:mod:`dshift.shifting`): one pass per iteration for all active seeds;
4. merge (:mod:`dshift.merging`): scikit-learn's ordering and de-duplication;
5. assign (:mod:`dshift.assigning`): nearest center per row, lazily for Dask input.

:class:`dshift.MeanShift` is scikit-learn's API over :func:`fit_many`; the batch job and
:func:`dshift.bandwidth_sweep` call it directly. No scikit-learn import here: the batch job's
driver starts without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from dask.delayed import Delayed, delayed

from dshift import _dask, _input, forest
from dshift.assigning import add_totals, index_label_totals, label_array, label_totals, shared_center_index
from dshift.bandwidth import estimate_bandwidth
from dshift.merging import merge_blocks
from dshift.seeding import (
    BinSummary,
    bin_seed_blocks,
    bins_fit,
    point_samples,
    point_seed_blocks,
    scan,
    scan_graph,
    summarize_scan,
    weight_blocks,
)
from dshift.shifting import blocks_from_array, climb_many

__all__ = ["FitResult", "fit_many"]

log = logging.getLogger("dshift")


class FitResult(NamedTuple):
    """Everything a fit produces."""

    cluster_centers: np.ndarray
    labels: object  # ndarray, or a lazy dask array for Dask input
    n_iter: int
    bandwidth: float
    n_seeds: int
    timings: dict
    centers_at: Delayed  # the centers, persisted where the merge left them (labelling uses them there)
    sizes: np.ndarray | None = None  # rows (or weight) per label, -1 first: with count_sizes only


def _explicit_seeds(seeds, n_features: int) -> np.ndarray:
    arr = np.asarray(seeds)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValueError(f"seeds must have shape (n_seeds, {n_features}), got {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ValueError("seeds must be finite numbers.")
    if len(arr) == 0:
        raise ValueError("seeds must hold at least one seed.")
    return arr


def fit_many(
    data: _input.Prepared,
    *,
    bandwidths: Sequence[float | None],
    seeds,
    bin_seeding: bool,
    min_bin_freq: int,
    cluster_all: bool,
    max_iter: int,
    n_jobs: int | None,
    on_seeds: Callable[[int, str], None] | None = None,
    first_pass: Sequence[Delayed] = (),
    on_first_pass: Callable[[BinSummary, tuple], None] | None = None,
    count_sizes: bool = False,
) -> list[FitResult]:
    """Fit one model per bandwidth, sharing every pass over the data.

    The first pass reads the data once for all bandwidths (trees, NaN/inf check, one bin
    table per bandwidth); the climbs of all bandwidths advance together, one pass per
    step; each result equals the fit of its bandwidth alone.

    Parameters
    ----------
    data : Prepared
    bandwidths : sequence of float or None
        None is the estimate (:func:`estimate_bandwidth` on the data).
    seeds, bin_seeding, min_bin_freq, cluster_all, max_iter, n_jobs
        As in :class:`MeanShift`.
    on_seeds : callable, optional
        Called as ``on_seeds(n_seeds, source)`` once per bandwidth, in order, when its number
        of seeds is known and before any shifting. ``source`` is ``"seeds"`` (explicit),
        ``"bins"``, ``"points"`` (every row, bin seeding off) or ``"lone-bins"`` (bin seeding
        put every row in a bin of its own, so every row is a seed). The batch job refuses
        runs with too many seeds there; the library never does.
    first_pass : sequence of Delayed
        More lazy results computed in the first pass, for a caller that has work of its own
        on the same chunks of ``data.array`` (read once for everything).
    on_first_pass : callable, optional
        For Dask input: called as ``on_first_pass(scan, values)`` once the first pass is
        done, before its results are used: ``scan`` (a :class:`~dshift.seeding.BinSummary`)
        has the rows per chunk and the count of rows with NaN/inf, ``values`` the computed
        ``first_pass``. It may raise to stop the fit.
    count_sizes : bool
        Also count every result's cluster sizes (``FitResult.sizes``, a ``sweep_sizes``
        timing): for Dask input from the kept trees, all bandwidths in one pass without
        reading the data again (from the data when the trees were not kept).

    Returns
    -------
    list of FitResult
        In the order of ``bandwidths``; ``timings`` are those of the shared passes.
    """
    X = data.array
    unknown = _input.lengths_unknown(X)  # the first pass counts the rows
    n_rows, n_features = (data.n_rows_hint if unknown else X.shape[0]), X.shape[1]
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = timings.get(phase, 0.0) + now - clock
        clock = now

    weights = data.weights
    if any(b is None for b in bandwidths):
        local = data.local_weights if data.local_weights is not None else weights
        try:
            estimate = estimate_bandwidth(X if data.lazy else data.local, n_jobs=n_jobs,
                                          sample_weight=None if weights is None else local)
        except _input.NonFiniteError:  # seen in the sample: count the bad rows for the message
            result = scan(X, n_jobs=n_jobs)
            raise _input.NonFiniteError.rows(result.n_nonfinite, result.n_rows) from None
        log.info("bandwidth estimated: %.6g", estimate)
        bandwidths = [estimate if b is None else b for b in bandwidths]
        lap("bandwidth")
    # The bandwidth object itself sizes the bins: NumPy's promotion of float32 data by a
    # Python float or an np.float64 decides the bins' and seeds' dtype, as in scikit-learn.
    binned = [i for i, b in enumerate(bandwidths) if bin_seeding and seeds is None and float(b) > 0]
    # Pass 1 reads the chunks once for everything that needs the data: the scan (row count,
    # NaN/inf check, grid bins), each chunk's k-d tree (kept in (cluster) memory when it fits,
    # else with its points on the workers' disks, see dshift._dask.persist_where; else rebuilt
    # from the input on every shift pass), the sample that plans the seeds' spatial blocks
    # (every point may end up a seed: bins can fail) and the checks of Dask weights.
    # In-memory input was validated already and needs the scan only for bins.
    where = _dask.persist_where(int(n_rows * n_features * 8 * 1.3)) if data.lazy else "memory"
    kept_trees = where is not None
    groups = _dask.index_groups(_dask.chunk_rows(X.chunks[0], n_rows), n_features)
    # Trees over compact regions where all rows fit in memory: a ball then meets few trees.
    # Dask input gets as many regions as it has groups of chunks (every tree is a task per
    # seed block and pass, and its partial sums, so more would cost where seeds are many);
    # in-memory input a few per thread (a thread queries its share of them in one task).
    # Larger Dask input streams: a tree per group of consecutive chunks.
    if data.lazy and where == "memory":
        indexes = forest.region_indexes(X, weights, n_rows, len(groups))
    elif data.lazy:
        indexes = forest.group_indexes(X, weights, groups, where == "disk")
    else:
        indexes = forest.piece_indexes(data.local, data.local_weights, len(groups))
    bin_sizes = tuple(bandwidths[i] for i in binned)
    first = _persist_together({
        "trees": indexes if kept_trees else [],
        "scan": [scan_graph(X, bin_sizes, weights)] if data.lazy or binned else [],
        "samples": point_samples(X, n_rows) if seeds is None else [],
        "checks": _input.weight_checks(weights) if weights is not None else [],
        "extra": list(first_pass),
    }, n_jobs)
    indexes = first["trees"] or indexes
    samples = list(_dask.compute(*first["samples"], n_jobs=n_jobs))
    if first["checks"]:
        n_nan, n_inf, n_negative, n_positive = _dask.compute(*first["checks"], n_jobs=n_jobs)
        if not data.weights_checked:
            _input.check_weights(n_nan, n_inf, n_negative, n_positive)
    else:
        n_positive = n_rows
    summaries = []
    if first["scan"]:
        (scanned,) = first["scan"]
        summaries = list(_dask.compute(*(delayed(summarize_scan, pure=True)(scanned, min_bin_freq, j)
                                         for j in range(max(len(binned), 1))), n_jobs=n_jobs))
        if on_first_pass is not None:
            on_first_pass(summaries[0], _dask.compute(*first["extra"], n_jobs=n_jobs))
        if summaries[0].n_nonfinite:
            raise _input.NonFiniteError.rows(summaries[0].n_nonfinite, summaries[0].n_rows)
        if unknown:
            X = _input.with_row_chunks(X, summaries[0].chunk_rows)
            n_rows = X.shape[0]
            n_positive = n_rows if weights is None else n_positive
        lap("scan")
    if kept_trees:
        _dask.wait(indexes)  # distributed persist returns at once; account the build here
        log.info("index: %d trees built and kept (%s)", len(indexes),
                 "over compact regions, in memory" if where == "memory" else
                 "over groups of row chunks, their points on local disk")
    else:
        log.info("index: %d chunks re-read and re-indexed on every pass", len(indexes))
    lap("index")

    runs, n_seeds = [], []
    for i, bandwidth in enumerate(bandwidths):
        if seeds is not None:
            explicit = _explicit_seeds(seeds, n_features)
            blocks, count, source = blocks_from_array(explicit), len(explicit), "seeds"
        elif i in binned and bins_fit(summaries[binned.index(i)], bandwidth, min_bin_freq):
            j = binned.index(i)
            blocks = bin_seed_blocks(scanned, j, summaries[j].n_kept, bandwidth, min_bin_freq, n_jobs=n_jobs)
            count, source = summaries[j].n_kept, "bins"
        else:  # every point (of positive weight) is a seed
            blocks, count = point_seed_blocks(X, samples, int(n_positive), weights), int(n_positive)
            source = "lone-bins" if i in binned else "points"
        log.info("seeding: %s seeds from %s rows (%s)%s", f"{count:,}", f"{n_rows:,}", source,
                 f", bandwidth {float(bandwidth):.4g}" if len(bandwidths) > 1 else "")
        if on_seeds is not None:
            on_seeds(count, source)
        runs.append((blocks, float(bandwidth)))
        n_seeds.append(count)
    lap("seeding")

    # A task per block and share: a share is one tree of Dask input, or a thread's pieces of
    # in-memory input, taken in turn so that every share spans the whole space (pieces of
    # unequal cost even out; a task per piece cost ~1 ms of scheduling each).
    n_shares = len(indexes) if data.lazy else min(_dask.n_cores(), len(indexes))
    climbed = climb_many([indexes[t::n_shares] for t in range(n_shares)], runs, max_iter, data.dtype, n_jobs=n_jobs)
    trees = indexes if count_sizes and data.lazy and kept_trees else None  # the sizes' pass reads them
    del indexes  # released on the workers as soon as nothing else needs them
    lap("shift")
    kept_centers = list(_dask.persist(*(merge_blocks(c.blocks, bw, data.dtype)
                                        for c, (_, bw) in zip(climbed, runs)), n_jobs=n_jobs))
    centers = _dask.compute(*kept_centers, n_jobs=n_jobs)
    lap("merge")
    for c, (_, bw) in zip(centers, runs):
        log.info("merge: %s clusters%s", f"{len(c):,}", f" (bandwidth {bw:.4g})" if len(runs) > 1 else "")

    labels = [label_array(X, at, bw, cluster_all) for at, (_, bw) in zip(kept_centers, runs)]
    if not data.lazy:
        labels = list(_dask.compute(*labels, n_jobs=n_jobs))
        lap("assign")
    sizes: list = [None] * len(runs)
    if count_sizes:
        sizes = _cluster_sizes(data, labels, trees,
                               [(at, bw, len(c)) for at, c, (_, bw) in zip(kept_centers, centers, runs)],
                               cluster_all, n_jobs)
        lap("sweep_sizes")
    return [FitResult(c, lab, cl.n_iter, bw, n, dict(timings), at, size)
            for c, lab, cl, (_, bw), n, at, size in zip(centers, labels, climbed, runs, n_seeds, kept_centers, sizes)]


def _cluster_sizes(data: _input.Prepared, labels: list, trees: list | None, models: list[tuple],
                   cluster_all: bool, n_jobs: int | None) -> list[np.ndarray]:
    """Every model's cluster sizes (see :func:`dshift.assigning.add_totals`): from in-memory
    labels where they are, else from the kept trees (no read), else from the lazy labels (one
    read of the data for all models)."""
    weighted = data.weights is not None
    if not data.lazy:
        return [add_totals([label_totals(lab, data.local_weights, k)], k, weighted)
                for lab, (_, _, k) in zip(labels, models)]
    if trees is not None:
        parts = [[delayed(index_label_totals, pure=True)(tree, shared_center_index(at), bw, cluster_all, k)
                  for tree in trees] for at, bw, k in models]
    else:
        parts = [[delayed(label_totals, pure=True)(c, w, k)
                  for c, w in zip(lab.to_delayed().ravel(), weight_blocks(lab, data.weights))]
                 for lab, (_, _, k) in zip(labels, models)]
    totals = _dask.compute(*parts, n_jobs=n_jobs)
    return [add_totals(pieces, k, weighted) for pieces, (_, _, k) in zip(totals, models)]


def _persist_together(groups: dict[str, list], n_jobs: int | None) -> dict[str, list]:
    """Persist several lists of lazy results in one go (one read of shared inputs)."""
    kept = iter(_dask.persist(*(x for v in groups.values() for x in v), n_jobs=n_jobs))
    return {name: [next(kept) for _ in values] for name, values in groups.items()}


def _n_threads(n_jobs: int | None) -> int | None:
    return None if n_jobs is None or n_jobs < 0 else max(int(n_jobs), 1)
