"""Parity of dshift.MeanShift / mean_shift with scikit-learn on NumPy and pandas input."""

from __future__ import annotations

import re
import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import sklearn.cluster as skc
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import dshift
from _parity import DEVIATIONS, assert_identical, assert_same_clustering, blobs, fast_sklearn, sk_fit


def _fit_both(X, record_property=None, name=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Binning data failed" from both sides
        sk = sk_fit(X, **params)
        ds = dshift.MeanShift(**params).fit(X)
    bandwidth = params.get("bandwidth") or ds.bandwidth_ or 1.0
    dev = assert_same_clustering(sk, ds, bandwidth, name=name)
    if record_property is not None:
        record_property("max_center_deviation", dev)
    return sk, ds


def _grid(k=3):
    return np.array([[i, j] for i in range(k) for j in range(k)], dtype=np.float64)


# (id, data factory, params). Every-point-seeded cases stay at <= ~150 rows: sklearn
# needs ~1 ms per seed and iteration.
CASES = [
    ("d1", lambda: blobs(120, 1, 3, 0.5, seed=0), dict(bandwidth=1.0)),
    ("d2", lambda: blobs(150, 2, 3, 1.0, seed=1), dict(bandwidth=1.5)),
    ("d3", lambda: blobs(120, 3, 4, 0.6, seed=2), dict(bandwidth=1.2)),
    ("d5", lambda: blobs(100, 5, 3, 1.0, seed=3), dict(bandwidth=3.0)),
    ("d8", lambda: blobs(100, 8, 3, 1.0, seed=4), dict(bandwidth=4.0)),
    ("d2-wide-std", lambda: blobs(150, 2, 3, 2.5, seed=7), dict(bandwidth=2.0)),
    ("bins-d2", lambda: blobs(5000, 2, 4, 0.5, seed=5), dict(bandwidth=1.5, bin_seeding=True)),
    ("bins-d1", lambda: blobs(3000, 1, 3, 0.5, seed=6), dict(bandwidth=1.0, bin_seeding=True)),
    ("bins-d4", lambda: blobs(1500, 4, 3, 0.5, seed=8), dict(bandwidth=3.0, bin_seeding=True)),
    ("bins-d8", lambda: blobs(1000, 8, 3, 1.0, seed=9), dict(bandwidth=5.0, bin_seeding=True)),
    ("minfreq5", lambda: blobs(2000, 2, 3, 0.6, seed=10), dict(bandwidth=1.2, bin_seeding=True, min_bin_freq=5)),
    ("minfreq3-d3", lambda: blobs(1000, 3, 3, 0.5, seed=11), dict(bandwidth=1.5, bin_seeding=True, min_bin_freq=3)),
    ("minfreq-no-bins-ok", lambda: blobs(60, 2, 2, 0.3, seed=12), dict(bandwidth=3.0, bin_seeding=True, min_bin_freq=20)),
    ("cluster_all-false", lambda: blobs(150, 2, 3, 1.0, seed=13), dict(bandwidth=0.6, cluster_all=False)),
    ("cluster_all-false-bins", lambda: blobs(1500, 2, 3, 1.0, seed=14), dict(bandwidth=1.2, bin_seeding=True, cluster_all=False)),
    ("max_iter0", lambda: blobs(120, 2, 3, 1.0, seed=15), dict(bandwidth=1.5, max_iter=0)),
    ("max_iter1", lambda: blobs(120, 2, 3, 1.0, seed=15), dict(bandwidth=1.5, max_iter=1)),
    ("max_iter2", lambda: blobs(120, 3, 3, 1.0, seed=16), dict(bandwidth=1.5, max_iter=2)),
    ("max_iter2-bins", lambda: blobs(2000, 2, 3, 1.0, seed=16), dict(bandwidth=1.0, max_iter=2, bin_seeding=True)),
    ("float32", lambda: blobs(150, 2, 3, 0.8, seed=17, dtype=np.float32), dict(bandwidth=1.5)),
    ("float32-bins", lambda: blobs(1500, 3, 3, 0.5, seed=18, dtype=np.float32), dict(bandwidth=2.0, bin_seeding=True)),
    ("int64", lambda: np.round(blobs(100, 2, 3, 1.0, seed=19) * 3).astype(np.int64), dict(bandwidth=4)),
    ("int32-bins", lambda: np.round(blobs(1500, 2, 3, 0.5, seed=20) * 3).astype(np.int32), dict(bandwidth=4, bin_seeding=True)),
    ("bandwidth-none", lambda: blobs(150, 2, 3, 1.0, seed=21), dict()),
    ("bandwidth-none-bins", lambda: blobs(1000, 2, 3, 1.0, seed=22), dict(bin_seeding=True)),
    ("bandwidth-none-float32", lambda: blobs(150, 2, 3, 1.0, seed=23, dtype=np.float32), dict()),
    ("ties-grids", lambda: np.vstack([_grid(), _grid() + 10, _grid() + [10, -10], _grid() - 10]), dict(bandwidth=1.5)),
    ("ties-grids-bins", lambda: np.vstack([_grid(), _grid() + 10, _grid() + [10, -10], _grid() - 10]), dict(bandwidth=1.5, bin_seeding=True)),
    ("ties-duplicates", lambda: np.repeat([[0.0, 0.0], [5.0, 5.0], [5.0, -5.0], [-5.0, 0.0]], 6, axis=0), dict(bandwidth=1.0)),
    ("ties-1d", lambda: np.array([[-3.0], [-3.0], [0.0], [3.0], [3.0]]), dict(bandwidth=1.0)),
    ("duplicates", lambda: np.vstack([blobs(60, 2, 3, 1.0, seed=24)] * 3), dict(bandwidth=1.5)),
    ("duplicates-bins", lambda: np.vstack([blobs(500, 2, 3, 0.5, seed=25)] * 3), dict(bandwidth=1.5, bin_seeding=True)),
    ("constant-bw", lambda: np.full((20, 2), 3.0), dict(bandwidth=1.0)),
    ("constant-bw-bins", lambda: np.full((20, 2), 3.0), dict(bandwidth=1.0, bin_seeding=True)),
    ("constant-bandwidth-zero", lambda: np.full((20, 2), 1.0), dict()),
    ("constant-bandwidth-zero-bins", lambda: np.full((20, 2), 1.0), dict(bin_seeding=True)),
    ("one-sample", lambda: np.array([[1.5, -2.0, 3.0]]), dict(bandwidth=1.0)),
    ("one-sample-bandwidth-none", lambda: np.array([[1.5, -2.0, 3.0]]), dict()),
    ("two-far-points", lambda: np.array([[0.0], [10.0]]), dict(bandwidth=1.0, cluster_all=False)),
]


@pytest.mark.parametrize("make, params", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parity_with_sklearn(make, params, record_property, request):
    X = make()
    sk, ds = _fit_both(X, record_property, name=request.node.callspec.id, **params)
    assert ds.n_features_in_ == X.shape[1]
    # n_iter_ is deterministic in both: with our exact means it is equal on all these sets.
    assert ds.n_iter_ == sk.n_iter_
    if X.dtype == np.float32:
        assert ds.cluster_centers_.dtype == np.float32
    else:
        assert ds.cluster_centers_.dtype == np.float64


def test_constant_data_zero_bandwidth_values():
    X = np.full((12, 3), 0.25)
    for bin_seeding in (False, True):
        ds = dshift.MeanShift(bin_seeding=bin_seeding).fit(X)
        assert ds.bandwidth_ == 0.0
        np.testing.assert_array_equal(ds.cluster_centers_, X[:1])
        np.testing.assert_array_equal(ds.labels_, np.zeros(12, np.int64))
        assert ds.n_iter_ == 0


def test_constant_data_inexact_mean_raises_like_sklearn():
    # twelve 0.1's average to 0.10000000000000002: with bandwidth 0 the second ball is empty
    X = np.full((12, 3), 0.1)
    for bin_seeding in (False, True):
        with pytest.raises(ValueError, match="No point was within bandwidth=0.000000"):
            skc.MeanShift(bin_seeding=bin_seeding).fit(X)
        with pytest.raises(ValueError, match="No point was within bandwidth=0.000000"):
            dshift.MeanShift(bin_seeding=bin_seeding).fit(X)


def test_explicit_seeds_with_empty_balls():
    X = blobs(150, 2, 3, 1.0, seed=30)
    seeds = np.array([[100.0, 100.0], X[3], X[77], [-100.0, 5.0], X[3]])
    sk, ds = _fit_both(X, bandwidth=1.5, seeds=seeds)
    assert ds.n_seeds_ == len(seeds)
    # seeds as a list and as float32 work the same
    ds2 = dshift.MeanShift(bandwidth=1.5, seeds=seeds.tolist()).fit(X)
    np.testing.assert_array_equal(ds2.cluster_centers_, ds.cluster_centers_)


def test_explicit_seeds_ignore_bin_seeding():
    X = blobs(150, 2, 3, 1.0, seed=31)
    seeds = X[::10]
    _fit_both(X, bandwidth=1.5, seeds=seeds, bin_seeding=True, min_bin_freq=1000)


def test_no_point_within_bandwidth_error():
    X = blobs(50, 2, 2, 1.0, seed=32)
    seeds = [[100.0, 100.0], [-100.0, 0.0]]
    msg = "No point was within bandwidth=1.500000 of any seed"
    with pytest.raises(ValueError, match=re.escape(msg)):
        skc.MeanShift(bandwidth=1.5, seeds=seeds).fit(X)
    with pytest.raises(ValueError, match=re.escape(msg)):
        dshift.MeanShift(bandwidth=1.5, seeds=seeds).fit(X)


def test_large_n_estimated_bandwidth_uses_10000_row_sample(record_property):
    # n > 10,000: dshift estimates on sklearn's own 10,000-row permutation sample.
    X = blobs(12000, 2, 4, 0.6, seed=3)
    sk_bw = skc.estimate_bandwidth(X, n_samples=10000, random_state=0)
    ds = dshift.MeanShift(bin_seeding=True).fit(X)
    assert ds.bandwidth_ == sk_bw
    sk = sk_fit(X, bandwidth=sk_bw, bin_seeding=True)
    record_property("max_center_deviation", assert_same_clustering(sk, ds, sk_bw, name="large-n-bandwidth"))


def test_mean_shift_function_matches_sklearn():
    X = blobs(120, 2, 3, 1.0, seed=33)
    with fast_sklearn():
        sk_c, sk_l = skc.mean_shift(X, bandwidth=1.5, cluster_all=False, max_iter=5)
    ds_c, ds_l = dshift.mean_shift(X, bandwidth=1.5, cluster_all=False, max_iter=5)
    assert ds_c.shape == sk_c.shape
    np.testing.assert_allclose(ds_c, sk_c, rtol=0, atol=1e-3 * 1.5)
    np.testing.assert_array_equal(ds_l, sk_l)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("bandwidth", [1.0, None])
def test_nonfinite_input_raises(bad, bandwidth):
    X = blobs(30, 2, 2, 1.0, seed=34)
    X[7, 1] = bad
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        skc.MeanShift(bandwidth=bandwidth).fit(X)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        dshift.MeanShift(bandwidth=bandwidth).fit(X)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        dshift.MeanShift(bandwidth=bandwidth).fit(pd.DataFrame(X, columns=["a", "b"]))


BAD_PARAMS = [
    dict(bandwidth=0),
    dict(bandwidth=0.0),
    dict(bandwidth=-1.0),
    dict(bandwidth="wide"),
    dict(min_bin_freq=0),
    dict(min_bin_freq=1.5),
    dict(max_iter=-1),
    dict(max_iter=2.5),
    dict(bin_seeding="yes"),
    dict(cluster_all=None),
    dict(n_jobs="all"),
    dict(seeds="x"),
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=[str(p) for p in BAD_PARAMS])
def test_bad_params_raise_invalid_parameter_error(params):
    X = blobs(20, 2, 2, 1.0, seed=35)
    with pytest.raises(InvalidParameterError):
        skc.MeanShift(**params).fit(X)
    name = next(iter(params))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        dshift.MeanShift(**params).fit(X)


def test_mean_shift_function_bad_param():
    X = blobs(20, 2, 2, 1.0, seed=35)
    with pytest.raises(InvalidParameterError, match="'bandwidth' parameter"):
        dshift.mean_shift(X, bandwidth=-1.0)


def test_wrong_seed_shape_raises():
    X = blobs(20, 2, 2, 1.0, seed=36)
    with pytest.raises(ValueError, match="seeds"):
        dshift.MeanShift(bandwidth=1.0, seeds=[[1.0, 2.0, 3.0]]).fit(X)


def test_sparse_and_empty_input_raise():
    import scipy.sparse as sp

    X = blobs(20, 2, 2, 1.0, seed=37)
    with pytest.raises(TypeError):
        dshift.MeanShift(bandwidth=1.0).fit(sp.csr_matrix(X))
    with pytest.raises(ValueError, match="0 sample"):
        dshift.MeanShift(bandwidth=1.0).fit(np.empty((0, 2)))


# ---------------------------------------------------------------- API behaviour


def test_predict_never_minus_one_and_matches_sklearn():
    X = blobs(150, 2, 3, 1.0, seed=38)
    sk, ds = _fit_both(X, bandwidth=0.5, cluster_all=False)
    assert (ds.labels_ == -1).any()  # the case is meaningful
    new = np.vstack([X, [[50.0, 50.0], [-50.0, 3.0]]])
    p = ds.predict(new)
    assert p.dtype == np.int64 and (p >= 0).all()
    np.testing.assert_array_equal(p, sk.predict(new))
    # labels of points far from everything: nearest center
    far = np.array([[50.0, 50.0]])
    assert ds.predict(far)[0] == int(np.argmin(((ds.cluster_centers_ - far) ** 2).sum(1)))


def test_fit_predict_equals_labels():
    X = blobs(100, 2, 3, 1.0, seed=39)
    m = dshift.MeanShift(bandwidth=1.5)
    labels = m.fit_predict(X)
    np.testing.assert_array_equal(labels, m.labels_)
    np.testing.assert_array_equal(labels, sk_fit(X, bandwidth=1.5).labels_)


def test_attributes_only_after_fit():
    m = dshift.MeanShift(bandwidth=1.0)
    for attr in ("cluster_centers_", "labels_", "n_iter_", "n_features_in_", "feature_names_in_"):
        assert not hasattr(m, attr)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        m.predict(np.zeros((2, 2)))
    m.fit(blobs(30, 2, 2, 1.0, seed=40))
    assert m.labels_.dtype == np.int64
    assert m.n_features_in_ == 2
    assert not hasattr(m, "feature_names_in_")


def test_predict_feature_count_mismatch():
    m = dshift.MeanShift(bandwidth=1.0).fit(blobs(30, 2, 2, 1.0, seed=41))
    with pytest.raises(ValueError, match="features"):
        m.predict(np.zeros((3, 3)))


def test_clone_and_params():
    m = dshift.MeanShift(bandwidth=2.0, bin_seeding=True, min_bin_freq=3, cluster_all=False, max_iter=7, n_jobs=1)
    m.fit(blobs(300, 2, 3, 1.0, seed=42))
    c = clone(m)
    assert c.get_params() == m.get_params()
    assert not hasattr(c, "cluster_centers_")
    assert set(dshift.MeanShift().get_params()) == set(skc.MeanShift().get_params())
    assert dshift.MeanShift().get_params() == skc.MeanShift().get_params()


def test_pipeline_with_standard_scaler():
    X = blobs(150, 3, 3, 1.0, seed=43) * [1.0, 10.0, 100.0]
    with fast_sklearn():
        sk = make_pipeline(StandardScaler(), skc.MeanShift(bandwidth=0.8)).fit(X)
    ds = make_pipeline(StandardScaler(), dshift.MeanShift(bandwidth=0.8)).fit(X)
    assert_same_clustering(sk[-1], ds[-1], 0.8, name="pipeline")
    np.testing.assert_array_equal(ds.predict(X), sk.predict(X))


def test_pandas_string_columns_feature_names():
    X = blobs(120, 2, 3, 1.0, seed=44)
    df = pd.DataFrame(X, columns=["x", "y"])
    ds = dshift.MeanShift(bandwidth=1.5).fit(df)
    sk = sk_fit(df, bandwidth=1.5)
    np.testing.assert_array_equal(ds.feature_names_in_, np.array(["x", "y"], dtype=object))
    assert_same_clustering(sk, ds, 1.5, name="pandas")
    np.testing.assert_array_equal(ds.predict(df), sk.predict(df))
    with pytest.raises(ValueError, match="feature names"):
        ds.predict(df.rename(columns={"x": "z"}))
    # refit on NumPy drops the names
    ds.fit(X)
    assert not hasattr(ds, "feature_names_in_")


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(dshift.MeanShift(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    skipped = [r["check_name"] for r in results if r["status"] == "skipped"]
    assert not failed, failed
    assert set(skipped) <= {"check_array_api_input"}, skipped
    assert sum(r["status"] == "passed" for r in results) >= 40


@pytest.mark.parametrize("params", [dict(bandwidth=1.5), dict(bandwidth=1.5, bin_seeding=True), dict()])
def test_input_not_modified(params):
    X = blobs(150, 2, 3, 1.0, seed=45)
    before = X.copy()
    dshift.MeanShift(**params).fit(X)
    np.testing.assert_array_equal(X, before)
    X.setflags(write=False)
    m = dshift.MeanShift(**params).fit(X)
    m.predict(X)
    np.testing.assert_array_equal(X, before)
    X32 = before.astype(np.float32)
    X32.setflags(write=False)
    dshift.MeanShift(**params).fit(X32)
    np.testing.assert_array_equal(X32, before.astype(np.float32))
    seeds = before[:5].copy()
    seeds.setflags(write=False)
    dshift.MeanShift(bandwidth=1.5, seeds=seeds).fit(before)
    np.testing.assert_array_equal(seeds, before[:5])


def test_float32_data_with_float64_bandwidth_bins_like_sklearn():
    """Control case for the np.float64 case below: a Python float bandwidth agrees with sklearn."""
    X = np.array([[0.26], [0.35], [0.35], [0.48]], dtype=np.float32)
    _fit_both(X, bandwidth=0.1, bin_seeding=True, min_bin_freq=2)


def test_float32_data_with_numpy_float64_bandwidth_bin_seeding():
    """Regression (fixed in 9256bb5): sklearn divides float32 X by a np.float64 bandwidth (as
    returned by sklearn's estimate_bandwidth) in float64; dshift used to bin in float32."""
    X = np.array([[0.26], [0.35], [0.35], [0.48]], dtype=np.float32)
    # sklearn: 0.35f / np.float64(0.1) = 3.4999999 -> bin 3 -> center 0.32
    # float32:  0.35f / 0.1 = 3.5 -> bin 4 -> center 0.3933
    sk, ds = _fit_both(X, bandwidth=np.float64(0.1), bin_seeding=True, min_bin_freq=2)
    np.testing.assert_allclose(ds.cluster_centers_, [[0.32]], rtol=1e-6)


def test_deviation_registry_is_filled():
    # the parity tests record their max center deviation (usually ~1e-13 or exactly 0)
    if DEVIATIONS:
        assert max(DEVIATIONS.values()) < 1e-3


# ---------------------------------------------------------------- seeds in many blocks (issue 8)

BLOCK_CASES = ["d2", "d3", "d8", "cluster_all-false", "max_iter2", "float32", "ties-grids", "ties-duplicates",
               "duplicates", "bins-d2", "minfreq5", "int64"]


@pytest.mark.parametrize("name", BLOCK_CASES)
def test_small_seed_blocks_identical_to_sklearn(name):
    """The partitioned path (a block every few seeds) gives scikit-learn's exact results."""
    make, params = next((m, p) for n, m, p in CASES if n == name)
    X = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sk = sk_fit(X, **params)
    fits = []
    for block in (1, 7, 1000):
        with dask.config.set({"dshift.seed-block-size": block}):
            fits.append(dshift.MeanShift(**params).fit(X))
    tol = 1e-5 if X.dtype == np.float32 else 1e-12  # scikit-learn sums float32 data in float32
    for ds in fits:
        np.testing.assert_allclose(ds.cluster_centers_, sk.cluster_centers_, rtol=tol, atol=tol)
        assert ds.cluster_centers_.dtype == sk.cluster_centers_.dtype
        np.testing.assert_array_equal(ds.labels_, sk.labels_)
        assert ds.n_iter_ == sk.n_iter_
        assert_identical(ds, fits[0])


def test_every_point_a_seed_mid_size_identical_to_sklearn():
    X = blobs(1500, 3, [[27, 72, 91], [36, 90, 99], [9, 81, 99]], 2.79, seed=3)
    bw = float(skc.estimate_bandwidth(X, quantile=0.2, n_samples=500))
    sk = sk_fit(X, bandwidth=bw)
    with dask.config.set({"dshift.seed-block-size": 128}):
        for rows in (100, 1500):
            ds = dshift.MeanShift(bandwidth=bw).fit(da.from_array(X, chunks=(rows, 3)))
            np.testing.assert_allclose(ds.cluster_centers_, sk.cluster_centers_, rtol=1e-13)
            np.testing.assert_array_equal(ds.labels_.compute(), sk.labels_)
            assert ds.n_iter_ == sk.n_iter_ and ds.n_seeds_ == 1500


def test_tiny_bandwidth_a_cluster_per_point_labels_through_the_center_tree():
    X = blobs(400, 2, 3, 1.0, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # binning failed: every point its own bin
        sk = sk_fit(X, bandwidth=1e-9, bin_seeding=True)
        ds = dshift.MeanShift(bandwidth=1e-9, bin_seeding=True).fit(X)
    assert len(ds.cluster_centers_) == 400
    np.testing.assert_array_equal(ds.cluster_centers_, sk.cluster_centers_)
    np.testing.assert_array_equal(ds.labels_, sk.labels_)
    np.testing.assert_array_equal(ds.predict(X), sk.predict(X))


# ---------------------------------------------------------------- sample weights (issue 11)

WEIGHT_CASES = [
    ("all-seeds", lambda: blobs(60, 2, 3, 1.0, seed=30), dict(bandwidth=1.5)),
    ("bins", lambda: blobs(400, 2, 3, 0.6, seed=31), dict(bandwidth=1.2, bin_seeding=True)),
    ("bins-minfreq", lambda: blobs(300, 2, 3, 0.6, seed=32), dict(bandwidth=1.0, bin_seeding=True, min_bin_freq=4)),
    ("seeds", lambda: blobs(80, 3, 3, 1.0, seed=33), dict(bandwidth=1.8)),
    ("cluster_all-false", lambda: blobs(60, 2, 3, 1.0, seed=34), dict(bandwidth=0.6, cluster_all=False)),
    ("float32", lambda: blobs(60, 2, 3, 1.0, seed=35, dtype=np.float32), dict(bandwidth=1.5)),
    ("bandwidth-none", lambda: blobs(60, 2, 3, 1.0, seed=36), dict()),
]


@pytest.mark.parametrize("make, params", [c[1:] for c in WEIGHT_CASES], ids=[c[0] for c in WEIGHT_CASES])
def test_integer_weights_equal_sklearn_on_repeated_rows(make, params):
    X = make()
    w = np.random.RandomState(len(X)).randint(0, 4, size=len(X))
    if "seeds" in params or params.get("bandwidth") == 1.8:
        params = {**params, "seeds": X[::7]}
    rep = np.repeat(X, w, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sk = sk_fit(rep, **params)
        ds = dshift.MeanShift(**params).fit(X, sample_weight=w)
        ds_rep = dshift.MeanShift(**params).fit(rep)
    tol = 1e-5 if X.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ds.cluster_centers_, sk.cluster_centers_, rtol=tol, atol=tol)
    assert ds.n_iter_ == sk.n_iter_
    np.testing.assert_array_equal(np.repeat(ds.labels_, w), sk.labels_)  # per original row
    assert_identical_centers = np.array_equal(ds.cluster_centers_, ds_rep.cluster_centers_)
    assert assert_identical_centers and ds.n_iter_ == ds_rep.n_iter_ and ds.bandwidth_ == ds_rep.bandwidth_
    # rows of weight 0 take no part but are labelled like any point
    zero = w == 0
    expected = ds.predict(X[zero])
    if not params.get("cluster_all", True):
        far = np.linalg.norm(X[zero] - ds.cluster_centers_[expected], axis=1) > ds.bandwidth_
        expected[far] = -1
    np.testing.assert_array_equal(ds.labels_[zero], expected)


def test_fractional_weights_match_an_exact_reference():
    from _parity import reference_weighted_fit

    X = blobs(40, 2, 2, 0.8, seed=37)
    w = np.random.RandomState(1).uniform(0.0, 2.5, size=40)
    w[::9] = 0.0
    ds = dshift.MeanShift(bandwidth=1.2).fit(X, sample_weight=w)
    np.testing.assert_array_equal(ds.cluster_centers_, reference_weighted_fit(X, w, 1.2))


def test_weights_are_chunking_and_block_invariant():
    X = blobs(300, 3, 3, 1.0, seed=38)
    w = np.random.RandomState(2).uniform(0.0, 3.0, size=300)
    ref = dshift.MeanShift(bandwidth=1.5).fit(X, sample_weight=w)
    for rows, wrows, block in ((7, 13, 11), (300, 50, 1000), (64, 64, 5)):
        with dask.config.set({"dshift.seed-block-size": block}):
            m = dshift.MeanShift(bandwidth=1.5).fit(da.from_array(X, chunks=(rows, 3)),
                                                    sample_weight=da.from_array(w, chunks=wrows))
        assert np.array_equal(m.cluster_centers_, ref.cluster_centers_) and m.n_iter_ == ref.n_iter_
        np.testing.assert_array_equal(m.labels_.compute(), ref.labels_)


def test_weight_column_of_a_dask_dataframe():
    import dask.dataframe as dd

    X = blobs(200, 2, 3, 1.0, seed=39)
    w = np.random.RandomState(3).randint(0, 5, size=200)
    frame = pd.DataFrame({"x": X[:, 0], "y": X[:, 1], "n": w})
    ref = dshift.MeanShift(bandwidth=1.5).fit(X, sample_weight=w)
    m = dshift.MeanShift(bandwidth=1.5).fit(dd.from_pandas(frame, npartitions=3), sample_weight="n")
    assert np.array_equal(m.cluster_centers_, ref.cluster_centers_)
    assert list(m.feature_names_in_) == ["x", "y"]
    np.testing.assert_array_equal(m.labels_.compute(), ref.labels_)
    with pytest.raises(ValueError, match="names no column"):
        dshift.MeanShift(bandwidth=1.5).fit(dd.from_pandas(frame, npartitions=3), sample_weight="count")


@pytest.mark.parametrize("bad, message", [
    ([-1.0], "Negative values in data passed to `sample_weight`"),
    ([np.nan], "Input sample_weight contains NaN"),
    ([np.inf], "Input sample_weight contains infinity"),
    ("short", r"sample_weight.shape == \(3,\), expected \(4,\)"),
    ("zeros", "Sample weights must contain at least one non-zero number"),
])
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_bad_weights_raise_sklearns_errors(bad, message, kind):
    X = blobs(4, 2, 1, 1.0, seed=40)
    w = {"short": np.ones(3), "zeros": np.zeros(4)}.get(bad) if isinstance(bad, str) else np.array([1.0, 2.0, 1.0] + bad)
    if kind == "dask":
        w, X = da.from_array(w, chunks=2), da.from_array(X, chunks=(2, 2))
    with pytest.raises(ValueError, match=message):
        dshift.MeanShift(bandwidth=1.0).fit(X, sample_weight=w)


def test_mean_shift_and_fit_predict_take_weights():
    X = blobs(80, 2, 3, 1.0, seed=41)
    w = np.random.RandomState(4).randint(1, 4, size=80)
    ref = dshift.MeanShift(bandwidth=1.5).fit(X, sample_weight=w)
    centers, labels = dshift.mean_shift(X, bandwidth=1.5, sample_weight=w)
    np.testing.assert_array_equal(centers, ref.cluster_centers_)
    np.testing.assert_array_equal(dshift.MeanShift(bandwidth=1.5).fit_predict(X, sample_weight=w), ref.labels_)
