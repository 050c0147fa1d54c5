"""dshift.cluster: connecting to Dask (the workers' processes: tests/test_workers.py)."""

from __future__ import annotations

import pytest

from dshift import cluster


@pytest.mark.parametrize("dashboard", [False, True, 0])
def test_dashboard_address_is_loopback(dashboard):
    address = cluster._dashboard_address(dashboard)
    assert address is None if dashboard is False else address.startswith("127.0.0.1:")
