"""dshift.bandwidth_sweep: every bandwidth equal to its separate fit, the table, the selection rule."""

from __future__ import annotations

import math
import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError

import dshift
from _parity import as_numpy, assert_identical, blobs
from dshift.sweep import MAX_CLUSTERS_PER_POINT, select_bandwidth

BANDWIDTHS = [0.4, 1.0, np.float64(2.5), 8]  # a Python float, an np.float64 and an int, as given


def _separate(X, bandwidth, sample_weight=None, **params) -> dshift.MeanShift:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Binning data failed" at small bandwidths
        return dshift.MeanShift(bandwidth=bandwidth, **params).fit(X, sample_weight=sample_weight)


def _assert_each_equals_separate(sweep, X, bandwidths, sample_weight=None, **params):
    assert sweep.table["bandwidth"].tolist() == sorted(float(b) for b in bandwidths)
    for b, model, row in zip(sorted(bandwidths, key=float), sweep.models, sweep.table.itertuples()):
        one = _separate(X, b, sample_weight, **params)
        assert_identical(model, one)
        assert model.bandwidth == b and type(model.bandwidth) is type(b)  # noqa: E721 - as MeanShift got it
        assert (model.n_seeds_, model.n_features_in_) == (one.n_seeds_, one.n_features_in_)
        assert (row.n_clusters, row.n_iter, row.n_seeds) == (len(one.cluster_centers_), one.n_iter_, one.n_seeds_)
        np.testing.assert_array_equal(as_numpy(model.predict(X)), as_numpy(one.predict(X)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
@pytest.mark.parametrize("seeding", ["bins", "explicit"])
def test_each_bandwidth_equals_its_separate_fit(dtype, lazy, seeding):
    X = blobs(600, 2, 4, 0.8, seed=3, dtype=dtype)
    params = {"bin_seeding": True} if seeding == "bins" else {"seeds": X[::13]}
    data = da.from_array(X, chunks=(150, 2)) if lazy else X
    sweep = dshift.bandwidth_sweep(data, BANDWIDTHS[::-1], **params)
    _assert_each_equals_separate(sweep, data, BANDWIDTHS, **params)
    assert isinstance(sweep.models[0].labels_, da.Array) == lazy
    assert sweep.models[0].cluster_centers_.dtype == dtype


def test_table_shares_and_repeated_bandwidths():
    X = blobs(500, 2, 3, 0.6, seed=4)
    sweep = dshift.bandwidth_sweep(X, [2.0, 0.3, 2.0, 1.0], cluster_all=False)
    assert list(sweep.table.columns) == ["bandwidth", "n_clusters", "n_iter", "n_seeds", "largest_cluster_share",
                                         "outlier_share"]
    assert sweep.table["bandwidth"].tolist() == [0.3, 1.0, 2.0]  # increasing, a repeat counted once
    assert len(sweep.models) == 3
    for model, row in zip(sweep.models, sweep.table.itertuples()):
        counts = np.bincount(model.labels_ + 1)
        assert row.outlier_share == counts[0] / len(X)
        assert row.largest_cluster_share == counts[1:].max() / len(X)
    assert sweep.table["outlier_share"].iloc[0] > 0  # cluster_all=False at a small bandwidth


def test_dask_dataframe_weights_and_feature_names():
    X = blobs(400, 2, 3, 0.7, seed=5)
    w = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    frame = pd.DataFrame(X, columns=["x", "y"]).assign(w=w)
    ddf = dd.from_pandas(frame, npartitions=3)
    sweep = dshift.bandwidth_sweep(ddf, [0.8, 2.0], bin_seeding=True, sample_weight="w")
    for b, model, row in zip([0.8, 2.0], sweep.models, sweep.table.itertuples()):
        one = _separate(frame[["x", "y"]], b, w, bin_seeding=True)
        assert np.array_equal(model.cluster_centers_, one.cluster_centers_)
        labels = model.labels_.compute()
        np.testing.assert_array_equal(labels, one.labels_)
        assert list(model.feature_names_in_) == ["x", "y"]
        assert math.isclose(row.largest_cluster_share, np.bincount(labels, weights=w).max() / w.sum())
        np.testing.assert_array_equal(model.predict(frame[["x", "y"]]), one.predict(frame[["x", "y"]]))


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_quantiles_are_estimate_bandwidths(lazy):
    X = blobs(1200, 3, 3, 1.0, seed=6)
    data = da.from_array(X, chunks=(300, 3)) if lazy else X
    quantiles = [0.5, 0.05, 0.2]
    sweep = dshift.bandwidth_sweep(data, quantiles=quantiles, n_samples=300, random_state=2, bin_seeding=True)
    expected = [dshift.estimate_bandwidth(data, quantile=q, n_samples=300, random_state=2) for q in sorted(quantiles)]
    assert sweep.table["quantile"].tolist() == sorted(quantiles)
    assert sweep.table["bandwidth"].tolist() == [float(b) for b in expected]
    _assert_each_equals_separate(sweep, data, expected, bin_seeding=True)


def test_three_blobs_plateau_is_chosen():
    X = blobs(1500, 2, [[0, 0], [20, 0], [0, 20]], 1.0, seed=7)
    bandwidths = np.geomspace(0.25, 64, 9)  # 0.25 ... 64, a factor 2 apart
    sweep = dshift.bandwidth_sweep(X, bandwidths, bin_seeding=True)
    table = sweep.table.set_index("bandwidth")["n_clusters"]
    three = table.index[table == 3]
    assert len(three) >= 3  # a wide plateau: 2 to 8 or so
    assert sweep.chosen in three.tolist() and sweep.chosen_model is sweep.models[sweep.chosen_index]
    assert sweep.chosen == sweep.table["bandwidth"].iloc[sweep.chosen_index]
    middle = math.sqrt(three.min() * three.max())
    assert min(abs(math.log(b / middle)) for b in three) == pytest.approx(abs(math.log(sweep.chosen / middle)))
    assert "3 clusters at every swept bandwidth" in sweep.reason
    assert len(np.unique(sweep.chosen_model.labels_)) == 3


# ------------------------------------------------------------------------ the rule alone


def test_rule_takes_the_middle_of_the_widest_run():
    b = [1, 2, 4, 8, 16, 32, 64]
    assert select_bandwidth(b, [90, 5, 3, 3, 3, 2, 1], 1000)[:2] == (3, 8.0)
    # even length: the two middle ones are equally near; the larger wins
    assert select_bandwidth(b, [90, 3, 3, 3, 3, 1, 1], 1000).index == 3
    # width is measured on the log scale, not in bandwidths counted
    uneven = [1, 1.1, 1.2, 1.3, 4, 16]
    assert select_bandwidth(uneven, [4, 4, 4, 4, 2, 2], 1000).index == 5
    # equal widths: more bandwidths first, then the larger bandwidths
    assert select_bandwidth([1, 2, 4, 8, 16], [7, 7, 5, 3, 3], 1000).index == 4
    assert select_bandwidth([1, 1.5, 2, 4, 8], [7, 7, 7, 3, 3], 1000).index == 1


def test_rule_ignores_one_cluster_and_one_per_point():
    b = [0.01, 0.02, 0.04, 0.08, 0.5, 1, 2, 4, 8, 16]
    n = 100
    counts = [100, 100, 100, 100, 12, 4, 4, 1, 1, 1]  # the long ends do not count
    choice = select_bandwidth(b, counts, n)
    assert choice.index in (5, 6) and choice.stable == (5, 6)
    assert MAX_CLUSTERS_PER_POINT * n == 50
    assert select_bandwidth([1, 2, 4], [51, 51, 3], n).index == 2  # 51 > 50: about one per point


def test_rule_falls_back_without_a_stable_range():
    b = [1, 2, 4, 8, 16]
    no_run = select_bandwidth(b, [80, 9, 5, 3, 1], 1000)  # informative 1 .. 8, none repeated
    assert no_run.index == 2 and no_run.stable is None and "no stable range" in no_run.reason
    ones = select_bandwidth(b, [1, 1, 1, 1, 1], 1000)
    assert ones.index == 0 and "sweep bandwidths below 1" in ones.reason
    ends = select_bandwidth(b, [900, 900, 1, 1, 1], 1000)
    assert ends.index == 2 and "between 2 and 4" in ends.reason
    many = select_bandwidth(b, [900, 900, 800, 700, 600], 1000)
    assert many.index == 4 and "above it" in many.reason
    assert select_bandwidth([3.0], [3], 1000).index == 0
    with pytest.raises(ValueError, match="strictly increasing"):
        select_bandwidth([2, 1], [3, 3], 1000)


# ------------------------------------------------------------------------ errors


@pytest.mark.parametrize("kwargs, match", [
    ({}, "exactly one of bandwidths and quantiles"),
    ({"bandwidths": [1.0], "quantiles": [0.2]}, "exactly one of bandwidths and quantiles"),
    ({"bandwidths": []}, "at least one"),
    ({"bandwidths": [1.0, -2.0]}, r"bandwidths\[1\] must be a finite number > 0"),
    ({"bandwidths": [1.0, float("nan")]}, r"bandwidths\[1\]"),
    ({"bandwidths": [True]}, r"bandwidths\[0\]"),
    ({"quantiles": [0.2, 0.0]}, r"quantiles\[1\] must be a finite number in \(0, 1\]"),
    ({"quantiles": [1.5]}, r"quantiles\[0\]"),
])
def test_bad_sweeps(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dshift.bandwidth_sweep(blobs(50), **kwargs)


def test_bad_parameters_as_meanshift():
    with pytest.raises(InvalidParameterError, match="min_bin_freq"):
        dshift.bandwidth_sweep(blobs(50), [1.0], min_bin_freq=0)
    with pytest.raises(InvalidParameterError, match="bandwidths"):
        dshift.bandwidth_sweep(blobs(50), 1.0)
    X = np.zeros((20, 2))
    with pytest.raises(ValueError, match="quantile 0.1 gives the bandwidth 0"):
        dshift.bandwidth_sweep(X, quantiles=[0.1])


def test_shares_with_a_cluster_per_point_on_dask():
    X = blobs(200, 2, 3, 1.0, seed=8)
    sweep = dshift.bandwidth_sweep(da.from_array(X, chunks=(50, 2)), [1e-3, 1.5])
    tiny = sweep.table.iloc[0]
    assert tiny["n_clusters"] == 200 and tiny["largest_cluster_share"] == 1 / 200  # counted per chunk, sparsely
    assert sweep.chosen == 1.5  # 200 clusters for 200 rows is one per point, not a choice
