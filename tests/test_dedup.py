"""dshift.dedup: exact deduplication, and fits of the distinct rows equal to fits of all rows."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import MeanShift as SkMeanShift

import dshift
from dshift.dedup import deduplicate, distinct_fraction, sample_hashes

# Found by search (scikit-learn 1.9): two distinct rows' climbs end on the bit-identical
# position with different intensities, and the order of the rows decides which one counts.
# Every row a seed (max_iter=0): the order of last occurrences gives scikit-learn's result.
TIE_POINTS = [[3, 4], [1, 3], [3, 3], [2, 0], [1, 4], [6, 4], [6, 6], [1, 0], [5, 3], [6, 3], [3, 3], [4, 0],
              [3, 2], [3, 3], [4, 0]]
# Bin seeding (max_iter=1): the order of first occurrences does.
TIE_BINS = [[2, 8], [7, 2], [2, 7], [3, 1], [8, 6], [4, 4], [0, 7], [3, 1], [6, 2], [5, 2], [3, 8], [6, 7], [6, 6],
            [5, 0], [6, 7], [6, 5], [4, 6], [2, 3], [3, 8], [1, 2], [3, 3], [1, 0], [2, 1], [4, 7], [7, 6], [5, 5],
            [8, 1], [8, 5], [6, 1], [2, 8]]


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


def _lattice(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rounded blobs (many repeated rows, -0.0 among them) and integer weights with zeros."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 6.0, 6.0]])
    X = np.round(centers[rng.integers(0, 3, n)] + rng.normal(0, 1.2, (n, 3)))
    zeros = X == 0
    X[zeros] = np.where(rng.integers(0, 2, int(zeros.sum())) == 1, -0.0, 0.0)  # some zeros negative
    return X, rng.integers(0, 4, n).astype(float)


def _reference(X: np.ndarray, w: np.ndarray | None, keep: str) -> tuple[np.ndarray, np.ndarray]:
    """pandas: drop_duplicates(keep) of the rows of positive weight, weights summed."""
    frame = pd.DataFrame(X + 0.0)
    frame["w"] = 1.0 if w is None else w
    frame = frame[frame["w"] > 0]
    cols = list(frame.columns[:-1])
    totals = frame.groupby(cols, sort=False)["w"].sum()
    rows = frame.drop_duplicates(cols, keep=keep)[cols]
    return rows.to_numpy(), totals.loc[list(map(tuple, rows.to_numpy()))].to_numpy()


@pytest.mark.parametrize("keep", ["last", "first"])
@pytest.mark.parametrize("weighted", [False, True])
def test_distinct_rows_in_order_of_their_kept_occurrence(keep, weighted):
    X, w = _lattice()
    w = w if weighted else None
    rows, weights = deduplicate(X, w, keep=keep)
    want_rows, want_w = _reference(X, w, keep)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(weights, want_w)
    # Dask: odd chunks, weights chunked otherwise; the same arrays whatever the chunking
    Xd = da.from_array(X, chunks=(701, 3))
    wd = None if w is None else da.from_array(w, chunks=997)
    rows_d, weights_d = deduplicate(Xd, wd, keep=keep)
    assert not np.isnan(rows_d.chunks[0]).any() and rows_d.chunks[0] == weights_d.chunks[0]
    np.testing.assert_array_equal(rows_d.compute(), rows)
    np.testing.assert_array_equal(weights_d.compute(), weights)


def test_dtypes_frames_and_weight_columns():
    X, w = _lattice(500)
    rows, weights = deduplicate(X.astype(np.float32))
    assert rows.dtype == np.float32 and weights.dtype == np.float64 and weights.sum() == 500
    rows_i, _ = deduplicate(X.astype(np.int64))
    assert rows_i.dtype == np.float64
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(w=w)
    ddf = dask.dataframe.from_pandas(frame, npartitions=3)
    rows_f, weights_f = deduplicate(ddf, "w")
    want_rows, want_w = deduplicate(X, w)
    np.testing.assert_array_equal(rows_f.compute(), want_rows)
    np.testing.assert_array_equal(weights_f.compute(), want_w)


@pytest.mark.parametrize("bin_seeding, keep", [(True, "first"), (False, "last")])
def test_fit_of_distinct_rows_equals_fit_of_rows(bin_seeding, keep):
    X, w = _lattice(1500, seed=1)
    for weights in (None, w):
        ref = dshift.MeanShift(bandwidth=2.0, bin_seeding=bin_seeding).fit(X, sample_weight=weights)
        rows, counts = deduplicate(da.from_array(X, chunks=(333, 3)),
                                   None if weights is None else da.from_array(weights, chunks=(400,)), keep=keep)
        got = dshift.MeanShift(bandwidth=2.0, bin_seeding=bin_seeding).fit(rows, sample_weight=counts)
        np.testing.assert_array_equal(got.cluster_centers_, ref.cluster_centers_)
        assert got.n_iter_ == ref.n_iter_
        assert got.n_seeds_ == (ref.n_seeds_ if bin_seeding else rows.shape[0])
        np.testing.assert_array_equal(got.predict(X), ref.labels_)


@pytest.mark.parametrize("data, params, right, wrong", [
    (TIE_POINTS, {"max_iter": 0}, "last", "first"),
    (TIE_BINS, {"max_iter": 1, "bin_seeding": True}, "first", "last"),
])
def test_keep_decides_ties_as_scikit_learn(data, params, right, wrong):
    X = np.asarray(data, dtype=float)
    want = SkMeanShift(bandwidth=2.0, **params).fit(X).cluster_centers_
    np.testing.assert_array_equal(dshift.MeanShift(bandwidth=2.0, **params).fit(X).cluster_centers_, want)

    def fit(keep):
        rows, counts = deduplicate(X, keep=keep)
        return dshift.MeanShift(bandwidth=2.0, **params).fit(rows, sample_weight=counts).cluster_centers_

    np.testing.assert_array_equal(fit(right), want)
    assert not np.array_equal(fit(wrong), want)  # the witness: the order matters


def test_errors():
    with pytest.raises(ValueError, match="keep must be"):
        deduplicate(np.ones((3, 2)), keep="any")
    with pytest.raises(ValueError, match="NaN"):
        deduplicate(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        deduplicate(da.from_array(np.array([[1.0, 2.0], [np.inf, 0.0]]), chunks=1))
    with pytest.raises(ValueError, match="Negative values"):
        deduplicate(np.ones((3, 2)), da.from_array(np.array([1.0, -1.0, 1.0])))
    with pytest.raises(ValueError, match="names no column"):
        deduplicate(np.ones((3, 2)), "w")


def test_a_sample_by_value_keeps_every_copy():
    rng = np.random.default_rng(2)
    distinct = rng.normal(size=(20_000, 2))
    X = np.repeat(distinct, 20, axis=0)  # 5 % distinct
    hashes = sample_hashes(X, 0.05)
    assert len(hashes) % 20 == 0 and 15_000 < len(hashes) < 25_000
    assert distinct_fraction(hashes) == pytest.approx(0.05)
    assert distinct_fraction(sample_hashes(distinct, 1.0)) == 1.0 and distinct_fraction(hashes[:0]) == 1.0
