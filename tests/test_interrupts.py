"""SIGINT/SIGTERM handling (dshift.interrupts) with real signals sent to this process.

The end-to-end behaviour (a running ``dshift run`` stopped within 5 s, exit 130/143, nothing
left behind) is in test_reliability.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dshift.errors import Interrupted
from dshift.interrupts import InterruptHandler, on_interrupt


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.5)  # the Python-level handler runs here, in the main thread


def test_first_signal_stops_the_job_later_ones_are_ignored():
    stopped = []
    # What the handlers were before (a shell's background job starts with SIGINT ignored).
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with InterruptHandler(grace=60, on_overrun=lambda signum: None) as handler, \
            on_interrupt(lambda: stopped.append("first")), on_interrupt(lambda: stopped.append("second")):
        with pytest.raises(Interrupted) as info:
            _deliver(signal.SIGTERM)
        assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
        assert isinstance(info.value, KeyboardInterrupt)
        assert stopped == ["second", "first"]  # stoppers run before the job unwinds, innermost first
        _deliver(signal.SIGINT)  # a second Ctrl-C while stopping: no exception
        assert handler.received == signal.SIGTERM
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored


def test_a_job_that_does_not_unwind_in_time_is_overrun():
    overrun = threading.Event()
    with InterruptHandler(grace=0.3, on_overrun=lambda signum: overrun.set()):
        with pytest.raises(Interrupted):
            _deliver(signal.SIGINT)
        assert overrun.wait(10)  # the job "hangs" here while unwinding


def test_a_finished_job_ignores_signals():
    overrun = threading.Event()
    with InterruptHandler(grace=5, on_overrun=lambda signum: overrun.set()) as handler:
        handler.disarm()
        _deliver(signal.SIGINT)  # no exception while the command reports its outcome
        assert handler.received is None
    assert not overrun.wait(0.3)


def test_an_interrupt_lost_in_a_finalizer_is_raised_again():
    """A signal handled inside a ``__del__`` raises where Python ignores exceptions (as in
    distributed's ``Future.__del__`` during a garbage collection): it is raised again after."""
    stopped = []

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10_000_000):  # the Python-level handler runs here, inside __del__
                if stopped:
                    break

    with InterruptHandler(grace=60, on_overrun=lambda signum: None) as handler, \
            on_interrupt(lambda: stopped.append(True)):
        with pytest.raises(Interrupted) as info:
            Finalized()  # collected at once: __del__ runs, its Interrupted is lost...
            time.sleep(0.5)  # ...and raised again here
        assert info.value.signum == signal.SIGINT and handler.received == signal.SIGINT
        assert stopped == [True]
