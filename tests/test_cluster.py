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
    at a time in its event loop: no import race with a task thread), and so has a worker that
    joins during the job; the scheduler, which outlives the job, keeps nothing of it. A worker
    that cannot import them ends the connection with one line naming the module."""
    from conftest import dask_processes
    from distributed import Client

    from dshift.errors import UserError
    from dshift.workers import WORKER_MODULES

    def missing(modules):  # defined here: pickled by value, as a dask worker cannot import the tests
        return [m for m in modules if m not in sys.modules]

    def plugins(dask_scheduler=None):
        return [name for name in dask_scheduler.worker_plugins if name.startswith("dshift")]

    with dask_processes(tmp_path, 1) as procs, open(tmp_path / "late.log", "w") as late_log:
        cfg = ClusterConfig(address=procs.address, no_workers_timeout=None)
        with cluster.connect(cfg) as client:
            assert list(client.run(missing, WORKER_MODULES).values()) == [[]]
            (first,) = client.scheduler_info()["workers"]
            procs.start_worker("late", late_log)
            client.wait_for_workers(2, timeout=120)
            (late,) = set(client.scheduler_info(n_workers=-1)["workers"]) - {first}
            assert client.run(missing, WORKER_MODULES, workers=[late]) == {late: []}
            assert len(client.run_on_scheduler(plugins)) == 1
        with Client(procs.address, timeout=60) as plain:
            assert plain.run_on_scheduler(plugins) == []
        monkeypatch.setattr(cluster, "WORKER_MODULES", [*WORKER_MODULES, "dshift_no_such_module"])
        with pytest.raises(UserError, match=r"^cluster\.address: .* cannot import dshift_no_such_module .*install"):
            with cluster.connect(cfg):
                pass
        with Client(procs.address, timeout=60) as plain:
            assert plain.run_on_scheduler(plugins) == []


def _wait_for(caplog, needle: str, timeout: float = 20.0) -> list[str]:
    """The dshift lines that hold ``needle``, once one does (the watch polls once a second)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("dshift") and needle in r.getMessage()]
        if lines:
            return lines
        time.sleep(0.2)
    return []


@pytest.mark.timeout(180)
def test_a_local_worker_that_pauses_or_runs_out_of_memory_is_said(caplog):
    """The first worker to pause for memory is named once; a worker its nanny restarts for
    using more than its memory limit is said to have run out of memory, with what to do."""
    import logging

    import dask
    import distributed  # noqa: F401 - its defaults in dask's config before the set below (which undoes them)
    import numpy as np

    def hog(nbytes):
        import time

        block = np.ones(nbytes // 8)  # touched: resident
        time.sleep(30)
        return block.sum()

    cfg = ClusterConfig(n_workers=1, memory_limit="600MiB", no_workers_timeout=None)
    with caplog.at_level(logging.INFO, logger="dshift"):
        # A pause threshold below what any worker takes: the memory monitor pauses it at once.
        with dask.config.set({"distributed.worker.memory.pause": 0.01}), cluster.connect(cfg) as client:
            (address,) = client.scheduler_info()["workers"]
            paused = _wait_for(caplog, "paused")
            assert len(_wait_for(caplog, "paused", 2.5)) == 1  # said once per job
        with cluster.connect(cfg) as client:
            future = client.submit(hog, 700 * 2**20, pure=False)
            left = _wait_for(caplog, "worker(s) left")
            assert _wait_for(caplog, "worker(s) joined")  # the nanny's new worker
            future.cancel()
    assert len(paused) == 1 and f"worker {address} of the local cluster's scheduler" in paused[0], paused
    assert "0.59 GiB limit" in paused[0] and paused[0].endswith("give the workers more memory (cluster.memory_limit)")
    assert len(left) == 1 and "(1 -> 0 workers): 1 ran out of memory (0.59 GiB limit) and was restarted" in left[0], left
    assert left[0].endswith("give the workers more memory (cluster.memory_limit)"), left
