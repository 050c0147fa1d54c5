"""Storage faults: which errors are the output's, and the one line that says so.

A job reads its input and writes its output in the same computations; an ``OSError`` is the
output's when it names a file under the output, carries an errno only writes give, or was
raised inside the Parquet writer (:func:`is_write_error`). :func:`storage_error` turns it into
a :class:`~dshift.errors.StorageError` naming the output and the cause.
"""

from __future__ import annotations

import errno
import os

from dshift.errors import StorageError

__all__ = ["storage_error", "is_write_error", "is_unreachable", "describe", "UNREACHABLE_HINT"]

# Storage faults: errno -> (cause, what to do). {what} is the output's setting.
_FAULTS = {
    errno.ENOSPC: ("no space left on device", "free space or choose another {what}"),
    errno.EDQUOT: ("disk quota exceeded", "free space within the quota or choose another {what}"),
    errno.EROFS: ("read-only file system", "remount it read-write or choose another {what}"),
    errno.EACCES: ("permission denied", "grant write access to {parent!r} or choose another {what}"),
    errno.EPERM: ("operation not permitted", "grant write access to {parent!r} or choose another {what}"),
}
# Object stores' clients whose errors are not OSErrors: no connection, no credentials, a bad
# endpoint. They are the storage's (or its settings'), never dshift's.
_CLIENT_PACKAGES = {"botocore", "aiobotocore", "aiohttp", "requests", "urllib3"}
UNREACHABLE_HINT = "check the address, the network, the credentials and the storage_options"
# Only writes fail with these: an error carrying one in a job that reads and writes is the output's.
_WRITE_ONLY_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# dask's Parquet writer runs every write of a to_parquet task (files, directories, uploads)
# inside this function; distributed keeps the worker's frames in the re-raised traceback.
_WRITER_FUNCTION = "write_partition"


def storage_error(exc: OSError, url: str, parent: str, what: str, doing: str = "write") -> StorageError:
    """The one-line error for an OSError writing the output at ``url``.

    Parameters
    ----------
    exc : OSError or Exception
        From the driver or a worker (errno kept; object stores: PermissionError without one,
        or their client's own error when the store cannot be reached, see :func:`is_unreachable`).
    url : str
        The output.
    parent : str
        The directory (or prefix) it is written in, for the hint.
    what : str
        The output's setting (``output.path``, ``--output``).
    doing : str
        The verb of the message.

    Returns
    -------
    StorageError
        ``output: cannot write '<output>' (<cause>); <what to do>``.
    """
    code = getattr(exc, "errno", None)
    if code in _FAULTS:
        cause, hint = _FAULTS[code]
    elif is_unreachable(exc):
        cause, hint = describe(exc), UNREACHABLE_HINT
    elif isinstance(exc, PermissionError):  # object stores: AccessDenied & co, no errno
        cause = f"access denied: {_first_line(exc)}"
        hint = "check the credentials and the permissions of the bucket, or choose another {what}"
    else:
        cause, hint = describe(exc), None
    message = f"output: cannot {doing} {url!r} ({cause})"
    return StorageError(message + (f"; {hint.format(what=what, parent=parent)}" if hint else ""))


def is_write_error(exc: BaseException, url: str) -> bool:
    """Whether an error of a computation that reads the input and writes under ``url`` came
    from the writing.

    By the file it names (under ``url``), by an errno only writes give (no space, quota,
    read-only file system, file too large), or by the frames of the writer in its traceback
    (kept by distributed for errors raised on workers).

    Parameters
    ----------
    exc : BaseException
        The error, as re-raised on the driver.
    url : str
        Where the computation writes.

    Returns
    -------
    bool
    """
    if not isinstance(exc, OSError) or type(exc).__module__.startswith("distributed"):
        return False
    if exc.filename:
        name, target = _strip_protocol(os.fsdecode(exc.filename)), _strip_protocol(url).rstrip("/")
        if name == target or name.startswith(target + "/"):
            return True
    if exc.errno in _WRITE_ONLY_ERRNOS:
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == _WRITER_FUNCTION:
            return True
        tb = tb.tb_next
    return False


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` comes from an object store's client that could not reach the store or
    sign in (botocore's ``EndpointConnectionError``, ``NoCredentialsError``, aiohttp's
    connection errors, ...): a fault of the storage or its settings, not of dshift.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    bool
    """
    return any(c.__module__.split(".")[0] in _CLIENT_PACKAGES for c in type(exc).__mro__)


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line errors."""
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _strip_protocol(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]
