"""dshift.index: per-chunk k-d tree (Morton order, node boxes and compensated node sums)."""

from __future__ import annotations

import numpy as np
import pytest

from _parity import check_ball_sums, exact_sum
from dshift.index import ChunkIndex, build_index


def test_tree_invariants_and_input_untouched():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(1000, 3)).astype(np.float32)
    before = X.copy()
    X.setflags(write=False)
    ix = build_index(X, leaf_size=16)
    np.testing.assert_array_equal(X, before)
    assert isinstance(ix, ChunkIndex)
    assert ix.points.dtype == np.float64
    # rows are a permutation of the input
    np.testing.assert_array_equal(np.sort(ix.points, axis=0), np.sort(before.astype(np.float64), axis=0))
    assert sorted(map(tuple, ix.points)) == sorted(map(tuple, before.astype(np.float64)))
    assert ix.start[0] == 0 and ix.stop[0] == 1000
    for node in range(len(ix.start)):
        a, b = ix.start[node], ix.stop[node]
        pts = ix.points[a:b]
        np.testing.assert_array_equal(pts.min(0), ix.lower[node])
        np.testing.assert_array_equal(pts.max(0), ix.upper[node])
        np.testing.assert_array_equal(ix.sum_s[node] + ix.sum_c[node], [*exact_sum(pts), b - a])
        child = ix.left[node]
        if child >= 0:
            assert ix.start[child] == a and ix.stop[child + 1] == b and ix.stop[child] == ix.start[child + 1]
        else:
            assert b - a <= 16
    assert ix.nbytes == sum(arr.nbytes for arr in ix)


@pytest.mark.parametrize("shape", ["outlier", "many-dims", "duplicates"])
def test_degenerate_layouts_split_by_medians(shape):
    """Grid keys cannot separate these rows (an outlier stretches the grid, too many
    dimensions for key bits, identical keys): leaves still hold at most leaf_size rows (but for
    identical points) and ball sums stay exact."""
    rng = np.random.RandomState(9)
    if shape == "outlier":
        X = np.vstack([rng.normal(size=(3000, 3)) * 1e-3, [[1e12, -1e12, 1e12]]])
    elif shape == "many-dims":
        X = rng.normal(size=(800, 40))
    else:
        X = np.repeat(rng.normal(size=(40, 2)), 50, axis=0)
    ix = build_index(X, leaf_size=16)
    sizes = (ix.stop - ix.start)[ix.left < 0]
    if shape != "duplicates":
        assert sizes.max() <= 16
    bw = 3e-3 if shape == "outlier" else (6.0 if shape == "many-dims" else 0.5)
    check_ball_sums(X, X[:25], bw, 16)


def test_lopsided_key_splits_grow_the_node_arrays():
    """8-D blobs: splits on key bits peel off a few outlying rows at many levels, so the tree
    has more nodes than a balanced one (the arrays grow; before, the build wrote past them)."""
    from sklearn.datasets import make_blobs

    from dshift.index import LEAF_SIZE

    centers = 50.0 + (20.0 / np.sqrt(2.0)) * np.eye(8)[:4]
    X, _ = make_blobs(n_samples=20_000, centers=centers, cluster_std=2.79, random_state=0)
    ix = build_index(X)
    assert len(ix.start) > 2 * (2 * len(X) // LEAF_SIZE + 1) + 1 + 2 * 32  # the first allocation
    leaves = ix.left < 0
    assert np.sort(np.concatenate([np.arange(a, b) for a, b in zip(ix.start[leaves], ix.stop[leaves])])).tolist() \
        == list(range(len(X)))  # every row in exactly one leaf
    check_ball_sums(X, np.vstack([X[::4000], centers]), 12.89, LEAF_SIZE)


@pytest.mark.parametrize(
    ("chunks", "cap_rows", "expected"),
    [
        ([5e6] * 20, 5_592_405, [1] * 20),  # 100M rows: 20 chunks of 5M never pair up (a worker's memory)
        ([5e5] * 20, 5_592_405, [10, 10]),  # 10M rows: two indexes of 5M rows, one per thread
        ([100.0] * 3, 5_592_405, [2, 1]),  # small data: still one index per thread
        ([300.0] * 10 + [5000.0], 1000, [3, 2, 3, 2, 1]),  # a chunk above the cap is an index alone
    ],
)
def test_index_groups_respect_the_cap(chunks, cap_rows, expected):
    import dask

    from dshift._dask import index_groups

    with dask.config.set({"dshift.index-bytes": cap_rows * 24, "scheduler": "threads", "num_workers": 2}):
        groups = index_groups(chunks, 3)
    assert [len(g) for g in groups] == expected
    assert [i for g in groups for i in g] == list(range(len(chunks)))  # consecutive, every chunk once


def test_unknown_chunk_lengths_group_by_equal_shares():
    from dshift._dask import chunk_rows, index_groups

    assert chunk_rows([5.0, 7.0], 99) == [5.0, 7.0]
    guess = chunk_rows([float("nan")] * 20, 10_000_000)  # a data set's partitions before the first pass
    assert guess == [500_000.0] * 20
    assert [len(g) for g in index_groups(guess, 3)] == [5, 5, 5, 5]  # as for known lengths (64 MiB each)


@pytest.mark.parametrize("n, bits", [(0, 36), (1, 36), (1000, 36), (100_000, 36), (3000, 12), (100, 60), (5000, 62)])
def test_radix_order_is_a_stable_argsort(n, bits):
    """The tree's sort, with row numbers packed into the keys' low bits (a key and a row number
    in 64 bits) or carried beside them (wider keys): numpy's stable argsort, ties included."""
    from dshift.index import _radix_order

    rng = np.random.default_rng(n + bits)
    keys = rng.integers(0, 2**bits, size=n, dtype=np.uint64)
    keys[: n // 3] = keys[n // 3 : 2 * (n // 3)]  # ties
    order, ordered = _radix_order(keys, bits)
    expected = np.argsort(keys, kind="stable")
    np.testing.assert_array_equal(order, expected)
    np.testing.assert_array_equal(ordered, keys[expected])
