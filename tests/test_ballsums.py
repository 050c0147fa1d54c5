"""dshift.ballsums: seed groups, and ball masses and sums of an index vs brute force."""

from __future__ import annotations

import numpy as np
import pytest

from _parity import ball_sums_count, brute_ball, check_ball_sums, exact_sum
from dshift.ballsums import GROUP_FULL, GROUP_SIZE, GROUP_WIDTH, ball_sums, group_seeds
from dshift.index import build_index


@pytest.mark.parametrize("leaf_size", [1, 2, 5, 64])
@pytest.mark.parametrize("d", [1, 2, 3, 8])
def test_ball_sums_random_vs_brute(leaf_size, d):
    rng = np.random.RandomState(d * 100 + leaf_size)
    X = rng.normal(size=(400, d)) * rng.uniform(0.5, 3, size=d)
    centers = np.vstack([X[:20], rng.normal(size=(10, d)) * 2, [[50.0] * d]])
    for bw in (0.3, 1.0, 2.5, 1000.0):
        count = check_ball_sums(X, centers, bw, leaf_size)
    assert count[-1] == len(X)  # huge ball: every point, through whole-node sums


@pytest.mark.parametrize("leaf_size", [1, 4, 64])
def test_boundary_points_exactly_at_bandwidth_are_inside(leaf_size):
    # integer grid: squared distances are exact, many points lie exactly on the sphere
    g = np.array([[i, j] for i in range(-6, 7) for j in range(-6, 7)], dtype=np.float64)
    for bw in (1.0, 2.0, 5.0):  # 5: (3, 4) is exactly on the boundary
        count = check_ball_sums(g, np.array([[0.0, 0.0], [1.0, -2.0], [6.0, 6.0]]), bw, leaf_size)
    assert count[0] == 81  # lattice points with i^2 + j^2 <= 25
    one = build_index(np.array([[3.0, 4.0]]))
    assert ball_sums_count(one, np.zeros((1, 2)), 5.0)[0][0] == 1
    assert ball_sums_count(one, np.zeros((1, 2)), np.nextafter(5.0, 0))[0][0] == 0
    # 1-D: exact boundary on both sides
    x = np.arange(-5, 6, dtype=np.float64)[:, None]
    cnt, s, c = ball_sums_count(build_index(x, leaf_size=leaf_size), np.array([[0.0], [0.5]]), 2.0)
    np.testing.assert_array_equal(cnt, [5, 4])  # {-2..2} and {-1, 0, 1, 2} (|2.5| > 2)
    np.testing.assert_array_equal(s + c, [[0.0], [2.0]])


def test_duplicates_and_constant_chunk():
    X = np.repeat(np.array([[1.0, 2.0], [1.0, 2.0], [4.0, 0.5]]), 50, axis=0)
    count = check_ball_sums(X, np.array([[1.0, 2.0], [4.0, 0.5], [2.5, 1.25]]), 0.0, 8)
    np.testing.assert_array_equal(count, [100, 50, 0])
    check_ball_sums(X, X[:3], 1.0, 8)
    const = np.full((300, 3), 0.1)
    ix = build_index(const, leaf_size=4)
    assert len(ix.start) == 1  # zero spread: one leaf, whatever its size
    cnt, s, c = ball_sums_count(ix, const[:1], 0.0)
    assert cnt[0] == 300
    assert s[0, 0] + c[0, 0] == exact_sum(const)[0]  # 30.000000000000004 would be the naive sum


def test_empty_chunk_and_one_row():
    empty = build_index(np.empty((0, 3)))
    assert empty.nbytes == 0 and len(empty.start) == 0
    cnt, s, c = ball_sums_count(empty, np.zeros((4, 3)), 1.0)
    np.testing.assert_array_equal(cnt, np.zeros(4, np.int64))
    np.testing.assert_array_equal(s + c, np.zeros((4, 3)))
    one = build_index(np.array([[1.0, -1.0, 2.0]]))
    cnt, s, c = ball_sums_count(one, np.array([[1.0, -1.0, 2.0], [1.0, -1.0, 3.5]]), 1.0)
    np.testing.assert_array_equal(cnt, [1, 0])
    np.testing.assert_array_equal(s + c, [[1.0, -1.0, 2.0], [0.0, 0.0, 0.0]])


def test_zero_centers():
    ix = build_index(np.random.RandomState(0).normal(size=(10, 2)))
    cnt, s, c = ball_sums_count(ix, np.empty((0, 2)), 1.0)
    assert cnt.shape == (0,) and s.shape == (0, 2)


def test_integer_chunk_converted_to_float64():
    X = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int32)
    ix = build_index(X)
    assert ix.points.dtype == np.float64
    cnt, s, c = ball_sums_count(ix, [[3, 4]], 3.0)
    assert cnt[0] == 3
    np.testing.assert_array_equal(s + c, [[9.0, 12.0]])


def test_compensated_sum_is_exact_where_naive_sum_is_not():
    # 1e16 + 1 - 1e16: naive float sums lose the 1
    X = np.array([[1e16], [1.0], [-1e16], [1.0]])
    for leaf in (1, 64):
        cnt, s, c = ball_sums_count(build_index(X, leaf_size=leaf), [[0.0]], 1e17)
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


def test_group_seeds_partitions_into_compact_groups():
    """Every seed in exactly one group; a group holds at most GROUP_SIZE seeds and its box's
    diagonal is at most GROUP_WIDTH bandwidths, less for fewer than GROUP_FULL seeds (a lone
    seed always qualifies)."""
    rng = np.random.RandomState(3)
    centers = np.vstack([rng.normal(size=(500, 3)) * 0.05, rng.uniform(-20, 20, size=(300, 3)), np.zeros((40, 3))])
    bandwidth = 1.0
    order, bounds = group_seeds(centers, bandwidth)
    assert sorted(order.tolist()) == list(range(len(centers)))
    assert bounds[0] == 0 and bounds[-1] == len(centers) and np.all(np.diff(bounds) > 0)
    for a, b in zip(bounds[:-1], bounds[1:]):
        group = centers[order[a:b]]
        assert len(group) <= GROUP_SIZE
        if len(group) > 1:
            allowed2 = (GROUP_WIDTH * bandwidth * min(1.0, len(group) / GROUP_FULL)) ** 2
            assert np.sum((group.max(0) - group.min(0)) ** 2) <= allowed2
    assert len(bounds) - 1 < len(centers) // 2  # the tight cloud shares walks
    index = build_index(centers)
    alone = (np.arange(len(centers)), np.arange(len(centers) + 1))  # every seed its own walk
    np.testing.assert_array_equal(np.add(*ball_sums(index, centers, bandwidth, (order, bounds))),
                                  np.add(*ball_sums(index, centers, bandwidth, alone)))
    empty_order, empty_bounds = group_seeds(np.empty((0, 3)), bandwidth)
    assert len(empty_order) == 0 and empty_bounds.tolist() == [0]


@pytest.mark.parametrize("weighted", [False, True])
def test_cut_leaf_mostly_inside_subtracts_the_rows_outside_exactly(weighted):
    """One leaf, four of its five rows inside the ball: the leaf's sums are added and the row
    outside subtracted, and the compensated sum is still the exact sum of the rows inside."""
    X = np.array([[1e16], [-1e16 + 4.0], [1.0], [1.0], [2e16]])
    w = np.array([1.0, 1.0, 1.0, 1.0, 3.0]) if weighted else None
    index = build_index(X, w)
    assert len(index.start) == 1  # a single leaf, cut by the sphere
    s, c = ball_sums(index, np.zeros((1, 1)), 1.5e16)
    np.testing.assert_array_equal(s + c, [[6.0, 4.0]])  # 1e16 - 1e16 + 4 + 1 + 1; four rows of weight 1
    s, c = ball_sums(index, np.array([[2e16]]), 0.5e16)  # mostly outside: the row inside is added
    np.testing.assert_array_equal(s + c, [[2e16 * (3.0 if weighted else 1.0), 3.0 if weighted else 1.0]])
