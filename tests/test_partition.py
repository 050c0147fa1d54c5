"""Seed-space partitioning helpers (dshift.partition)."""

from __future__ import annotations

import numpy as np
import pytest

from dshift import partition


def test_strided_sample_owns_its_rows():
    """A sample kept between passes must not be a view: it would keep its whole chunk alive (a
    100M-row job held every worker's share of the input through the shift this way)."""
    chunk = np.arange(3000, dtype=np.float64).reshape(-1, 3)
    sample = partition.strided_sample(chunk, 10)
    assert len(sample) == 10 and sample.dtype == np.float64
    np.testing.assert_array_equal(sample, chunk[::100][:10])
    assert sample.base is None and not np.shares_memory(sample, chunk)
    assert partition.strided_sample(chunk.astype(np.float32), 10).base is None
    assert partition.strided_sample(chunk, 0).shape == (0, 3)


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("ids_kind", [None, "int", "float"])
def test_split_routes_every_point_to_its_cell_in_order(layout, ids_kind):
    """Each point goes to the cell whose box holds it (a point on a cut goes right), in its
    original order and dtype, with its id; cells past the plan's are empty; the input is kept."""
    rng = np.random.default_rng(3)
    points = np.asarray(rng.normal(size=(5000, 3)).astype(np.float32), order=layout)
    points[:10, 0] = 0.0  # on a cut, if the plan cuts at 0
    ids = {None: None, "int": np.arange(5000) * 7, "float": rng.random(5000)}[ids_kind]
    cells = partition.plan(np.vstack([points[::10], np.zeros((1, 3))]), 5)
    before = points.copy()
    routed = partition.split(points, ids, cells, 7)
    assert len(routed) == 7 and all(len(p) == 0 for p, _ in routed[cells.n_cells:])
    np.testing.assert_array_equal(points, before)

    def cell_of(p):
        node = 0
        while cells.dim[node] >= 0:
            node = cells.child[node] + (0 if p[cells.dim[node]] < cells.value[node] else 1)
        return cells.child[node]

    expected = np.array([cell_of(p) for p in points])
    for c, (p, i) in enumerate(routed):
        rows = np.flatnonzero(expected == c)
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p, points[rows])
        assert (i is None) == (ids is None) and (i is None or np.array_equal(i, ids[rows]))
