"""dshift.engine: the fit's passes for several bandwidths at once, each equal to its own fit."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

import dshift
from _parity import blobs
from dshift import _input
from dshift.engine import fit_many


@pytest.mark.parametrize("params", [dict(), dict(bin_seeding=True), dict(seeds="some"), dict(cluster_all=False)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_many_equals_separate_fits(params, dtype):
    X = blobs(400, 2, 4, 0.8, seed=42, dtype=dtype)
    params = {"seeds": None, "bin_seeding": False, "cluster_all": True, **params}
    if params["seeds"] == "some":
        params["seeds"] = X[::9]
    bandwidths = [0.3, 1.0, np.float64(2.5), 8.0]
    for lazy in (False, True):
        data = _input.prepare(dshift.MeanShift(), da.from_array(X, chunks=(90, 2)) if lazy else X, reset=True)
        results = fit_many(data, bandwidths=bandwidths, min_bin_freq=1, max_iter=300, n_jobs=None, **params)
        for bw, res in zip(bandwidths, results):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                one = dshift.MeanShift(bandwidth=bw, **params).fit(X)
            assert np.array_equal(res.cluster_centers, one.cluster_centers_) and res.n_iter == one.n_iter_
            np.testing.assert_array_equal(np.asarray(res.labels.compute() if lazy else res.labels), one.labels_)


def test_first_pass_extras_and_the_callback_that_can_stop_the_fit():
    """A caller's own per-chunk work rides along the first pass; the callback sees the rows
    per chunk (unknown before) and its results, and may stop the fit before any seeding."""
    from dask.delayed import delayed

    X = blobs(300, 2, 3, 0.8, seed=1)
    frame_chunks = da.from_array(X, chunks=(100, 2))
    arr = da.Array(frame_chunks.dask, frame_chunks.name, chunks=((np.nan,) * 3, (2,)), meta=frame_chunks._meta)
    data = _input.prepare_array(arr, n_rows_hint=400)
    extra = [delayed(np.sum, pure=True)(chunk) for chunk in arr.to_delayed().ravel()]  # the same chunks
    seen = []
    (res,) = fit_many(data, bandwidths=[1.0], seeds=None, bin_seeding=True, min_bin_freq=1, cluster_all=True,
                      max_iter=300, n_jobs=None, first_pass=extra, on_first_pass=lambda s, v: seen.append((s, v)))
    ((scan, values),) = seen
    assert scan.chunk_rows == (100, 100, 100) and scan.n_nonfinite == 0
    np.testing.assert_allclose(values, [X[:100].sum(), X[100:200].sum(), X[200:].sum()])
    assert np.array_equal(res.cluster_centers, dshift.MeanShift(bandwidth=1.0, bin_seeding=True).fit(X).cluster_centers_)

    class Stop(Exception):
        pass

    def stop(scan, values):
        raise Stop

    with pytest.raises(Stop):
        fit_many(data, bandwidths=[1.0], seeds=None, bin_seeding=True, min_bin_freq=1, cluster_all=True,
                 max_iter=300, n_jobs=None, on_first_pass=stop, on_seeds=lambda n, s: pytest.fail("seeded"))


@pytest.mark.parametrize("weighted", [False, True])
def test_cluster_sizes_from_trees_labels_and_memory_agree(monkeypatch, weighted):
    """count_sizes counts from in-memory labels, from the kept trees (no read) or, with the trees
    not kept, from the lazy labels: the same rows (or weight) per label each way."""
    from dshift import _dask

    X = blobs(500, 2, 3, 0.7, seed=6)
    w = np.random.default_rng(2).integers(0, 4, len(X)).astype(float) if weighted else None
    params = dict(bandwidths=[0.5, 1.5, 40.0], seeds=None, bin_seeding=True, min_bin_freq=1, cluster_all=False,
                  max_iter=300, n_jobs=None, count_sizes=True)

    def sizes(lazy):
        data = _input.prepare(dshift.MeanShift(), da.from_array(X, chunks=(120, 2)) if lazy else X, reset=True,
                              sample_weight=w)
        results = fit_many(data, **params)
        assert all("sweep_sizes" in r.timings for r in results)
        return results

    in_memory = sizes(False)
    for r in in_memory:
        labels = np.asarray(r.labels)
        expected = np.bincount(labels + 1, weights=w, minlength=len(r.cluster_centers) + 1)
        assert r.sizes.dtype == (np.float64 if weighted else np.int64)
        np.testing.assert_array_equal(r.sizes, expected)
    assert in_memory[0].sizes[0] > 0  # outliers at the small bandwidth
    from_trees = sizes(True)
    monkeypatch.setattr(_dask, "persist_where", lambda nbytes: "disk")
    from_disk_trees = sizes(True)
    monkeypatch.setattr(_dask, "persist_where", lambda nbytes: None)
    from_labels = sizes(True)
    for a, *others in zip(in_memory, from_trees, from_disk_trees, from_labels):
        for b in others:
            np.testing.assert_array_equal(a.sizes, b.sizes)
