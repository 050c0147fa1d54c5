"""The input data set on storage: its Parquet files, their footers, and the lazy read.

The driver lists the files and reads their Parquet footers (metadata only) to name a
corrupt file before any work starts; reading the data is left to the Dask workers.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import dask.dataframe as dd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dshift.errors import UserError
from dshift.io._fs import has_glob, url_to_fs

__all__ = [
    "PARQUET_EXTENSIONS",
    "InputFiles",
    "list_input_files",
    "check_parquet_files",
    "read_parquet",
    "read_errors_as_user_errors",
]

#: File name endings that count as Parquet when a directory is read (as in dask).
PARQUET_EXTENSIONS = (".parq", ".parquet", ".pq")


def _is_hidden(relpath: str) -> bool:
    """pyarrow/dask skip files and directories starting with '.' or '_'."""
    return any(part.startswith((".", "_")) for part in relpath.split("/") if part)


@dataclass
class InputFiles:
    """The Parquet files behind an input path.

    Attributes
    ----------
    url : str
        The path as given (local absolute path or fsspec URL).
    fs : fsspec.AbstractFileSystem
        The file system.
    files : list of str
        The data files (in the file system's own path form).
    """

    url: str
    fs: Any
    files: list[str] = field(default_factory=list)

    def show(self, path: str) -> str:
        """A file path as the user would write it."""
        return path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path)


def list_input_files(url: str, storage_options: Optional[dict] = None, *, what: str = "input.path") -> InputFiles:
    """List the Parquet files of a file, directory, glob or fsspec URL.

    Directories are searched recursively for ``*.parquet``/``*.parq``/``*.pq`` files, skipping
    hidden entries (names starting with ``.`` or ``_``), as dask does.

    Parameters
    ----------
    url : str
        File, directory, glob or URL.
    storage_options : dict, optional
        Passed to fsspec.
    what : str
        Name of the setting, for messages.

    Returns
    -------
    InputFiles

    Raises
    ------
    UserError
        If the path does not exist, or holds no Parquet files.
    """
    fs, root = url_to_fs(url, storage_options or {}, what)
    try:
        if has_glob(root):
            matches = sorted(fs.glob(root))
            if not matches:
                raise UserError(f"{what}: no files match {url!r}")
            files: list[str] = []
            for m in matches:
                files.extend(_files_under(fs, m) if fs.isdir(m) else [m])
        elif fs.isdir(root):
            files = _files_under(fs, root)
        elif fs.exists(root):
            files = [root]
        else:
            raise UserError(f"{what}: {url!r} does not exist")
    except (PermissionError, FileNotFoundError) as exc:
        raise UserError(f"{what}: cannot access {url!r}: {exc}") from None
    if not files:
        raise UserError(
            f"{what}: {url!r} holds no Parquet files ({', '.join('*' + e for e in PARQUET_EXTENSIONS)}); "
            "the input data set is empty"
        )
    return InputFiles(url=url, fs=fs, files=files)


def _files_under(fs: Any, root: str) -> list[str]:
    root = root.rstrip("/")
    out = []
    for path in sorted(fs.find(root)):
        rel = path[len(root):].lstrip("/")
        if not _is_hidden(rel) and path.endswith(PARQUET_EXTENSIONS):
            out.append(path)
    return out


def check_parquet_files(inputs: InputFiles, *, max_threads: int = 16) -> int:
    """Read every file's Parquet footer; name the first file that is not valid Parquet.

    Only footers are read (a few KB per file), in parallel threads.

    Parameters
    ----------
    inputs : InputFiles
        From :func:`list_input_files`.
    max_threads : int
        Concurrent footer reads.

    Returns
    -------
    int
        Total number of rows according to the footers.

    Raises
    ------
    UserError
        Naming the corrupt or unreadable file.
    """

    def footer(path: str) -> tuple[str, Optional[int], Optional[str]]:
        try:
            with inputs.fs.open(path, "rb") as fh:
                return path, pq.ParquetFile(fh).metadata.num_rows, None
        except (pa.ArrowException, OSError, ValueError) as exc:
            return path, None, str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(max_threads, len(inputs.files)))) as pool:
        results = list(pool.map(footer, inputs.files))
    bad = [(p, err) for p, _, err in results if err is not None]
    if bad:
        path, err = bad[0]
        more = f" ({len(bad) - 1} more bad files)" if len(bad) > 1 else ""
        raise UserError(f"input file {inputs.show(path)!r} is not a readable Parquet file: {err}{more}")
    return int(sum(n for _, n, _ in results))


def read_parquet(
    inputs: InputFiles, storage_options: Optional[dict] = None, columns: Optional[Sequence[str]] = None
) -> dd.DataFrame:
    """Lazily read the data set (workers do the reading).

    Parameters
    ----------
    inputs : InputFiles
        The checked input.
    storage_options : dict, optional
        Passed to fsspec.
    columns : sequence of str, optional
        Column projection; all columns when None.

    Returns
    -------
    dask.dataframe.DataFrame
        With a default index (any stored index becomes a regular column).
    """
    # The explicit list of checked files: what dask reads is exactly what was validated (dask
    # itself would not skip hidden files; hive-style key=value directories are not parsed).
    paths = [inputs.show(p) for p in inputs.files]
    with read_errors_as_user_errors(inputs.url):
        return dd.read_parquet(
            paths,
            columns=list(columns) if columns is not None else None,
            index=False,
            storage_options=storage_options or None,
        )

@contextlib.contextmanager
def read_errors_as_user_errors(url: str) -> Iterator[None]:
    """Turn errors from reading the input (on workers or the driver) into UserError.

    Parameters
    ----------
    url : str
        The input, named in the message.
    """
    try:
        yield
    except UserError:
        raise
    except (pa.ArrowException, FileNotFoundError) as exc:
        raise UserError(f"cannot read input {url!r}: {exc}") from None
    except OSError as exc:
        # distributed's CommClosedError is an OSError too: that one is not the user's data.
        if type(exc).__module__.startswith("distributed"):
            raise
        raise UserError(f"cannot read input {url!r}: {exc}") from None

