"""dshift.estimate_bandwidth vs scikit-learn, and its sampling."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import sklearn.cluster as skc

import dshift
from _parity import blobs
from dshift import bandwidth as bw_mod
from dshift.bandwidth import kth_neighbour_mean, sample_rows


def _brute_kth_mean(x, quantile):
    x = np.asarray(x, dtype=np.float64)
    k = max(int(len(x) * quantile), 1)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return np.sort(d, axis=1)[:, k - 1].mean()


@pytest.mark.parametrize("quantile", [0.0, 1e-4, 0.05, 0.3, 0.49, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("d", [1, 3])
def test_matches_sklearn_all_rows(quantile, d):
    X = blobs(600, d, 3, 1.0, seed=d)
    sk = skc.estimate_bandwidth(X, quantile=quantile)
    ds = dshift.estimate_bandwidth(X, quantile=quantile)
    assert isinstance(ds, float)
    if quantile < 0.5:  # sklearn's k-d tree: same distances, same batched sums -> equal
        assert ds == sk
    else:  # sklearn switches to brute force (dot-product distances)
        assert ds == pytest.approx(sk, rel=1e-12)


def test_tiny_quantile_gives_zero():
    X = blobs(50, 2, 2, 1.0, seed=1)
    assert dshift.estimate_bandwidth(X, quantile=0.001) == 0.0 == skc.estimate_bandwidth(X, quantile=0.001)
    assert dshift.estimate_bandwidth(X, quantile=0.0) == 0.0


@pytest.mark.parametrize("n_samples, random_state", [(1, 0), (50, 0), (200, 7), (599, 3), (10_000, 0)])
def test_matches_sklearn_n_samples(n_samples, random_state):
    X = blobs(600, 2, 3, 1.0, seed=4)
    sk = skc.estimate_bandwidth(X, n_samples=n_samples, random_state=random_state)
    assert dshift.estimate_bandwidth(X, n_samples=n_samples, random_state=random_state) == sk
    rs_sk, rs_ds = np.random.RandomState(random_state), np.random.RandomState(random_state)
    assert dshift.estimate_bandwidth(X, n_samples=n_samples, random_state=rs_ds) == skc.estimate_bandwidth(
        X, n_samples=n_samples, random_state=rs_sk
    )


def test_float32_int_and_pandas_input():
    X = blobs(300, 2, 3, 1.0, seed=5)
    for data in (X.astype(np.float32), np.round(X * 4).astype(np.int64), pd.DataFrame(X, columns=["a", "b"])):
        assert dshift.estimate_bandwidth(data) == skc.estimate_bandwidth(data)


def test_kth_neighbour_mean_vs_brute():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(120, 3))
    for q in (0.0, 0.1, 0.5, 1.0):
        assert kth_neighbour_mean(x, q) == pytest.approx(_brute_kth_mean(x, q), rel=1e-13)
    dup = np.vstack([x[:10]] * 4)
    assert kth_neighbour_mean(dup, 0.1) == 0.0  # k = 4: every row has 4 identical copies


def test_constant_data_is_zero():
    assert dshift.estimate_bandwidth(np.full((30, 2), 7.3)) == 0.0
    assert dshift.estimate_bandwidth(np.array([[1.0, 2.0]])) == 0.0


def test_sample_rows_is_sklearn_permutation():
    for n, m, rs in ((10, 3, 0), (1000, 1000, 5), (1000, 5000, 1)):
        np.testing.assert_array_equal(sample_rows(n, m, rs), np.random.RandomState(rs).permutation(n)[:m])


def test_sample_rows_huge_n_distinct_and_reproducible():
    big = bw_mod.PERMUTATION_ROWS + 1
    a = sample_rows(big, 1000, 3)
    assert len(a) == 1000 and len(np.unique(a)) == 1000
    assert a.min() >= 0 and a.max() < big
    np.testing.assert_array_equal(a, sample_rows(big, 1000, 3))
    assert not np.array_equal(a, sample_rows(big, 1000, 4))


def test_more_than_max_exact_rows_uses_sklearn_sample(monkeypatch):
    # Cheap version of the 10,000-row rule (the real size is covered in test_estimator).
    monkeypatch.setattr(bw_mod, "MAX_EXACT_ROWS", 300)
    X = blobs(700, 2, 3, 1.0, seed=6)
    assert dshift.estimate_bandwidth(X) == skc.estimate_bandwidth(X, n_samples=300, random_state=0)
    X = X[:300]
    assert dshift.estimate_bandwidth(X) == skc.estimate_bandwidth(X)


@pytest.mark.parametrize("rows", [7, 100, 700])
def test_dask_input_uses_the_same_sample(rows):
    X = blobs(700, 2, 3, 1.0, seed=7)
    dX = da.from_array(X, chunks=(rows, 2))
    ref = skc.estimate_bandwidth(X, n_samples=250, random_state=2)
    assert dshift.estimate_bandwidth(dX, n_samples=250, random_state=2) == ref
    ddf = dd.from_pandas(pd.DataFrame(X, columns=["a", "b"]), npartitions=3)
    assert dshift.estimate_bandwidth(ddf, n_samples=250, random_state=2) == ref
    # n_samples=None on Dask input: a 10,000-row sample, i.e. all 700 rows permuted
    full = dshift.estimate_bandwidth(dX)
    assert full == skc.estimate_bandwidth(X, n_samples=10_000, random_state=0)
    assert full == pytest.approx(skc.estimate_bandwidth(X), rel=1e-12)


def test_input_not_modified():
    X = blobs(200, 2, 3, 1.0, seed=8)
    before = X.copy()
    X.setflags(write=False)
    dshift.estimate_bandwidth(X, n_samples=100)
    dshift.estimate_bandwidth(X)
    np.testing.assert_array_equal(X, before)


def test_errors():
    X = blobs(50, 2, 2, 1.0, seed=9)
    for q in (-0.1, 1.5):
        with pytest.raises(ValueError, match="quantile"):
            dshift.estimate_bandwidth(X, quantile=q)
    for n in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_samples"):
            dshift.estimate_bandwidth(X, n_samples=n)
    Xn = X.copy()
    Xn[4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dshift.estimate_bandwidth(Xn)
    with pytest.raises(ValueError, match="NaN or infinity"):
        dshift.estimate_bandwidth(da.from_array(Xn, chunks=(10, 2)))


# ---------------------------------------------------------------- sample weights


@pytest.mark.parametrize("quantile", [0.0, 0.1, 0.3, 0.7, 1.0])
def test_integer_weights_equal_sklearn_on_repeated_rows(quantile):
    X = blobs(300, 2, 3, 1.0, seed=11)
    w = np.random.RandomState(0).randint(0, 5, size=300)
    rep = np.repeat(X, w, axis=0)
    assert len(rep) <= 10_000
    want = skc.estimate_bandwidth(rep, quantile=quantile)
    assert dshift.estimate_bandwidth(X, quantile=quantile, sample_weight=w) == want


def test_integer_weights_sampled_like_sklearn_on_repeated_rows():
    X = blobs(500, 2, 3, 1.0, seed=12)
    w = np.random.RandomState(1).randint(0, 60, size=500)  # ~15,000 repeated rows
    rep = np.repeat(X, w, axis=0)
    for n_samples in (300, None):  # None: dshift's 10,000-row sample of the repeated rows
        got = dshift.estimate_bandwidth(X, quantile=0.2, n_samples=n_samples, sample_weight=w)
        assert got == skc.estimate_bandwidth(rep, quantile=0.2, n_samples=n_samples or 10_000)
        assert got == dshift.estimate_bandwidth(rep, quantile=0.2, n_samples=n_samples)


def _brute_weighted_mean(X, w, threshold):
    """Brute force: each row's distance where the weight around it (the row itself first)
    reaches ``threshold``, averaged with the weights."""
    d = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    dist = []
    for i in range(len(X)):
        order = np.argsort(np.where(np.arange(len(X)) == i, -1.0, d[i]), kind="stable")
        covered = np.cumsum(w[order])
        dist.append(d[i, order[np.searchsorted(covered, threshold)]])
    return np.sum(w * dist) / w.sum()


def test_fractional_and_dask_weights_use_the_weighted_formula():
    X = blobs(200, 2, 3, 1.0, seed=13)
    w = np.random.RandomState(2).uniform(0.0, 3.0, size=200)
    got = dshift.estimate_bandwidth(X, quantile=0.3, sample_weight=w)
    assert got == pytest.approx(_brute_weighted_mean(X, w, w.sum() * 0.3), rel=1e-12)
    lazy = dshift.estimate_bandwidth(da.from_array(X, chunks=(33, 2)), quantile=0.3, n_samples=200,
                                     sample_weight=da.from_array(w, chunks=50))
    assert lazy == pytest.approx(got, rel=1e-12)


@pytest.mark.parametrize("scale", [10**6, 10**17])
def test_large_counts_are_never_repeated(scale):
    # Counts of aggregated rows, as Dask weights: the weighted formula with the repeated rows'
    # k, without materialising sum(w) distances (a billion for 1,000 rows of a million each)
    X = blobs(150, 2, 3, 1.0, seed=14)
    w = np.random.RandomState(3).randint(1, 50, size=150).astype(float) * scale
    got = dshift.estimate_bandwidth(da.from_array(X, chunks=(40, 2)), quantile=0.3, n_samples=150,
                                    sample_weight=da.from_array(w, chunks=60))
    assert got == pytest.approx(_brute_weighted_mean(X, w, int(w.sum() * 0.3)), rel=1e-12)


def test_a_sample_of_dask_rows_without_weight_is_an_error():
    X = blobs(1000, 2, 3, 1.0, seed=15)
    w = np.zeros(1000)
    w[[7, 500]] = 2.0  # the 50 sampled rows miss both
    with pytest.raises(ValueError, match="None of the 50 sampled rows has a positive weight"):
        dshift.estimate_bandwidth(da.from_array(X, chunks=(100, 2)), n_samples=50,
                                  sample_weight=da.from_array(w, chunks=100))
