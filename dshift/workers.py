"""The local workers' processes: where they come from, their memory and their kernels.

The ``dshift`` program forks its LocalCluster's workers from a fork server
(:func:`use_fork_server`, :func:`start_worker_server`) that has imported Dask, pandas and
pyarrow, set the workers' malloc (:func:`worker_malloc`) and loaded the compiled kernels
(:func:`warm_up`) while the driver reads the config and checks the input; other callers keep
distributed's ``spawn`` and warm their workers with a plugin (:func:`prepare_workers`), which
also has the workers of an existing scheduler import dshift for the job's duration.
:func:`trim_worker_memory` has every worker hand freed memory back between the job's passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import dask

from dshift.config import ClusterConfig

__all__ = ["use_fork_server", "start_worker_server", "worker_start_method", "worker_malloc", "warm_up", "prepare_workers",
           "unprepare_workers", "trim_worker_memory", "import_worker_modules", "WORKER_MALLOC", "WORKER_MODULES"]


_FORK_SERVER = {"enabled": False}

WORKER_MODULES = ("distributed", "dask.dataframe", "pyarrow.parquet", "dshift.assigning", "dshift.dedup",
                  "dshift.forest", "dshift.merging", "dshift.partition", "dshift.seeding", "dshift.shifting")
"""What a worker imports before the job's first task: the modules its tasks are made of."""

_SERVER_PRELOAD = [*WORKER_MODULES, "dshift._preload"]
"""What the fork server imports before it forks a worker (``dshift._preload`` loads the kernels)."""


def use_fork_server() -> None:
    """Have this process's LocalCluster workers forked from a fork server.

    For a process that *is* the ``dshift`` program (one job, its file descriptor 2 on that
    job's log): a fork server keeps the stderr it started with, so in a process running
    several jobs the later jobs' workers would log into the first job's log; those keep
    distributed's ``spawn``.

    Forked from a server that has imported distributed, Dask, pandas and pyarrow and loaded
    the compiled kernels once (:func:`start_worker_server`), a worker starts with all of them;
    and it ends with ``os._exit``, skipping the interpreter's teardown of the kernels' code
    (about 0.4 s per worker that ``spawn`` waits for when the cluster closes).
    """
    _FORK_SERVER["enabled"] = True


def _fork_server_for(cfg: ClusterConfig) -> bool:
    import multiprocessing

    return (_FORK_SERVER["enabled"] and cfg.address is None
            and "forkserver" in multiprocessing.get_all_start_methods())


def start_worker_server(cfg: ClusterConfig) -> None:
    """Start the fork server now, if :func:`use_fork_server` applies to ``cfg``: it imports and
    warms what the workers need on another core while the driver imports and checks the input.

    Call it once stderr is on the job's log (the server and its workers keep that stderr).

    Parameters
    ----------
    cfg : ClusterConfig
        The ``cluster:`` section (a remote scheduler needs no local server).
    """
    if not _fork_server_for(cfg):
        return
    import multiprocessing
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(_SERVER_PRELOAD)
    forkserver.ensure_running()


def worker_start_method(cfg: ClusterConfig) -> contextlib.AbstractContextManager:
    """distributed's start method for LocalCluster workers (and any the nanny restarts)."""
    if not _fork_server_for(cfg):
        return contextlib.nullcontext()
    start_worker_server(cfg)  # with our preload, unless started already
    return dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})


def trim_worker_memory(client) -> None:
    """Have every worker hand the memory its freed arrays left behind back to the system.

    The fit's trees are large NumPy arrays and its reads Arrow buffers; once released, glibc
    and Arrow's memory pool keep much of their memory in the process, where distributed counts it as unmanaged and pauses (and at 95 % restarts)
    a worker under a tight ``memory_limit`` as soon as the labelling pass allocates. Linux
    (glibc) only; elsewhere a no-op.

    Parameters
    ----------
    client : distributed.Client
    """
    with contextlib.suppress(Exception):  # a relief, not a requirement
        client.run(_malloc_trim)


def _malloc_trim() -> None:
    import ctypes

    import pyarrow

    pyarrow.default_memory_pool().release_unused()  # the Parquet reads' buffers
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def prepare_workers(client, *, warm: bool, modules: Sequence[str] = WORKER_MODULES) -> str:
    """Have every worker of ``client``'s scheduler, and any that joins it or that its nanny
    restarts while the plugin stays, import ``modules`` before it takes a task; with ``warm``,
    then load dshift's compiled kernels in a background thread, so the job's first pass does
    not wait for them (about half a second per process, while the driver still checks the
    input).

    The imports run in the worker's event loop: a plugin's setup runs as a worker registers,
    before the scheduler can send it a task, and now on the workers already there before this
    returns. A worker that imported them in a thread while its event loop unpickled the job's
    first tasks (which import the same modules) once failed with ``KeyError: 'dask.dataframe'``
    (Python's import locks between two threads; dask/dask#8089). Its connection to the
    scheduler died, and a 10M-row sweep ran on the other worker alone, in 73.3 s (51.5 s with
    both, in-process).

    Parameters
    ----------
    client : distributed.Client
    warm : bool
        Also load the kernels (on the workers of dshift's own LocalCluster).
    modules : sequence of str
        Module names; :data:`WORKER_MODULES` by default.

    Returns
    -------
    str
        The plugin's name: :func:`unprepare_workers` removes it (from a scheduler that outlives
        the job, so that its later workers are not made to import dshift).

    Raises
    ------
    ImportError
        From the first worker that cannot import a module (the plugin is removed again).
    """
    import uuid

    from distributed.diagnostics.plugin import WorkerPlugin

    class PrepareWorker(WorkerPlugin):
        def __init__(self) -> None:
            self.modules, self.warm = tuple(modules), warm

        def setup(self, worker) -> None:
            import threading

            import_worker_modules(self.modules)
            if self.warm:
                threading.Thread(target=_warm, name="dshift-warm-up", daemon=True).start()

    name = f"dshift-prepare-{uuid.uuid4().hex[:12]}"  # two jobs on one scheduler keep their own
    try:
        client.register_plugin(PrepareWorker(), name=name)
    except BaseException:
        unprepare_workers(client, name)  # the scheduler keeps a plugin that failed on a worker
        raise
    return name


def unprepare_workers(client, name: str) -> None:
    """Remove the plugin :func:`prepare_workers` registered, if the scheduler is still there."""
    if client.status == "running":
        with contextlib.suppress(Exception):  # gone already, or the scheduler went away
            client.unregister_worker_plugin(name)


def import_worker_modules(modules: Sequence[str] = WORKER_MODULES) -> None:
    """Import ``modules`` (in a worker, before its first task; see :func:`prepare_workers`).

    Parameters
    ----------
    modules : sequence of str
        Module names; :data:`WORKER_MODULES` by default.
    """
    import importlib

    for module in modules:
        importlib.import_module(module)


def _warm() -> None:
    with contextlib.suppress(Exception):  # only a head start: the job loads what it needs anyway
        warm_up()


WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": (-3, 16 << 20), "MALLOC_TRIM_THRESHOLD_": (-1, 64 << 20)}
"""glibc malloc settings of the fork server's workers: environment variable -> (``mallopt``
number, value). Arrays of 16 MiB and more are mapped and unmapped on their own, so a freed
chunk or tree goes back to the system at once; smaller buffers (a column, a Parquet page)
are reused from the heap, which keeps at most 64 MiB free at its top. Measured on the 10M-row
job: 0.1-0.15 GiB lower peak than glibc's defaults, whose mapping threshold grows to 32 MiB
as arrays are freed, with the labelling pass as fast; Dask's 64 KiB trim threshold (what a
spawned worker gets) made that pass 0.3 s slower."""


def worker_malloc() -> None:
    """Apply :data:`WORKER_MALLOC` in this process (the fork server; its workers inherit it).

    A spawned worker's malloc reads ``MALLOC_*`` variables when it starts; a forked one has
    its server's malloc, set here with ``mallopt``. Variables set in the environment win
    (glibc read them when the server started). Linux (glibc) only; elsewhere a no-op.
    """
    import ctypes
    import os

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        for name, (param, value) in WORKER_MALLOC.items():
            if name not in os.environ:
                libc.mallopt(param, value)


def warm_up() -> None:
    """Load the compiled kernels of a fit (numba's on-disk cache) by running each stage once
    on a tiny input, without Dask, importing only the stage modules a worker runs (not
    scikit-learn). A fresh process pays about half a second for this; the batch job has its
    workers do it while the job starts."""
    import numpy as np

    from dshift import partition
    from dshift.assigning import assign_labels, center_index
    from dshift.dedup import sample_hashes
    from dshift.forest import build_group_index
    from dshift.merging import block_modes, centers_from_modes, merge_mode_tables
    from dshift.seeding import scan_chunk
    from dshift.shifting import advance, block_query, block_sums, new_block

    X = np.linspace(0.0, 3.0, 120).reshape(40, 3)
    columns = np.asfortranarray(X)  # chunks read from Parquet come column-major
    sample_hashes(columns, 0.5)  # the read pass's deduplication sample
    scan_chunk(X, (1.0,))
    block = new_block(X[:8], np.arange(8))
    query = block_query(block, 1.0)
    done = advance(block, query, block_sums(query, 1.0, build_group_index([X], [None])), 1.0, 0, 0, X.dtype)
    centers = centers_from_modes(merge_mode_tables(block_modes(done, X.dtype)), 1.0)
    assign_labels(X, center_index(np.vstack([centers, X + 10.0])), 1.0, False)
    cells = partition.plan(X, 2)
    partition.split(X, np.arange(len(X)), cells)
    partition.split(columns, None, cells)  # the read pass's rows routed to regions
