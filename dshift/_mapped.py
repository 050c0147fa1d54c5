"""Arrays kept in nameless files on local disk, mapped only while a task reads them.

The spatial indexes of data too big for the workers' memory keep their points this way (see
:meth:`dshift.index.ChunkIndex.to_disk`). A shift pass then maps each file and reads only the
leaves the spheres cut, from the page cache; with Dask's spill instead, every pass unpickled
whole trees and wrote them back (100M rows, 1.5 GiB workers: about 2 s per pass). The file
is unlinked as soon as it is created, so it goes when the array does, or with the process,
whatever ends it.
"""

from __future__ import annotations

import logging
import mmap
import tempfile

import numpy as np
from dask.sizeof import sizeof

__all__ = ["DiskArray", "store", "opened"]

log = logging.getLogger("dshift")


class DiskArray:
    """A read-only array in a nameless local file (see :func:`store`).

    Dask sizes it by its handle, not its data, so it is never picked for spilling. Pickled
    (sent to another worker, or spilled anyway), it carries its data and is stored again
    where it is unpickled.
    """

    __slots__ = ("_file", "shape", "dtype")

    def __init__(self, file, shape: tuple, dtype: np.dtype) -> None:
        self._file, self.shape, self.dtype = file, shape, np.dtype(dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the data (on disk)."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def mapped(self) -> np.ndarray:
        """The data, mapped copy-on-write (writable, so compiled kernels see the same array
        type as for in-memory data); unmapped when the array is released."""
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        view = mmap.mmap(self._file.fileno(), self.nbytes, access=mmap.ACCESS_COPY)
        return np.frombuffer(view, self.dtype).reshape(self.shape)

    def __reduce__(self):
        return store, (np.array(self.mapped()),)


@sizeof.register(DiskArray)
def _sizeof_disk_array(array: DiskArray) -> int:
    return 64


def store(array: np.ndarray, directory: str | None = None) -> DiskArray | np.ndarray:
    """Move ``array`` into a nameless file in ``directory`` (the worker's local directory when
    omitted, see :func:`local_directory`).

    A full or unwritable disk keeps the array in memory (a warning in the log): the fit goes
    on as it would have without the disk.

    Parameters
    ----------
    array : ndarray
    directory : str, optional

    Returns
    -------
    DiskArray, or ``array`` itself when it could not be written
    """
    array = np.ascontiguousarray(array)
    directory = local_directory() if directory is None else directory
    try:
        file = tempfile.TemporaryFile(dir=directory)
    except OSError as exc:
        log.warning("index: kept in memory, %s is not usable for it: %s", directory, exc)
        return array
    try:
        file.write(memoryview(array.reshape(-1)).cast("B"))  # flat: a view with no rows casts too
        file.flush()
    except OSError as exc:
        file.close()
        log.warning("index: kept in memory, %s has no room for %d bytes: %s", directory, array.nbytes, exc)
        return array
    return DiskArray(file, array.shape, array.dtype)


def opened(array):
    """``array`` ready for a kernel: mapped when on disk, else as it is."""
    return array.mapped() if isinstance(array, DiskArray) else array


def local_directory() -> str:
    """The running worker's local directory, else the system's temporary directory."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return tempfile.gettempdir()
