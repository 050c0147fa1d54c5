"""``MeanShift`` and ``mean_shift``: scikit-learn's API over dshift's engine (:mod:`dshift.engine`)."""

from __future__ import annotations

from numbers import Integral, Real

from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_is_fitted

from dshift import _dask, _input
from dshift.assigning import label_array
from dshift.engine import FitResult, _n_threads, fit_many


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
