"""Where outputs go: one job at a time, staged, moved into place whole, never over or inside
the input.

Outputs are written to a hidden sibling of the output path and moved into place only when
complete, by the one job holding the output's lock, see :class:`OutputStage`;
:func:`check_paths_disjoint` refuses an output that would overlap the input. Small files
(model.json, report.json, the plot) are written and read on the driver through fsspec.

Storage faults while writing the output (no space, quota, read-only file system, no
permission), on the driver or on the workers, become a
:class:`~dshift.errors.StorageError` naming ``output.path`` and the cause
(:meth:`OutputStage.writing`, :mod:`dshift.io.faults`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import threading
from typing import Any, Iterator, Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dshift.errors import StorageError, UserError
from dshift.io._fs import glob_base, has_glob, url_to_fs
from dshift.io.faults import is_unreachable, storage_error
from dshift.io.locks import OutputLock

__all__ = [
    "SUCCESS_MARKER",
    "COMMITTING_MARKER",
    "check_paths_disjoint",
    "OutputStage",
    "discard_open_stages",
    "write_bytes",
    "write_json",
    "read_json",
]

logger = logging.getLogger("dshift.batch")

SUCCESS_MARKER = "_SUCCESS"
# Written first into an object-store output during a commit, removed after _SUCCESS: an output
# prefix holding it (and no _SUCCESS) is a half-copied leftover of a killed job.
COMMITTING_MARKER = "_DSHIFT_COMMITTING"

_open_stages: set = set()  # stages with a lock or staging directory, for discard_open_stages()
_open_stages_lock = threading.Lock()


def _norm(url: str, storage_options: Optional[dict], what: str) -> tuple[str, str]:
    """(protocol, normalised path) for comparing locations."""
    fs, path = url_to_fs(url, storage_options or {}, what)
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if isinstance(fs, LocalFileSystem):
        path = os.path.realpath(path)
    return proto, path.rstrip("/") or "/"


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def check_paths_disjoint(
    input_url: str, output_url: str, input_options: Optional[dict] = None, output_options: Optional[dict] = None
) -> None:
    """Refuse an output that is, or is inside, the input (and vice versa).

    Parameters
    ----------
    input_url, output_url : str
        ``input.path`` and ``output.path``.
    input_options, output_options : dict, optional
        Their storage options.

    Raises
    ------
    UserError
    """
    in_proto, in_path = _norm(input_url, input_options, "input.path")
    out_proto, out_path = _norm(output_url, output_options, "output.path")
    if in_proto != out_proto:
        return
    if has_glob(in_path):
        static = glob_base(in_path) or "/"  # directory holding the pattern
        prefixes = [out_path] + [out_path[:i] for i, ch in enumerate(out_path) if ch == "/" and i]
        if any(fnmatch.fnmatch(p, in_path) for p in prefixes):
            raise UserError(f"output.path {output_url!r} is inside the input {input_url!r}; write it elsewhere")
        if _inside(static, out_path):
            raise UserError(f"input.path {input_url!r} is inside output.path {output_url!r}; write it elsewhere")
        return
    if _inside(out_path, in_path):
        same = "the same as" if out_path == in_path else "inside"
        raise UserError(f"output.path {output_url!r} is {same} input.path {input_url!r}; write it elsewhere")
    if _inside(in_path, out_path):
        raise UserError(f"input.path {input_url!r} is inside output.path {output_url!r}; write it elsewhere")


class OutputStage:
    """Lock an output path, stage the output and move it into place only when complete.

    :meth:`open` (or ``with``) takes the output's lock (:class:`~dshift.io.locks.OutputLock`,
    ``<parent>/.<name>.lock``: a second job on the same output refuses; a lock left by a killed
    job is taken over), removes what killed jobs left next to the output, and creates the
    staging directory; :meth:`commit` releases the lock, and leaving the ``with`` block without
    a commit removes the staging directory and the lock. Open it before starting the cluster,
    so that the staging directory is removed only after the cluster is closed and no worker
    writes into it any more.

    Everything is written under a hidden sibling ``<parent>/.<name>.tmp-<token>``. On a local
    file system :meth:`commit` swaps the new output with the old one in one atomic
    ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere: old renamed aside, new renamed in) and
    deletes the old one: ``output.path`` holds either the complete old output, or (only
    without the atomic swap, for an instant) nothing, or the complete new output. On object stores (s3://, …) a "rename" is copy +
    delete: the files are copied to the target prefix after a ``_DSHIFT_COMMITTING`` marker,
    and ``_SUCCESS`` is written last; readers must check for ``_SUCCESS``. A prefix left with
    the committing marker by a killed job is replaced by the next run.

    Parameters
    ----------
    url : str
        The output directory (local path or URL).
    storage_options : dict, optional
        Passed to fsspec.
    overwrite : bool
        Replace an existing output.
    what : str
        Name of the setting, for messages.
    overwrite_hint : str
        How the user allows replacing, for messages.
    """

    def __init__(self, url: str, storage_options: Optional[dict] = None, *, overwrite: bool = False,
                 what: str = "output.path", overwrite_hint: str = "set output.overwrite: true") -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.overwrite = overwrite
        self.what = what
        self.overwrite_hint = overwrite_hint
        self.fs, root = url_to_fs(url, self.storage_options, what)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.parent, self.name = posixpath.split(self.root)
        if not self.name or not self.parent:
            raise UserError(f"{what}: {url!r} must be a directory below a parent directory (or bucket)")
        self.lock = OutputLock(self.fs, self.parent, self.name, url=url, what=what)
        self.tmp: Optional[str] = None
        self._created_parents: list[str] = []

    # -- state of the target ------------------------------------------------------------------
    def _invalidate(self) -> None:
        if not self.local:
            self.fs.invalidate_cache()

    def _target_state(self) -> str:
        """'absent', 'leftover' (half-copied by a killed object-store commit) or 'present'."""
        self._invalidate()
        if self.local:
            return "present" if os.path.lexists(self.root) else "absent"
        if not self.fs.exists(self.root):
            return "absent"
        marker = self.fs.exists(f"{self.root}/{COMMITTING_MARKER}")
        done = self.fs.exists(f"{self.root}/{SUCCESS_MARKER}")
        return "leftover" if marker and not done else "present"

    def check(self) -> None:
        """Fail early if the output exists and ``overwrite`` is false.

        Raises
        ------
        UserError
        """
        with self.writing("access"):
            state = self._target_state()
        if state == "present" and not self.overwrite:
            raise UserError(f"{self.what}: {self.url!r} already exists; {self.overwrite_hint} to replace it")

    def holder(self) -> Optional[str]:
        """The job writing this output now (``host h1, pid 4242, started ...``), or None."""
        return self.lock.holder()

    # -- staging --------------------------------------------------------------------------------
    def open(self) -> "OutputStage":
        """Take the lock, check the target, remove leftovers, create the staging directory.

        Raises
        ------
        UserError
            Another job writes this output, or it exists and ``overwrite`` is false.
        StorageError
            The lock or the staging directory cannot be written (read-only, full, no permission).
        """
        with _open_stages_lock:
            _open_stages.add(self)
        try:
            with self.writing():
                if self.local:
                    p, missing = self.parent, []
                    while p and not os.path.exists(p):
                        missing.append(p)
                        p = os.path.dirname(p)
                    os.makedirs(self.parent, exist_ok=True)
                    self._created_parents = missing  # innermost first
                self.lock.acquire()
            self.check()
            with self.writing():
                self._remove_stale_siblings()  # holding the lock: no live job owns them
                self.tmp = f"{self.parent}/.{self.name}.tmp-{self.lock.token}"
                if self.local:
                    os.mkdir(self.tmp)
        except BaseException:
            self.close()
            raise
        return self

    def url_for(self, relpath: str) -> str:
        """URL of ``relpath`` inside the staging directory (for writers such as to_parquet)."""
        if self.tmp is None:
            raise RuntimeError("OutputStage.open() was not called")
        path = f"{self.tmp}/{relpath}".rstrip("/")
        return path if self.local else self.fs.unstrip_protocol(path)

    def commit(self) -> None:
        """Move the staged output into place (see the class docstring).

        Raises
        ------
        UserError
            The output appeared while the job ran (without ``overwrite``), or another job took
            the lock over (object stores: this job's lease lapsed).
        StorageError
            The commit could not be written; the old output, if any, stays whole.
        """
        if self.tmp is None:
            raise RuntimeError("OutputStage.open() was not called")
        with self.writing():
            self.lock.verify()
            state = self._target_state()
            if state == "present" and not self.overwrite:
                raise UserError(f"{self.what}: {self.url!r} appeared while the job ran; nothing was replaced")
            if self.local:
                self._commit_local(replace=state != "absent")
            else:
                self._commit_object_store(replace=state != "absent")
        self.tmp = None
        self.lock.release()  # the output is whole: the next job on it may start
        logger.info("%s: committed %s", self.what.split(".")[0].lstrip("-"), self.url)

    def _commit_local(self, replace: bool) -> None:
        with open(os.path.join(self.tmp, SUCCESS_MARKER), "wb"):
            pass
        if replace and _exchange_paths(self.tmp, self.root):
            _rm_local(self.tmp)  # now the old output
            return
        old = None
        if replace:  # no atomic exchange: a short window with nothing at output.path
            old = f"{self.parent}/.{self.name}.old-{self.lock.token}"
            os.rename(self.root, old)
        try:
            os.rename(self.tmp, self.root)
        except OSError:
            if old is not None:
                os.rename(old, self.root)  # the old output back in place
            raise
        if old is not None:
            _rm_local(old)

    def _commit_object_store(self, replace: bool) -> None:
        fs = self.fs
        if replace:
            fs.rm(self.root, recursive=True)
        fs.pipe(f"{self.root}/{COMMITTING_MARKER}", b"")
        sources = [p for p in fs.find(self.tmp) if not p.endswith("/")]
        targets = [self.root + p[len(self.tmp):] for p in sources]
        if sources:
            fs.copy(sources, targets)
        fs.pipe(f"{self.root}/{SUCCESS_MARKER}", b"")
        fs.rm(f"{self.root}/{COMMITTING_MARKER}")
        fs.rm(self.tmp, recursive=True)
        self._invalidate()

    def abort(self) -> None:
        """Delete the staging directory (never raises: cleanup must not hide the original error)."""
        if self.tmp is None:
            return
        tmp, self.tmp = self.tmp, None
        try:
            if self.local:
                _rm_local(tmp)
            else:
                self._invalidate()
                if self.fs.exists(tmp):
                    self.fs.rm(tmp, recursive=True)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not remove temporary output %s: %s", tmp, exc)

    def close(self) -> None:
        """Abort (unless committed), remove the lock and the parent directories this stage made."""
        self.abort()
        if self.lock.held:
            self.lock.release()
        for p in self._created_parents:
            try:
                os.rmdir(p)
            except OSError:
                break
        self._created_parents = []
        with _open_stages_lock:
            _open_stages.discard(self)

    def _remove_stale_siblings(self) -> None:
        """Delete what killed jobs left (``.<name>.tmp-<token>``, ``.<name>.old-<token>``)."""
        leftover = re.compile(rf"\.{re.escape(self.name)}\.(tmp|old)-[0-9a-f]+")
        self._invalidate()
        try:
            listing = self.fs.ls(self.parent, detail=False)
        except FileNotFoundError:  # an object-store prefix with nothing under it yet
            return
        found = [p for p in listing if leftover.fullmatch(posixpath.basename(p.rstrip("/")))]
        for p in found:
            if self.local:
                _rm_local(p)
            else:
                self.fs.rm(p, recursive=True)
        if found:
            logger.info("%s: removed what killed jobs left next to %s: %s", self.what.split(".")[0].lstrip("-"),
                        self.url, ", ".join(posixpath.basename(p.rstrip("/")) for p in found))

    # -- storage faults ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, doing: str = "write") -> Iterator["OutputStage"]:
        """A block that writes the output (on the driver): an OSError in it is a storage fault.

        Parameters
        ----------
        doing : str
            The verb of the message (``output: cannot write '/data/out' (...)``).

        Raises
        ------
        StorageError
            For any OSError raised in the block, or an object store that cannot be reached
            (:func:`~dshift.io.faults.is_unreachable`), naming the output and the cause.
        """
        try:
            yield self
        except Exception as exc:
            # CommClosedError is an OSError too: that one is the cluster's.
            if (isinstance(exc, OSError) and not type(exc).__module__.startswith("distributed")) or is_unreachable(exc):
                raise self.storage_error(exc, doing) from None
            raise

    def storage_error(self, exc: OSError, doing: str = "write") -> StorageError:
        """The one-line error for an OSError writing this output
        (:func:`dshift.io.faults.storage_error`, ``doing`` its verb)."""
        parent = self.parent if self.local else self.fs.unstrip_protocol(self.parent)
        return storage_error(exc, self.url, parent, self.what, doing)

    def __enter__(self) -> "OutputStage":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        # Commit is explicit; leaving the block without it (an error) discards the staging dir.
        self.close()


def discard_open_stages() -> list[str]:
    """Remove the staging directories and locks of every open stage, right now.

    For a job that is killed because it did not stop in time (the ``dshift`` command's
    interrupt grace period): called from another thread while the main thread is stuck, so
    only quick local work is done.

    Returns
    -------
    list of str
        Staging directories left in place (object stores: the next run removes them).
    """
    left = []
    with _open_stages_lock:
        stages = list(_open_stages)
    for stage in stages:
        tmp = stage.tmp
        if tmp is not None and not stage.local:
            left.append(stage.fs.unstrip_protocol(tmp))
        elif tmp is not None:
            with contextlib.suppress(OSError):
                _rm_local(tmp)
        if stage.local and stage.lock.held:
            stage.lock.release()
    return left


def _exchange_paths(a: str, b: str) -> bool:
    """Atomically swap two local paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where that is not available (other systems, some file systems); the caller
    then falls back to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), b)


def _rm_local(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def write_bytes(url: str, data: bytes, storage_options: Optional[dict] = None) -> None:
    """Write a small file through fsspec (driver side)."""
    with fsspec.open(url, "wb", **(storage_options or {})) as fh:
        fh.write(data)


def write_json(url: str, obj: Any, storage_options: Optional[dict] = None) -> None:
    """Write ``obj`` as indented JSON through fsspec (driver side)."""
    write_bytes(url, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8"), storage_options)


def read_json(url: str, storage_options: Optional[dict] = None, *, what: str = "file") -> Any:
    """Read a JSON file through fsspec.

    Raises
    ------
    UserError
        If it is missing or not valid JSON.
    """
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as fh:
            return json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} {url!r} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {url!r} is not valid JSON: {exc}") from None

