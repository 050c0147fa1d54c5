"""dshift.grouping: the compiled hash table that groups rows by key (bins, distinct rows)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dshift.grouping import BinTable, empty_store, merge_rows, merge_tables


def _reference(keys: np.ndarray, weights: np.ndarray, firsts: np.ndarray):
    """Groups in order of first appearance, exact weight sums, first rows: a Python dict."""
    groups: dict[bytes, list] = {}
    for key, w, f in zip(keys, weights, firsts):
        groups.setdefault(key.tobytes(), [key, [], f])[1].append(w)
    return [(g[0], math.fsum(g[1]), g[2]) for g in groups.values()]


@pytest.mark.parametrize("n_keys", [1, 63, 64, 65, 200, 5000])  # around and far beyond the first store (64)
def test_merge_rows_groups_in_order_of_first_appearance(n_keys):
    rng = np.random.default_rng(n_keys)
    keys = rng.integers(-n_keys, n_keys, size=(8 * n_keys, 3)).astype(np.float64)
    weights = rng.uniform(0, 1e6, len(keys)) * 10.0 ** rng.integers(-8, 8, len(keys))  # sums that need compensation
    firsts = np.arange(len(keys), dtype=np.int64) + 1000
    got = BinTable(*merge_rows(np.ascontiguousarray(keys), weights, np.zeros(len(keys)), firsts, *empty_store(3)))
    want = _reference(keys, weights, firsts)
    assert len(got.bins) == len(want)
    np.testing.assert_array_equal(got.bins, [k for k, _, _ in want])
    np.testing.assert_array_equal(got.first, [f for _, _, f in want])
    np.testing.assert_array_equal(got.frequency, [s for _, s, _ in want])  # correctly rounded sums


def test_keys_are_compared_bit_for_bit_and_tables_merge_in_order():
    keys = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0], [np.nextafter(0.0, 1.0), 1.0]])
    ones = np.ones(len(keys))
    table = BinTable(*merge_rows(keys, ones, np.zeros(4), np.arange(4), *empty_store(2)))
    assert table.counts.tolist() == [2.0, 1.0, 1.0]  # -0.0 is another key: callers fold it first
    a = BinTable(*merge_rows(keys[:2], ones[:2], np.zeros(2), np.arange(2), *empty_store(2)))
    b = BinTable(*merge_rows(keys[2:], ones[2:], np.zeros(2), np.arange(2, 4), *empty_store(2)))
    merged = merge_tables(a, b)
    for x, y in zip(merged, table):
        np.testing.assert_array_equal(x, y)
