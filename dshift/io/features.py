"""The feature columns: which ones, one scan pass over them, and the float64 Dask array.

The feature columns are checked against the data's schema on the driver; the scan (row and
NaN/inf counts) and the conversion to float64 run partition by partition on the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dshift.errors import UserError
from dshift.io.dataset import read_errors_as_user_errors

__all__ = [
    "select_feature_columns",
    "as_float64",
    "ScanResult",
    "scan_features",
    "float_features",
    "feature_array",
]


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


# --------------------------------------------------------------------------------------------
# Partition functions (run on the workers; module level so they pickle by reference)


def as_float64(df: pd.DataFrame) -> np.ndarray:
    """The columns of ``df`` as a float64 matrix; missing values become NaN."""
    return df.to_numpy(dtype=np.float64, na_value=np.nan)


def _scan_partition(df: pd.DataFrame) -> pd.DataFrame:
    finite = np.isfinite(as_float64(df)).all(axis=1)
    return pd.DataFrame({"rows": [len(df)], "nonfinite": [int(len(df) - finite.sum())]})


def _finite_rows(df: pd.DataFrame) -> pd.DataFrame:
    X = as_float64(df)
    keep = np.isfinite(X).all(axis=1)
    return pd.DataFrame(X[keep], columns=df.columns)


def _as_float_frame(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(as_float64(df), columns=df.columns)


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

