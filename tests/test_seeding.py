"""dshift.seeding: bin tables, their merge, the scan pass and get_bin_seeds (vs scikit-learn)."""

from __future__ import annotations


import dask
import dask.array as da
import numpy as np
import pytest
import sklearn.cluster as skc
from dask.delayed import delayed

import dshift
from _parity import blobs, reference_bins
from dshift.grouping import BinTable, merge_tables
from dshift.seeding import (
    get_bin_seeds,
    BinSummary,
    ScanResult,
    bin_seed_blocks,
    bin_seeds,
    bin_table,
    bins_fit,
    point_samples,
    point_seed_blocks,
    scan,
    scan_chunk,
    scan_graph,
    summarize_scan,
)


def _table_from_reference(X, bin_size):
    ref = reference_bins(X, bin_size)
    bins = np.array(list(ref.keys()), dtype=np.float64).reshape(len(ref), X.shape[1])
    counts = np.array([v[0] for v in ref.values()], dtype=np.int64)
    first = np.array([v[1] for v in ref.values()], dtype=np.int64)
    return bins, counts, first


def _assert_table(t: BinTable, bins, counts, first):
    np.testing.assert_array_equal(t.bins, bins)
    np.testing.assert_array_equal(t.counts, counts)
    np.testing.assert_array_equal(t.first, first)
    assert t.counts.dtype == np.float64 and t.first.dtype == np.int64 and t.bins.dtype == np.float64
    assert not t.counts_c.any()  # unit weights: exact counts


# ---------------------------------------------------------------- bin_table / merge_tables


@pytest.mark.parametrize("d", [1, 2, 5])
def test_bin_table_matches_python_dict(d):
    X = blobs(700, d, 4, 1.5, seed=d)
    for bin_size in (0.3, 1.0, 2.0):
        _assert_table(bin_table(X, bin_size), *_table_from_reference(X, bin_size))


def test_bin_table_order_counts_first_offset():
    X = np.array([[2.1], [0.2], [2.4], [-0.3], [5.0], [0.1], [2.0]])
    t = bin_table(X, 1.0, offset=100)
    np.testing.assert_array_equal(t.bins, [[2.0], [0.0], [5.0]])  # -0.3 -> -0.0 -> bin 0
    np.testing.assert_array_equal(t.counts, [3, 3, 1])
    np.testing.assert_array_equal(t.first, [100, 101, 104])


def test_negative_zero_and_half_to_even():
    X = np.array([[-0.4, 0.5], [0.4, -0.5], [0.0, -0.0], [1.5, 2.5], [2.0, 2.0], [-1.5, -2.5]])
    t = bin_table(X, 1.0)
    # -0.4, 0.4, 0.5, -0.5 round to (+/-)0; 1.5 -> 2 and 2.5 -> 2 (half to even); -1.5 -> -2
    np.testing.assert_array_equal(t.bins, [[0.0, 0.0], [2.0, 2.0], [-2.0, -2.0]])
    np.testing.assert_array_equal(t.counts, [3, 2, 1])
    assert not np.signbit(t.bins[0]).any()  # -0.0 stored as 0.0


def test_merge_tables_equals_whole_table():
    X = blobs(500, 2, 3, 1.0, seed=5)
    whole = bin_table(X, 0.7)
    for cuts in ([250], [1, 499], [0, 100, 333, 333, 500]):
        edges = [0, *cuts, len(X)]
        parts = [bin_table(X[a:b], 0.7, offset=a) for a, b in zip(edges[:-1], edges[1:])]
        acc = parts[0]
        for p in parts[1:]:
            acc = merge_tables(acc, p)
        _assert_table(acc, whole.bins, whole.counts, whole.first)
    # pairwise in a tree gives the same as left-to-right
    a, b, c, d_ = (bin_table(X[i : i + 125], 0.7, offset=i) for i in range(0, 500, 125))
    tree = merge_tables(merge_tables(a, b), merge_tables(c, d_))
    _assert_table(tree, whole.bins, whole.counts, whole.first)


def test_merge_tables_keeps_first_appearance_of_a():
    a = BinTable(np.array([[1.0], [3.0]]), np.array([2.0, 1.0]), np.zeros(2), np.array([0, 4]))
    b = BinTable(np.array([[3.0], [2.0], [1.0]]), np.array([5.0, 1.0, 1.0]), np.zeros(3), np.array([10, 11, 12]))
    m = merge_tables(a, b)
    _assert_table(m, [[1.0], [3.0], [2.0]], [3, 6, 1], [0, 4, 11])


def test_bin_table_empty_chunk():
    t = bin_table(np.empty((0, 2)), 1.0, offset=7)
    assert t.bins.shape == (0, 2) and len(t.counts) == 0 and len(t.first) == 0
    x = bin_table(np.array([[0.2, 0.2]]), 1.0, offset=7)
    _assert_table(merge_tables(t, x), [[0.0, 0.0]], [1], [7])
    _assert_table(merge_tables(x, t), [[0.0, 0.0]], [1], [7])


def test_bin_table_does_not_modify_input():
    X = blobs(100, 2, 2, 1.0, seed=6)
    before = X.copy()
    X.setflags(write=False)
    bin_table(X, 0.5)
    np.testing.assert_array_equal(X, before)


# ---------------------------------------------------------------- scan


def test_scan_chunk_counts_nonfinite_rows():
    X = blobs(20, 3, 2, 1.0, seed=7)
    X[3, 0] = np.nan
    X[3, 2] = np.inf
    X[11, 1] = -np.inf
    r = scan_chunk(X, (1.0,))
    assert (r.n_rows, r.n_nonfinite, r.tables, r.chunk_rows) == (20, 2, (), (20,))
    r = scan_chunk(X[:3])
    assert (r.n_rows, r.n_nonfinite, r.tables) == (3, 0, ())


@pytest.mark.parametrize("rows", [1, 7, 64, 500])
def test_scan_is_chunking_invariant(rows):
    X = blobs(500, 2, 3, 1.0, seed=8)
    whole, coarse = bin_table(X, 0.5), bin_table(X, 2.0)
    r = scan(da.from_array(X, chunks=(rows, 2)), (0.5, 2.0))  # one read, a table per bin size
    assert r.n_rows == 500 and r.n_nonfinite == 0
    _assert_table(r.tables[0], whole.bins, whole.counts, whole.first)
    _assert_table(r.tables[1], coarse.bins, coarse.counts, coarse.first)
    X2 = X.copy()
    X2[[5, 499]] = np.nan
    r = scan(da.from_array(X2, chunks=(rows, 2)), (0.5,))
    assert (r.n_rows, r.n_nonfinite, r.tables) == (500, 2, ())


# ---------------------------------------------------------------- bin seeds from a scan


def test_bin_seeds_and_summary():
    t = BinTable(np.array([[1.0, 2.0], [3.0, -1.0], [0.0, 0.0]]), np.array([3.0, 1.0, 2.0]), np.zeros(3),
                 np.array([0, 1, 4]))
    result = ScanResult(6, 0, (t,))
    summary = summarize_scan(result, 2)
    assert summary == BinSummary(n_rows=6, n_nonfinite=0, n_kept=2, fullest=3.0, total=6.0, chunk_rows=())
    assert bins_fit(summary, 0.1, 2)
    s = bin_seeds(t, 0.1, 2)
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s, np.array([[1.0, 2.0], [0.0, 0.0]], np.float32) * np.float32(0.1))
    assert bin_seeds(t, np.float64(0.1), 2).dtype == np.float64  # NumPy's promotion, as scikit-learn
    with pytest.raises(ValueError, match="min_bin_freq=4"):
        bins_fit(summarize_scan(result, 4), 0.1, 4)
    alone = ScanResult(2, 0, (BinTable(np.array([[1.0], [2.0]]), np.array([1.0, 1.0]), np.zeros(2), np.array([0, 1])),))
    with pytest.warns(UserWarning, match=r"Binning data failed with provided bin_size=0\.100000"):
        assert not bins_fit(summarize_scan(alone, 1), 0.1, 1)


@pytest.mark.parametrize("block_size", [1, 5, 40, 1000])
def test_seed_blocks_are_spatial_cells_holding_every_seed_once(block_size):
    X = blobs(300, 2, 3, 1.0, seed=4)
    arr = da.from_array(X, chunks=(70, 2))
    scanned = scan_graph(arr, (0.5,))
    summary = dask.compute(delayed(summarize_scan)(scanned, 2))[0]
    with dask.config.set({"dshift.seed-block-size": block_size}):
        bins = dask.compute(*bin_seed_blocks(scanned, 0, summary.n_kept, 0.5, 2))
        samples = dask.compute(*point_samples(arr, 300))
        points = dask.compute(*point_seed_blocks(arr, list(samples), 300))
    for blocks, seeds in ((bins, get_bin_seeds(X, 0.5, 2)), (points, X)):
        ids = np.concatenate([b.seed for b in blocks])
        np.testing.assert_array_equal(np.sort(ids), np.arange(len(seeds)))
        np.testing.assert_array_equal(np.concatenate([b.position for b in blocks]), seeds[ids].astype(np.float64))
        assert len(blocks) == max(1, min(-(-len(seeds) // block_size), len(seeds)))
        if block_size >= 40:  # cells of a sampled k-d plan: about the block size
            assert max(len(b.seed) for b in blocks) <= 2 * block_size
        if len(blocks) >= 4 and block_size > 1:  # ... and compact
            spread = np.mean([np.ptp(b.position, axis=0).sum() for b in blocks if len(b.seed) > 1])
            assert spread < np.ptp(seeds, axis=0).sum() / 2


# ---------------------------------------------------------------- get_bin_seeds vs sklearn


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("min_bin_freq", [1, 3, 10])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_get_bin_seeds_matches_sklearn(d, min_bin_freq, dtype):
    X = blobs(600, d, 3, 1.0, seed=d + min_bin_freq, dtype=dtype)
    for bin_size in (0.5, 1.0, 3.0):
        sk = skc.get_bin_seeds(X, bin_size, min_bin_freq)
        if len(sk) == 0:  # sklearn returns no seeds (and MeanShift then crashes): dshift says why
            with pytest.raises(ValueError, match="min_bin_freq"):
                dshift.get_bin_seeds(X, bin_size, min_bin_freq)
            continue
        ds = dshift.get_bin_seeds(X, bin_size, min_bin_freq)
        assert ds.dtype == np.float32 == sk.dtype
        np.testing.assert_array_equal(ds, sk)  # values and order of first appearance
        # Dask input gives the same seeds
        np.testing.assert_array_equal(dshift.get_bin_seeds(da.from_array(X, chunks=(37, d)), bin_size, min_bin_freq), sk)


def test_get_bin_seeds_integer_and_list_input():
    X = np.array([[0, 0], [1, 1], [0, 1], [5, 5], [5, 6], [5, 5]], dtype=np.int64)
    np.testing.assert_array_equal(dshift.get_bin_seeds(X, 2.0, 2), skc.get_bin_seeds(X, 2.0, 2))
    np.testing.assert_array_equal(dshift.get_bin_seeds(X.tolist(), 2.0, 1), skc.get_bin_seeds(X, 2.0, 1))


def test_get_bin_seeds_bin_size_zero_returns_x():
    X = blobs(20, 2, 2, 1.0, seed=9)
    assert dshift.get_bin_seeds(X, 0) is X
    assert dshift.get_bin_seeds(X, 0.0, 5) is X


def test_get_bin_seeds_binning_failed_warning_returns_x():
    X = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    with pytest.warns(UserWarning, match=r"Binning data failed with provided bin_size=1\.000000, using data points as seeds\."):
        sk = skc.get_bin_seeds(X, 1.0)
    with pytest.warns(UserWarning, match=r"Binning data failed with provided bin_size=1\.000000, using data points as seeds\."):
        ds = dshift.get_bin_seeds(X, 1.0)
    assert ds is X and sk is X


def test_get_bin_seeds_no_bin_reaches_min_bin_freq():
    X = np.array([[0.0], [0.1], [5.0], [5.1], [9.0]])
    with pytest.raises(ValueError, match=r"min_bin_freq=3"):
        dshift.get_bin_seeds(X, 1.0, 3)
    with pytest.raises(ValueError, match=r"min_bin_freq"):
        dshift.MeanShift(bandwidth=1.0, bin_seeding=True, min_bin_freq=3).fit(X)
    with pytest.raises(ValueError):  # sklearn crashes ("max() arg is an empty sequence")
        skc.MeanShift(bandwidth=1.0, bin_seeding=True, min_bin_freq=3).fit(X)


def test_get_bin_seeds_nan_raises():
    X = np.array([[0.0], [np.nan], [1.0]])
    with pytest.raises(ValueError, match="NaN or infinity"):
        dshift.get_bin_seeds(X, 1.0)


def test_get_bin_seeds_negative_zero_bins_merge_like_sklearn():
    X = np.array([[-0.3, 0.2], [0.3, -0.2], [0.1, 0.1], [4.0, 4.0]])
    sk = skc.get_bin_seeds(X, 1.0, 2)
    ds = dshift.get_bin_seeds(X, 1.0, 2)
    np.testing.assert_array_equal(ds, sk)
    assert len(ds) == 1


@pytest.mark.parametrize("bin_size", [np.float64(0.1), 0.1, np.float32(0.1)], ids=["np.float64", "float", "np.float32"])
def test_get_bin_seeds_follows_numpy_promotion_like_sklearn(bin_size):
    # float32 data / np.float64 bin size is computed in float64 (bin 3), / a Python float in
    # float32 (0.35f / 0.1 rounds to 3.5 -> bin 4); the seeds' dtype follows the same rule.
    X = np.array([[0.26], [0.35], [0.35], [0.48]], dtype=np.float32)
    sk = skc.get_bin_seeds(X, bin_size, 2)
    ds = dshift.get_bin_seeds(X, bin_size, 2)
    assert ds.dtype == sk.dtype
    np.testing.assert_array_equal(ds, sk)


def test_weighted_bins_equal_sklearn_on_repeated_rows():
    X = blobs(400, 2, 3, 1.0, seed=9)
    w = np.random.RandomState(3).randint(0, 4, size=400)
    rep = np.repeat(X, w, axis=0)
    for min_bin_freq in (1, 3, 7):
        want = skc.get_bin_seeds(rep, 0.7, min_bin_freq)
        np.testing.assert_array_equal(dshift.get_bin_seeds(X, 0.7, min_bin_freq, sample_weight=w), want)
        lazy = dshift.get_bin_seeds(da.from_array(X, chunks=(37, 2)), 0.7, min_bin_freq,
                                    sample_weight=da.from_array(w.astype(float), chunks=41))
        np.testing.assert_array_equal(lazy, want)


def test_fractional_bin_weights_are_compensated():
    X = np.zeros((30, 1))
    w = np.full(30, 0.1)  # 0.1 added 30 times in float64 is not 3.0; compensated it is
    table = bin_table(X, 1.0, weights=w)
    assert table.frequency[0] == 3.0
    assert len(dshift.get_bin_seeds(X, 1.0, 3, sample_weight=w)) == 1
