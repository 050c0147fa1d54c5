"""Dask input: chunking invariance, DataFrames, the re-read path and a distributed Client."""

from __future__ import annotations

import logging
import os
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dshift
from _parity import as_numpy, assert_identical, blobs

N = 200
X64 = blobs(N, 3, 3, 0.8, seed=1)

PARAMS = {
    "plain": (X64, dict(bandwidth=1.5)),
    "bins": (X64, dict(bandwidth=1.5, bin_seeding=True)),
    "bins-minfreq": (X64, dict(bandwidth=1.0, bin_seeding=True, min_bin_freq=3)),
    "cluster_all-false": (X64, dict(bandwidth=0.6, cluster_all=False)),
    "max_iter2": (X64, dict(bandwidth=1.5, max_iter=2)),
    "bandwidth-none": (X64, dict()),
    "seeds": (X64, dict(bandwidth=1.5, seeds=np.vstack([X64[::20], [[50.0, 50.0, 50.0]]]))),
    "float32": (X64.astype(np.float32), dict(bandwidth=1.5)),
    "int": (np.round(X64 * 3).astype(np.int64), dict(bandwidth=4)),
}


@pytest.fixture(scope="module")
def numpy_fits():
    return {k: dshift.MeanShift(**p).fit(X) for k, (X, p) in PARAMS.items()}


@pytest.mark.parametrize("name", list(PARAMS))
def test_dask_array_chunkings_identical(name, numpy_fits):
    X, params = PARAMS[name]
    ref = numpy_fits[name]
    for rows in (7, 64, N):
        m = dshift.MeanShift(**params).fit(da.from_array(X, chunks=(rows, X.shape[1])))
        assert isinstance(m.labels_, da.Array) and m.labels_.dtype == np.int64
        assert m.n_features_in_ == X.shape[1]
        assert_identical(m, ref)


@pytest.mark.parametrize("name", ["plain", "bins", "cluster_all-false", "bandwidth-none", "int"])
def test_dask_dataframe_identical(name, numpy_fits):
    X, params = PARAMS[name]
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    for nparts in (1, 3, 7):
        m = dshift.MeanShift(**params).fit(dd.from_pandas(df, npartitions=nparts))
        assert isinstance(m.labels_, da.Array)
        assert_identical(m, numpy_fits[name])
        np.testing.assert_array_equal(m.feature_names_in_, df.columns.to_numpy(dtype=object))


def test_columns_split_and_empty_and_unknown_chunks(numpy_fits):
    ref = numpy_fits["plain"]
    dX = da.from_array(X64, chunks=(7, 1))
    assert len(dX.chunks[1]) == 3
    assert_identical(dshift.MeanShift(bandwidth=1.5).fit(dX), ref)
    empty_chunks = da.from_array(X64, chunks=((0, 50, 0, 150, 0), (3,)))
    assert_identical(dshift.MeanShift(bandwidth=1.5).fit(empty_chunks), ref)
    unknown = da.from_array(X64, chunks=(30, 3))
    unknown = unknown[unknown[:, 0] > -1e9]  # all rows, unknown chunk sizes
    assert_identical(dshift.MeanShift(bandwidth=1.5).fit(unknown), ref)


def test_predict_lazy_and_mean_shift_on_dask(numpy_fits):
    ref = numpy_fits["cluster_all-false"]
    dX = da.from_array(X64, chunks=(33, 3))
    m = dshift.MeanShift(bandwidth=0.6, cluster_all=False).fit(dX)
    p = m.predict(dX)
    assert isinstance(p, da.Array) and p.dtype == np.int64
    np.testing.assert_array_equal(p.compute(), ref.predict(X64))
    assert (p.compute() >= 0).all() and (as_numpy(m.labels_) == -1).any()
    # a model fitted on Dask predicts NumPy eagerly, and vice versa
    assert isinstance(m.predict(X64), np.ndarray)
    np.testing.assert_array_equal(ref.predict(dX).compute(), ref.predict(X64))
    with pytest.raises(ValueError, match="features"):
        m.predict(da.zeros((4, 2)))


def test_persist_false_reread_path_identical(numpy_fits):
    with dask.config.set({"dshift.persist": False}):
        for name in ("plain", "bins", "float32"):
            X, params = PARAMS[name]
            m = dshift.MeanShift(**params).fit(da.from_array(X, chunks=(16, X.shape[1])))
            assert_identical(m, numpy_fits[name])
    with dask.config.set({"dshift.persist": True}):
        m = dshift.MeanShift(bandwidth=1.5).fit(da.from_array(X64, chunks=(16, 3)))
        assert_identical(m, numpy_fits["plain"])


def test_dask_input_not_modified():
    X = X64.copy()
    X.setflags(write=False)
    dshift.MeanShift(bandwidth=1.5, bin_seeding=True).fit(da.from_array(X, chunks=(9, 3)))
    np.testing.assert_array_equal(X, X64)


@pytest.mark.parametrize("params", [dict(bandwidth=1.5), dict(bandwidth=1.5, bin_seeding=True), dict(bandwidth=1.5, seeds=X64[:3])])
def test_nan_in_dask_input_reports_row_count(params):
    Xn = X64.copy()
    Xn[[5, 150], 1] = np.nan
    Xn[160, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinity \(3 of 200 rows\)"):
        dshift.MeanShift(**params).fit(da.from_array(Xn, chunks=(7, 3)))
    ddf = dd.from_pandas(pd.DataFrame(Xn, columns=["a", "b", "c"]), npartitions=3)
    with pytest.raises(ValueError, match=r"3 of 200 rows"):
        dshift.MeanShift(**params).fit(ddf)


def test_nan_in_dask_input_reports_row_count_bandwidth_none():
    Xn = X64.copy()
    Xn[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 of 200 rows"):
        dshift.MeanShift().fit(da.from_array(Xn, chunks=(7, 3)))


# ---------------------------------------------------------------- distributed.Client

DIST_CASES = ["plain", "bins", "cluster_all-false", "float32"]


@pytest.fixture(scope="module")
def threaded_dask_fits():
    """References on the local threaded scheduler, computed before any Client exists."""
    out = {}
    for name in DIST_CASES:
        X, params = PARAMS[name]
        m = dshift.MeanShift(**params).fit(da.from_array(X, chunks=(40, X.shape[1])))
        out[name] = (m, as_numpy(m.labels_))
    return out


@pytest.fixture(scope="module")
def client(threaded_dask_fits):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def test_distributed_identical_to_threaded(client, threaded_dask_fits):
    from dshift import _dask

    assert _dask.active_client() is client
    for name in DIST_CASES:
        X, params = PARAMS[name]
        ref, ref_labels = threaded_dask_fits[name]
        m = dshift.MeanShift(**params).fit(da.from_array(X, chunks=(40, X.shape[1])))
        assert isinstance(m.labels_, da.Array)
        assert np.array_equal(m.cluster_centers_, ref.cluster_centers_)
        assert m.cluster_centers_.dtype == ref.cluster_centers_.dtype
        np.testing.assert_array_equal(m.labels_.compute(), ref_labels)
        assert m.n_iter_ == ref.n_iter_


def test_distributed_dataframe_numpy_and_reread(client, threaded_dask_fits):
    ref, ref_labels = threaded_dask_fits["plain"]
    ddf = dd.from_pandas(pd.DataFrame(X64, columns=["a", "b", "c"]), npartitions=4)
    m = dshift.MeanShift(bandwidth=1.5).fit(ddf)
    assert np.array_equal(m.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(m.labels_.compute(), ref_labels)
    np.testing.assert_array_equal(m.predict(ddf).compute(), ref_labels)
    m = dshift.MeanShift(bandwidth=1.5).fit(X64)  # in-memory input under a Client
    assert np.array_equal(m.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(m.labels_, ref_labels)
    with dask.config.set({"dshift.persist": False}):
        m = dshift.MeanShift(bandwidth=1.5).fit(da.from_array(X64, chunks=(25, 3)))
    assert np.array_equal(m.cluster_centers_, ref.cluster_centers_)
    assert dshift.estimate_bandwidth(da.from_array(X64, chunks=(25, 3)), n_samples=100) == dshift.estimate_bandwidth(
        X64, n_samples=100
    )


def test_distributed_indexes_on_disk(client, threaded_dask_fits, monkeypatch, caplog):
    """Indexes too big for the workers' memory keep their points on the workers' disks:
    the same fits; nothing is left in the workers' directories."""
    from dshift import _dask

    monkeypatch.setattr(_dask, "persist_where", lambda nbytes: "disk")
    for name in DIST_CASES:
        X, params = PARAMS[name]
        ref, ref_labels = threaded_dask_fits[name]
        with caplog.at_level(logging.INFO, logger="dshift"):
            m = dshift.MeanShift(**params).fit(da.from_array(X, chunks=(40, X.shape[1])))
        assert "their points on local disk" in caplog.text
        assert np.array_equal(m.cluster_centers_, ref.cluster_centers_) and m.n_iter_ == ref.n_iter_
        np.testing.assert_array_equal(m.labels_.compute(), ref_labels)

    def files(dask_worker):
        return [f for _, _, names in os.walk(dask_worker.local_directory) for f in names if not f.endswith(".lock")]

    assert all(not f for f in client.run(files).values())


def test_distributed_nan_error(client):
    Xn = X64.copy()
    Xn[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 of 200 rows"):
        dshift.MeanShift(bandwidth=1.5).fit(da.from_array(Xn, chunks=(40, 3)))


def test_distributed_seed_blocks_identical(client, threaded_dask_fits):
    """Seed blocks on worker processes: the same results for any block size."""
    ref, ref_labels = threaded_dask_fits["plain"]
    for block in (3, 50):
        with dask.config.set({"dshift.seed-block-size": block}):
            m = dshift.MeanShift(bandwidth=1.5).fit(da.from_array(X64, chunks=(40, 3)))
        assert np.array_equal(m.cluster_centers_, ref.cluster_centers_)
        np.testing.assert_array_equal(m.labels_.compute(), ref_labels)
        assert m.n_iter_ == ref.n_iter_ and m.n_seeds_ == N


def test_distributed_no_seed_array_in_the_graphs(client):
    """Every row a seed, 30,000 seeds (720 kB): no graph the driver sends carries them."""
    import warnings

    X = blobs(30_000, 3, 3, 0.8, seed=2)
    dX = da.from_array(X, chunks=(10_000, 3)).persist()
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "200kB",
                          "dshift.seed-block-size": 4096}), warnings.catch_warnings():
        warnings.filterwarnings("error", message="Sending large graph")
        m = dshift.MeanShift(bandwidth=2.0).fit(dX)
    assert m.n_seeds_ == 30_000 and len(m.cluster_centers_) >= 1


def _route_to_four(i):
    time.sleep(0.1)
    return [np.full((1000, 3), float(i)) for _ in range(4)]


def _slow_cell(*shares):
    time.sleep(0.6)
    return sum(len(s) for s in shares)


def test_distributed_cells_spread_and_shares_taken_first(client):
    """Cells that need every source's share (region trees, seed blocks) go to the workers in
    turn, and taking a share outranks every build: a worker hands the other the shares it
    holds before it builds its own cells. At 10M rows one worker had built all four region
    trees, or the two had built theirs one after the other, each waiting for shares queued
    behind the other's builds."""
    from dask.delayed import delayed
    from distributed import wait

    from dshift import partition

    sources = [delayed(_route_to_four, pure=True)(i) for i in range(8)]
    cells = dask.persist(*partition.gather_cells(sources, 4, _slow_cell))

    def priorities(dask_scheduler=None):
        return {str(k): ts.priority for k, ts in dask_scheduler.tasks.items()}

    seen, deadline = {}, time.monotonic() + 30
    while not any("_slow_cell" in k for k in seen) and time.monotonic() < deadline:  # persist sends the graph
        seen = client.run_on_scheduler(priorities)  # in the background; shares are kept while cells are built
    wait(list(cells))
    assert [c.compute() for c in cells] == [8000] * 4
    holders = [next(iter(client.who_has(c).values()))[0] for c in cells]
    assert holders[0] != holders[1] and holders[:2] == holders[2:]
    shares = [p for k, p in seen.items() if "getitem" in k]
    builds = [p for k, p in seen.items() if "_slow_cell" in k]
    assert shares and builds and max(shares) < min(builds)  # a smaller tuple runs first


@pytest.mark.parametrize("name", ["plain", "bins", "cluster_all-false"])
def test_unknown_chunk_lengths_counted_by_the_first_pass(name, numpy_fits):
    """The batch job's path: row chunk lengths unknown (no counting pass), a row-count bound."""
    from dshift import _input
    from dshift.engine import fit_many

    X, params = PARAMS[name]
    frame = dd.from_pandas(pd.DataFrame(X, columns=["a", "b", "c"]), npartitions=5)
    arr = frame.to_dask_array()  # lengths unknown
    assert _input.lengths_unknown(arr)
    data = _input.prepare_array(arr, n_rows_hint=10 * N)
    (res,) = fit_many(data, bandwidths=[params["bandwidth"]], seeds=None, bin_seeding=params.get("bin_seeding", False),
                      min_bin_freq=1, cluster_all=params.get("cluster_all", True), max_iter=300, n_jobs=None)
    ref = numpy_fits[name]
    assert np.array_equal(res.cluster_centers, ref.cluster_centers_) and res.n_iter == ref.n_iter_
    np.testing.assert_array_equal(res.labels.compute(), ref.labels_)
    assert res.n_seeds == ref.n_seeds_
