"""Connecting the batch tool to Dask: a LocalCluster or an existing scheduler.

:func:`connect` is a context manager that yields a ``distributed.Client`` and always closes
the client (and the LocalCluster it started) on the way out; when the job fails or the
``dshift`` command is interrupted (:mod:`dshift.interrupts`) it kills the LocalCluster's
workers first, so the job stops within seconds even while tasks run, and no task writes into
the job's staged output after it was removed. :func:`persist_policy` sets the engine's
``dshift.persist`` knob.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional, Union

import dask

from dshift.config import ClusterConfig
from dshift.errors import ClusterError, UserError
from dshift.interrupts import on_interrupt
from dshift.workers import WORKER_MODULES, prepare_workers, unprepare_workers, worker_start_method

__all__ = ["connect", "persist_policy"]

logger = logging.getLogger("dshift.batch")


def _security(cfg: ClusterConfig):
    """A ``Security`` for tls:// addresses with configured files, else None (dask config)."""
    if not cfg.tls.enabled:
        return None
    from distributed.security import Security

    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg.tls, key)
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise UserError(f"cluster.tls.{key}: cannot read {path!r}: {exc.strerror or exc}") from None
    return Security(
        tls_ca_file=cfg.tls.ca_file,
        tls_client_cert=cfg.tls.cert_file,
        tls_client_key=cfg.tls.key_file,
        require_encryption=True,
    )


def _dashboard_address(dashboard: Union[bool, int]) -> Optional[str]:
    if dashboard is False:
        return None
    port = 0 if dashboard is True else int(dashboard)
    return f"127.0.0.1:{port}"


@contextlib.contextmanager
def connect(cfg: ClusterConfig) -> Iterator["distributed.Client"]:  # noqa: F821
    """Start a LocalCluster or connect to ``cfg.address``; close everything on exit.

    A LocalCluster listens on 127.0.0.1 only, and without HTTP endpoints (distributed starts
    one per scheduler and worker for metrics; they are closed) unless ``cfg.dashboard``.

    Parameters
    ----------
    cfg : ClusterConfig
        The ``cluster:`` section.

    Yields
    ------
    distributed.Client
        Registered as the default scheduler for Dask collections in the block.

    Raises
    ------
    UserError
        If the scheduler cannot be reached within ``cfg.connect_timeout`` seconds (the message
        names the address), or the TLS files cannot be read or are rejected.
    ClusterError
        If the cluster fails under the job: a task's workers died more often than
        ``distributed.scheduler.allowed-failures``, no worker was left for
        ``cfg.no_workers_timeout`` seconds, or the scheduler went away.
    """
    from distributed import Client, LocalCluster

    cluster = None
    client = None
    watchdog = None
    plugin = None
    interrupted = failed = False
    where = cfg.address or "the local cluster"

    def stop() -> None:  # no worker keeps computing (or writing) while a failed job unwinds
        if watchdog is not None:
            watchdog.stop(wait=False)  # the workers about to be killed are not news
        if cluster is not None:
            _kill_local_workers(cluster)

    try:
        with on_interrupt(stop), worker_start_method(cfg):
            if cfg.address is None:
                logger.info(
                    "cluster: starting a local cluster (%d workers x %d threads, memory_limit=%s)",
                    cfg.n_workers, cfg.threads_per_worker, cfg.memory_limit,
                )
                dashboard = _dashboard_address(cfg.dashboard)
                cluster = LocalCluster(
                    n_workers=cfg.n_workers,
                    threads_per_worker=cfg.threads_per_worker,
                    processes=True,
                    memory_limit=cfg.memory_limit,
                    host="127.0.0.1",
                    dashboard_address=dashboard,
                    # Without a dashboard the scheduler's HTTP server would still try port 8787
                    # (and warn when it is taken); a random loopback port, closed right below.
                    scheduler_kwargs=None if dashboard else {"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                )
                client = Client(cluster, timeout=cfg.connect_timeout)
                where = f"the local cluster's scheduler {cluster.scheduler_address}"
                _close_http_servers(client, keep_scheduler=dashboard is not None)
                prepare_workers(client, warm=True)  # our own cluster: it goes with the job
                if cfg.dashboard is not False:
                    logger.info("cluster: dashboard at %s", client.dashboard_link)
            else:
                logger.info("cluster: connecting to %s (timeout %g s)", cfg.address, cfg.connect_timeout)
                security = _security(cfg)
                try:
                    # distributed waits for the scheduler's handshake without a deadline: a port that
                    # accepts connections but never answers would hang Client() forever.
                    _probe_scheduler(cfg.address, security, cfg.connect_timeout)
                    client = Client(cfg.address, security=security, timeout=cfg.connect_timeout)
                except (OSError, TimeoutError) as exc:
                    raise UserError(
                        f"cluster.address: cannot connect to the scheduler at {cfg.address} "
                        f"within {cfg.connect_timeout:g} s ({type(exc).__name__}: {_first_line(exc)})"
                    ) from None
                except (TypeError, ValueError) as exc:  # e.g. tls:// without certificates
                    hint = "" if cfg.tls.enabled else "; set cluster.tls.ca_file, cert_file and key_file"
                    raise UserError(
                        f"cluster.address: cannot connect to the scheduler at {cfg.address} "
                        f"({type(exc).__name__}: {_first_line(exc)}){hint}"
                    ) from None
                where = f"the scheduler at {cfg.address}"
                n = len(client.nthreads())
                logger.info("cluster: connected to %s (%d workers)", cfg.address, n)
                plugin = _import_on_workers(client, cfg.address)
            watchdog = _WorkerWatch(client, cfg.no_workers_timeout, where, local=cluster is not None)
            watchdog.start()
            try:
                yield client
            except BaseException as exc:
                message = None
                if isinstance(exc, Exception) and not isinstance(exc, UserError):
                    message = _cluster_failure(exc, client, where, watchdog)
                # The job failed: no task of it may go on running, nor write into its staging
                # directory once that is removed. A LocalCluster's workers are killed at once.
                stop()
                failed = True
                if message is None:
                    raise
                raise ClusterError(message) from exc
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # After a failure or an interrupt the local workers are gone already: short timeouts.
        if watchdog is not None:
            watchdog.stop()
        with contextlib.suppress(Exception):
            if client is not None:
                if plugin is not None:  # an existing scheduler's: it outlives the job
                    unprepare_workers(client, plugin)
                client.close(timeout=2 if interrupted or failed else 10)
        with contextlib.suppress(Exception):
            if cluster is not None:
                cluster.close(timeout=2 if interrupted or failed else 20)


def _import_on_workers(client, address: str) -> str:
    """Have the workers of a scheduler not ours, and those that join it during the job, import
    what dshift's tasks are made of before they take a task (see
    :func:`dshift.workers.prepare_workers`; returns the plugin's name); a worker without dshift
    is named at once."""
    try:
        return prepare_workers(client, warm=False, modules=WORKER_MODULES)
    except ImportError as exc:
        raise UserError(
            f"cluster.address: a worker of the scheduler at {address} cannot import {exc.name or 'a module'} "
            f"({_first_line(exc)}): install dshift and its dependencies in every worker's environment"
        ) from None


def _kill_local_workers(cluster) -> None:
    """Kill a LocalCluster's worker processes at once (the job was interrupted).

    Running tasks cannot be cancelled, and a worker busy in a kernel would delay the cluster's
    shutdown; killed, it also stops writing into the output's staging directory before the
    job removes it. The nannies are told to close instead of restarting their workers.
    """
    import os
    import signal

    from distributed import Nanny
    from distributed.core import Status

    for nanny in list(cluster.workers.values()):
        if not isinstance(nanny, Nanny):
            continue
        nanny.status = Status.closing_gracefully  # on its worker's exit: close, do not restart
        if nanny.pid:
            with contextlib.suppress(OSError):
                os.kill(nanny.pid, signal.SIGKILL)


def _probe_scheduler(address: str, security, timeout: float) -> None:
    """Open and close one comm to ``address``, handshake included, within ``timeout`` seconds.

    Raises
    ------
    TimeoutError, OSError
        Unreachable or silent scheduler, TLS handshake failure.
    TypeError, ValueError
        Unusable connection settings (e.g. tls:// without certificates).
    """
    import asyncio

    from distributed.comm import connect as comm_connect
    from distributed.security import Security

    args = (security or Security()).get_connection_args("client")

    async def probe() -> None:
        comm = await asyncio.wait_for(comm_connect(address, timeout=timeout, **args), timeout)
        await comm.close()

    try:
        asyncio.run(probe())
    except asyncio.TimeoutError:
        raise TimeoutError(f"no answer within {timeout:g} s") from None


def _stop_worker_http(dask_worker=None) -> None:
    server = getattr(dask_worker, "http_server", None)
    if server is not None:
        server.stop()
        dask_worker.services.pop("dashboard", None)


def _close_http_servers(client, *, keep_scheduler: bool) -> None:
    """Close the HTTP listeners distributed starts on a LocalCluster's nodes (loopback only).

    Workers get a plugin, so a worker the nanny restarts later closes its server too.
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    class NoWorkerHTTP(WorkerPlugin):
        name = "dshift-no-worker-http"

        def setup(self, worker) -> None:
            _stop_worker_http(worker)

    client.register_plugin(NoWorkerHTTP(), name=NoWorkerHTTP.name)
    if not keep_scheduler:
        client.run_on_scheduler(_stop_scheduler_http)


def _stop_scheduler_http(dask_scheduler=None) -> None:
    server = getattr(dask_scheduler, "http_server", None)
    if server is not None:
        server.stop()
        dask_scheduler.services.pop("dashboard", None)


class _WorkerWatch:
    """Say when workers leave, join or pause under the job, and fail the job when the cluster
    has had no worker for ``timeout`` seconds.

    Dask re-runs a lost worker's tasks on the others and pauses a worker short of memory, both
    without a word; a job that goes on slower should say so on the terminal, and why where it
    can: a local worker's nanny logs in this process when it restarts a worker that ran out of
    memory. And Dask waits for workers forever; a batch job should not. The watch polls the
    scheduler once a second from a daemon thread and, on expiry, cancels the client's futures
    so the blocked ``compute`` returns.
    """

    def __init__(self, client, timeout: Optional[float], where: str, *, local: bool) -> None:
        import threading

        self.client, self.where, self.local = client, where, local
        self.timeout = None if timeout is None else float(timeout)
        self.message: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dshift-worker-watch", daemon=True)
        self._restarts = _MemoryRestarts()
        self._said_paused = False

    def start(self) -> None:
        logging.getLogger("distributed.nanny.memory").addHandler(self._restarts)
        self._thread.start()

    def stop(self, *, wait: bool = True) -> None:
        """Stop watching; ``wait=False`` returns at once (the thread ends within a second)."""
        self._stop.set()
        if wait:
            self._thread.join(2)
        logging.getLogger("distributed.nanny.memory").removeHandler(self._restarts)

    def _workers(self) -> dict:
        """Address -> the scheduler's record of each worker (empty when it does not answer)."""
        try:
            return dict(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:  # noqa: BLE001 - a scheduler that does not answer has no usable worker
            return {}

    def _run(self) -> None:
        import time

        since = None
        seen = self._workers()
        while not self._stop.wait(1.0):
            now = self._workers()
            if not self._stop.is_set():
                self._report(seen, now)
            seen = now
            if now or self.timeout is None:
                since = None
                continue
            clock = time.monotonic()
            since = clock if since is None else since
            if clock - since < self.timeout:
                continue
            self.message = (
                f"cluster: no workers left on {self.where} for {self.timeout:g} s "
                "(cluster.no_workers_timeout); the job was stopped"
            )
            client = self.client
            keys = list(getattr(client, "futures", {}))
            handler = getattr(client, "_handle_cancelled_keys", None)
            if handler is not None:
                with contextlib.suppress(Exception):
                    client.loop.add_callback(handler, keys, "dshift-no-workers", self.message)
            return

    def _more_memory(self) -> str:
        return "give the workers more memory" + (" (cluster.memory_limit)" if self.local else "")

    def _report(self, before: dict, now: dict) -> None:
        gone = [a for a in before if a not in now]
        joined = len([a for a in now if a not in before])
        if gone:
            n, m = len(before), len(before) - len(gone)
            if m:
                then = "the job goes on with the rest; Dask runs their lost tasks again"
            elif self.timeout is None:
                then = "the job waits for a worker (cluster.no_workers_timeout is null)"
            else:
                then = f"the job waits up to {self.timeout:g} s for a worker (cluster.no_workers_timeout)"
            out_of_memory = self._restarts.took(gone)
            why = (f"{len(out_of_memory)} ran out of memory ({_limit(before[out_of_memory[0]])} limit) and "
                   f"{'was' if len(out_of_memory) == 1 else 'were'} restarted; {then}; {self._more_memory()}"
                   if out_of_memory else f"{then}; see the log for why")
            logger.warning("cluster: %d worker(s) left %s (%d -> %d workers): %s", len(gone), self.where, n, m, why)
        if joined:
            logger.info("cluster: %d worker(s) joined %s (%d -> %d workers)",
                        joined, self.where, len(now) - joined, len(now))
        paused = [a for a, info in now.items() if info.get("status") == "paused"]
        if paused and not self._said_paused:
            self._said_paused = True
            logger.warning("cluster: worker %s of %s paused: its memory reached the pause threshold of its %s "
                           "limit, and it takes no task until it frees some; the job runs slower: %s",
                           paused[0], self.where, _limit(now[paused[0]]), self._more_memory())


class _MemoryRestarts(logging.Handler):
    """The workers a local nanny restarted for running out of memory (its log records here)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())

    def took(self, addresses: list) -> list:
        """Those of ``addresses`` it restarted (the nanny names the worker by its address)."""
        said = list(self.messages)
        return [a for a in addresses if any(a in m and "memory" in m for m in said)]


def _limit(info: dict) -> str:
    limit = info.get("memory_limit") or 0
    return f"{limit / 2**30:.2f} GiB" if limit else "unlimited"


def _cluster_failure(exc: BaseException, client, where: str, watchdog) -> Optional[str]:
    """One line for an exception caused by the cluster failing, or None for other errors."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    if watchdog is not None and watchdog.message is not None:
        return watchdog.message
    if isinstance(exc, KilledWorker):
        worker = getattr(exc.last_worker, "address", exc.last_worker)
        return (
            f"cluster: workers of {where} kept dying: a task was lost with "
            f"{exc.allowed_failures + 1} worker(s) (distributed.scheduler.allowed-failures="
            f"{exc.allowed_failures}; last worker {worker}); see the worker logs"
        )
    status = getattr(client, "status", "running")
    if isinstance(exc, (CancelledError, CommClosedError)) or status not in ("running", "connecting"):
        return f"cluster: lost the connection to {where} ({type(exc).__name__}: {_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def persist_policy(policy: Union[str, bool]) -> Iterator[None]:
    """Set the engine's ``dshift.persist`` knob ("auto", True or False) within the block.

    Parameters
    ----------
    policy : {"auto", True, False}
        "auto" keeps the features in cluster memory when they fit; False re-reads the input on
        every pass; True always persists.
    """
    with dask.config.set({"dshift.persist": policy}):
        yield

