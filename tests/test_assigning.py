"""dshift.assigning: nearest center per row vs brute force."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from _parity import reference_labels
from dshift.assigning import _nearest, assign_labels, center_index, label_array


def test_ties_go_to_lower_index():
    centers = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    X = np.array([[0.0, 0.0], [0.0, 0.5], [0.0, -0.5]])
    np.testing.assert_array_equal(assign_labels(X, centers, 1.0, True), [0, 2, 0])
    np.testing.assert_array_equal(assign_labels(X, centers[::-1].copy(), 1.0, True), [0, 0, 1])


def test_beyond_bandwidth_minus_one_and_boundary_kept():
    centers = np.array([[0.0, 0.0], [10.0, 0.0]])
    X = np.array([[3.0, 4.0], [3.0, 4.0000001], [10.0, 5.0], [10.0, 5.0000001], [5.0, 0.0], [20.0, 20.0]])
    np.testing.assert_array_equal(assign_labels(X, centers, 5.0, False), [0, -1, 1, -1, 0, -1])
    # cluster_all=True labels every point
    np.testing.assert_array_equal(assign_labels(X, centers, 5.0, True), [0, 0, 1, 1, 0, 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("cluster_all", [True, False])
def test_random_vs_brute(dtype, cluster_all):
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(500, 3)) * 4).astype(dtype)
    centers = rng.normal(size=(7, 3)) * 4
    got = assign_labels(X, centers, 1.5, cluster_all)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, reference_labels(X, centers, 1.5, cluster_all))
    if not cluster_all:
        assert (got == -1).any() and (got >= 0).any()


def test_integer_grid_ties_vs_brute():
    X = np.array([[i, j] for i in range(-4, 5) for j in range(-4, 5)], dtype=np.float64)
    centers = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    for cluster_all in (True, False):
        np.testing.assert_array_equal(assign_labels(X, centers, 2.0, cluster_all), reference_labels(X, centers, 2.0, cluster_all))


def test_empty_and_single_center():
    assert assign_labels(np.empty((0, 2)), np.zeros((1, 2)), 1.0, False).shape == (0,)
    np.testing.assert_array_equal(assign_labels(np.array([[5.0, 5.0], [0.5, 0.0]]), np.zeros((1, 2)), 1.0, False), [-1, 0])


def test_label_array_lazy_and_chunking_invariant():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(301, 2)) * 3
    centers = rng.normal(size=(5, 2)) * 3
    ref = reference_labels(X, centers, 1.0, False)
    for rows in (1, 7, 300, 301):
        lazy = label_array(da.from_array(X, chunks=(rows, 2)), centers, 1.0, False)
        assert isinstance(lazy, da.Array) and lazy.dtype == np.int64 and lazy.shape == (301,)
        np.testing.assert_array_equal(lazy.compute(), ref)


def test_input_not_modified():
    X = np.random.RandomState(2).normal(size=(50, 2)).astype(np.float32)
    before = X.copy()
    X.setflags(write=False)
    assign_labels(X, np.zeros((2, 2)), 1.0, False)
    np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("cluster_all", [True, False])
def test_many_centers_tree_equals_brute_with_ties(cluster_all):
    # 400 centers on an integer grid (a tree, not brute force): points on cell edges and
    # corners are equidistant from 2 or 4 centers; the lower index must win, as in brute force.
    centers = np.array([[i, j] for i in range(20) for j in range(20)], dtype=np.float64)
    rng = np.random.RandomState(3)
    centers = centers[rng.permutation(len(centers))]
    X = np.vstack([
        np.array([[i / 2, j / 2] for i in range(-2, 42) for j in range(-2, 42)]),  # ties galore
        rng.uniform(-3, 22, size=(500, 2)),
    ])
    index = center_index(centers)
    assert index.tree is not None
    got = assign_labels(X, index, 0.5, cluster_all)
    np.testing.assert_array_equal(got, reference_labels(X, centers, 0.5, cluster_all))
    np.testing.assert_array_equal(got, _nearest(X, centers, 0.5 if not cluster_all else np.inf, (0, 0)))


@pytest.mark.parametrize("d", [1, 3, 8])
def test_many_centers_random_vs_brute(d):
    rng = np.random.RandomState(d)
    centers = rng.normal(size=(300, d)) * 3
    X = np.vstack([rng.normal(size=(700, d)) * 4, centers[:50]]).astype(np.float32)
    for cluster_all in (True, False):
        np.testing.assert_array_equal(assign_labels(X, centers, 1.0, cluster_all),
                                      reference_labels(X, centers, 1.0, cluster_all))
