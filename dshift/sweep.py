"""Bandwidth sweeps: one exact fit per bandwidth in one job, a table, and a suggested bandwidth.

The bandwidth is the one decision mean shift leaves to its user. The expensive parts of a fit
do not depend on it: :func:`dshift.engine.fit_many` reads and indexes the data once for all
bandwidths and climbs their seeds together, one pass per step, each result equal to the
separate fit of its bandwidth. This module turns those results into a table (clusters, seeds,
iterations, cluster shares per bandwidth) and suggests a bandwidth with :func:`select_bandwidth`.

The rule
--------
Real cluster structure persists over a range of bandwidths, while spurious modes appear and
merge as the bandwidth changes a little (mean shift finds the modes of a kernel density
estimate; a mode's "lifetime" across scales is the classic measure of its significance). So
the rule looks for the widest *stable range*: a run of consecutive swept bandwidths that give
the same number of clusters, its width measured on a log scale (``log(last / first)``, so the
choice does not depend on the data's units). Two ends are stable trivially and are left out:
one cluster (every bandwidth above the data's diameter gives it) and about one cluster per point
(more than half as many clusters as points: every bandwidth below the smallest distance between
points gives it). Ties go to the run with more swept bandwidths, then to the run of larger
bandwidths (a smoother density estimate, the coarser and cheaper clustering). The suggestion is
the run's swept bandwidth nearest to its middle on a log scale (the larger of two equally near),
the bandwidth farthest from both ends of the range, where clusters would split or merge.

When no two neighbouring bandwidths agree, the suggestion is the swept bandwidth nearest to the
log-middle of those giving between 2 clusters and half as many clusters as points (sweep more
finely around it). When none does, it is the smallest bandwidth giving one cluster, or, if every
bandwidth gives about one cluster per point, the largest swept one; the reason says which range
to sweep instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, validate_params

from dshift import _input
from dshift.bandwidth import bandwidth_estimator
from dshift.engine import FitResult, _n_threads, fit_many
from dshift.estimator import MeanShift

__all__ = ["BandwidthSweep", "Choice", "bandwidth_sweep", "select_bandwidth", "order_bandwidths", "summarize"]

log = logging.getLogger("dshift")

MAX_CLUSTERS_PER_POINT = 0.5
"""Above this many clusters per point a bandwidth gives "about one cluster per point"."""

_LOG_TOLERANCE = 1e-9  # log-scale widths and distances this close are equal (rounding of the logs)

TABLE_COLUMNS = ["bandwidth", "n_clusters", "n_iter", "n_seeds", "largest_cluster_share", "outlier_share"]


class Choice(NamedTuple):
    """A suggested bandwidth: its row in the sweep's table, its value, and why."""

    index: int
    bandwidth: float
    reason: str
    stable: tuple[int, int] | None = None  # first and last row of the widest stable range, if any


@dataclass
class BandwidthSweep:
    """The result of :func:`bandwidth_sweep`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per bandwidth, increasing: ``bandwidth``, ``quantile`` (when the sweep was
        given quantiles), ``n_clusters``, ``n_iter``, ``n_seeds``, ``largest_cluster_share``
        and ``outlier_share`` (the fraction of the rows, or of the weight with
        ``sample_weight``, in the most populated cluster, and labelled -1; outliers exist
        only with ``cluster_all=False``).
    models : list of MeanShift
        Fitted models in the table's order, each equal to ``MeanShift(bandwidth=b, ...).fit(X)``.
    chosen : float
        The suggested bandwidth (:func:`select_bandwidth`), one of the swept ones.
    chosen_index : int
        Its row in ``table`` and ``models``.
    reason : str
        Why it was suggested.
    """

    table: pd.DataFrame
    models: list
    chosen: float
    chosen_index: int
    reason: str

    @property
    def chosen_model(self) -> MeanShift:
        """The fitted model of the suggested bandwidth."""
        return self.models[self.chosen_index]


@validate_params(
    {
        "X": "no_validation",
        "bandwidths": ["array-like", None],
        "quantiles": ["array-like", None],
        "n_samples": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "sample_weight": "no_validation",
        **{k: v for k, v in MeanShift._parameter_constraints.items() if k != "bandwidth"},
    },
    prefer_skip_nested_validation=True,
)
def bandwidth_sweep(
    X,
    bandwidths=None,
    *,
    quantiles=None,
    n_samples=None,
    random_state=0,
    seeds=None,
    bin_seeding=False,
    min_bin_freq=1,
    cluster_all=True,
    max_iter=300,
    n_jobs=None,
    sample_weight=None,
) -> BandwidthSweep:
    """Fit mean shift for several bandwidths at once and suggest one.

    The data are read and indexed once; the climbs of all bandwidths share every pass. Each
    bandwidth's model is identical to ``MeanShift(bandwidth=b, seeds=..., ...).fit(X)`` (and so
    to scikit-learn's): same centers, order, labels and ``n_iter_``.

    Parameters
    ----------
    X : array-like, pandas DataFrame, Dask array or Dask DataFrame of shape (n_samples, n_features)
        Samples to cluster; not modified.
    bandwidths : array-like of float, optional
        The bandwidths (finite, > 0), each used as ``MeanShift(bandwidth=b)`` would use it;
        duplicates count once. Give exactly one of ``bandwidths`` and ``quantiles``.
    quantiles : array-like of float, optional
        Quantiles in (0, 1]; each becomes ``estimate_bandwidth(X, quantile=q,
        n_samples=n_samples, random_state=random_state)``, all from one sample of the rows
        (fetched once). Quantiles giving the same bandwidth count once (the smallest is
        kept in the table).
    n_samples, random_state
        The sample for ``quantiles``, as in :func:`dshift.estimate_bandwidth`.
    seeds, bin_seeding, min_bin_freq, cluster_all, max_iter, n_jobs
        As in :class:`dshift.MeanShift`, the same for every bandwidth.
    sample_weight : array-like, Dask array or Series of shape (n_samples,), or str, optional
        As in :meth:`dshift.MeanShift.fit`; the table's shares are then shares of the weight.

    Returns
    -------
    BandwidthSweep
        ``table``, ``models``, ``chosen`` (see :func:`select_bandwidth`), ``chosen_index``,
        ``reason``. For Dask input the shares are counted from the fit's trees (every
        bandwidth in one pass, no read of the data when the trees were kept; the labels
        stay lazy).

    Raises
    ------
    ValueError
        Bad parameters or input, as :class:`dshift.MeanShift` raises them; a quantile whose
        bandwidth is 0; or the error a separate fit of some bandwidth would raise.
    """
    template = MeanShift(seeds=seeds, bin_seeding=bin_seeding, min_bin_freq=min_bin_freq, cluster_all=cluster_all,
                         n_jobs=n_jobs, max_iter=max_iter)
    if (bandwidths is None) == (quantiles is None):
        raise ValueError("Give exactly one of bandwidths and quantiles.")
    given = _positive_values(bandwidths if quantiles is None else quantiles,
                             "bandwidths" if quantiles is None else "quantiles", quantile=quantiles is not None)
    data = _input.prepare(template, X, reset=True, sample_weight=sample_weight)
    # Weights where the engine keeps them: NumPy for in-memory input, else Dask.
    weights = data.local_weights if data.local_weights is not None else data.weights
    if quantiles is not None:  # as fit_many estimates a bandwidth: the validated rows and weights
        estimate = bandwidth_estimator(data.array if data.lazy else data.local, n_samples=n_samples,
                                       random_state=random_state, sample_weight=weights)
        swept, qs = order_bandwidths([_nonzero_estimate(estimate, q) for q in given], given)
    else:
        swept, qs = order_bandwidths(given)
    log.info("sweep: %d bandwidths from %.4g to %.4g", len(swept), swept[0], swept[-1])
    results = fit_many(data, bandwidths=swept, seeds=seeds, bin_seeding=bin_seeding, min_bin_freq=min_bin_freq,
                       cluster_all=cluster_all, max_iter=max_iter, n_jobs=_n_threads(n_jobs), count_sizes=True)
    table, choice = summarize(results, n_points=int(data.array.shape[0]), weighted=weights is not None,
                              quantiles=qs)
    params = template.get_params()
    models = []
    for b, result in zip(swept, results):
        model = MeanShift(**{**params, "bandwidth": b})
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(template, name):
                setattr(model, name, getattr(template, name))
        models.append(model._set_fitted(result))
    return BandwidthSweep(table, models, choice.bandwidth, choice.index, choice.reason)


def _positive_values(values, what: str, *, quantile: bool) -> list:
    """The swept values as given (their types kept: they size the bins as MeanShift's would)."""
    items = list(values)
    if not items:
        raise ValueError(f"{what} must hold at least one value.")
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or not v > 0 or (quantile and v > 1):
            bound = "in (0, 1]" if quantile else "> 0"
            raise ValueError(f"{what}[{i}] must be a finite number {bound}, got {v!r}.")
    return items


def _nonzero_estimate(estimate: Callable[[float], np.float64], quantile) -> np.float64:
    bandwidth = estimate(quantile)
    if not bandwidth > 0:
        raise ValueError(f"quantile {float(quantile):g} gives the bandwidth {float(bandwidth):g} (the sampled rows "
                         "are too often identical); use larger quantiles.")
    return bandwidth


def order_bandwidths(bandwidths: Sequence, quantiles: Sequence | None = None) -> tuple[list, list | None]:
    """Sort bandwidths increasingly and drop repeats (the first of equals is kept).

    Parameters
    ----------
    bandwidths : sequence of numbers
        Kept as they are (a Python float and an ``np.float64`` size float32 bins differently).
    quantiles : sequence of float, optional
        The quantile each bandwidth was estimated from, reordered alongside.

    Returns
    -------
    bandwidths : list
    quantiles : list or None
    """
    order = sorted(range(len(bandwidths)), key=lambda i: (float(bandwidths[i]), i))
    kept = [i for j, i in enumerate(order) if j == 0 or float(bandwidths[i]) != float(bandwidths[order[j - 1]])]
    return [bandwidths[i] for i in kept], None if quantiles is None else [quantiles[i] for i in kept]


def summarize(
    results: Sequence[FitResult],
    *,
    n_points: int,
    weighted: bool = False,
    quantiles: Sequence[float] | None = None,
) -> tuple[pd.DataFrame, Choice]:
    """The sweep's table and the suggested bandwidth, logged one line per bandwidth.

    Parameters
    ----------
    results : sequence of FitResult
        One per bandwidth, in increasing order of bandwidth, with their cluster sizes
        (:func:`dshift.engine.fit_many` with ``count_sizes``).
    n_points : int
        Rows fitted (for "about one cluster per point").
    weighted : bool
        The sizes are of weight: the log says so.
    quantiles : sequence of float, optional
        The quantile of each bandwidth: adds a ``quantile`` column.

    Returns
    -------
    table : pandas.DataFrame
        Columns :data:`TABLE_COLUMNS` (and ``quantile`` after ``bandwidth``).
    choice : Choice
    """
    sizes = [r.sizes for r in results]
    table = pd.DataFrame({
        "bandwidth": [float(r.bandwidth) for r in results],
        "n_clusters": [len(r.cluster_centers) for r in results],
        "n_iter": [int(r.n_iter) for r in results],
        "n_seeds": [int(r.n_seeds) for r in results],
        "largest_cluster_share": [float(s[1:].max() / s.sum()) for s in sizes],
        "outlier_share": [float(s[0] / s.sum()) for s in sizes],
    })
    if quantiles is not None:
        table.insert(1, "quantile", [float(q) for q in quantiles])
    choice = select_bandwidth(table["bandwidth"].tolist(), table["n_clusters"].tolist(), n_points)
    for row in table.itertuples():
        log.info("sweep: bandwidth %.4g: %s cluster%s (largest %.1f%% of the %s), %s seeds, %d iterations%s",
                 row.bandwidth, f"{row.n_clusters:,}", "" if row.n_clusters == 1 else "s",
                 100 * row.largest_cluster_share, "weight" if weighted else "rows", f"{row.n_seeds:,}",
                 row.n_iter, f", outliers {100 * row.outlier_share:.1f}%" if row.outlier_share else "")
    log.info("sweep: suggested bandwidth %.4g: %s", choice.bandwidth, choice.reason)
    return table, choice


def select_bandwidth(bandwidths: Sequence[float], n_clusters: Sequence[int], n_points: int) -> Choice:
    """Suggest one of the swept bandwidths: the middle of the widest stable range (see the module).

    Parameters
    ----------
    bandwidths : sequence of float
        Strictly increasing.
    n_clusters : sequence of int
        Clusters found at each bandwidth.
    n_points : int
        Rows fitted: more than ``MAX_CLUSTERS_PER_POINT * n_points`` clusters is "about one
        cluster per point".

    Returns
    -------
    Choice
    """
    b = [float(x) for x in bandwidths]
    c = [int(x) for x in n_clusters]
    if not b or len(b) != len(c) or any(y <= x for x, y in zip(b, b[1:])):
        raise ValueError("bandwidths must be strictly increasing, one number of clusters each.")
    logs = [math.log(x) for x in b]
    ok = [2 <= k <= MAX_CLUSTERS_PER_POINT * n_points for k in c]
    runs, start = [], 0  # maximal (first, last) runs of informative bandwidths with equal counts
    for i in range(1, len(b) + 1):
        if i == len(b) or c[i] != c[start] or not ok[i]:
            if ok[start]:
                runs.append((start, i - 1))
            start = i
    widest = max((logs[last] - logs[first] for first, last in runs), default=0.0)
    if widest > _LOG_TOLERANCE:
        # widest (within rounding), then most bandwidths, then the larger bandwidths
        first, last = max((r for r in runs if logs[r[1]] - logs[r[0]] >= widest - _LOG_TOLERANCE),
                          key=lambda r: (r[1] - r[0], r[0]))
        i = _nearest_middle(logs, range(first, last + 1))
        return Choice(i, b[i], (
            f"{c[i]:,} clusters at every swept bandwidth from {b[first]:.4g} to {b[last]:.4g} ({last - first + 1} "
            f"of {len(b)}, a factor {b[last] / b[first]:.3g}): the widest range giving the same number of "
            f"clusters, leaving out 1 cluster and about one cluster per point; {b[i]:.4g} is the swept bandwidth "
            "nearest its middle on a log scale, the farthest from where clusters split or merge"), (first, last))
    informative = [i for i in range(len(b)) if ok[i]]
    if informative:
        i = _nearest_middle(logs, informative)
        return Choice(i, b[i], (
            f"no two neighbouring swept bandwidths give the same number of clusters (no stable range); {b[i]:.4g} is "
            f"the log-middle of the {len(informative)} giving 2 to {int(MAX_CLUSTERS_PER_POINT * n_points):,} "
            "clusters: sweep more finely around it"))
    many = [i for i in range(len(b)) if c[i] > 1]
    single = [i for i in range(len(b)) if c[i] <= 1]
    if single:
        i = single[0]
        below = f"between {b[many[-1]]:.4g} and {b[i]:.4g}" if many else f"below {b[i]:.4g}"
        return Choice(i, b[i], (
            f"no swept bandwidth gives between 2 clusters and about one cluster per point; {b[i]:.4g} is the "
            f"smallest giving 1 cluster: sweep bandwidths {below}"))
    i = len(b) - 1
    return Choice(i, b[i], (
        f"every swept bandwidth gives about one cluster per point (more than {MAX_CLUSTERS_PER_POINT:g} per "
        f"point); {b[i]:.4g} is the largest: sweep bandwidths above it"))


def _nearest_middle(logs: list[float], candidates: Sequence[int]) -> int:
    """The candidate nearest to the middle of the candidates' log range (the larger of equals)."""
    middle = (logs[candidates[0]] + logs[candidates[-1]]) / 2
    best = min(abs(logs[i] - middle) for i in candidates)
    return max(i for i in candidates if abs(logs[i] - middle) <= best + _LOG_TOLERANCE)
