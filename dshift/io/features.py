"""The feature columns: which ones, one scan pass over them, and the float64 Dask array.

The feature columns are checked against the data's schema on the driver; the scan (row and
NaN/inf counts) and the conversion to float64 run partition by partition on the workers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine
from dask.dataframe.utils import pyarrow_strings_enabled

from dshift.errors import UserError
from dshift.io.dataset import Footers, InputFiles, read_errors_as_user_errors

__all__ = [
    "is_feature_dtype",
    "select_feature_columns",
    "check_columns_in_files",
    "as_float64",
    "ScanResult",
    "scan_features",
    "float_features",
    "feature_array",
]


def is_feature_dtype(dtype: Any) -> bool:
    """Whether a column of this dtype can be a feature (numeric, not boolean)."""
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
        chosen = [c for c in available if is_feature_dtype(dtypes[c])]
        if not chosen:
            raise UserError(f"{what}: the input has no numeric columns (columns: {', '.join(available)})")
        return chosen
    missing = [c for c in columns if c not in dtypes]
    if missing:
        raise UserError(
            f"{what}: column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in the input "
            f"(available: {', '.join(available)})"
        )
    wrong = [f"{c!r} ({dtypes[c]})" for c in columns if not is_feature_dtype(dtypes[c])]
    if wrong:
        raise UserError(f"{what}: feature columns must be numeric; not numeric: {', '.join(wrong)}")
    return list(columns)


def check_columns_in_files(inputs: InputFiles, footers: Footers, columns: Sequence[str], *, what: str) -> None:
    """Check that every file has the given numeric columns, from the footers (no data read).

    The columns were chosen on the first file's schema (:func:`select_feature_columns` on the
    lazy frame): another file may lack one (the read would fail with a KeyError) or hold it as
    text (converted late, or failing without naming the file). Partition keys are not in the
    files and are left out.

    Parameters
    ----------
    inputs : InputFiles
        The checked files.
    footers : Footers
        From :func:`dshift.io.dataset.check_parquet_files`.
    columns : sequence of str
        The columns (features, or the weight column).
    what : str
        Name of the setting, for messages.

    Raises
    ------
    UserError
        Naming the first file (in file order) that lacks a column or holds it as anything but
        numbers (by the rule of :func:`is_feature_dtype`).
    """
    columns = [c for c in columns if c not in inputs.keys.names]
    for path, schema in footers.schemas.items():
        for c in columns:
            if c not in schema.names:
                raise UserError(f"{what}: column {c!r} is not in input file {inputs.show(path)!r} (columns: "
                                f"{', '.join(schema.names)}); every file must have it")
            kind = schema.field(c).type
            if not is_feature_dtype(_read_dtype(kind, pyarrow_strings_enabled())):
                raise UserError(f"{what}: column {c!r} is {kind} in input file {inputs.show(path)!r}; "
                                "it must be numeric in every file")


@functools.lru_cache(maxsize=None)  # ~0.4 ms a conversion; a data set has few types, many files
def _read_dtype(kind: pa.DataType, convert_string: bool) -> Any:
    """The dtype dask reads a column of this Arrow type as (pandas metadata aside): the first
    file's columns were checked with those (decimals are numbers, booleans are not)."""
    empty = pa.schema([pa.field("c", kind)]).empty_table()
    return ArrowDatasetEngine._arrow_table_to_pandas(empty, None, convert_string=convert_string)["c"].dtype


# --------------------------------------------------------------------------------------------
# Partition functions (run on the workers; module level so they pickle by reference)


def as_float64(df: pd.DataFrame) -> np.ndarray:
    """The columns of ``df`` as a float64 matrix; missing values become NaN."""
    return df.to_numpy(dtype=np.float64, na_value=np.nan)


def _split(df: pd.DataFrame, n_features: int) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """Features, weights (the column after them, if any) and which rows have finite features."""
    values = as_float64(df)
    X = values[:, :n_features]
    w = values[:, n_features] if values.shape[1] > n_features else None
    return X, w, np.isfinite(X).all(axis=1)


def _scan_partition(df: pd.DataFrame, n_features: int) -> pd.DataFrame:
    _, w, finite = _split(df, n_features)
    stats = {"rows": [len(df)], "nonfinite": [int(len(df) - finite.sum())], "bad_weight": [0], "zero_weight": [0],
             "weight_sum": [0.0]}
    if w is not None:  # weights of the rows in the fit (finite features)
        w = w[finite]
        good = np.isfinite(w) & (w >= 0)
        stats.update(bad_weight=[int(len(w) - good.sum())], zero_weight=[int((w == 0).sum())],
                     weight_sum=[math.fsum(w[good])])
    return pd.DataFrame(stats)


def _sample_partition(df: pd.DataFrame, n_features: int, rate: float) -> pd.DataFrame:
    from dshift.dedup import sample_hashes  # the engine's imports (numba) only where it samples

    X, w, finite = _split(df, n_features)
    if w is not None:
        finite &= w > 0  # rows of weight 0 take no part in the fit (NaN compares False)
    return pd.DataFrame({"hash": sample_hashes(X if finite.all() else X[finite], rate)})  # no copy when all kept


def _finite_rows(df: pd.DataFrame, n_features: int) -> pd.DataFrame:
    values = as_float64(df)
    keep = np.isfinite(values[:, :n_features]).all(axis=1)
    return pd.DataFrame(values[keep], columns=df.columns)


def _as_float_frame(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(as_float64(df), columns=df.columns)


@dataclass
class ScanResult:
    """Per-partition row counts of the features, and what the fit needs to know of the weights.

    Attributes
    ----------
    rows : list of int
        Rows per partition.
    nonfinite : list of int
        Rows with NaN or infinity in a feature, per partition.
    bad_weight : int
        Rows with finite features whose weight is negative, NaN or infinite.
    zero_weight : int
        Rows with finite features and weight 0.
    weight_total : float
        The weights of the rows with finite features (bad weights left out).
    sample : ndarray of uint64, optional
        Hashes of a sample of the fit's rows taken by value (:func:`dshift.dedup.sample_hashes`).
    """

    rows: list[int]
    nonfinite: list[int]
    bad_weight: int = 0
    zero_weight: int = 0
    weight_total: float = 0.0
    sample: Optional[np.ndarray] = None

    @property
    def n_rows(self) -> int:
        """Total rows."""
        return int(sum(self.rows))

    @property
    def n_nonfinite(self) -> int:
        """Total rows with NaN or infinity in a feature."""
        return int(sum(self.nonfinite))


def scan_features(features: dd.DataFrame, url: str, *, n_features: Optional[int] = None,
                  sample_rate: float = 0.0) -> ScanResult:
    """Count rows, non-finite rows and bad weights per partition (one pass on the workers).

    Parameters
    ----------
    features : dask.dataframe.DataFrame
        The feature columns, then the weight column if there is one.
    url : str
        The input, for error messages.
    n_features : int, optional
        Number of feature columns (default: every column, no weights).
    sample_rate : float
        Also sample the fit's rows by value at this rate (0: no sample), in the same pass.

    Returns
    -------
    ScanResult
    """
    n_features = len(features.columns) if n_features is None else n_features
    meta = pd.DataFrame({"rows": pd.Series([], dtype="int64"), "nonfinite": pd.Series([], dtype="int64"),
                         "bad_weight": pd.Series([], dtype="int64"), "zero_weight": pd.Series([], dtype="int64"),
                         "weight_sum": pd.Series([], dtype="float64")})
    todo = [features.map_partitions(_scan_partition, n_features, meta=meta)]
    if sample_rate > 0:
        todo.append(features.map_partitions(_sample_partition, n_features, sample_rate,
                                            meta=pd.DataFrame({"hash": pd.Series([], dtype="uint64")})))
    with read_errors_as_user_errors(url):
        stats, *sample = dask.compute(*todo)  # one read for both
    return ScanResult(rows=stats["rows"].astype(int).tolist(), nonfinite=stats["nonfinite"].astype(int).tolist(),
                      bad_weight=int(stats["bad_weight"].sum()), zero_weight=int(stats["zero_weight"].sum()),
                      weight_total=math.fsum(stats["weight_sum"]),
                      sample=sample[0]["hash"].to_numpy() if sample else None)


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


def feature_array(features: dd.DataFrame, scan: ScanResult, *, drop_nonfinite: bool,
                  n_features: Optional[int] = None) -> da.Array:
    """The features (and weights) as a float64 Dask array (rows chunked by partition, one column chunk).

    Parameters
    ----------
    features : dask.dataframe.DataFrame
        From :func:`float_features`.
    scan : ScanResult
        From :func:`scan_features` on the same frame; gives the chunk lengths without
        another pass.
    drop_nonfinite : bool
        Leave out rows with NaN/inf in a feature (``nan_policy: drop``).
    n_features : int, optional
        Number of feature columns; a weight column after them is kept as the last column.

    Returns
    -------
    dask.array.Array
        Shape (n_kept_rows, n_columns); partitions left with no rows are skipped.
    """
    n_features = len(features.columns) if n_features is None else n_features
    if features.npartitions != len(scan.rows):
        raise RuntimeError(f"partitioning changed: {features.npartitions} partitions, {len(scan.rows)} scanned")
    counts = [r - b for r, b in zip(scan.rows, scan.nonfinite)] if drop_nonfinite else list(scan.rows)
    keep = [i for i, n in enumerate(counts) if n > 0]
    frame = features.map_partitions(_finite_rows, n_features, meta=features._meta) if drop_nonfinite else features
    if len(keep) < len(counts):
        frame = frame.partitions[keep]
    return frame.to_dask_array(lengths=[counts[i] for i in keep])

