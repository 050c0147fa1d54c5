"""Reading features from Parquet, labelling partitions, and writing outputs atomically.

Everything that touches data runs on the Dask workers: the driver lists files, reads
Parquet footers (metadata only) to name corrupt files early, and receives small results
(row counts, cluster sizes, a plot sample). Labels are written one file per partition by the
workers with ``map_partitions`` + ``to_parquet``.

Outputs are staged in a hidden sibling of the output path and moved into place only when
complete, see :class:`OutputStage`.
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
import shutil
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import dask
import dask.array as da
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dshift.errors import UserError

__all__ = [
    "PARQUET_EXTENSIONS",
    "InputFiles",
    "ScanResult",
    "list_input_files",
    "check_parquet_files",
    "read_parquet",
    "select_feature_columns",
    "read_errors_as_user_errors",
    "scan_features",
    "float_features",
    "feature_array",
    "label_partition",
    "label_frame",
    "write_labels",
    "check_paths_disjoint",
    "OutputStage",
    "write_json",
    "write_bytes",
    "read_json",
    "InputSource",
    "InputData",
    "open_input",
    "scan_input",
]

logger = logging.getLogger("dshift.batch")

#: File name endings that count as Parquet when a directory is read (as in dask).
PARQUET_EXTENSIONS = (".parq", ".parquet", ".pq")
SUCCESS_MARKER = "_SUCCESS"
#: Names of the input settings in messages (``dshift predict`` uses its option names).
INPUT_KEYS = {"path": "input.path", "columns": "input.columns", "nan_policy": "input.nan_policy:"}
# Written first into an object-store output during a commit, removed after _SUCCESS: an output
# prefix holding it (and no _SUCCESS) is a half-copied leftover of a killed job.
COMMITTING_MARKER = "_DSHIFT_COMMITTING"
_GLOB_CHARS = "*?["


def _has_glob(path: str) -> bool:
    return any(c in path for c in _GLOB_CHARS)


def _is_hidden(relpath: str) -> bool:
    """pyarrow/dask skip files and directories starting with '.' or '_'."""
    return any(part.startswith((".", "_")) for part in relpath.split("/") if part)


# --------------------------------------------------------------------------------------------
# Input discovery and validation (driver side, metadata only)


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


def _url_to_fs(url: str, storage_options: dict, what: str) -> tuple[Any, str]:
    try:
        return fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as exc:
        raise UserError(f"{what}: cannot open {url!r}: {exc} (install the package for this protocol)") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{what}: cannot open {url!r}: {exc}") from None


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
    fs, root = _url_to_fs(url, storage_options or {}, what)
    try:
        if _has_glob(root):
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


def _is_feature_dtype(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def select_feature_columns(
    schema: pd.DataFrame | dd.DataFrame,
    columns: Optional[Sequence[str]],
    *,
    label_column: Optional[str] = None,
    what: str = "input.columns",
) -> list[str]:
    """Check the requested feature columns against the data, or pick every numeric column.

    Parameters
    ----------
    schema : DataFrame
        The data (only its columns and dtypes are used).
    columns : sequence of str or None
        Requested feature columns; None means every numeric (non-boolean) column.
    label_column : str, optional
        The output label column; it must not already exist in the data.
    what : str
        Name of the setting, for messages.

    Returns
    -------
    list of str

    Raises
    ------
    UserError
        Naming missing columns (with the available ones) or non-numeric columns.
    """
    available = [str(c) for c in schema.columns]
    dtypes = dict(zip(available, schema.dtypes))
    if label_column is not None and label_column in available:
        raise UserError(
            f"output.label_column: the input already has a column {label_column!r}; choose another label_column"
        )
    if columns is None:
        chosen = [c for c in available if _is_feature_dtype(dtypes[c])]
        if not chosen:
            raise UserError(f"{what}: the input has no numeric columns (columns: {', '.join(available)})")
        return chosen
    missing = [c for c in columns if c not in dtypes]
    if missing:
        raise UserError(
            f"{what}: column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in the input "
            f"(available: {', '.join(available)})"
        )
    wrong = [f"{c!r} ({dtypes[c]})" for c in columns if not _is_feature_dtype(dtypes[c])]
    if wrong:
        raise UserError(f"{what}: feature columns must be numeric; not numeric: {', '.join(wrong)}")
    return list(columns)


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


# --------------------------------------------------------------------------------------------
# Partition functions (run on the workers; module level so they pickle by reference)


def _as_float(df: pd.DataFrame) -> np.ndarray:
    return df.to_numpy(dtype=np.float64, na_value=np.nan)


def _scan_partition(df: pd.DataFrame) -> pd.DataFrame:
    finite = np.isfinite(_as_float(df)).all(axis=1)
    return pd.DataFrame({"rows": [len(df)], "nonfinite": [int(len(df) - finite.sum())]})


def _finite_rows(df: pd.DataFrame) -> pd.DataFrame:
    X = _as_float(df)
    keep = np.isfinite(X).all(axis=1)
    return pd.DataFrame(X[keep], columns=df.columns)


def _as_float_frame(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(_as_float(df), columns=df.columns)


@dataclass
class ScanResult:
    """Per-partition row counts of the features.

    Attributes
    ----------
    rows : list of int
        Rows per partition.
    nonfinite : list of int
        Rows with NaN or infinity in a feature, per partition.
    """

    rows: list[int]
    nonfinite: list[int]

    @property
    def n_rows(self) -> int:
        """Total rows."""
        return int(sum(self.rows))

    @property
    def n_nonfinite(self) -> int:
        """Total rows with NaN or infinity in a feature."""
        return int(sum(self.nonfinite))


def scan_features(features: dd.DataFrame, url: str) -> ScanResult:
    """Count rows and non-finite rows per partition (one pass on the workers).

    Parameters
    ----------
    features : dask.dataframe.DataFrame
        The feature columns.
    url : str
        The input, for error messages.

    Returns
    -------
    ScanResult
    """
    meta = pd.DataFrame({"rows": pd.Series([], dtype="int64"), "nonfinite": pd.Series([], dtype="int64")})
    with read_errors_as_user_errors(url):
        stats = features.map_partitions(_scan_partition, meta=meta).compute()
    return ScanResult(rows=stats["rows"].astype(int).tolist(), nonfinite=stats["nonfinite"].astype(int).tolist())


def float_features(features: dd.DataFrame) -> dd.DataFrame:
    """The feature columns as float64, with partitions fixed once and for all.

    dask-expr fuses the partitions of a column-projected Parquet read at optimisation time, so
    ``npartitions`` of the lazy frame can differ from what a compute sees. Optimising here
    settles the (fused) partitioning, so per-partition counts from :func:`scan_features` line
    up with the chunks of :func:`feature_array`.

    Parameters
    ----------
    features : dask.dataframe.DataFrame
        Numeric feature columns (column-projected read).

    Returns
    -------
    dask.dataframe.DataFrame
    """
    meta = pd.DataFrame({c: pd.Series([], dtype="float64") for c in features.columns})
    return features.map_partitions(_as_float_frame, meta=meta).optimize()


def feature_array(features: dd.DataFrame, scan: ScanResult, *, drop_nonfinite: bool) -> da.Array:
    """The features as a float64 Dask array (rows chunked by partition, one column chunk).

    Parameters
    ----------
    features : dask.dataframe.DataFrame
        From :func:`float_features`.
    scan : ScanResult
        From :func:`scan_features` on the same frame; gives the chunk lengths without
        another pass.
    drop_nonfinite : bool
        Leave out rows with NaN/inf (``nan_policy: drop``).

    Returns
    -------
    dask.array.Array
        Shape (n_kept_rows, n_features); partitions left with no rows are skipped.
    """
    if features.npartitions != len(scan.rows):
        raise RuntimeError(f"partitioning changed: {features.npartitions} partitions, {len(scan.rows)} scanned")
    counts = [r - b for r, b in zip(scan.rows, scan.nonfinite)] if drop_nonfinite else list(scan.rows)
    keep = [i for i, n in enumerate(counts) if n > 0]
    frame = features.map_partitions(_finite_rows, meta=features._meta) if drop_nonfinite else features
    if len(keep) < len(counts):
        frame = frame.partitions[keep]
    return frame.to_dask_array(lengths=[counts[i] for i in keep])


def label_partition(
    df: pd.DataFrame,
    feature_columns: Sequence[str],
    centers: np.ndarray,
    bandwidth: float,
    cluster_all: bool,
    label_column: str,
) -> pd.DataFrame:
    """Append the label column to one partition.

    Rows with NaN or infinity in a feature get label -1 (they only exist under
    ``nan_policy: drop``).

    Parameters
    ----------
    df : pandas.DataFrame
        One partition with every input column.
    feature_columns : sequence of str
        The features, in model order.
    centers : numpy.ndarray
        Cluster centers (k, d).
    bandwidth : float
        The model's bandwidth.
    cluster_all : bool
        When False, points farther than ``bandwidth`` from every center get -1.
    label_column : str
        Name of the new column.

    Returns
    -------
    pandas.DataFrame
        ``df`` plus an int64 ``label_column``.
    """
    from dshift.assigning import assign_labels

    X = _as_float(df[list(feature_columns)])
    finite = np.isfinite(X).all(axis=1)
    labels = np.full(len(df), -1, dtype=np.int64)
    if finite.any():
        labels[finite] = assign_labels(np.ascontiguousarray(X[finite]), centers, bandwidth, cluster_all)
    out = df.copy(deep=False)
    out[label_column] = labels
    return out


def label_frame(
    data: dd.DataFrame,
    feature_columns: Sequence[str],
    centers: np.ndarray,
    bandwidth: float,
    cluster_all: bool,
    label_column: str,
) -> dd.DataFrame:
    """Lazily label every partition of ``data`` (see :func:`label_partition`)."""
    meta = data._meta.copy()
    meta[label_column] = np.array([], dtype=np.int64)
    return data.map_partitions(
        label_partition,
        list(feature_columns),
        np.asarray(centers, dtype=np.float64),
        float(bandwidth),
        bool(cluster_all),
        label_column,
        meta=meta,
    )


def _label_counts(labels: pd.Series) -> pd.Series:
    values, counts = np.unique(labels.to_numpy(), return_counts=True)
    return pd.Series(counts.astype("int64"), index=values.astype("int64"), name="count")


def _part_name(i: int) -> str:
    return f"part.{i:05d}.parquet"


def write_labels(
    labelled: dd.DataFrame,
    url: str,
    *,
    label_column: str,
    storage_options: Optional[dict] = None,
    sample_columns: Optional[Sequence[str]] = None,
    sample_rows: int = 0,
    n_rows: int = 0,
    input_url: str = "",
) -> tuple[dict[int, int], Optional[pd.DataFrame]]:
    """Write the labelled data set (one file per partition, by the workers).

    In the same pass it counts the cluster sizes and draws a small random sample for the plot,
    so the input is read only once.

    Parameters
    ----------
    labelled : dask.dataframe.DataFrame
        From :func:`label_frame`.
    url : str
        Target directory.
    label_column : str
        The label column.
    storage_options : dict, optional
        Passed to fsspec.
    sample_columns : sequence of str, optional
        Columns of the sample (features + label); no sample when None.
    sample_rows : int
        About how many rows to sample.
    n_rows : int
        Total rows (to turn ``sample_rows`` into a fraction).
    input_url : str
        The input, for error messages.

    Returns
    -------
    sizes : dict
        Label -> number of rows, sorted by label (-1 first when present).
    sample : pandas.DataFrame or None
    """
    write = labelled.to_parquet(
        url,
        write_index=False,
        storage_options=storage_options or None,
        name_function=_part_name,
        compute=False,
    )
    # Per-partition counts summed on the driver: k values per partition, and no shuffle
    # (dask-expr's value_counts may shuffle).
    counts = labelled[label_column].map_partitions(_label_counts, meta=pd.Series([], dtype="int64", name="count"))
    parts: list[Any] = [write, counts]
    if sample_columns is not None and sample_rows > 0 and n_rows > 0:
        frac = min(1.0, sample_rows / n_rows)
        parts.append(labelled[list(sample_columns)].sample(frac=frac, random_state=0))
    with read_errors_as_user_errors(input_url):
        results = dask.compute(*parts)
    totals = results[1].groupby(level=0).sum()
    sizes = {int(k): int(v) for k, v in sorted(totals.items())}
    sample = results[2] if len(results) > 2 else None
    return sizes, sample


# --------------------------------------------------------------------------------------------
# Output placement


def _norm(url: str, storage_options: Optional[dict]) -> tuple[str, str]:
    """(protocol, normalised path) for comparing locations."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
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
    in_proto, in_path = _norm(input_url, input_options)
    out_proto, out_path = _norm(output_url, output_options)
    if in_proto != out_proto:
        return
    if _has_glob(in_path):
        first = min(in_path.find(c) for c in _GLOB_CHARS if c in in_path)
        static = in_path[:first].rsplit("/", 1)[0] or "/"  # directory holding the pattern
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
    """Stage an output directory and move it into place only when complete.

    Everything is written under a hidden sibling ``<parent>/.<name>.tmp-<uuid>``. On a local
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
        self.fs, root = _url_to_fs(url, self.storage_options, what)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.parent, self.name = posixpath.split(self.root)
        if not self.name or not self.parent:
            raise UserError(f"{what}: {url!r} must be a directory below a parent directory (or bucket)")
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
        if self._target_state() == "present" and not self.overwrite:
            raise UserError(f"{self.what}: {self.url!r} already exists; {self.overwrite_hint} to replace it")

    # -- staging --------------------------------------------------------------------------------
    def open(self) -> "OutputStage":
        """Create the temporary sibling directory."""
        self.check()
        self.tmp = f"{self.parent}/.{self.name}.tmp-{uuid.uuid4().hex[:12]}"
        if self.local:
            missing = []
            p = self.parent
            while p and not os.path.exists(p):
                missing.append(p)
                p = os.path.dirname(p)
            os.makedirs(self.tmp)
            self._created_parents = missing  # innermost first
        return self

    def url_for(self, relpath: str) -> str:
        """URL of ``relpath`` inside the staging directory (for writers such as to_parquet)."""
        if self.tmp is None:
            raise RuntimeError("OutputStage.open() was not called")
        path = f"{self.tmp}/{relpath}".rstrip("/")
        return path if self.local else self.fs.unstrip_protocol(path)

    def commit(self) -> None:
        """Move the staged output into place (see the class docstring)."""
        if self.tmp is None:
            raise RuntimeError("OutputStage.open() was not called")
        state = self._target_state()
        if state == "present" and not self.overwrite:
            raise UserError(f"{self.what}: {self.url!r} appeared while the job ran; nothing was replaced")
        if self.local:
            self._commit_local(replace=state != "absent")
        else:
            self._commit_object_store(replace=state != "absent")
        self.tmp = None
        self._remove_stale_siblings()
        logger.info("%s: committed %s", self.what.split(".")[0], self.url)

    def _commit_local(self, replace: bool) -> None:
        with open(os.path.join(self.tmp, SUCCESS_MARKER), "wb"):
            pass
        if replace and _exchange_paths(self.tmp, self.root):
            _rm_local(self.tmp)  # now the old output
            return
        old = None
        if replace:  # no atomic exchange: a short window with nothing at output.path
            old = f"{self.parent}/.{self.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(self.root, old)
        os.rename(self.tmp, self.root)
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
        """Delete the staging directory (and parent directories this stage created)."""
        if self.tmp is None:
            return
        tmp, self.tmp = self.tmp, None
        try:
            if self.local:
                _rm_local(tmp)
                for p in self._created_parents:
                    try:
                        os.rmdir(p)
                    except OSError:
                        break
            else:
                self._invalidate()
                if self.fs.exists(tmp):
                    self.fs.rm(tmp, recursive=True)
        except Exception as exc:  # cleanup must not hide the original error
            logger.warning("could not remove temporary output %s: %s", tmp, exc)

    def _remove_stale_siblings(self) -> None:
        """Delete leftovers of killed runs (``.<name>.tmp-*`` / ``.<name>.old-*``)."""
        try:
            self._invalidate()
            pattern = f"{self.parent}/.{self.name}."
            for p in self.fs.glob(pattern + "tmp-*") + self.fs.glob(pattern + "old-*"):
                if self.local:
                    _rm_local(p)
                else:
                    self.fs.rm(p, recursive=True)
        except Exception as exc:
            logger.warning("could not remove stale temporary outputs next to %s: %s", self.url, exc)

    def __enter__(self) -> "OutputStage":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        # Commit is explicit; leaving the block without it (an error) discards the staging dir.
        self.abort()


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


# --------------------------------------------------------------------------------------------
# The read stage as one call


@dataclass
class InputSource:
    """The input after the driver-side checks (no data read yet).

    Attributes
    ----------
    files : InputFiles
        The Parquet files (footers checked).
    data : dask.dataframe.DataFrame
        Every column (for the labelled output).
    feature_columns : list of str
        The features, in order.
    features : dask.dataframe.DataFrame
        Float64 features from a column-projected read (:func:`float_features`).
    keys : dict
        Names of the settings for messages: ``path``, ``columns``, ``nan_policy``.
    """

    files: InputFiles
    data: dd.DataFrame
    feature_columns: list[str]
    features: dd.DataFrame
    keys: dict[str, str] = field(default_factory=lambda: dict(INPUT_KEYS))

    @property
    def url(self) -> str:
        """The input path or URL."""
        return self.files.url


@dataclass
class InputData:
    """The input, checked and scanned: what the fit and the labelling need.

    Attributes
    ----------
    source : InputSource
        From :func:`open_input`.
    scan : ScanResult
        Row and non-finite counts per partition.
    X : dask.array.Array
        Float64 features to fit on (non-finite rows left out under ``nan_policy: drop``).
    """

    source: InputSource
    scan: ScanResult
    X: da.Array

    @property
    def data(self) -> dd.DataFrame:
        """Every input column."""
        return self.source.data

    @property
    def feature_columns(self) -> list[str]:
        """The features, in order."""
        return self.source.feature_columns

    @property
    def n_rows(self) -> int:
        """All input rows."""
        return self.scan.n_rows

    @property
    def n_rows_fit(self) -> int:
        """Rows in ``X``."""
        return int(self.X.shape[0])


def open_input(
    url: str,
    *,
    storage_options: Optional[dict] = None,
    columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    keys: Optional[dict[str, str]] = None,
) -> InputSource:
    """Driver-side checks of the input, reading metadata only (no cluster needed).

    Parameters
    ----------
    url : str
        ``input.path``.
    storage_options : dict, optional
        Passed to fsspec.
    columns : sequence of str, optional
        Feature columns; every numeric column when None.
    label_column : str, optional
        The label column to be added (must not exist yet).
    keys : dict, optional
        Setting names for messages (default :data:`INPUT_KEYS`, the config's names).

    Returns
    -------
    InputSource

    Raises
    ------
    UserError
        Missing path, no Parquet files, corrupt file, missing or non-numeric columns.
    """
    keys = {**INPUT_KEYS, **(keys or {})}
    files = list_input_files(url, storage_options, what=keys["path"])
    check_parquet_files(files)
    data = read_parquet(files, storage_options)
    feature_columns = select_feature_columns(data, columns, label_column=label_column, what=keys["columns"])
    # Column projection: the fit passes read only the feature columns from Parquet.
    with read_errors_as_user_errors(url):
        features = float_features(read_parquet(files, storage_options, columns=feature_columns))
    return InputSource(files=files, data=data, feature_columns=feature_columns, features=features, keys=keys)


def scan_input(source: InputSource, *, nan_policy: str = "error") -> InputData:
    """One pass on the workers: row counts and NaN/inf check; then the lazy feature array.

    Parameters
    ----------
    source : InputSource
        From :func:`open_input`.
    nan_policy : {"error", "drop"}
        What to do with rows holding NaN or infinity in a feature.

    Returns
    -------
    InputData

    Raises
    ------
    UserError
        Empty data set, unreadable data, or non-finite values with ``nan_policy: error``.
    """
    keys, url, feature_columns = source.keys, source.url, source.feature_columns
    scan = scan_features(source.features, url)
    if scan.n_rows == 0:
        raise UserError(f"{keys['path']}: the input data set {url!r} is empty (0 rows)")
    if scan.n_nonfinite:
        if nan_policy != "drop":
            raise UserError(
                f"{keys['path']}: {scan.n_nonfinite:,} of {scan.n_rows:,} rows have NaN or infinity in the feature "
                f"columns ({', '.join(feature_columns)}); clean the data or set {keys['nan_policy']} drop"
            )
        if scan.n_nonfinite == scan.n_rows:
            raise UserError(f"{keys['path']}: every row has NaN or infinity in the feature columns; nothing to fit")
        logger.info("read: dropping %s rows with NaN/inf from the fit (they get label -1)", f"{scan.n_nonfinite:,}")
    X = feature_array(source.features, scan, drop_nonfinite=nan_policy == "drop")
    n_files = len(source.files.files)
    logger.info(
        "read: %d file%s, %d partitions, %s rows, %d features (%s)",
        n_files, "" if n_files == 1 else "s", len(scan.rows), f"{scan.n_rows:,}",
        len(feature_columns), ", ".join(feature_columns),
    )
    return InputData(source=source, scan=scan, X=X)
