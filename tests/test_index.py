"""dshift.index: per-chunk k-d tree with node counts and compensated sums vs brute force."""

from __future__ import annotations

import numpy as np
import pytest

from _parity import brute_ball, exact_sum
from dshift.ballsums import ball_sums
from dshift.index import ChunkIndex, build_index


def _sums(index, centers, bandwidth):
    """ball_sums as (count, s, c): the mass column of unit weights is the point count."""
    s, c = ball_sums(index, centers, bandwidth)
    assert s.shape == c.shape and np.all(c[:, -1] == 0)  # counts are exact
    return s[:, -1].astype(np.int64), s[:, :-1], c[:, :-1]


def _check_ball_sums(X, centers, bandwidth, leaf_size):
    ix = build_index(X, leaf_size=leaf_size)
    count, s, c = _sums(ix, centers, bandwidth)
    assert count.dtype == np.int64 and count.shape == (len(centers),)
    assert s.shape == c.shape == (len(centers), X.shape[1])
    for q, m in enumerate(np.asarray(centers, dtype=np.float64)):
        inside = brute_ball(X, m, bandwidth)
        assert count[q] == inside.sum(), (q, count[q], inside.sum())
        # compensated sum rounds to the correctly rounded sum
        np.testing.assert_array_equal(s[q] + c[q], exact_sum(X[inside]) if inside.any() else np.zeros(X.shape[1]))
    return count


@pytest.mark.parametrize("leaf_size", [1, 2, 5, 64])
@pytest.mark.parametrize("d", [1, 2, 3, 8])
def test_ball_sums_random_vs_brute(leaf_size, d):
    rng = np.random.RandomState(d * 100 + leaf_size)
    X = rng.normal(size=(400, d)) * rng.uniform(0.5, 3, size=d)
    centers = np.vstack([X[:20], rng.normal(size=(10, d)) * 2, [[50.0] * d]])
    for bw in (0.3, 1.0, 2.5, 1000.0):
        count = _check_ball_sums(X, centers, bw, leaf_size)
    assert count[-1] == len(X)  # huge ball: every point, through whole-node sums


@pytest.mark.parametrize("leaf_size", [1, 4, 64])
def test_boundary_points_exactly_at_bandwidth_are_inside(leaf_size):
    # integer grid: squared distances are exact, many points lie exactly on the sphere
    g = np.array([[i, j] for i in range(-6, 7) for j in range(-6, 7)], dtype=np.float64)
    for bw in (1.0, 2.0, 5.0):  # 5: (3, 4) is exactly on the boundary
        count = _check_ball_sums(g, np.array([[0.0, 0.0], [1.0, -2.0], [6.0, 6.0]]), bw, leaf_size)
    assert count[0] == 81  # lattice points with i^2 + j^2 <= 25
    one = build_index(np.array([[3.0, 4.0]]))
    assert _sums(one, np.zeros((1, 2)), 5.0)[0][0] == 1
    assert _sums(one, np.zeros((1, 2)), np.nextafter(5.0, 0))[0][0] == 0
    # 1-D: exact boundary on both sides
    x = np.arange(-5, 6, dtype=np.float64)[:, None]
    cnt, s, c = _sums(build_index(x, leaf_size=leaf_size), np.array([[0.0], [0.5]]), 2.0)
    np.testing.assert_array_equal(cnt, [5, 4])  # {-2..2} and {-1, 0, 1, 2} (|2.5| > 2)
    np.testing.assert_array_equal(s + c, [[0.0], [2.0]])


def test_duplicates_and_constant_chunk():
    X = np.repeat(np.array([[1.0, 2.0], [1.0, 2.0], [4.0, 0.5]]), 50, axis=0)
    count = _check_ball_sums(X, np.array([[1.0, 2.0], [4.0, 0.5], [2.5, 1.25]]), 0.0, 8)
    np.testing.assert_array_equal(count, [100, 50, 0])
    _check_ball_sums(X, X[:3], 1.0, 8)
    const = np.full((300, 3), 0.1)
    ix = build_index(const, leaf_size=4)
    assert len(ix.start) == 1  # zero spread: one leaf, whatever its size
    cnt, s, c = _sums(ix, const[:1], 0.0)
    assert cnt[0] == 300
    assert s[0, 0] + c[0, 0] == exact_sum(const)[0]  # 30.000000000000004 would be the naive sum


def test_empty_chunk_and_one_row():
    empty = build_index(np.empty((0, 3)))
    assert empty.nbytes == 0 and len(empty.start) == 0
    cnt, s, c = _sums(empty, np.zeros((4, 3)), 1.0)
    np.testing.assert_array_equal(cnt, np.zeros(4, np.int64))
    np.testing.assert_array_equal(s + c, np.zeros((4, 3)))
    one = build_index(np.array([[1.0, -1.0, 2.0]]))
    cnt, s, c = _sums(one, np.array([[1.0, -1.0, 2.0], [1.0, -1.0, 3.5]]), 1.0)
    np.testing.assert_array_equal(cnt, [1, 0])
    np.testing.assert_array_equal(s + c, [[1.0, -1.0, 2.0], [0.0, 0.0, 0.0]])


def test_zero_centers():
    ix = build_index(np.random.RandomState(0).normal(size=(10, 2)))
    cnt, s, c = _sums(ix, np.empty((0, 2)), 1.0)
    assert cnt.shape == (0,) and s.shape == (0, 2)


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


def test_integer_chunk_converted_to_float64():
    X = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32)
    ix = build_index(X)
    assert ix.points.dtype == np.float64
    cnt, s, c = _sums(ix, [[3, 4]], 3.0)
    assert cnt[0] == 3
    np.testing.assert_array_equal(s + c, [[9.0, 12.0]])


def test_compensated_sum_is_exact_where_naive_sum_is_not():
    # 1e16 + 1 - 1e16: naive float sums lose the 1
    X = np.array([[1e16], [1.0], [-1e16], [1.0]])
    for leaf in (1, 64):
        cnt, s, c = _sums(build_index(X, leaf_size=leaf), [[0.0]], 1e17)
        assert cnt[0] == 4
        assert s[0, 0] + c[0, 0] == 2.0


@pytest.mark.parametrize("leaf_size", [1, 4, 64])
def test_integer_weights_equal_repeated_rows(leaf_size):
    """A row of weight w adds exactly what w copies of it add: masses and sums agree bit for bit."""
    rng = np.random.RandomState(7)
    X = np.round(rng.normal(size=(300, 3)), 3) * 0.1  # values whose multiples round
    w = rng.randint(0, 5, size=300).astype(np.float64)
    centers = np.vstack([X[:15], rng.normal(size=(5, 3))])
    for bw in (0.05, 0.2, 10.0):
        s_w, c_w = ball_sums(build_index(X, w, leaf_size=leaf_size), centers, bw)
        s_r, c_r = ball_sums(build_index(np.repeat(X, w.astype(int), axis=0), leaf_size=leaf_size), centers, bw)
        np.testing.assert_array_equal(s_w + c_w, s_r + c_r)


def test_fractional_weights_vs_exact_weighted_sums():
    from fractions import Fraction

    rng = np.random.RandomState(8)
    X = rng.normal(size=(200, 2))
    w = rng.uniform(0, 3, size=200)
    w[::7] = 0.0
    m = np.array([0.1, -0.2])
    s, c = ball_sums(build_index(X, w, leaf_size=4), m[None], 1.0)
    inside = brute_ball(X, m, 1.0)
    exact = [float(sum(Fraction(wi) * Fraction(xi) for wi, xi in zip(w[inside], X[inside, j]))) for j in range(2)]
    np.testing.assert_array_equal((s + c)[0], [*exact, float(sum(Fraction(wi) for wi in w[inside]))])


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
    _check_ball_sums(X, X[:25], bw, 16)


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
    _check_ball_sums(X, np.vstack([X[::4000], centers]), 12.89, LEAF_SIZE)


@pytest.mark.parametrize(
    ("chunks", "cap_rows", "expected"),
    [
        ([5e6] * 20, 5_592_405, [1] * 20),  # 100M rows: 20 chunks of 5M never pair up (a worker's memory)
        ([5e5] * 20, 5_592_405, [10, 10]),  # 10M rows: two indexes of 5M rows, one per thread
        ([100.0] * 3, 5_592_405, [2, 1]),  # small data: still one index per thread
        ([300.0] * 10 + [5000.0], 1000, [3, 2, 3, 2, 1]),  # a chunk above the cap is an index alone
        ([float("nan")] * 5, 5_592_405, [1] * 5),  # unknown lengths: one index per chunk
    ],
)
def test_index_groups_respect_the_cap(chunks, cap_rows, expected):
    import dask

    from dshift._dask import index_groups

    with dask.config.set({"dshift.index-bytes": cap_rows * 24, "scheduler": "threads", "num_workers": 2}):
        groups = index_groups(chunks, 3)
    assert [len(g) for g in groups] == expected
    assert [i for g in groups for i in g] == list(range(len(chunks)))  # consecutive, every chunk once
