"""Seed-space partitioning helpers (dshift.partition)."""

from __future__ import annotations

import numpy as np

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
