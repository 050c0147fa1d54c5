"""dshift.merging.merge_modes vs scikit-learn's dict / sort / greedy de-dup, written out."""

from __future__ import annotations

import re

import numpy as np
import pytest

from _parity import reference_merge
from dshift.merging import centers_from_modes, distinct_modes, merge_mode_tables, merge_modes


def test_sort_by_intensity_then_coordinates_descending():
    pos = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [-10.0, 5.0]])
    inten = np.array([5, 7, 7, 3, 7])
    out = merge_modes(pos, inten, 1.0)
    # intensity 7 first, ties by the lexicographically larger center
    np.testing.assert_array_equal(out, [[10.0, 0.0], [0.0, 10.0], [-10.0, 5.0], [0.0, 0.0], [10.0, 10.0]])
    np.testing.assert_array_equal(out, reference_merge(pos, inten, 1.0))


def test_second_coordinate_breaks_first_coordinate_ties():
    pos = np.array([[1.0, -5.0], [1.0, 5.0], [1.0, 0.0]])
    out = merge_modes(pos, np.array([2, 2, 2]), 1.0)
    np.testing.assert_array_equal(out, [[1.0, 5.0], [1.0, 0.0], [1.0, -5.0]])


def test_identical_positions_last_intensity_wins():
    pos = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 0.0]])
    # first entry at (0, 0) has 9, the later one 1: the dict keeps 1, so (5, 5) with 4 leads
    out = merge_modes(pos, np.array([9, 4, 1]), 1.0)
    np.testing.assert_array_equal(out, [[5.0, 5.0], [0.0, 0.0]])
    out = merge_modes(pos, np.array([1, 4, 9]), 1.0)
    np.testing.assert_array_equal(out, [[0.0, 0.0], [5.0, 5.0]])
    # a later seed without result (intensity 0) does not overwrite
    out = merge_modes(np.vstack([pos, [[0.0, 0.0]]]), np.array([1, 4, 9, 0]), 1.0)
    np.testing.assert_array_equal(out, [[0.0, 0.0], [5.0, 5.0]])


def test_negative_zero_is_the_same_position():
    pos = np.array([[-0.0, 1.0], [5.0, 5.0], [0.0, 1.0]])
    out = merge_modes(pos, np.array([1, 4, 9]), 1.0)
    np.testing.assert_array_equal(out, [[0.0, 1.0], [5.0, 5.0]])


def test_dedup_boundary_inclusive():
    pos = np.array([[0.0], [1.0], [2.0], [3.5]])
    inten = np.array([10, 9, 8, 7])
    # 1.0 is exactly bandwidth from 0.0: removed; 2.0 is 2 away: kept; 3.5 within 1.5 of 2.0
    np.testing.assert_array_equal(merge_modes(pos, inten, 1.0), [[0.0], [2.0], [3.5]])
    np.testing.assert_array_equal(merge_modes(pos, inten, 1.5), [[0.0], [2.0]])
    np.testing.assert_array_equal(merge_modes(pos, inten, np.nextafter(1.0, 0)), pos)
    # 2-D: (3, 4) is exactly 5 from the origin
    pos2 = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(merge_modes(pos2, np.array([2, 1]), 5.0), [[0.0, 0.0]])


def test_removed_center_does_not_remove_others():
    # a (kept) removes b; b would have removed c, but b is gone, so c stays
    pos = np.array([[0.0], [0.9], [1.8]])
    out = merge_modes(pos, np.array([3, 2, 1]), 1.0)
    np.testing.assert_array_equal(out, [[0.0], [1.8]])


@pytest.mark.parametrize("seed", range(6))
def test_random_modes_vs_reference(seed):
    rng = np.random.RandomState(seed)
    d = 1 + seed % 3
    base = rng.normal(size=(40, d)) * 3
    pos = base[rng.randint(0, 40, size=200)] + rng.choice([0, 0, 0, 1e-9], size=(200, 1))
    inten = rng.randint(0, 6, size=200)  # many ties, some zeros
    for bw in (0.5, 1.0, 2.0):
        np.testing.assert_array_equal(merge_modes(pos, inten, bw), reference_merge(pos, inten, bw))


def test_dtype_kept_float32():
    pos = np.array([[0.5, 0.25], [3.0, 3.0]], dtype=np.float32)
    out = merge_modes(pos, np.array([1, 2]), 1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[3.0, 3.0], [0.5, 0.25]])


def test_no_result_raises_sklearn_message():
    msg = "No point was within bandwidth=2.500000 of any seed. Try a different seeding strategy or increase the bandwidth."
    with pytest.raises(ValueError, match=re.escape(msg)):
        merge_modes(np.zeros((3, 2)), np.zeros(3, np.int64), 2.5)


def test_many_near_duplicate_positions_vs_reference():
    # 3,000 converged positions around 3 modes, many bit-identical, many 1e-12 apart, a few
    # stragglers: the tree walk keeps exactly scikit-learn's centers, in its order.
    rng = np.random.RandomState(7)
    modes = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]])
    pos = modes[rng.randint(0, 3, 3000)] + rng.choice([0.0, 1e-12, -1e-12, 2e-3], size=(3000, 3))
    pos[::97] = rng.uniform(-10, 15, size=(len(pos[::97]), 3))
    inten = rng.randint(0, 50, size=3000)
    for bw in (0.001, 1.0, 4.0, 8.0):
        np.testing.assert_array_equal(merge_modes(pos, inten, bw), reference_merge(pos, inten, bw))


def test_block_tables_merge_like_one_table():
    rng = np.random.RandomState(8)
    pos = np.round(rng.normal(size=(500, 2)), 1)  # many exact repeats across blocks
    inten = rng.randint(0, 4, size=500)
    seed = np.arange(500)
    parts = [distinct_modes(pos[a:a + 37], inten[a:a + 37], seed[a:a + 37]) for a in range(0, 500, 37)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merge_mode_tables(merged, p)
    whole = distinct_modes(pos, inten, seed)
    for a, b, c in zip(merged, merge_mode_tables(*parts), whole):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    np.testing.assert_array_equal(centers_from_modes(merged, 0.3), reference_merge(pos, inten, 0.3))
