"""dshift.cluster: connecting to Dask (the workers' processes: tests/test_workers.py)."""

from __future__ import annotations

import sys

import pytest

from dshift import cluster
from dshift.config import ClusterConfig


@pytest.mark.parametrize("dashboard", [False, True, 0])
def test_dashboard_address_is_loopback(dashboard):
    address = cluster._dashboard_address(dashboard)
    assert address is None if dashboard is False else address.startswith("127.0.0.1:")


@pytest.mark.timeout(180)
def test_workers_of_an_existing_scheduler_import_dshift_before_the_job(tmp_path, monkeypatch):
    """Before the job's first task, each worker has imported what dshift's tasks are made of (one
    at a time in its event loop: no import race with a task thread); a worker that cannot
    import them ends the connection with one line naming the module."""
    from conftest import dask_processes

    from dshift.errors import UserError
    from dshift.workers import WORKER_MODULES

    def missing(modules):  # defined here: pickled by value, as a dask worker cannot import the tests
        return [m for m in modules if m not in sys.modules]

    with dask_processes(tmp_path, 1) as procs:
        cfg = ClusterConfig(address=procs.address, no_workers_timeout=None)
        with cluster.connect(cfg) as client:
            assert list(client.run(missing, WORKER_MODULES).values()) == [[]]
        monkeypatch.setattr(cluster, "WORKER_MODULES", [*WORKER_MODULES, "dshift_no_such_module"])
        with pytest.raises(UserError, match=r"^cluster\.address: .* cannot import dshift_no_such_module .*install"):
            with cluster.connect(cfg):
                pass
