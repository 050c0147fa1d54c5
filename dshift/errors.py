"""Exceptions of the dshift batch tool.

Only one class matters to callers: :class:`UserError`. Anything the user can fix (a bad
config, a missing column, NaN in the data, an output that already exists, an unreachable
scheduler) is raised as a ``UserError`` with a one-line message naming the offending key,
column, file or address. The ``dshift`` command turns it into exit status 2, or the error's
own :attr:`~UserError.exit_code`: a :class:`StorageError` (the storage refused to store the
output: no space, quota, read-only, no permission) is 74. :class:`ClusterError` and every other
exception is a cluster, environment or program failure (exit status 1). :class:`Interrupted`
is the command's SIGINT/SIGTERM (exit status 130/143).
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "StorageError", "ClusterError", "Interrupted", "EXIT_STORAGE"]

#: Exit status of a storage fault: sysexits.h's EX_IOERR.
EXIT_STORAGE = 74


class UserError(Exception):
    """An error the user can act on; the CLI prints ``error: <message>`` and exits 2.

    Parameters
    ----------
    message : str
        One line naming what is wrong and, where possible, how to fix it.
    """

    prefix = "error"
    #: The ``dshift`` command's exit status for this error.
    exit_code = 2

    def __init__(self, message: str) -> None:
        # Messages end up on a single stderr line: fold any embedded newlines.
        super().__init__(" ".join(str(message).split("\n")))

    @property
    def message(self) -> str:
        """The one-line message, without the prefix."""
        return str(self)

    def one_line(self) -> str:
        """The line the CLI prints, e.g. ``config error: model.bandwidth: must be > 0``."""
        return f"{self.prefix}: {self}"


class ConfigError(UserError):
    """A configuration file that cannot be read or does not match the schema."""

    prefix = "config error"


class StorageError(UserError):
    """The storage refused an operation of the job: no space left, quota exceeded, read-only
    file system, permission or access denied (an object store's ``AccessDenied``), or any
    other I/O error while writing the output.

    The config may well be right (the same job succeeds once space is freed or the file system
    is writable again), so the ``dshift`` command exits 74 (``EX_IOERR``), not 2; the message
    says which side failed (``output: cannot write '/data/out' (no space left on device); ...``).

    Parameters
    ----------
    message : str
        One line naming the path, the cause and what to do.
    """

    exit_code = EXIT_STORAGE


class ClusterError(Exception):
    """The Dask cluster failed under the job (workers kept dying, no workers left, the
    scheduler went away): not the user's config, so the CLI exits 1, but with one line naming
    the scheduler instead of a traceback.

    Parameters
    ----------
    message : str
        One line naming the scheduler and what happened.
    """

    prefix = "error"

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split("\n")))

    def one_line(self) -> str:
        """The line the CLI prints."""
        return f"{self.prefix}: {self}"


class Interrupted(KeyboardInterrupt):
    """The job received SIGINT or SIGTERM (raised by the ``dshift`` command's signal handler).

    A ``KeyboardInterrupt``, so code that already unwinds cleanly on Ctrl-C (distributed's
    ``sync``, context managers) treats SIGTERM the same way.

    Parameters
    ----------
    signum : int
        The signal received.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        self.signame = signal.Signals(self.signum).name
        super().__init__(self.signame)

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by a signal: 128 + the signal number (130, 143)."""
        return 128 + self.signum
