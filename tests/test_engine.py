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
