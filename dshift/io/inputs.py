"""The read stage: driver-side checks, then a read pass on the workers or none.

:func:`open_input` lists the input's files, checks their footers and the feature columns
(metadata only, no cluster needed); :func:`scan_input` counts rows and NaN/inf on the
workers and gives the lazy float64 feature array the fit runs on; :func:`defer_scan` gives
that array uncounted, for a fit whose first pass does the counting and checks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import dask.array as da
import dask.dataframe as dd
import numpy as np
from dask.delayed import delayed

from dshift._input import with_row_chunks
from dshift.errors import UserError
from dshift.io.dataset import (InputFiles, check_parquet_files, list_input_files, prune_files,
                               read_errors_as_user_errors, read_parquet, read_schema)
from dshift.io.features import (ScanResult, check_columns_in_files, feature_array, float_features,
                                is_feature_dtype, scan_features, select_feature_columns)
from dshift.io.filters import check_filter_types, check_filters

__all__ = ["INPUT_KEYS", "InputSource", "InputData", "open_input", "scan_input", "defer_scan"]

logger = logging.getLogger("dshift.batch")

#: Names of the input settings in messages (``dshift predict`` uses its option names).
INPUT_KEYS = {"path": "input.path", "columns": "input.columns", "nan_policy": "input.nan_policy:",
              "filters": "input.filters"}


@dataclass
class InputSource:
    """The input after the driver-side checks (no data read yet).

    Attributes
    ----------
    files : InputFiles
        The Parquet files read (footers checked; files pruned by the filters left out).
    data : dask.dataframe.DataFrame
        Every column, rows filtered (for the labelled output).
    feature_columns : list of str
        The features, in order.
    features : dask.dataframe.DataFrame
        Float64 features from a column-projected, filtered read (:func:`float_features`),
        then the weight column when there is one.
    n_rows_input : int
        Rows of the files read, before the row filters (from their footers).
    filters : list or None
        The checked filters.
    keys : dict
        Names of the settings for messages: ``path``, ``columns``, ``nan_policy``, ``filters``.
    weight_column : str or None
        The column of row weights (``input.weight_column``), not a feature.
    """

    files: InputFiles
    data: dd.DataFrame
    feature_columns: list[str]
    features: dd.DataFrame
    n_rows_input: int = 0
    filters: Optional[list] = None
    keys: dict[str, str] = field(default_factory=lambda: dict(INPUT_KEYS))
    weight_column: Optional[str] = None

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
    scan : ScanResult or None
        Row and non-finite counts per partition; None until the fit's first pass has
        counted them (:func:`defer_scan`).
    X : dask.array.Array
        Float64 features to fit on (non-finite rows left out under ``nan_policy: drop``);
        row chunks of unknown length while ``scan`` is None.
    weights : dask.array.Array or None
        The weights of the rows of ``X`` (float64, checked), chunked like them.
    first_pass : list of Delayed
        With :func:`defer_scan`: the deduplication sample's tasks on the chunks of ``X``, for
        the fit's first pass (:func:`dshift.engine.fit_many`).
    """

    source: InputSource
    scan: Optional[ScanResult]
    X: da.Array
    weights: Optional[da.Array] = None
    first_pass: list = field(default_factory=list)

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
        """Input rows after the filters (all labelled)."""
        return self.scan.n_rows

    @property
    def n_rows_fit(self) -> int:
        """Rows in ``X`` (rows with NaN/inf are not, under ``nan_policy: drop``)."""
        return self.scan.n_rows - self.scan.n_nonfinite

    def count(self, chunk_rows: Sequence[int], n_nonfinite: int, first_pass: Sequence) -> None:
        """Take the counts of the fit's first pass (:func:`defer_scan`) and check them as
        :func:`scan_input` does.

        Parameters
        ----------
        chunk_rows : sequence of int
            Rows per chunk of ``X`` (one chunk per partition).
        n_nonfinite : int
            Rows with NaN or infinity in a feature.
        first_pass : sequence
            The computed :attr:`first_pass` (the sample's hashes per chunk).

        Raises
        ------
        UserError
            As :func:`scan_input`: no rows, or rows with NaN/inf.
        """
        sample = np.concatenate(first_pass) if len(first_pass) else None
        # only the total of NaN/inf rows is known: with any, the job stops here
        nonfinite = [n_nonfinite] + [0] * (len(chunk_rows) - 1)
        self.scan = ScanResult(rows=list(chunk_rows), nonfinite=nonfinite, sample=sample)
        _check_scan(self.source, self.scan, "error")
        self.X = with_row_chunks(self.X, tuple(chunk_rows))

    def report_fields(self) -> dict:
        """What report.json says about the input beyond ``n_rows``: the files read and pruned,
        the rows before filtering (``n_rows_input``) and the filters."""
        files = self.source.files
        # default=str: YAML dates in filters are written as ISO dates.
        filters = json.loads(json.dumps(self.source.filters, default=str))
        fields = {"n_rows_input": self.source.n_rows_input, "n_files": len(files.files),
                  "n_files_pruned": files.n_pruned, "filters": filters}
        if self.weights is not None:
            fields.update(weight_column=self.source.weight_column, weight_total=self.scan.weight_total,
                          n_rows_zero_weight=self.scan.zero_weight)
        return fields


def open_input(
    url: str,
    *,
    storage_options: Optional[dict] = None,
    columns: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
    filters: Optional[list] = None,
    keys: Optional[dict[str, str]] = None,
    weight_column: Optional[str] = None,
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
    filters : list, optional
        Row filters, Dask's form (:mod:`dshift.io.filters`); files whose partition keys they
        rule out are not opened.
    keys : dict, optional
        Setting names for messages (default :data:`INPUT_KEYS`, the config's names).
    weight_column : str, optional
        A numeric column of row weights; never a feature (left out of ``columns`` and of the
        default features).

    Returns
    -------
    InputSource

    Raises
    ------
    UserError
        Missing path, no Parquet files, corrupt file, no rows, bad filters, missing or
        non-numeric columns (in any file).
    """
    keys = {**INPUT_KEYS, **(keys or {})}
    filters = check_filters(filters, keys["filters"])
    files = prune_files(list_input_files(url, storage_options, what=keys["path"]), filters, what=keys["filters"])
    footers = check_parquet_files(files)
    if footers.n_rows == 0:  # known from the footers: dshift validate says so too
        raise _empty_input(keys, url)
    check_filter_types(filters, read_schema(files), keys["filters"])
    data = read_parquet(files, storage_options, filters=filters, group_files=footers.one_schema, footers=footers)
    fit_columns = feature_columns = _features(data, columns, label_column, keys["columns"], weight_column)
    # Chosen on the first file's columns: every other file must have them, as numbers.
    check_columns_in_files(files, footers, feature_columns, what=keys["columns"])
    if weight_column is not None:
        check_columns_in_files(files, footers, [weight_column], what="input.weight_column")
        fit_columns = feature_columns + [weight_column]
    # Column projection: the fit passes read only the feature (and weight) columns from Parquet.
    with read_errors_as_user_errors(url):
        features = float_features(read_parquet(files, storage_options, columns=fit_columns, filters=filters,
                                               group_files=footers.one_schema, footers=footers))
    return InputSource(files=files, data=data, feature_columns=feature_columns, features=features,
                       n_rows_input=footers.n_rows, filters=filters, keys=keys, weight_column=weight_column)


def _features(data: dd.DataFrame, columns: Optional[Sequence[str]], label_column: Optional[str], what: str,
              weight_column: Optional[str]) -> list[str]:
    """The feature columns; the weight column is checked and never one of them."""
    if weight_column is None:
        return select_feature_columns(data, columns, label_column=label_column, what=what)
    dtypes = dict(zip(map(str, data.columns), data.dtypes))
    if weight_column not in dtypes:
        raise UserError(f"input.weight_column: column {weight_column!r} not in the input "
                        f"(available: {', '.join(dtypes)})")
    if not is_feature_dtype(dtypes[weight_column]):
        raise UserError(f"input.weight_column: {weight_column!r} must be numeric (it is {dtypes[weight_column]})")
    if columns is not None:
        columns = [c for c in columns if c != weight_column]
        if not columns:
            raise UserError(f"{what}: lists only the weight column {weight_column!r}; name the feature columns")
    others = data[[c for c in data.columns if c != weight_column]]
    return select_feature_columns(others, columns, label_column=label_column, what=what)


def scan_input(source: InputSource, *, nan_policy: str = "error", sample_rows: int = 0) -> InputData:
    """One pass on the workers: row counts, NaN/inf and weight checks; then the lazy feature array.

    Parameters
    ----------
    source : InputSource
        From :func:`open_input`.
    nan_policy : {"error", "drop"}
        What to do with rows holding NaN or infinity in a feature.
    sample_rows : int
        About this many rows are sampled by value in the same pass (``scan.sample``, for
        ``model.deduplicate: auto``); 0: none.

    Returns
    -------
    InputData

    Raises
    ------
    UserError
        Empty data set, unreadable data, non-finite values with ``nan_policy: error``, or
        weights that are negative, NaN or infinite (or all 0) in a row of the fit.
    """
    feature_columns = source.feature_columns
    scan = scan_features(source.features, source.url, n_features=len(feature_columns),
                         sample_rate=_sample_rate(source, sample_rows))
    _check_scan(source, scan, nan_policy)
    weight_column, n_fit = source.weight_column, scan.n_rows - scan.n_nonfinite
    if weight_column is not None and scan.bad_weight:
        raise UserError(f"input.weight_column: {scan.bad_weight:,} of {n_fit:,} rows have a negative, NaN or "
                        f"infinite weight in {weight_column!r}")
    if weight_column is not None and scan.zero_weight == n_fit:
        raise UserError(f"input.weight_column: every weight in {weight_column!r} is 0; nothing to fit")
    X = feature_array(source.features, scan, drop_nonfinite=nan_policy == "drop", n_features=len(feature_columns))
    weights = None
    if weight_column is not None:
        X, weights = X[:, :-1], X[:, -1]
        logger.info("read: weights from %r: total %.6g, %s rows of weight 0 (labelled, not fitted)",
                    weight_column, scan.weight_total, f"{scan.zero_weight:,}")
    return InputData(source=source, scan=scan, X=X, weights=weights)


def defer_scan(source: InputSource, *, sample_rows: int = 0) -> InputData:
    """The input for a fit whose first pass does the read pass's work: one read of the data less.

    For ``nan_policy: error`` without a weight column, where nothing has to be dropped or
    checked before the fit: the engine's first pass counts the rows per partition and finds
    NaN/inf (:meth:`InputData.count` checks them then) and takes the deduplication sample
    (``first_pass``) in the same read as the trees.

    Parameters
    ----------
    source : InputSource
        From :func:`open_input`, without a weight column.
    sample_rows : int
        As in :func:`scan_input`.

    Returns
    -------
    InputData
        ``scan`` None, ``X`` with row chunks of unknown length.
    """
    from dshift.dedup import sample_hashes

    if source.weight_column is not None:
        raise ValueError("defer_scan: a weight column is checked in the read pass (scan_input)")
    X = source.features.to_dask_array()
    rate = _sample_rate(source, sample_rows)
    sample = [delayed(sample_hashes, pure=True)(chunk, rate) for chunk in X.to_delayed().ravel()] if rate else []
    return InputData(source=source, scan=None, X=X, first_pass=sample)


def _sample_rate(source: InputSource, sample_rows: int) -> float:
    return min(sample_rows / max(source.n_rows_input, 1), 1.0)


def _empty_input(keys: dict, url: str) -> UserError:
    return UserError(f"{keys['path']}: the input data set {url!r} is empty (0 rows)")


def _check_scan(source: InputSource, scan: ScanResult, nan_policy: str) -> None:
    """Refuse an empty input or (``nan_policy: error``) rows with NaN/inf; log what was read."""
    keys, url, feature_columns = source.keys, source.url, source.feature_columns
    if scan.n_rows == 0 and source.filters:
        raise UserError(f"{keys['filters']}: no row of the {source.n_rows_input:,} rows read matches the filters")
    if scan.n_rows == 0:
        raise _empty_input(keys, url)
    if scan.n_nonfinite:
        if nan_policy != "drop":
            raise UserError(
                f"{keys['path']}: {scan.n_nonfinite:,} of {scan.n_rows:,} rows have NaN or infinity in the feature "
                f"columns ({', '.join(feature_columns)}); clean the data or set {keys['nan_policy']} drop"
            )
        if scan.n_nonfinite == scan.n_rows:
            raise UserError(f"{keys['path']}: every row has NaN or infinity in the feature columns; nothing to fit")
        logger.info("read: dropping %s rows with NaN/inf from the fit (they get label -1)", f"{scan.n_nonfinite:,}")
    n_files, n_pruned = len(source.files.files), source.files.n_pruned
    logger.info(
        "read: %d file%s%s, %d partitions, %s rows%s, %d features (%s)",
        n_files, "" if n_files == 1 else "s", f" ({n_pruned:,} pruned by the filters)" if n_pruned else "",
        len(scan.rows), f"{scan.n_rows:,}",
        f" match the filters (of {source.n_rows_input:,} read)" if source.filters else "",
        len(feature_columns), ", ".join(feature_columns),
    )
