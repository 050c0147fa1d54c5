"""SIGINT and SIGTERM in the ``dshift`` command: a prompt, clean stop in any phase.

:class:`InterruptHandler` (installed by the command, never at import) turns the first SIGINT
or SIGTERM into :class:`~dshift.errors.Interrupted`, raised in the main thread, so the job
unwinds through its context managers: the staged output is discarded, the Dask client and the
local cluster are closed. Before raising, it calls the *stoppers* registered with
:func:`on_interrupt` — :func:`dshift.cluster.connect` registers one that kills the local
cluster's worker processes at once, so no task keeps running (or writing into the staging
directory) while the job unwinds. Later signals are ignored: a second Ctrl-C cannot break
the cleanup with a traceback.

An exception raised where Python ignores exceptions is lost: a signal handled while the
main thread runs a ``__del__`` (distributed's ``Future.__del__`` during a garbage collection)
would leave the job running with its workers gone. The handler's ``sys.unraisablehook``
catches the lost :class:`~dshift.errors.Interrupted` and delivers the signal again, so it is
raised where the job can unwind.

A signal is noticed by a watcher thread as soon as it arrives (``signal.set_wakeup_fd``),
even when the main thread is busy in C code and cannot run the Python handler yet; if the job
has not finished unwinding ``grace`` seconds later, the watcher calls ``on_overrun`` (the
command kills what is left and exits).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, Optional

from dshift.errors import Interrupted

__all__ = ["InterruptHandler", "on_interrupt", "SIGNALS"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stoppers: list[Callable[[], None]] = []


@contextlib.contextmanager
def on_interrupt(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop()`` first when the job is interrupted while the block runs.

    Only takes effect under an :class:`InterruptHandler` (the ``dshift`` command); library use
    of dshift keeps Python's own Ctrl-C handling.

    Parameters
    ----------
    stop : callable
        Called without arguments in the main thread, from the signal handler: it must be quick
        and must not wait on the event loop of a Dask client (e.g. send signals to processes).
    """
    _stoppers.append(stop)
    try:
        yield
    finally:
        _stoppers.remove(stop)


class InterruptHandler:
    """Handle SIGINT and SIGTERM while the block runs (a context manager; main thread only).

    Parameters
    ----------
    grace : float
        Seconds the job may take to unwind after the first signal before ``on_overrun`` runs.
    on_overrun : callable
        ``on_overrun(signum)``, called from a watcher thread when the grace period is over and
        the block has not exited; expected to end the process.
    restore : bool
        Restore the previous handlers on exit. False (a process that exits right after the
        block) ignores SIGINT and SIGTERM from then on, so a late Ctrl-C cannot interrupt the
        interpreter's shutdown with a traceback.

    Attributes
    ----------
    received : int or None
        The first signal received, if any.
    """

    def __init__(self, grace: float, on_overrun: Callable[[int], None], *, restore: bool = True) -> None:
        self.grace = float(grace)
        self.on_overrun = on_overrun
        self.restore = restore
        self.received: Optional[int] = None
        self._active = False
        self._disarmed = False
        self._done = threading.Event()
        self._previous: dict[int, object] = {}
        self._previous_wakeup = -1
        self._previous_hook = sys.unraisablehook
        self._lost = False  # Interrupted was raised where it is ignored: raise it again
        self._pipe: Optional[tuple[int, int]] = None

    def __enter__(self) -> "InterruptHandler":
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        self._active = True
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        self._previous_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        threading.Thread(target=self._watch, args=(read_fd,), name="dshift-interrupt-watcher", daemon=True).start()
        return self

    def disarm(self) -> None:
        """The job has ended (or finished unwinding): later signals raise nothing, but the
        grace period still bounds what the command does before the block exits."""
        self._disarmed = True

    def __exit__(self, *exc_info) -> None:
        if not self._active:
            return
        self._done.set()
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if self.restore else signal.SIG_IGN)
        signal.set_wakeup_fd(self._previous_wakeup)
        sys.unraisablehook = self._previous_hook
        os.close(self._pipe[1])  # the watcher reads b"", closes its end and ends
        self._active = False

    def _watch(self, read_fd: int) -> None:
        """Read the signal numbers the C-level handler writes; start the grace period once."""
        armed = True
        while data := os.read(read_fd, 1):  # until __exit__ closes the write end
            if armed and data[0] in SIGNALS:
                armed = False
                threading.Thread(target=self._deadline, args=(data[0],), name="dshift-interrupt-deadline",
                                 daemon=True).start()
        os.close(read_fd)

    def _deadline(self, signum: int) -> None:
        if not self._done.wait(self.grace):
            self.on_overrun(signum)

    def _unraisable(self, unraisable) -> None:
        """``sys.unraisablehook``: an Interrupted raised inside a ``__del__`` (or another place
        whose exceptions Python ignores) is delivered again, to be raised where it unwinds the job."""
        if isinstance(unraisable.exc_value, Interrupted) and not self._disarmed:
            self._lost = True
            # From another thread, a moment later: sent from here, the handler would run (and
            # raise) inside this hook, where exceptions are ignored too.
            again = threading.Timer(0.01, signal.pthread_kill,
                                    args=(threading.main_thread().ident, unraisable.exc_value.signum))
            again.daemon = True
            again.start()
            return
        self._previous_hook(unraisable)

    def _handle(self, signum: int, frame) -> None:
        if self._lost and not self._disarmed:
            self._lost = False
            raise Interrupted(self.received or signum)  # the stoppers ran already
        if self.received is not None or self._disarmed:
            return  # already stopping (the grace period bounds how long that takes), or done
        self.received = signum
        for stop in reversed(_stoppers):
            with contextlib.suppress(Exception):
                stop()
        raise Interrupted(signum)
