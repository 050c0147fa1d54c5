"""One job per output path: a lock file next to the output, ``<parent>/.<name>.lock``.

The lock holds its owner (host, pid, start time of the process, a token) as JSON, so a job
that finds it taken can say which job runs, and a job that finds it left behind can say
which job died.

**Local file systems** (NFS included): the job holds ``flock(LOCK_EX)`` on the lock file for
its lifetime. The kernel (for NFS, the server's lock manager) drops the lock when the process
ends, however it ends (SIGKILL and power loss included), so a lock file whose flock can be
taken was left by a job that is gone: it is taken over at once. A clean end unlinks the file.
On a file system without locks (``flock`` fails with ENOLCK, EOPNOTSUPP, ...) the file is
created with ``O_CREAT|O_EXCL`` and handled as an object-store marker, below.

**Object stores** (s3://, ...): a marker object with the owner and a lease: the job rewrites
it every :data:`RENEW_SECONDS` (30 s); a marker not renewed for :data:`LEASE_SECONDS` (2 min),
or one written on this host by a process that no longer runs, is stale and taken over. The
marker is created write-if-absent (S3's ``If-None-Match: *``) and taken over with a
conditional write on the stale version (``If-Match: <ETag>``), so two jobs cannot both win;
every write is read back. Before the commit the job checks that the marker is still its own:
a job whose lease lapsed (its host was suspended, the store unreachable for 2 min) and was
taken over commits nothing. Stores without conditional writes get the read-back only: two
jobs started within the same instant may both start, and the one whose marker was
overwritten fails before its commit. Leases compare the hosts' clocks: keep them in sync
(within a minute).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Optional

from fsspec.implementations.local import LocalFileSystem

from dshift.errors import UserError

__all__ = ["OutputLock", "Owner", "LEASE_SECONDS", "RENEW_SECONDS"]

logger = logging.getLogger("dshift.batch")

LEASE_SECONDS = 120.0
RENEW_SECONDS = 30.0
# A lock held for a moment only (``dshift validate`` probing it, a job releasing it) is
# retried for this long before the job refuses.
_BUSY_RETRY_SECONDS = 0.5
# flock errors that mean "this file system has no locks", not "someone holds it".
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


@dataclass
class Owner:
    """The job holding a lock.

    Attributes
    ----------
    host : str
        ``socket.gethostname()``.
    pid : int
        The job's process.
    started : float
        The process's start time (epoch seconds): shown to users, and tells a live process from
        a later one that reuses the pid.
    token : str
        Unique per job; also names the job's staging directory.
    renewed : float
        When the lease was last renewed (epoch seconds; object stores).
    lease : float
        Seconds the lease lasts after ``renewed``.
    """

    host: str
    pid: int
    started: float
    token: str
    renewed: float = 0.0
    lease: float = LEASE_SECONDS

    @classmethod
    def this_process(cls) -> "Owner":
        """An owner for the current process with a fresh token."""
        import psutil

        return cls(host=socket.gethostname(), pid=os.getpid(), started=psutil.Process().create_time(),
                   token=uuid.uuid4().hex[:12], renewed=time.time())

    @classmethod
    def parse(cls, data: bytes) -> Optional["Owner"]:
        """The owner in a lock's content, or None if it holds none (empty, half written, foreign)."""
        try:
            fields = json.loads(data.decode("utf-8"))
            return cls(host=str(fields["host"]), pid=int(fields["pid"]), started=float(fields["started"]),
                       token=str(fields["token"]), renewed=float(fields.get("renewed", 0.0)),
                       lease=float(fields.get("lease", LEASE_SECONDS)))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def dump(self) -> bytes:
        """The lock's content."""
        return (json.dumps(asdict(self)) + "\n").encode("utf-8")

    def describe(self) -> str:
        """``host h1, pid 4242, started 2026-11-30 06:10:03`` (the start in local time)."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"host {self.host}, pid {self.pid}, started {started}"

    def alive_here(self) -> Optional[bool]:
        """Whether the owner's process runs: None when it ran on another host (unknown)."""
        if self.host != socket.gethostname():
            return None
        import psutil

        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 1.0
        except psutil.Error:
            return False

    def live(self, now: float) -> bool:
        """A marker's owner counts as running: its process runs (same host) or its lease holds."""
        here = self.alive_here()
        return here if here is not None else now < self.renewed + self.lease


class OutputLock:
    """The lock of one output path (see the module docstring).

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The output's file system.
    parent, name : str
        The output's parent directory (file system path form) and base name.
    url : str
        The output as the user wrote it, for messages.
    what : str
        Name of the setting (``output.path``, ``--output``), for messages.

    Attributes
    ----------
    owner : Owner
        This job; ``owner.token`` is unique to it.
    path : str
        The lock file.
    """

    def __init__(self, fs: Any, parent: str, name: str, *, url: str, what: str) -> None:
        self.fs, self.url, self.what = fs, url, what
        self.path = f"{parent}/.{name}.lock"
        self.owner = Owner.this_process()
        self._local = isinstance(fs, LocalFileSystem)
        self._fd: Optional[int] = None  # the flock'ed file (local file systems)
        self._leased = False  # holding a marker with a lease (object stores, local without flock)
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None
        self._lost: Optional[str] = None

    @property
    def token(self) -> str:
        """This job's token."""
        return self.owner.token

    @property
    def held(self) -> bool:
        """Whether this job holds the lock."""
        return self._fd is not None or self._leased

    # -- taking it ----------------------------------------------------------------------------
    def acquire(self) -> Optional[Owner]:
        """Take the lock, or refuse if another live job holds it.

        Returns
        -------
        Owner or None
            The owner of a stale lock that was taken over (a job that is gone), else None.

        Raises
        ------
        UserError
            Another job holds the lock (naming it).
        OSError
            The lock cannot be written (read-only file system, no space, no permission, ...).
        """
        previous = self._acquire_flock() if self._local else self._acquire_lease()
        if previous is not None and previous.token != self.token:
            logger.info("%s: took over the lock of a dshift job that is gone (%s)",
                        self.what.split(".")[0].lstrip("-"), previous.describe())
            return previous
        return None

    def _in_use(self, owner: Optional[Owner]) -> UserError:
        return UserError(f"{self.what} {self.url!r} is in use by another dshift job ({_describe(owner)}); "
                         f"wait for it or choose another {self.what}")

    def _acquire_flock(self) -> Optional[Owner]:
        import fcntl

        deadline = time.monotonic() + _BUSY_RETRY_SECONDS
        while True:
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
            except FileExistsError:
                try:
                    fd, created = os.open(self.path, os.O_RDWR | os.O_CLOEXEC), False
                except FileNotFoundError:  # released between the two opens
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise self._in_use(self._read_owner()) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_LOCKS:
                    raise
                return self._acquire_without_flock(created)
            if not _is_file(fd, self.path):  # unlinked by the job that released it: lock the new one
                os.close(fd)
                continue
            previous = Owner.parse(_read_all(fd))
            try:
                _write_fd(fd, self.owner.dump())
            except OSError:  # e.g. no space left: leave no half-written lock behind
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                os.close(fd)
                raise
            self._fd = fd
            return previous

    def _acquire_without_flock(self, created: bool) -> Optional[Owner]:
        """A local file system without locks: the file made with O_EXCL is a leased marker."""
        if created:
            _write_path(self.path, self.owner.dump())
            self._hold_lease()
            return None
        return self._acquire_lease()

    def _acquire_lease(self) -> Optional[Owner]:
        current: Optional[Owner] = None
        for _ in range(5):
            if self._create_marker():
                self._confirm()
                self._hold_lease()
                return None
            current, version = self._read_marker()
            if version is None:  # released meanwhile: create it again
                continue
            if current is not None and current.live(time.time()):
                raise self._in_use(current)
            if self._replace_marker(version):
                self._confirm()
                self._hold_lease()
                return current
        raise self._in_use(current)

    def _confirm(self) -> None:
        """Read the marker back: on a store without conditional writes another job may have won."""
        current, _ = self._read_marker()
        if current is None or current.token != self.token:
            raise self._in_use(current)

    def _hold_lease(self) -> None:
        self._leased = True
        self._renewer = threading.Thread(target=self._renew, name="dshift-lock-lease", daemon=True)
        self._renewer.start()

    # -- keeping it -----------------------------------------------------------------------------
    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                current, version = self._read_marker()
                if current is None or current.token != self.token:
                    self._lost = _describe(current)
                    return
                self.owner.renewed = time.time()
                self._replace_marker(version)
            except Exception as exc:  # noqa: BLE001 - a missed renewal is retried; the lease allows four
                logger.warning("could not renew the lock %s: %s: %s", self.path, type(exc).__name__, exc)

    def verify(self) -> None:
        """Check, right before a commit, that the lock is still this job's.

        Raises
        ------
        UserError
            If another job took the lock over (this job's lease lapsed).
        """
        if not self._leased:
            return  # a kernel lock cannot be lost while the process lives
        if self._lost is None:
            current, _ = self._read_marker()
            if current is None or current.token != self.token:
                self._lost = _describe(current)
        if self._lost is not None:
            raise UserError(f"{self.what} {self.url!r}: this job's lock was taken over by another dshift job "
                            f"({self._lost}) after its lease of {LEASE_SECONDS:g} s was not renewed; "
                            "nothing was committed")

    # -- giving it back ---------------------------------------------------------------------------
    def release(self) -> None:
        """Remove the lock if it is this job's (never raises: a stale lock is taken over anyway)."""
        self._stop.set()
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    if _is_file(fd, self.path):
                        os.unlink(self.path)  # while still holding it: see _is_file in acquire
                finally:
                    os.close(fd)
            elif self._leased:
                self._leased = False
                current, _ = self._read_marker()
                if current is not None and current.token == self.token:
                    self._delete_marker()
        except Exception as exc:  # noqa: BLE001 - the job's outcome does not depend on it
            logger.warning("could not remove the lock %s: %s: %s", self.path, type(exc).__name__, exc)

    # -- looking at it ------------------------------------------------------------------------------
    def holder(self) -> Optional[str]:
        """Which job holds the lock now, without taking it (``dshift validate``).

        Returns
        -------
        str or None
            ``host h1, pid 4242, started ...`` (or ``owner unknown``); None if the lock is free
            or stale.
        """
        if self._local:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _describe(Owner.parse(_read_all(fd)))
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    return None
            else:
                return None  # nobody holds it: free, or left by a job that is gone
            finally:
                os.close(fd)  # also drops the shared lock
        try:
            current, _ = self._read_marker()
        except OSError:
            return None
        return current.describe() if current is not None and current.live(time.time()) else None

    # -- the marker (object stores; local file systems without flock) ------------------------------
    def _read_owner(self) -> Optional[Owner]:
        with contextlib.suppress(OSError):
            return self._read_marker()[0]
        return None

    def _read_marker(self) -> tuple[Optional[Owner], Optional[Any]]:
        """(owner, version) of the marker; version None when there is no marker."""
        if self._local:
            try:
                with open(self.path, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    return Owner.parse(fh.read()), (st.st_ino, st.st_mtime_ns)
            except FileNotFoundError:
                return None, None
        self.fs.invalidate_cache(self.path)
        try:
            info = self.fs.info(self.path)
            # The version is read before the content: a conditional write on it fails if the
            # content changed after, so a stale judgement never replaces a newer marker.
            version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
            return Owner.parse(self.fs.cat_file(self.path)), version
        except FileNotFoundError:
            return None, None

    def _create_marker(self) -> bool:
        """Write the marker if there is none; False if there is one."""
        if self._local:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                return False
            try:
                _write_fd(fd, self.owner.dump())
            finally:
                os.close(fd)
            return True
        try:
            self.fs.pipe_file(self.path, self.owner.dump(), mode="create")  # s3fs: If-None-Match: *
        except FileExistsError:
            return False
        return True

    def _replace_marker(self, version: Any) -> bool:
        """Overwrite the marker if it is still at ``version``; False if it changed."""
        data = self.owner.dump()
        if self._local:  # no conditional write: re-check the version, then swap in a whole file
            if self._read_marker()[1] != version:
                return False
            tmp = f"{self.path}.{self.token}"
            _write_path(tmp, data)
            os.replace(tmp, self.path)
            return True
        if "s3" in _protocols(self.fs):
            try:
                self.fs.pipe_file(self.path, data, IfMatch=version)
                return True
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # 412 Precondition Failed: another job wrote it
                    return False
                if exc.errno != errno.ENOSYS:  # a store without conditional writes: write plainly
                    raise
        self.fs.pipe_file(self.path, data)
        return True

    def _delete_marker(self) -> None:
        if self._local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        else:
            self.fs.rm_file(self.path)


def _describe(owner: Optional[Owner]) -> str:
    return owner.describe() if owner is not None else "owner unknown"


def _protocols(fs: Any) -> tuple:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _is_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the open file ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_fd(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)


def _write_path(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_fd(fd, data)
    finally:
        os.close(fd)
