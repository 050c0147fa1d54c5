"""dshift._input: coercion of NumPy / pandas / Dask input to one row-chunked Dask array."""

from __future__ import annotations

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dshift
from dshift import _input


def test_working_dtype():
    assert _input.working_dtype(np.float32) == np.float32
    for t in (np.float64, np.int64, np.int32, np.uint8, np.bool_, np.float16):
        assert _input.working_dtype(t) == np.float64


def test_is_dask():
    X = np.zeros((3, 2))
    assert not _input.is_dask(X) and not _input.is_dask(pd.DataFrame(X))
    assert _input.is_dask(da.from_array(X))
    assert _input.is_dask(dd.from_pandas(pd.DataFrame(X), npartitions=1))


def test_numpy_wrapped_without_copy_in_row_chunks():
    X = np.arange(40.0).reshape(20, 2)
    arr = _input.as_row_chunked(X)
    assert arr.chunks[1] == (2,)
    assert sum(arr.chunks[0]) == 20
    np.testing.assert_array_equal(arr.compute(), X)
    with dask.config.set({"dshift.chunk-bytes": 16 * 8}):  # 8 rows of 2 float64
        small = _input.as_row_chunked(X)
    assert small.chunks[0] == (8, 8, 4)
    m = dshift.MeanShift(bandwidth=1.0)
    prepared = _input.prepare(m, X, reset=True)
    assert not prepared.lazy and np.shares_memory(prepared.local, X)
    assert prepared.dtype == np.float64 and m.n_features_in_ == 2


def test_dask_columns_split_are_rechunked():
    X = np.arange(60.0).reshape(10, 6)
    arr = _input.as_row_chunked(da.from_array(X, chunks=(3, 2)))
    assert arr.chunks == ((3, 3, 3, 1), (6,))
    np.testing.assert_array_equal(arr.compute(), X)


def test_unknown_chunk_sizes_are_computed():
    X = np.arange(40.0).reshape(20, 2)
    dX = da.from_array(X, chunks=(6, 2))
    masked = dX[dX[:, 0] > 10]
    assert np.isnan(masked.chunks[0]).any()
    arr = _input.as_row_chunked(masked)
    assert not np.isnan(arr.chunks[0]).any() and arr.shape == (14, 2)
    np.testing.assert_array_equal(arr.compute(), X[X[:, 0] > 10])


def test_dask_dataframe_to_array_and_feature_names():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]})
    ddf = dd.from_pandas(df, npartitions=2)
    m = dshift.MeanShift()
    p = _input.prepare(m, ddf, reset=True)
    assert p.lazy and p.local is None and p.dtype == np.float64
    np.testing.assert_array_equal(p.array.compute(), df.to_numpy(dtype=float))
    np.testing.assert_array_equal(m.feature_names_in_, ["a", "b"])
    # integer column names: no feature names, stale ones removed
    _input.prepare(m, dd.from_pandas(pd.DataFrame(np.zeros((3, 2))), npartitions=1), reset=True)
    assert not hasattr(m, "feature_names_in_")
    # a Series is one column
    s = _input.prepare(dshift.MeanShift(), ddf["a"], reset=True)
    assert s.array.shape == (3, 1)


def test_non_numeric_datetime_column_rejected():
    df = pd.DataFrame({"a": [1.0, 2.0], "name": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    ddf = dd.from_pandas(df, npartitions=1)
    with pytest.raises(ValueError, match="not numeric: name"):
        _input.as_row_chunked(ddf)


def test_non_numeric_string_column_rejected():
    ddf = dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"]}), npartitions=1)
    with pytest.raises(ValueError, match="not numeric: name"):
        dshift.MeanShift(bandwidth=1.0).fit(ddf)


def test_bad_dask_arrays_rejected():
    with pytest.raises(ValueError, match="2D"):
        _input.as_row_chunked(da.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="2D"):
        _input.as_row_chunked(np.zeros(5))
    with pytest.raises(ValueError, match="real numbers"):
        _input.as_row_chunked(da.zeros((3, 2), dtype=np.complex128))
    with pytest.raises(ValueError, match="0 sample"):
        _input.prepare(dshift.MeanShift(), da.zeros((0, 2)), reset=True)
    with pytest.raises(ValueError, match="0 feature"):
        _input.prepare(dshift.MeanShift(), da.zeros((4, 0)), reset=True)


def test_predict_feature_mismatch_on_dask():
    m = dshift.MeanShift()
    _input.prepare(m, da.zeros((4, 3)), reset=True)
    assert m.n_features_in_ == 3
    with pytest.raises(ValueError, match="X has 2 features, but MeanShift is expecting 3 features"):
        _input.prepare(m, da.zeros((4, 2)), reset=False)


def test_float32_dask_keeps_float32():
    p = _input.prepare(dshift.MeanShift(), da.zeros((4, 2), dtype=np.float32), reset=True)
    assert p.dtype == np.float32 and p.array.dtype == np.float32


@pytest.mark.parametrize("lazy", [False, True], ids=["pandas", "dask"])
def test_weight_column_named_in_every_weighted_function(lazy):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(np.round(rng.normal(0.0, 2.0, (200, 2))), columns=["x", "y"])
    frame["n"] = rng.integers(0, 4, len(frame)).astype(float)
    data = dd.from_pandas(frame, npartitions=3) if lazy else frame
    features, weights = data[["x", "y"]], data["n"]
    assert dshift.estimate_bandwidth(data, sample_weight="n") == \
        dshift.estimate_bandwidth(features, sample_weight=weights)
    np.testing.assert_array_equal(np.asarray(dshift.get_bin_seeds(data, 1.0, 3, sample_weight="n")),
                                  np.asarray(dshift.get_bin_seeds(features, 1.0, 3, sample_weight=weights)))
    for named, given in zip(dshift.deduplicate(data, "n"), dshift.deduplicate(features, weights)):
        np.testing.assert_array_equal(np.asarray(named), np.asarray(given))
    with pytest.raises(ValueError, match="sample_weight='count' names no column of X"):
        dshift.estimate_bandwidth(data, sample_weight="count")
    with pytest.raises(ValueError, match="sample_weight='count' names no column of X"):
        dshift.get_bin_seeds(data, 1.0, sample_weight="count")


def test_dask_weights_submit_the_same_tasks_in_every_pass():
    # The first pass checks the weights; later passes read them again. A distributed scheduler
    # warns ("Detected different `run_spec`", which "can cause failures and deadlocks") when a
    # pass resubmits a key with another task: the checks must read the blocks every pass reads.
    import logging

    from distributed import Client, LocalCluster

    X = np.round(np.random.default_rng(0).normal(0.0, 2.0, (120, 2)))
    w = da.from_array(np.arange(120.0) % 4, chunks=50)  # chunked otherwise than X
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    scheduler_log = logging.getLogger("distributed.scheduler")
    scheduler_log.addHandler(handler)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
                Client(cluster):
            dshift.MeanShift(bandwidth=1.0).fit(da.from_array(X, chunks=(30, 2)), sample_weight=w)
    finally:
        scheduler_log.removeHandler(handler)
    assert not [r for r in records if "run_spec" in r.getMessage()]


def test_complex_dask_weights_rejected_as_scikit_learn_does():
    X = da.from_array(np.zeros((4, 2)), chunks=2)
    w = np.array([1.0, 2.0, 1.0, 1j])
    for w in (w, da.from_array(w, chunks=3)):
        with pytest.raises(ValueError, match="Complex data not supported"):
            dshift.MeanShift(bandwidth=1.0).fit(X, sample_weight=w)
