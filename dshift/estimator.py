"""``MeanShift`` and ``mean_shift``: scikit-learn's API over dshift's Dask stages.

The fit is a sequence of passes over row chunks:

1. scan (:mod:`dshift.seeding`): rows per chunk, NaN/inf check, grid-bin counts;
2. index (:mod:`dshift.index`): one k-d tree per group of consecutive chunks, persisted
   when it fits (built in the same read as the scan);
3. shift (:mod:`dshift.shifting`): one pass per iteration for all active seeds;
4. merge (:mod:`dshift.merging`): scikit-learn's ordering and de-duplication;
5. assign (:mod:`dshift.assigning`): nearest center per row, lazily for Dask input.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from dask.delayed import Delayed, delayed
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_is_fitted

from dshift import _dask, _input
from dshift.assigning import label_array
from dshift.bandwidth import estimate_bandwidth
from dshift.index import build_group_index
from dshift.merging import merge_blocks
from dshift.seeding import (
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
    # NaN/inf check, grid bins), each chunk's k-d tree (kept when it fits in (cluster)
    # memory or in the workers' spill space, see dshift._dask.should_persist; else rebuilt
    # from the input on every shift pass), the sample that plans the seeds' spatial blocks
    # (every point may end up a seed: bins can fail) and the checks of Dask weights.
    # In-memory input was validated already and needs the scan only for bins.
    chunks, weight_chunks = X.to_delayed().ravel(), weight_blocks(X, weights)
    indexes = [delayed(build_group_index, pure=True)([chunks[i] for i in group], [weight_chunks[i] for i in group])
               for group in _dask.index_groups(X.chunks[0], n_features)]
    kept_trees = not data.lazy or _dask.should_persist(int(n_rows * n_features * 8 * 1.3))
    bin_sizes = tuple(bandwidths[i] for i in binned)
    first = _persist_together({
        "trees": indexes if kept_trees else [],
        "scan": [scan_graph(X, bin_sizes, weights)] if data.lazy or binned else [],
        "samples": point_samples(X, n_rows) if seeds is None else [],
        "checks": _input.weight_checks(weights) if weights is not None else [],
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
        if summaries[0].n_nonfinite:
            raise _input.NonFiniteError.rows(summaries[0].n_nonfinite, summaries[0].n_rows)
        if unknown:
            X = _input.with_row_chunks(X, summaries[0].chunk_rows)
            n_rows = X.shape[0]
            n_positive = n_rows if weights is None else n_positive
        lap("scan")
    if kept_trees:
        _dask.wait(indexes)  # distributed persist returns at once; account the build here
        log.info("index: %d chunk trees built and kept", len(indexes))
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

    climbed = climb_many(indexes, runs, max_iter, data.dtype, n_jobs=n_jobs)
    del indexes
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
    return [FitResult(c, lab, cl.n_iter, bw, n, dict(timings), at)
            for c, lab, cl, (_, bw), n, at in zip(centers, labels, climbed, runs, n_seeds, kept_centers)]


def _persist_together(groups: dict[str, list], n_jobs: int | None) -> dict[str, list]:
    """Persist several lists of lazy results in one go (one read of shared inputs)."""
    kept = iter(_dask.persist(*(x for v in groups.values() for x in v), n_jobs=n_jobs))
    return {name: [next(kept) for _ in values] for name, values in groups.items()}


class MeanShift(ClusterMixin, BaseEstimator):
    """Mean shift clustering with a flat kernel: scikit-learn's results, computed with Dask.

    Same parameters, defaults and fitted attributes as
    ``sklearn.cluster.MeanShift``; the data may be NumPy, pandas, a Dask array or a
    Dask DataFrame (numeric columns), larger than memory. Work runs on the active Dask
    scheduler: the local threaded one, or a ``distributed.Client`` when one is open.

    Parameters
    ----------
    bandwidth : float, default=None
        Radius of the flat kernel. If None, estimated with :func:`estimate_bandwidth`
        (on all rows up to 10,000 rows, on a reproducible 10,000-row sample beyond).
    seeds : array-like of shape (n_seeds, n_features), default=None
        Starting points; if None, the points themselves or their grid bins.
    bin_seeding : bool, default=False
        Seed with the grid bins (of size ``bandwidth``) holding ``min_bin_freq`` points.
    min_bin_freq : int, default=1
        Minimum points in a bin for it to become a seed.
    cluster_all : bool, default=True
        If False, points farther than ``bandwidth`` from every center are labelled -1.
    n_jobs : int, default=None
        Threads of the local threaded scheduler (all cores when None or -1); ignored
        under a distributed Client, whose workers set the parallelism.
    max_iter : int, default=300
        Maximum iterations per seed.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Most populated cluster first; float32 for float32 input, else float64.
    labels_ : ndarray of shape (n_samples,), int64
        Labels of the training points; a lazy Dask array for Dask input.
    n_iter_ : int
        Maximum iterations over seeds.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when the input has string column names.
    bandwidth_ : float
        The bandwidth used (given or estimated). dshift extension.
    n_seeds_ : int
        Number of seeds climbed. dshift extension.
    timings_ : dict
        Seconds per phase of the last fit. dshift extension.
    """

    _parameter_constraints: dict = {
        "bandwidth": [Interval(Real, 0, None, closed="neither"), None],
        "seeds": ["array-like", None],
        "bin_seeding": ["boolean"],
        "min_bin_freq": [Interval(Integral, 1, None, closed="left")],
        "cluster_all": ["boolean"],
        "n_jobs": [Integral, None],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        bandwidth=None,
        seeds=None,
        bin_seeding=False,
        min_bin_freq=1,
        cluster_all=True,
        n_jobs=None,
        max_iter=300,
    ):
        self.bandwidth = bandwidth
        self.seeds = seeds
        self.bin_seeding = bin_seeding
        self.cluster_all = cluster_all
        self.min_bin_freq = min_bin_freq
        self.n_jobs = n_jobs
        self.max_iter = max_iter

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the clusters.

        Parameters
        ----------
        X : array-like, pandas DataFrame, Dask array or Dask DataFrame of shape (n_samples, n_features)
            Samples to cluster; not modified.
        y : Ignored
        sample_weight : array-like, Dask array or Series of shape (n_samples,), or str, default=None
            Non-negative weights (dshift extension; scikit-learn's MeanShift has none). A row
            of integer weight ``w`` counts as ``w`` copies of it: the result equals
            scikit-learn's on ``np.repeat(X, w, axis=0)``. Rows of weight 0 take no part in
            the fit and are still labelled. For a Dask DataFrame, the name of a column.

        Returns
        -------
        self : MeanShift
        """
        data = _input.prepare(self, X, reset=True, sample_weight=sample_weight)
        (result,) = fit_many(
            data,
            bandwidths=[self.bandwidth],
            seeds=self.seeds,
            bin_seeding=self.bin_seeding,
            min_bin_freq=self.min_bin_freq,
            cluster_all=self.cluster_all,
            max_iter=self.max_iter,
            n_jobs=_n_threads(self.n_jobs),
        )
        return self._set_fitted(result)

    def _set_fitted(self, result: FitResult) -> "MeanShift":
        """Take a fit's results as the fitted attributes (``n_features_in_`` and
        ``feature_names_in_`` come from validating the input); a bandwidth sweep builds its
        models this way, without refitting."""
        self.cluster_centers_ = result.cluster_centers
        self.labels_ = result.labels
        self.n_iter_ = result.n_iter
        self.bandwidth_ = result.bandwidth
        self.n_seeds_ = result.n_seeds
        self.timings_ = result.timings
        return self

    def predict(self, X):
        """Index of the nearest cluster center of each sample (never -1).

        Parameters
        ----------
        X : array-like, pandas DataFrame, Dask array or Dask DataFrame of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
            A lazy Dask array for Dask input.
        """
        check_is_fitted(self)
        data = _input.prepare(self, X, reset=False)
        labels = label_array(data.array, self.cluster_centers_, self.bandwidth_, True)
        return labels if data.lazy else _dask.compute(labels, n_jobs=_n_threads(self.n_jobs))[0]


def _n_threads(n_jobs: int | None) -> int | None:
    return None if n_jobs is None or n_jobs < 0 else max(int(n_jobs), 1)


@validate_params(
    {"X": "no_validation", "sample_weight": "no_validation", **MeanShift._parameter_constraints},
    prefer_skip_nested_validation=False,
)
def mean_shift(
    X,
    *,
    bandwidth=None,
    seeds=None,
    bin_seeding=False,
    min_bin_freq=1,
    cluster_all=True,
    max_iter=300,
    n_jobs=None,
    sample_weight=None,
):
    """Perform mean shift clustering with a flat kernel (scikit-learn's ``mean_shift``).

    Parameters
    ----------
    X : array-like, pandas DataFrame, Dask array or Dask DataFrame of shape (n_samples, n_features)
    bandwidth, seeds, bin_seeding, min_bin_freq, cluster_all, max_iter, n_jobs
        As in :class:`MeanShift`.
    sample_weight : array-like of shape (n_samples,), default=None
        As in :meth:`MeanShift.fit`.

    Returns
    -------
    cluster_centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,)
        A lazy Dask array for Dask input.
    """
    model = MeanShift(
        bandwidth=bandwidth,
        seeds=seeds,
        min_bin_freq=min_bin_freq,
        bin_seeding=bin_seeding,
        cluster_all=cluster_all,
        n_jobs=n_jobs,
        max_iter=max_iter,
    ).fit(X, sample_weight=sample_weight)
    return model.cluster_centers_, model.labels_
