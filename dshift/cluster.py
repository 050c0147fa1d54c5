"""Connecting the batch tool to Dask: a LocalCluster or an existing scheduler.

:func:`connect` is a context manager that yields a ``distributed.Client`` and always closes
the client (and the LocalCluster it started) on the way out. :func:`persist_policy` sets the
engine's ``dshift.persist`` knob.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator, Optional, Union

import dask

from dshift.config import ClusterConfig
from dshift.errors import UserError

__all__ = ["connect", "persist_policy", "quiet_distributed_logs"]

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
        names the address), or the TLS files cannot be read.
    """
    from distributed import Client, LocalCluster

    cluster = None
    client = None
    try:
        if cfg.address is None:
            logger.info(
                "cluster: starting a local cluster (%d workers x %d threads, memory_limit=%s)",
                cfg.n_workers, cfg.threads_per_worker, cfg.memory_limit,
            )
            cluster = LocalCluster(
                n_workers=cfg.n_workers,
                threads_per_worker=cfg.threads_per_worker,
                processes=True,
                memory_limit=cfg.memory_limit,
                host="127.0.0.1",
                dashboard_address=_dashboard_address(cfg.dashboard),
            )
            client = Client(cluster, timeout=cfg.connect_timeout)
            if cfg.dashboard is not False:
                logger.info("cluster: dashboard at %s", client.dashboard_link)
        else:
            logger.info("cluster: connecting to %s (timeout %g s)", cfg.address, cfg.connect_timeout)
            try:
                client = Client(cfg.address, security=_security(cfg), timeout=cfg.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise UserError(
                    f"cluster.address: cannot connect to the scheduler at {cfg.address} "
                    f"within {cfg.connect_timeout:g} s ({type(exc).__name__}: {_first_line(exc)})"
                ) from None
            n = len(client.nthreads())
            logger.info("cluster: connected to %s (%d workers)", cfg.address, n)
        yield client
    finally:
        with contextlib.suppress(Exception):
            if client is not None:
                client.close(timeout=10)
        with contextlib.suppress(Exception):
            if cluster is not None:
                cluster.close(timeout=20)


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


def quiet_distributed_logs(level: int = logging.ERROR) -> None:
    """Raise the level of distributed's loggers (they log shutdown chatter at INFO/WARNING)."""
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                 "distributed.core", "distributed.comm", "distributed.client", "distributed.http"):
        logging.getLogger(name).setLevel(level)
