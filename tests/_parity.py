"""Shared helpers for dshift's engine tests: scikit-learn parity and brute-force references.

Nothing here is a fixture of ``conftest.py`` (owned elsewhere); test modules import it as
``from tests._parity import ...`` or ``from _parity import ...``.
"""

from __future__ import annotations

import math

import numpy as np
import sklearn
from sklearn.cluster import MeanShift as SkMeanShift
from sklearn.datasets import make_blobs

LABEL_AGREEMENT = 0.9999
CENTER_TOL = 1e-3  # times the bandwidth

#: max |center deviation| of every parity comparison made in this process (name -> value)
DEVIATIONS: dict[str, float] = {}


def fast_sklearn():
    """scikit-learn spends most of a mean shift fit validating its 1-row queries.

    Skipping validation does not change any number (the data is finite); it only makes
    the reference fits 2x faster. Never use it in tests of error behaviour.
    """
    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


def sk_fit(X, **params) -> SkMeanShift:
    """scikit-learn's MeanShift fitted on ``X`` (the reference)."""
    with fast_sklearn():
        return SkMeanShift(**params).fit(X)


def blobs(n=200, d=2, centers=3, std=0.8, seed=0, dtype=np.float64):
    X, _ = make_blobs(n_samples=n, n_features=d, centers=centers, cluster_std=std, random_state=seed)
    return X.astype(dtype)


def as_numpy(a):
    """Compute a Dask array (lazy labels); pass NumPy through."""
    return np.asarray(a.compute() if hasattr(a, "compute") else a)


def assert_same_clustering(sk_model, ds_model, bandwidth, *, name: str | None = None, check_dtype=True) -> float:
    """Parity as ``meanshift-semantics.md`` defines it; returns the max center deviation.

    Same number of clusters, same order, centers within 1e-3 * bandwidth, labels identical
    for >= 99.99% of the points, ``n_iter_`` within +-1.
    """
    sk_c = np.asarray(sk_model.cluster_centers_)
    ds_c = np.asarray(ds_model.cluster_centers_)
    assert ds_c.shape == sk_c.shape, f"cluster count/shape differs: sklearn {sk_c.shape}, dshift {ds_c.shape}\n{sk_c}\n{ds_c}"
    if check_dtype:
        assert ds_c.dtype == sk_c.dtype, (sk_c.dtype, ds_c.dtype)
    dev = float(np.max(np.abs(sk_c.astype(np.float64) - ds_c.astype(np.float64)))) if sk_c.size else 0.0
    if name:
        DEVIATIONS[name] = dev
    assert dev <= CENTER_TOL * bandwidth, f"max center deviation {dev:.3g} > {CENTER_TOL} * bandwidth={bandwidth}"
    sk_l = as_numpy(sk_model.labels_)
    ds_l = as_numpy(ds_model.labels_)
    assert ds_l.shape == sk_l.shape
    assert ds_l.dtype == np.int64
    agree = float(np.mean(sk_l == ds_l)) if len(sk_l) else 1.0
    assert agree >= LABEL_AGREEMENT, f"labels agree on {agree:.6%} only ({int(np.sum(sk_l != ds_l))} differ)"
    assert abs(int(sk_model.n_iter_) - int(ds_model.n_iter_)) <= 1, (sk_model.n_iter_, ds_model.n_iter_)
    return dev


def assert_identical(a, b):
    """Two dshift fits (e.g. two chunkings / schedulers) with bit-identical results."""
    assert a.cluster_centers_.dtype == b.cluster_centers_.dtype
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_), (a.cluster_centers_, b.cluster_centers_)
    la, lb = as_numpy(a.labels_), as_numpy(b.labels_)
    assert la.dtype == lb.dtype == np.int64
    assert np.array_equal(la, lb)
    assert a.n_iter_ == b.n_iter_
    assert a.bandwidth_ == b.bandwidth_


# ---------------------------------------------------------------- brute-force references


def sq_dist(X, m):
    """Squared distances of the rows of ``X`` to ``m``, summed in coordinate order in float64
    (the per-point test scikit-learn's k-d tree and dshift apply)."""
    X = np.asarray(X, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    acc = np.zeros(len(X))
    for j in range(X.shape[1]):
        t = X[:, j] - m[j]
        acc = acc + t * t
    return acc


def brute_ball(X, m, bandwidth):
    """Boolean mask of the rows within ``bandwidth`` of ``m`` (boundary included)."""
    return sq_dist(X, m) <= float(bandwidth) * float(bandwidth)


def exact_sum(rows):
    """Correctly rounded coordinate sums (math.fsum per column)."""
    rows = np.asarray(rows, dtype=np.float64)
    d = rows.shape[1] if rows.ndim == 2 else 0
    return np.array([math.fsum(rows[:, j]) for j in range(d)])


def reference_climb(X, seed, bandwidth, max_iter, dtype=np.float64):
    """scikit-learn's ``_mean_shift_single_seed`` with a brute-force ball and correctly
    rounded means. Returns (final mean, intensity, completed iterations)."""
    X = np.asarray(X, dtype=np.float64)
    stop = 1e-3 * bandwidth
    m = np.asarray(seed, dtype=np.float64)
    done = 0
    while True:
        inside = brute_ball(X, m, bandwidth)
        n_in = int(inside.sum())
        if n_in == 0:
            break
        old = m
        m = (exact_sum(X[inside]) / n_in).astype(dtype).astype(np.float64)
        if np.linalg.norm(m - old) <= stop or done == max_iter:
            break
        done += 1
    return m, n_in, done


def reference_merge(position, intensity, bandwidth):
    """scikit-learn's post-processing written out in Python (dict, sort, greedy de-dup)."""
    table = {}
    for p, i in zip(np.asarray(position), np.asarray(intensity)):
        if i:
            table[tuple(p.tolist())] = i
    if not table:
        raise ValueError("No point was within bandwidth")
    ordered = sorted(table.items(), key=lambda t: (t[1], t[0]), reverse=True)
    centers = np.array([t[0] for t in ordered], dtype=np.float64)
    keep = np.ones(len(centers), dtype=bool)
    for i, c in enumerate(centers):
        if keep[i]:
            near = np.sqrt(sq_dist(centers, c)) <= bandwidth
            keep[near] = False
            keep[i] = True
    return centers[keep]


def reference_labels(X, centers, bandwidth, cluster_all):
    """Nearest center (ties to the lower index); -1 beyond bandwidth unless cluster_all."""
    d2 = np.stack([sq_dist(X, c) for c in np.asarray(centers)], axis=1)
    labels = np.argmin(d2, axis=1).astype(np.int64)
    if not cluster_all:
        labels[np.sqrt(d2[np.arange(len(X)), labels]) > bandwidth] = -1
    return labels


def reference_bins(X, bin_size):
    """Python dict of sklearn's get_bin_seeds: bin tuple -> (count, first row), insertion-ordered."""
    table: dict = {}
    for i, point in enumerate(np.asarray(X)):
        key = tuple(np.round(point / bin_size).tolist())
        cnt, first = table.get(key, (0, i))
        table[key] = (cnt + 1, first)
    return table


# ---------------------------------------------------------------- weighted references


def reference_weighted_fit(X, w, bandwidth, max_iter=300):
    """Mean shift with weights written out with exact fractions: every row of positive
    weight a seed, means ``sum(w * p) / sum(w)`` over the ball (both sums correctly
    rounded, then divided, as a mean of floats is), intensities the ball's weight, then
    scikit-learn's merge. Returns the cluster centers (float64)."""
    from fractions import Fraction

    X = np.asarray(X, dtype=np.float64)
    wf = [Fraction(v) for v in np.asarray(w, dtype=np.float64)]
    stop = 1e-3 * bandwidth
    positions, intensities = [], []
    for seed in X[np.asarray(w) > 0]:
        m, done = seed, 0
        while True:
            inside = np.flatnonzero(brute_ball(X, m, bandwidth))
            mass = sum((wf[i] for i in inside), Fraction(0))
            if mass == 0:
                break
            old = m
            m = np.array([float(sum((wf[i] * Fraction(X[i, j]) for i in inside), Fraction(0))) / float(mass)
                          for j in range(X.shape[1])])
            if np.linalg.norm(m - old) <= stop or done == max_iter:
                break
            done += 1
        positions.append(m)
        intensities.append(float(mass))
    return reference_merge(np.array(positions), np.array(intensities), bandwidth)


def ball_sums_count(index, centers, bandwidth):
    """:func:`dshift.ballsums.ball_sums` as (count, s, c): the mass column of unit weights is the point count."""
    from dshift.ballsums import ball_sums

    s, c = ball_sums(index, centers, bandwidth)
    assert s.shape == c.shape and np.all(c[:, -1] == 0)  # counts are exact
    return s[:, -1].astype(np.int64), s[:, :-1], c[:, :-1]


def check_ball_sums(X, centers, bandwidth, leaf_size):
    """Ball sums of an index over ``X`` against brute force: counts equal, sums correctly rounded."""
    from dshift.index import build_index

    ix = build_index(X, leaf_size=leaf_size)
    count, s, c = ball_sums_count(ix, centers, bandwidth)
    assert count.dtype == np.int64 and count.shape == (len(centers),)
    assert s.shape == c.shape == (len(centers), X.shape[1])
    for q, m in enumerate(np.asarray(centers, dtype=np.float64)):
        inside = brute_ball(X, m, bandwidth)
        assert count[q] == inside.sum(), (q, count[q], inside.sum())
        # compensated sum rounds to the correctly rounded sum
        np.testing.assert_array_equal(s[q] + c[q], exact_sum(X[inside]) if inside.any() else np.zeros(X.shape[1]))
    return count
