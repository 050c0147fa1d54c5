"""Labelling the input with a model's centers and writing the labelled data set.

Labels are computed and written one file per partition by the workers
(``map_partitions`` + ``to_parquet``); the driver receives only the cluster sizes and a
small sample for the plot.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dshift.io.dataset import read_errors_as_user_errors
from dshift.io.features import as_float64

__all__ = ["label_partition", "label_frame", "write_labels"]


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

    X = as_float64(df[list(feature_columns)])
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

