"""dshift.workers: a real LocalCluster's workers, their warm start (spawn or the program's fork
server), their malloc, and the start method chosen for each kind of caller."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import subprocess
import sys
import textwrap
import time

from dshift import cluster, workers
from dshift.config import ClusterConfig


def _worker_state() -> dict:
    """What a worker process has loaded, and how it was started."""
    return {"kernels": "dshift.shifting" in sys.modules and "dshift.seeding" in sys.modules,
            "sklearn": "sklearn" in sys.modules,
            "method": multiprocessing.get_start_method(allow_none=True)}


def _not_imported(modules: list) -> list:
    return [m for m in modules if m not in sys.modules]


def test_in_process_callers_keep_spawn_and_workers_warm_up_without_sklearn():
    cfg = ClusterConfig(n_workers=1, threads_per_worker=1, no_workers_timeout=None)
    assert not workers._fork_server_for(cfg)  # not the dshift program: no fork server
    with cluster.connect(cfg) as client:
        # The modules tasks are made of are imported when connect yields, not by the warm-up
        # thread while the event loop unpickles the first tasks (an import race between the
        # two once killed a worker's connection to the scheduler).
        assert list(client.run(_not_imported, workers.WORKER_MODULES).values()) == [[]]
        deadline = time.monotonic() + 60
        while True:  # the warm-up plugin loads the kernels in a thread of each worker
            (state,) = client.run(_worker_state).values()
            if state["kernels"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert state["kernels"] and not state["sklearn"]
        assert state["method"] == "spawn"
        workers.trim_worker_memory(client)  # releases memory; never fails the job
    assert client.status == "closed"


def test_the_program_forks_warm_workers_from_a_fork_server(tmp_path):
    """As the dshift program does: the server starts first, and its workers have the kernels
    loaded before any task or warm-up of their own ran, and dshift's malloc settings."""
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent("""
        import json, sys

        def state():
            import multiprocessing, psutil
            import numpy as np
            parent = " ".join(psutil.Process().parent().cmdline())
            # a freed large array goes back to the system (dshift.workers.WORKER_MALLOC): with
            # glibc's dynamic mmap threshold the second one would stay in the heap
            for _ in range(2):
                before = psutil.Process().memory_info().rss
                block = np.ones(2_500_000)  # 20 MB: below glibc's largest dynamic threshold (32 MB)
                del block
            kept = psutil.Process().memory_info().rss - before
            return {"forked": "forkserver" in parent, "kernels": "dshift.shifting" in sys.modules,
                    "sklearn": "sklearn" in sys.modules, "freed": kept < 8_000_000}

        if __name__ == "__main__":
            from dshift import cluster, workers
            from dshift.config import ClusterConfig

            workers.use_fork_server()
            cfg = ClusterConfig(n_workers=2, threads_per_worker=1, no_workers_timeout=None)
            workers.start_worker_server(cfg)
            with cluster.connect(cfg) as client:
                states = list(client.run(state).values())
            print(json.dumps({"states": states}))
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["states"]) == 2
    for state in result["states"]:
        assert state == {"forked": True, "kernels": True, "sklearn": False, "freed": True}


def test_no_fork_server_for_a_remote_scheduler(monkeypatch):
    importlib.import_module("distributed")  # its config defaults

    monkeypatch.setitem(workers._FORK_SERVER, "enabled", True)
    assert not workers._fork_server_for(ClusterConfig(address="tcp://127.0.0.1:8786"))
    assert workers._fork_server_for(ClusterConfig()) == ("forkserver" in multiprocessing.get_all_start_methods())
    with workers.worker_start_method(ClusterConfig(address="tcp://127.0.0.1:8786")):
        import dask

        assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"
