"""Input coercion: NumPy, pandas, Dask arrays and Dask DataFrames to one row-chunked Dask array.

In-memory input is validated by scikit-learn's own ``validate_data`` (same errors,
messages and ``n_features_in_`` / ``feature_names_in_`` bookkeeping) and then wrapped
without copying. Dask input is checked lazily: dtype and shape here, NaN/inf in the
first pass over the data (:func:`dshift.seeding.scan`).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import delayed

from dshift import _dask


class NonFiniteError(ValueError):
    """Input holds NaN or infinity (a ValueError, as in scikit-learn)."""

    @classmethod
    def rows(cls, n_bad: int | None = None, n_rows: int | None = None) -> "NonFiniteError":
        """The error, with the count of bad rows when known."""
        counted = "" if n_bad is None else f" ({n_bad} of {n_rows} rows)"
        return cls(f"Input X contains NaN or infinity{counted}.")


class Prepared(NamedTuple):
    """Input ready for the engine."""

    array: da.Array  # (n, d), one chunk along axis 1, known row chunks
    lazy: bool  # the caller gave Dask input: results that scale with n stay lazy
    dtype: np.dtype  # working dtype of means and centers (float32 or float64)
    local: np.ndarray | None  # the validated NumPy array for in-memory input
    weights: da.Array | None = None  # (n,) float64 sample weights, chunked like the rows
    local_weights: np.ndarray | None = None  # the validated NumPy weights for in-memory input
    weights_checked: bool = True  # False: Dask weights, checked in the first pass (see check_weights)
    n_rows_hint: int | None = None  # rows at most, while the row chunks' lengths are unknown


def _weight_counts(w: np.ndarray) -> np.ndarray:
    """NaN, infinite, negative and positive weights of one block."""
    return np.array([np.isnan(w).sum(), np.isinf(w).sum(), (w < 0).sum(), (w > 0).sum()], dtype=np.int64)


def weight_checks(weights: da.Array) -> list:
    """Lazy counts that decide whether Dask weights are valid (compute them with the first pass).

    Read from ``weights.to_delayed()``, the blocks every pass reads: a distributed scheduler
    warns of (and may fail on) a key that a later pass resubmits with other tasks.
    """
    blocks = [delayed(_weight_counts, pure=True)(b) for b in weights.to_delayed().ravel()]
    totals = _dask.tree_reduce(blocks, operator.add)
    return [totals[i] for i in range(4)]


def check_weights(n_nan: int, n_inf: int, n_negative: int, n_positive: int) -> None:
    """Raise scikit-learn's ``_check_sample_weight`` errors from :func:`weight_checks`' counts."""
    if n_nan:
        raise ValueError("Input sample_weight contains NaN.")
    if n_inf:
        raise ValueError("Input sample_weight contains infinity or a value too large for dtype('float64').")
    if n_negative:
        raise ValueError("Negative values in data passed to `sample_weight`.")
    if not n_positive:
        raise ValueError("Sample weights must contain at least one non-zero number.")


def _dask_weights(sample_weight, n_rows: int, row_chunks: tuple) -> tuple[da.Array, bool]:
    """Sample weights for row-chunked Dask data: ``(weights, checked)``."""
    if isinstance(sample_weight, (da.Array, dd.Series, dd.DataFrame)):
        w = sample_weight.to_dask_array(lengths=True) if isinstance(sample_weight, (dd.Series, dd.DataFrame)) \
            else sample_weight
        if any(np.isnan(c) for c in w.chunks[0]):
            w = w.compute_chunk_sizes()
        if w.ndim == 2 and w.shape[1] == 1:  # a one-column frame
            w = w.reshape(-1)
        if w.ndim != 1 or w.shape[0] != n_rows:
            raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n_rows},)!")
        if np.issubdtype(w.dtype, np.complexfloating):  # as scikit-learn: never drop the imaginary part
            raise ValueError(f"Complex data not supported in sample_weight (dtype {w.dtype}).")
        return w.astype(np.float64).rechunk((row_chunks,)), False
    from sklearn.utils.validation import _check_sample_weight  # see prepare()

    w = _check_sample_weight(sample_weight, np.empty((n_rows, 0)), ensure_non_negative=True)
    return da.from_array(np.asarray(w, dtype=np.float64), chunks=(row_chunks,)), True


def is_dask(X) -> bool:
    """Whether ``X`` is a Dask collection."""
    return isinstance(X, (da.Array, dd.DataFrame, dd.Series))


def working_dtype(dtype: np.dtype) -> np.dtype:
    """float32 input keeps float32 results; everything else computes in float64."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float32 else np.dtype(np.float64)


def _dataframe_to_array(df: dd.DataFrame) -> da.Array:
    if isinstance(df, dd.Series):
        df = df.to_frame()
    bad = [str(c) for c, t in df.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if bad:
        raise ValueError(f"Feature columns must be numeric; not numeric: {', '.join(bad)}")
    # Optimising first settles dask-expr's partition fusion, so the lengths computed
    # below describe the partitions that later passes really see.
    return df.optimize().to_dask_array(lengths=True)


def as_row_chunked(X) -> da.Array:
    """Any supported 2-D input as a Dask array with all columns in one chunk.

    NumPy/pandas input is wrapped in chunks of about ``dshift.chunk-bytes``; Dask input
    keeps its row chunks (unknown chunk sizes are computed).
    """
    if isinstance(X, (dd.DataFrame, dd.Series)):
        arr = _dataframe_to_array(X)
    elif isinstance(X, da.Array):
        arr = X
        if any(np.isnan(c) for c in arr.chunks[0]):
            arr = arr.compute_chunk_sizes()
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D array, got {X.ndim}D input.")
        rows = _dask.auto_chunk_rows(X.shape[0], X.shape[1], X.dtype.itemsize)
        return da.from_array(X, chunks=(rows, X.shape[1]), name=False, asarray=True)
    if arr.ndim != 2:
        raise ValueError(f"Expected a 2D array, got {arr.ndim}D input.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"Input X must be real numbers, got dtype {arr.dtype}.")
    return arr.rechunk({1: -1}) if len(arr.chunks[1]) > 1 else arr


def _dask_feature_names(X) -> np.ndarray | None:
    if isinstance(X, dd.DataFrame):
        cols = list(X.columns)
        if cols and all(isinstance(c, str) for c in cols):
            return np.asarray(cols, dtype=object)
    return None


def prepare_weights(sample_weight, X: da.Array) -> da.Array:
    """Sample weights for the rows of ``X``, checked now (for the eager functions)."""
    weights, checked = _dask_weights(sample_weight, X.shape[0], X.chunks[0])
    if not checked:
        check_weights(*dask.compute(*weight_checks(weights)))
    return weights


def prepare_array(X: da.Array, weights: da.Array | None = None, n_rows_hint: int | None = None) -> Prepared:
    """A float64 Dask array (and weights chunked like it) its caller has already checked.

    With ``n_rows_hint`` (an upper bound on the rows, e.g. from Parquet footers) the row
    chunks' lengths may be unknown: the fit's first pass counts them, saving a read.
    """
    if n_rows_hint is None or X.ndim != 2 or len(X.chunks[1]) > 1:
        X = as_row_chunked(X)
    return Prepared(X, True, working_dtype(X.dtype), None, weights, n_rows_hint=n_rows_hint)


def lengths_unknown(X: da.Array) -> bool:
    """Whether the row chunks' lengths of ``X`` are not known yet."""
    return any(np.isnan(c) for c in X.chunks[0])


def with_row_chunks(X: da.Array, rows: tuple) -> da.Array:
    """``X`` (same graph) with its row chunks' lengths now known."""
    return da.Array(X.dask, X.name, chunks=(tuple(int(r) for r in rows), *X.chunks[1:]), meta=X._meta)


def split_weight_column(X, sample_weight):
    """``(X, sample_weight)``, a weight given as a column's name taken out of the features.

    Parameters
    ----------
    X : any supported input
    sample_weight : any supported weights, or str
        The name of a column of ``X`` (pandas or Dask DataFrame), or weights, passed through.

    Returns
    -------
    X, sample_weight
        ``X`` without that column, and the column.

    Raises
    ------
    ValueError
        If ``sample_weight`` is a str naming no column of ``X``.
    """
    if not isinstance(sample_weight, str):
        return X, sample_weight
    if not isinstance(X, (dd.DataFrame, pd.DataFrame)) or sample_weight not in X.columns:
        raise ValueError(f"sample_weight={sample_weight!r} names no column of X.")
    return X.drop(columns=[sample_weight]), X[sample_weight]


def prepare(estimator, X, *, reset: bool, sample_weight=None) -> Prepared:
    """Validate ``X`` (and ``sample_weight``) for ``estimator`` and chunk it.

    Parameters
    ----------
    estimator : BaseEstimator
        Receives ``n_features_in_`` / ``feature_names_in_`` when ``reset``.
    X : array-like, pandas DataFrame, Dask array or Dask DataFrame
    reset : bool
        True in ``fit``; False checks the feature count against the fitted one.
    sample_weight : array-like, Dask array or Series, str, optional
        Non-negative weights, one per row (scikit-learn's checks and errors). For a Dask
        DataFrame, the name of one of its columns (then not a feature). Dask weights are
        checked lazily: see :func:`weight_checks`.

    Returns
    -------
    Prepared
    """
    X, sample_weight = split_weight_column(X, sample_weight)
    if not is_dask(X):
        # Imported here: Dask workers import this module's helpers, and scikit-learn's
        # validation (with scipy) would add a second to every worker's start.
        from sklearn.utils.validation import _check_sample_weight, validate_data

        Xv = validate_data(estimator, X, reset=reset)
        arr = as_row_chunked(Xv)
        if sample_weight is None:
            return Prepared(arr, False, working_dtype(Xv.dtype), Xv)
        if is_dask(sample_weight):
            weights, checked = _dask_weights(sample_weight, len(Xv), arr.chunks[0])
            return Prepared(arr, False, working_dtype(Xv.dtype), Xv, weights, None, checked)
        w = np.asarray(_check_sample_weight(sample_weight, Xv, ensure_non_negative=True), dtype=np.float64)
        return Prepared(arr, False, working_dtype(Xv.dtype), Xv, da.from_array(w, chunks=(arr.chunks[0],)), w)
    arr = as_row_chunked(X)
    n_rows, n_features = arr.shape
    if reset:
        if n_rows < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
        if n_features < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
        estimator.n_features_in_ = n_features
        names = _dask_feature_names(X)
        if names is not None:
            estimator.feature_names_in_ = names
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    if sample_weight is None:
        return Prepared(arr, True, working_dtype(arr.dtype), None)
    weights, checked = _dask_weights(sample_weight, n_rows, arr.chunks[0])
    return Prepared(arr, True, working_dtype(arr.dtype), None, weights, None, checked)
