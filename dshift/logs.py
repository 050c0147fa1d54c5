"""The ``dshift`` command's terminal and log file.

The terminal shows dshift's own lines only (the ``dshift`` loggers, ``[dshift HH:MM:SS]
message``) and, on failure, one last line. Everything else a job writes to stderr goes to a
log file: while a command runs, file descriptor 2 points at the log, so distributed's
scheduler and nanny logs, the worker processes' logs (they inherit the descriptor, which
catches their ``Compute Failed`` tracebacks), Python warnings, tracebacks of library threads
and multiprocessing's resource tracker all land there, with dshift's own lines interleaved.
dshift's terminal handler writes to a duplicate of the original descriptor.

Where the log is (:func:`log_path`): next to a local output while the job runs,
``<parent>/.<name>.dshift-<YYYYmmdd-HHMMSS>-<pid>.log``; for an object-store output (or when
the output's parent cannot be written) in the user's state directory,
``$XDG_STATE_HOME/dshift/logs/`` (default ``~/.local/state/dshift/logs/``). On success the log
becomes ``<output>/dshift.log``; on failure it stays where it is and the last line names it.

Nothing here runs at import time: library use of dshift keeps its logging and stderr.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import logging
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import IO, Optional

__all__ = ["JobLog", "log_path", "state_dir", "LOG_NAME", "LINE_FORMAT"]

LINE_FORMAT = "[dshift %(asctime)s] %(message)s"
DATE_FORMAT = "%H:%M:%S"
LOG_NAME = "dshift.log"
DSHIFT_LINE = "[dshift "


def state_dir() -> Path:
    """Directory for logs that cannot live next to the output: ``$XDG_STATE_HOME/dshift/logs``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dshift" / "logs"


def log_path(output: Optional[str], command: str) -> str:
    """Where a command's log is written while it runs.

    Parameters
    ----------
    output : str or None
        The job's output directory (an absolute local path or a URL), or None (``validate``).
    command : str
        The command, used in the name when there is no output.

    Returns
    -------
    str
        ``<parent>/.<name>.dshift-<stamp>-<pid>.log`` for a local output,
        ``<state_dir>/<name>.dshift-<stamp>-<pid>.log`` otherwise.
    """
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    if output is None:
        return str(state_dir() / f"{command}.dshift-{stamp}.log")
    name = os.path.basename(output.rstrip("/")) or command
    if "://" in output:  # an object store: the log is local, named after the output
        return str(state_dir() / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.dshift-{stamp}.log")
    return os.path.join(os.path.dirname(output.rstrip("/")), f".{name}.dshift-{stamp}.log")


class _Handler(logging.StreamHandler):
    """A stream handler that stays silent when its stream fails (full disk, closed terminal):
    logging's default would print a "Logging error" traceback to stderr."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


class JobLog:
    """dshift's lines on the terminal, everything else in a log file (see the module docstring).

    Create it before anything is logged; :meth:`open` starts the log file once the output is
    known; :meth:`close` restores the process's stderr and logging.

    Parameters
    ----------
    quiet : bool
        Show only errors on the terminal (the log still gets every line).
    verbose : bool
        Show the whole log on the terminal as it is written, library logs included.
    """

    def __init__(self, *, quiet: bool = False, verbose: bool = False) -> None:
        self.quiet, self.verbose = quiet, verbose
        self.path: Optional[str] = None
        self._terminal: IO[str] = sys.stderr
        self._owned_terminal: Optional[IO[str]] = None
        self._file: Optional[IO[str]] = None
        self._saved_fd: Optional[int] = None
        self._created_dirs: list[str] = []
        self._follower: Optional[_Follower] = None
        formatter = logging.Formatter(LINE_FORMAT, datefmt=DATE_FORMAT)
        self._console = _Handler(sys.stderr)
        self._console.setFormatter(formatter)
        self._console.setLevel(logging.WARNING if quiet else logging.INFO)
        self._to_file = _Handler(sys.stderr)
        self._to_file.setFormatter(formatter)
        self._logger = logging.getLogger("dshift")
        self._saved_logger = (self._logger.handlers[:], self._logger.level, self._logger.propagate)
        self._logger.handlers[:] = [self._console]
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False

    # -- starting -----------------------------------------------------------------------------
    def open(self, path: str) -> None:
        """Start writing the log at ``path`` (or a fallback) and point stderr at it.

        Parameters
        ----------
        path : str
            From :func:`log_path`. If its directory cannot be created or written (read-only
            file system, no permission), the log goes to :func:`state_dir`, then the system's
            temporary directory.
        """
        for candidate in (path, str(state_dir() / os.path.basename(path).lstrip(".")),
                          os.path.join(_tempdir(), os.path.basename(path).lstrip("."))):
            try:
                self._file = self._create(candidate)
            except OSError:
                continue
            self.path = candidate
            break
        else:
            return  # nowhere to write: keep the terminal as it is rather than fail the job
        fd = self._file.fileno()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        real_stderr = _fileno(sys.stderr) == 2
        self._saved_fd = os.dup(2)
        os.dup2(fd, 2)
        if real_stderr:  # dshift's lines go to the original stderr, not to the log
            self._owned_terminal = open(os.dup(self._saved_fd), "w", buffering=1,  # noqa: SIM115
                                        encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                                        errors="backslashreplace")
            self._terminal = self._owned_terminal
        self._console.setStream(self._terminal)
        self._to_file.setStream(self._file)
        self._logger.addHandler(self._to_file)
        if self.verbose:  # the terminal shows the log itself, dshift's lines included
            self._logger.removeHandler(self._console)
            self._follower = _Follower(self.path, self._terminal)
            self._follower.start()

    def _create(self, path: str) -> IO[str]:
        directory = os.path.dirname(path)
        missing = []
        p = directory
        while p and not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        try:
            os.makedirs(directory, exist_ok=True)
            # O_APPEND: the driver and the processes it starts write the same file without
            # overwriting each other.
            handle = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        except OSError:
            _remove_empty_dirs(missing)
            raise
        self._created_dirs = missing
        return handle

    # -- during the job -------------------------------------------------------------------------
    def write(self, text: str) -> None:
        """Append ``text`` to the log only (e.g. a traceback); nothing if there is no log."""
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.write(text if text.endswith("\n") else text + "\n")

    def write_stacks(self) -> None:
        """Append every thread's stack to the log (a job that does not stop: where is it stuck?)."""
        if self._file is not None:
            import faulthandler

            with contextlib.suppress(OSError, ValueError):
                self._file.write("dshift: the stacks of all threads:\n")
                self._file.flush()
                faulthandler.dump_traceback(self._file, all_threads=True)

    def has_library_output(self) -> bool:
        """Whether the log holds anything but dshift's own lines (library logs, warnings, ...)."""
        if self.path is None:
            return False
        with contextlib.suppress(OSError), open(self.path, encoding="utf-8", errors="replace") as fh:
            return any(line.strip() and not line.startswith(DSHIFT_LINE) for line in fh)
        return False

    # -- the end -----------------------------------------------------------------------------------
    def final(self, line: str) -> None:
        """Write the job's last line to the log and, unless the follower shows it, the terminal."""
        self.write(line)
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        else:
            with contextlib.suppress(OSError, ValueError):
                print(line, file=self._terminal, flush=True)

    def close(self, *, keep: bool, into: Optional[str] = None, storage_options: Optional[dict] = None,
              restore_stderr: bool = True) -> Optional[str]:
        """Stop logging; keep the log, move it into the output, or delete it.

        Parameters
        ----------
        keep : bool
            Keep the log where it is (a failure); with ``into`` it is moved there instead.
        into : str, optional
            Output directory (local or URL) that receives the log as ``dshift.log`` (success).
        storage_options : dict, optional
            fsspec options for ``into``.
        restore_stderr : bool
            Point file descriptor 2 back at the original stderr. The ``dshift`` program keeps it
            on the log until it exits, so that output at interpreter shutdown (atexit handlers,
            the resource tracker) stays off the terminal.

        Returns
        -------
        str or None
            Where the log is now, or None if it was deleted (or never written).
        """
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        local = where = self.path
        if local is not None and into is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.flush()
            try:
                where = _move_into(local, into, storage_options or {})
            except Exception as exc:  # noqa: BLE001 - the job succeeded; a misplaced log is not a failure
                self._logger.warning("could not move the log into %s (%s: %s); it is at %s",
                                     into, type(exc).__name__, _first_line(exc), local)
                into, keep = None, True
        self._logger.handlers[:], self._logger.level, self._logger.propagate = self._saved_logger
        if self._saved_fd is not None:
            if restore_stderr:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self._saved_fd = None
        for handle in (self._file, self._owned_terminal):
            if handle is not None:
                with contextlib.suppress(OSError, ValueError):
                    handle.close()
        self._file = self._owned_terminal = None
        self.path = None
        if local is None:
            return None
        if into is None and keep:
            return local
        if into is None or "://" in into:  # discarded, or copied to an object store
            with contextlib.suppress(OSError):
                os.remove(local)
        _remove_empty_dirs(self._created_dirs)
        return where if into is not None else None


class _Follower(threading.Thread):
    """``tail -f`` of the log onto the terminal (``--verbose``)."""

    def __init__(self, path: str, out: IO[str]) -> None:
        super().__init__(name="dshift-log-follower", daemon=True)
        self.path, self.out = path, out
        self._stop_event = threading.Event()

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with open(self.path, "rb") as fh:
            while True:
                stopping = self._stop_event.is_set()
                chunk = fh.read(1 << 16)
                if chunk:
                    with contextlib.suppress(OSError, ValueError):
                        self.out.write(decoder.decode(chunk))
                        self.out.flush()
                elif stopping:  # drained after the stop request
                    return
                else:
                    self._stop_event.wait(0.1)

    def stop(self) -> None:
        """Copy what is left, then stop."""
        self._stop_event.set()
        self.join(5)


def _fileno(stream) -> Optional[int]:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _move_into(path: str, into: str, storage_options: dict) -> str:
    """Move (local) or copy (object store) the log to ``<into>/dshift.log``; returns that path."""
    if "://" not in into:
        target = os.path.join(into, LOG_NAME)
        try:
            os.replace(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(path, target)
        return target
    import fsspec

    target = f"{into.rstrip('/')}/{LOG_NAME}"
    with open(path, "rb") as src, fsspec.open(target, "wb", **storage_options) as dst:
        shutil.copyfileobj(src, dst)
    return target  # the local copy is removed by the caller once the log is closed


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _remove_empty_dirs(dirs: list[str]) -> None:
    """Remove directories the log created (innermost first) if nothing else is in them."""
    for d in dirs:
        try:
            os.rmdir(d)
        except OSError:
            return
