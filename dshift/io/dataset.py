"""The input data set on storage: its Parquet files, their footers, and the lazy read.

The driver lists the files, takes Hive partition keys from their paths, leaves out the files
whose keys the filters rule out (without opening them), and reads the remaining files'
Parquet footers (metadata only) to name a corrupt file before any work starts; reading the
data is left to the Dask workers, which read exactly the checked files and name a file that
cannot be read, or holds other rows than its footer said (it changed during the job).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import dask.dataframe as dd
import pyarrow as pa
import pyarrow.parquet as pq
from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine

from dshift._dask import config_get
from dshift.errors import UserError
from dshift.io._fs import glob_base, has_glob, show_path, url_to_fs
from dshift.io.filters import check_filter_types, filter_columns, pruned_index
from dshift.io.hive import HiveKeys, discover_keys
from dshift.io.faults import UNREACHABLE_HINT, describe, is_unreachable, is_write_error

__all__ = [
    "PARQUET_EXTENSIONS",
    "InputFiles",
    "list_input_files",
    "prune_files",
    "Footers",
    "check_parquet_files",
    "read_schema",
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
    base : str
        The directory that Hive partition keys are relative to (file system path form).
    keys : HiveKeys
        The partition keys of ``files``.
    n_pruned : int
        Files left out because the filters rule out their partition keys.
    """

    url: str
    fs: Any
    files: list[str] = field(default_factory=list)
    base: str = ""
    keys: HiveKeys = field(default_factory=HiveKeys)
    n_pruned: int = 0

    def show(self, path: str) -> str:
        """A file path as the user would write it."""
        return show_path(self.fs, path)


def list_input_files(url: str, storage_options: Optional[dict] = None, *, what: str = "input.path") -> InputFiles:
    """List the Parquet files of a file, directory, glob or fsspec URL.

    Directories are searched recursively for ``*.parquet``/``*.parq``/``*.pq`` files, skipping
    hidden entries (names starting with ``.`` or ``_``), as dask does. ``key=value``
    directories below the base (the directory itself; for a glob the directory holding its
    first wildcard; for a file its parent) are the files' Hive partition keys.

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
    root = root.rstrip("/") or root
    base = root
    try:
        if has_glob(root):
            base = glob_base(root)
            matches = sorted(fs.glob(root))
            if not matches:
                raise UserError(f"{what}: no files match {url!r}")
            files: list[str] = []
            for m in matches:
                files.extend(_files_under(fs, m) if fs.isdir(m) else [m])
        elif fs.isdir(root):
            files = _files_under(fs, root)
        elif fs.exists(root):
            files, base = [root], root.rsplit("/", 1)[0]
        else:
            raise UserError(f"{what}: {url!r} does not exist")
    except (PermissionError, FileNotFoundError) as exc:
        raise UserError(f"{what}: cannot access {url!r}: {exc}") from None
    except Exception as exc:
        # Not there, no access, no connection or no credentials; TypeError: an object store's
        # client refused its storage_options.
        if isinstance(exc, UserError) or not (isinstance(exc, (OSError, TypeError)) or is_unreachable(exc)):
            raise
        raise UserError(f"{what}: cannot list {url!r} ({describe(exc)}); {UNREACHABLE_HINT}") from None
    if not files:
        raise UserError(
            f"{what}: {url!r} holds no Parquet files ({', '.join('*' + e for e in PARQUET_EXTENSIONS)}); "
            "the input data set is empty"
        )
    keys = discover_keys([f[len(base):] if f.startswith(base + "/") else "" for f in files])
    return InputFiles(url=url, fs=fs, files=files, base=base, keys=keys)


def prune_files(inputs: InputFiles, filters: Optional[list], *, what: str = "input.filters") -> InputFiles:
    """Leave out the files whose Hive partition keys the filters rule out (no file is opened).

    Parameters
    ----------
    inputs : InputFiles
        From :func:`list_input_files`.
    filters : list or None
        Checked filters (:func:`dshift.io.filters.check_filters`).
    what : str
        Name of the setting, for messages.

    Returns
    -------
    InputFiles
        The files that may hold matching rows; ``n_pruned`` counts the others.

    Raises
    ------
    UserError
        A filter value that does not fit a partition key's type, or no file left.
    """
    check_filter_types(filters, inputs.keys.schema, what, only=inputs.keys.names)
    kept = pruned_index(filters, inputs.keys.table())
    if kept is None:
        return inputs
    if not kept:
        raise UserError(f"{what}: no input file is left: the partition keys of all {len(inputs.files):,} files "
                        f"of {inputs.url!r} are outside the filters")
    return InputFiles(url=inputs.url, fs=inputs.fs, files=[inputs.files[i] for i in kept], base=inputs.base,
                      keys=inputs.keys.subset(kept), n_pruned=len(inputs.files) - len(kept))


def _files_under(fs: Any, root: str) -> list[str]:
    root = root.rstrip("/")
    out = []
    for path in sorted(fs.find(root)):
        rel = path[len(root):].lstrip("/")
        if not _is_hidden(rel) and path.endswith(PARQUET_EXTENSIONS):
            out.append(path)
    return out


class Footers(NamedTuple):
    """What the files' footers tell before any data is read."""

    n_rows: int  # rows of all files
    one_schema: bool  # every file has the same columns of the same types (metadata aside)
    schemas: dict[str, pa.Schema]  # each file's columns, by path (file system form), in file order
    row_groups: dict[str, tuple[int, ...]]  # each file's rows per row group: what every read must find


def check_parquet_files(inputs: InputFiles, *, max_threads: int = 16) -> Footers:
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
    Footers
        Also each file's schema and rows per row group, for
        :func:`dshift.io.features.check_columns_in_files` and :func:`read_parquet`.

    Raises
    ------
    UserError
        Naming the corrupt or unreadable file, or a column whose kind of values (integer,
        floating point or other) differs between two files: the labels are written with
        one schema for all partitions, which such a column cannot take.
    """

    def footer(path: str) -> tuple[str, Optional[pq.FileMetaData], Optional[str]]:
        try:
            with inputs.fs.open(path, "rb") as fh:
                return path, pq.ParquetFile(fh).metadata, None
        except (pa.ArrowException, OSError, ValueError) as exc:
            return path, None, str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(max_threads, len(inputs.files)))) as pool:
        results = list(pool.map(footer, inputs.files))
    bad = [(p, err) for p, _, err in results if err is not None]
    if bad:
        path, err = bad[0]
        more = f" ({len(bad) - 1} more bad files)" if len(bad) > 1 else ""
        raise UserError(f"input file {inputs.show(path)!r} is not a readable Parquet file: {err}{more}")
    schemas = [(p, meta.schema.to_arrow_schema()) for p, meta, _ in results]
    _check_column_kinds(inputs, schemas)
    columns = [{f.name: f.type for f in schema} for _, schema in schemas]
    row_groups = {p: tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) for p, meta, _ in results}
    return Footers(int(sum(meta.num_rows for _, meta, _ in results)), all(c == columns[0] for c in columns),
                   dict(schemas), row_groups)


def _check_column_kinds(inputs: InputFiles, schemas: list[tuple[str, pa.Schema]]) -> None:
    """Refuse a column that holds integers in one file and floating-point numbers in another.

    The labels are written with one schema for every partition (the first file's types), and
    floats do not fit an integer column. Widths may differ (int32 and int64, float32 and
    float64); other differences are left to the reader and writer.
    """
    first: dict[str, tuple[str, pa.DataType]] = {}
    for path, schema in schemas:
        for column in schema:
            seen = first.setdefault(column.name, (path, column.type))
            a, b = seen[1], column.type
            if (pa.types.is_integer(a) and pa.types.is_floating(b)) or (pa.types.is_floating(a) and pa.types.is_integer(b)):
                raise UserError(
                    f"input.path: column {column.name!r} is {seen[1]} in {inputs.show(seen[0])!r} but {column.type} "
                    f"in {inputs.show(path)!r}; rewrite the files with one type for it"
                )


def read_schema(inputs: InputFiles) -> pa.Schema:
    """The input's columns: the first file's Parquet schema (as Dask takes it), then the keys.

    Parameters
    ----------
    inputs : InputFiles
        Checked files.

    Returns
    -------
    pyarrow.Schema

    Raises
    ------
    UserError
        If a partition key is also a column in the files.
    """
    with inputs.fs.open(inputs.files[0], "rb") as fh:
        schema = pq.ParquetFile(fh).schema_arrow
    both = [k for k in inputs.keys.names if k in schema.names]
    if both:
        raise UserError(f"input file {inputs.show(inputs.files[0])!r} has a column {both[0]!r} that is also a "
                        f"partition key ({both[0]}=... directories); rename the column or the directories")
    return pa.schema(list(schema) + list(inputs.keys.schema), metadata=schema.metadata)


def read_parquet(
    inputs: InputFiles,
    storage_options: Optional[dict] = None,
    columns: Optional[Sequence[str]] = None,
    filters: Optional[list] = None,
    group_files: bool = False,
    footers: Optional[Footers] = None,
) -> dd.DataFrame:
    """Lazily read the data set (workers do the reading), in partitions of whole row groups of
    about ``dshift.partition-bytes``: a big file's row groups split over several, and with
    ``group_files`` consecutive small files grouped into one.

    Parameters
    ----------
    inputs : InputFiles
        The checked input.
    storage_options : dict, optional
        Passed to fsspec.
    columns : sequence of str, optional
        Column projection; all columns when None.
    filters : list, optional
        Checked row filters (Dask's form).
    group_files : bool
        Let a partition hold several files: only for files of one schema
        (:attr:`Footers.one_schema`), as Arrow cannot put columns of two types in one.
    footers : Footers, optional
        The files' checked footers: a read that finds other rows in a file than they count (the
        file was replaced since) fails naming the file. Not with filters on other columns than
        the partition keys, which leave some of a file's rows out.

    Returns
    -------
    dask.dataframe.DataFrame
        With a default index (any stored index becomes a regular column) and the partition
        keys as the last columns. A file that cannot be read, or has changed, fails its
        partition's task with a UserError naming it (:class:`_InputEngine`).
    """
    # The explicit list of checked files: what dask reads is exactly what was validated (dask
    # itself would not skip hidden files). The partitioning is given, not discovered, so the
    # key types are those of every listed file and keys are parsed below ``base`` only.
    paths = [inputs.show(p) for p in inputs.files]
    whole_files = footers is not None and filter_columns(filters) <= set(inputs.keys.names)
    with read_errors_as_user_errors(inputs.url):
        return dd.read_parquet(
            paths,
            columns=list(columns) if columns is not None else None,
            filters=filters or None,
            index=False,
            storage_options=storage_options or None,
            dataset=inputs.keys.dataset_options(inputs.base),
            # dask's default, a partition per file, left a 10M-row file of ten row groups one
            # partition (one worker did everything; the seed check read all of it on the
            # driver), and made 1,000 files of 5,000 rows 1,000 partitions whose ~10,000 tasks
            # cost the scheduler more than the work (5M rows: 31.1 s -> 6.6 s).
            blocksize=config_get("partition-bytes"),
            aggregate_files=group_files,
            engine=_InputEngine,
            **{_ROW_GROUPS_OPTION: footers.row_groups if whole_files else {}},
        )


#: The read option (passed on to :meth:`_InputEngine._read_table`) holding the files' rows per row group.
_ROW_GROUPS_OPTION = "dshift_row_groups"


class _InputEngine(ArrowDatasetEngine):
    """dask's pyarrow engine, naming the input file a read fails on or finds changed.

    A partition is read in a task (on a worker, or the driver for a preview), where an Arrow
    error says what is wrong but not in which file; the file is known here only. The error
    raised is a UserError, which reaches the driver as it is.
    """

    @classmethod
    def _read_table(cls, path_or_frag, fs, row_groups, columns, schema, filters, partitions, partition_keys,
                    **kwargs) -> pa.Table:
        """One file's row groups (dask's read), checked against the rows its footer counted."""
        path = getattr(path_or_frag, "path", path_or_frag)
        try:
            table = super()._read_table(path_or_frag, fs, row_groups, columns, schema, filters, partitions,
                                        partition_keys, **kwargs)
        except (pa.ArrowException, OSError) as exc:
            cause = " ".join(str(exc).split())  # Arrow's messages span lines
            raise UserError(f"input file {show_path(fs, path)!r} cannot be read: {cause}") from None
        counted = kwargs.get(_ROW_GROUPS_OPTION, {}).get(path)
        if counted is not None:
            groups = range(len(counted)) if row_groups == [None] else row_groups
            expected = sum(counted[i] for i in groups if i < len(counted))
            if table.num_rows != expected:
                # Rows counted, fitted and labelled would disagree: the labels of a file that
                # was replaced midway (or the count in report.json) would be wrong.
                raise UserError(f"input file {show_path(fs, path)!r} changed during the job ({expected:,} rows "
                                f"when the job started, {table.num_rows:,} now); run again")
        return table


@contextlib.contextmanager
def read_errors_as_user_errors(url: str, *, writing: Optional[str] = None) -> Iterator[None]:
    """Turn errors from reading the input (on workers or the driver) into UserError.

    The reads of :func:`read_parquet` name the file themselves; this names the input for
    the errors of anything else that reads it.

    Parameters
    ----------
    url : str
        The input, named in the message.
    writing : str, optional
        Where the computation in the block also writes (the labels): errors of that writing
        (:func:`dshift.io.faults.is_write_error`) are not the input's and are re-raised as
        they are, for the output's stage to name (a full disk must not blame the input).
    """
    try:
        yield
    except UserError:
        raise
    except (pa.ArrowException, OSError) as exc:
        # distributed's CommClosedError is an OSError too: that one is not the user's data.
        if type(exc).__module__.startswith("distributed"):
            raise
        if writing is not None and is_write_error(exc, writing):
            raise
        raise UserError(f"cannot read input {url!r}: {exc}") from None
