"""dshift.shifting: seed blocks climbing on tiny data vs scikit-learn's per-seed loop (brute force)."""

from __future__ import annotations

import re
from typing import NamedTuple

import dask
import numpy as np
import pytest
from dask.delayed import delayed

from _parity import reference_climb
from dshift.index import build_index
from dshift.shifting import blocks_from_array, climb


class Climbed(NamedTuple):
    position: np.ndarray
    intensity: np.ndarray
    n_iter: int


def _indexes(X, rows):
    return [delayed(build_index, pure=True)(X[a : a + rows]) for a in range(0, len(X), rows)]


def _climb(X, seeds, bandwidth, max_iter, rows, dtype, block_size=None) -> Climbed:
    seeds = np.asarray(seeds, dtype=np.float64)
    with dask.config.set({"dshift.seed-block-size": block_size or 65536}):
        result = climb(_indexes(X, rows), blocks_from_array(seeds), bandwidth, max_iter, np.dtype(dtype))
    blocks = dask.compute(*result.blocks)
    assert result.n_seeds == len(seeds) == sum(len(b.active) for b in blocks)
    assert not any(b.active.any() for b in blocks)
    ids = np.concatenate([b.seed for b in blocks])
    np.testing.assert_array_equal(np.sort(ids), np.arange(len(seeds)))  # every seed once
    order = np.argsort(ids)
    position = np.concatenate([b.position for b in blocks])[order].astype(dtype)
    return Climbed(position, np.concatenate([b.intensity for b in blocks])[order], result.n_iter)


def _check(X, seeds, bandwidth, max_iter, rows=None, dtype=np.float64, block_size=None):
    c = _climb(X, seeds, bandwidth, max_iter, rows or len(X), dtype, block_size)
    refs = [reference_climb(X, s, bandwidth, max_iter, dtype) for s in np.asarray(seeds)]
    assert c.position.dtype == dtype
    for k, (m, n_in, _) in enumerate(refs):
        assert c.intensity[k] == n_in, (k, c.intensity[k], n_in)
        if n_in:
            np.testing.assert_array_equal(c.position[k], m.astype(dtype))
    assert c.n_iter == max(r[2] for r in refs)
    return c


def test_one_dimensional_walk_n_iter_semantics():
    X = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    # seed 0: ball {0,1} -> 0.5; ball {0,1} -> 0.5 (shift 0): stop after 1 completed step
    c = _check(X, [[0.0]], 1.0, 300)
    np.testing.assert_array_equal(c.position, [[0.5]])
    assert c.intensity[0] == 2 and c.n_iter == 1
    # intensity counted around the second-to-last position: seed 1.5 -> {1,2} -> 1.5
    c = _check(X, [[1.5]], 1.0, 300)
    assert c.intensity[0] == 2 and c.n_iter == 0


@pytest.mark.parametrize("max_iter", [0, 1, 2, 3, 300])
def test_max_iter(max_iter):
    X = np.arange(20, dtype=np.float64)[:, None] ** 1.3
    seeds = X[::3]
    c = _check(X, seeds, 2.5, max_iter, rows=4)
    assert c.n_iter <= max_iter


def test_max_iter_zero_is_one_update():
    X = np.array([[0.0], [1.0], [3.0]])
    c = _check(X, [[0.0]], 1.0, 0)
    np.testing.assert_array_equal(c.position, [[0.5]])
    assert c.n_iter == 0 and c.intensity[0] == 2


def test_empty_first_ball():
    X = np.array([[0.0, 0.0], [0.5, 0.0], [5.0, 5.0]])
    c = _check(X, [[100.0, 100.0], [0.0, 0.0], [-50.0, 0.0]], 1.0, 300, rows=1)
    np.testing.assert_array_equal(c.intensity, [0, 2, 0])
    assert c.n_iter == 1  # seed 1: shift 0.25 > 1e-3 (done=1), then shift 0: stop
    c = _check(X, [[100.0, 100.0]], 1.0, 300)
    assert c.intensity[0] == 0 and c.n_iter == 0


@pytest.mark.parametrize("block_size", [1, 4, None])
@pytest.mark.parametrize("rows", [1, 3, 17, 1000])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_random_small_vs_reference(rows, d, block_size):
    rng = np.random.RandomState(d)
    X = np.vstack([rng.normal(size=(30, d)), rng.normal(size=(30, d)) + 4])
    seeds = np.vstack([X[::4], X[:3], [[20.0] * d]])  # duplicates seeds, one empty ball
    _check(X, seeds, 1.2, 300, rows=rows, block_size=block_size)


def test_progress_lines_during_a_long_pass(caplog):
    X = np.random.RandomState(0).normal(size=(2000, 2))
    with dask.config.set({"dshift.progress-interval": 0.0005}), caplog.at_level("INFO", logger="dshift"):
        _check(X[:300], X[:300], 0.5, 300, rows=100, block_size=10)
    first = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shift iteration 0 (")]
    assert first and all(re.fullmatch(r"shift iteration 0 \(300 seeds in 30 blocks\): \d+/30 seed blocks done, "
                                      r"\d+ s", m) for m in first), first


def test_float32_rounding_per_step():
    rng = np.random.RandomState(5)
    X = rng.normal(size=(60, 2)).astype(np.float32).astype(np.float64)
    c = _check(X, X[::5], 1.0, 300, rows=7, dtype=np.float32)
    assert c.position.dtype == np.float32


def test_duplicate_seeds_share_results():
    X = np.array([[0.0], [0.4], [0.8], [5.0]])
    c = _check(X, [[0.0], [0.4], [0.0], [5.0], [0.4]], 1.0, 300)
    np.testing.assert_array_equal(c.position[0], c.position[2])
    np.testing.assert_array_equal(c.position[1], c.position[4])


def test_boundary_point_in_ball():
    # seed 0 with bandwidth 2: {0, 2} (2 exactly on the boundary) -> 1; then {0, 2, 3} -> 5/3
    X = np.array([[0.0], [2.0], [3.0], [10.0]])
    c = _check(X, [[0.0]], 2.0, 0)
    np.testing.assert_array_equal(c.position, [[1.0]])
    assert c.intensity[0] == 2
    _check(X, [[0.0]], 2.0, 300)


def test_zero_bandwidth_identical_points():
    X = np.array([[1.0, 1.0]] * 4 + [[2.0, 2.0]])
    c = _check(X, X, 0.0, 300)
    np.testing.assert_array_equal(c.intensity, [4, 4, 4, 4, 1])
    assert c.n_iter == 0


@pytest.fixture(scope="module")
def in_process_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


@pytest.mark.parametrize("max_iter", [0, 1, 3, 300])
@pytest.mark.parametrize("block_size", [1, 4, None])
def test_on_a_cluster_the_next_pass_starts_before_the_summaries(in_process_client, max_iter, block_size, caplog):
    # On a cluster the pass after each one is started speculatively: its results for blocks
    # that finished must be dropped (seeds climb exactly the reference's steps), and only
    # the passes that were needed are logged, as on the local scheduler.
    rng = np.random.RandomState(3)
    X = np.vstack([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 3])
    seeds = np.vstack([X[::3], [[30.0, 30.0]]])  # the last one has an empty ball
    with caplog.at_level("INFO", logger="dshift"):
        c = _check(X, seeds, 1.1, max_iter, rows=9, block_size=block_size)
    passes = [int(m.group(1)) for r in caplog.records if (m := re.match(r"shift iteration (\d+):", r.getMessage()))]
    assert passes == list(range(c.n_iter + 1))  # the last pass is the one where the last seed stopped
