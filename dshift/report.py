"""The job's small outputs: ``model.json``, ``report.json`` and ``clusters.png``.

``model.json`` is enough to label new data (``dshift predict``): it holds the centers,
bandwidth, feature columns and parameters. :func:`load_model` validates one.
"""

from __future__ import annotations

import io as _io
import math
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from dshift.errors import UserError

__all__ = [
    "MODEL_FORMAT",
    "Stopwatch",
    "dshift_version",
    "model_dict",
    "load_model",
    "report_dict",
    "plot_png",
    "sweep_png",
]

MODEL_FORMAT = "dshift-meanshift-model/1"

MAX_JSON_CENTERS = 10_000
"""Beyond this many clusters the centers go to ``centers.parquet`` next to ``model.json``
(JSON of millions of coordinates takes longer to write and read than the job's labelling)."""

CENTERS_FILE = "centers.parquet"

MAX_REPORTED_SIZES = 1_000
"""``report.json`` lists the sizes of at most this many clusters (the largest)."""

MAX_PLOTTED_CENTERS = 1_000
_PLOTTABLE_SPAN = 1e300  # of a plot's axis: matplotlib's margins and ticks overflow near 1.8e308


def dshift_version() -> str:
    """The installed dshift version."""
    try:
        from importlib.metadata import version

        return version("dshift")
    except Exception:  # not installed (source checkout)
        import dshift

        return getattr(dshift, "__version__", "unknown")


class Stopwatch:
    """Wall-clock timings of named phases (seconds), for report.json."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block and add it to ``timings[name]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def total(self) -> float:
        """Seconds since the stopwatch was created."""
        return time.perf_counter() - self.start


def model_dict(
    *,
    centers: np.ndarray,
    bandwidth: float,
    feature_columns: Sequence[str],
    params: Mapping[str, Any],
    n_iter: int,
    label_column: str,
) -> dict[str, Any]:
    """The content of ``model.json``.

    Parameters
    ----------
    centers : numpy.ndarray
        ``cluster_centers_`` (k, d).
    bandwidth : float
        The bandwidth used (``bandwidth_``).
    feature_columns : sequence of str
        Feature columns, in the order of the centers' coordinates.
    params : mapping
        The ``model:`` section.
    n_iter : int
        ``n_iter_``.
    label_column : str
        Name of the label column written.

    Returns
    -------
    dict
    """
    centers = np.asarray(centers, dtype=np.float64)
    many = len(centers) > MAX_JSON_CENTERS
    return {
        "format": MODEL_FORMAT,
        "dshift_version": dshift_version(),
        "feature_columns": list(feature_columns),
        "n_features": int(centers.shape[1]),
        "n_clusters": int(centers.shape[0]),
        "cluster_centers": None if many else centers.tolist(),
        "cluster_centers_file": CENTERS_FILE if many else None,
        "bandwidth": float(bandwidth),
        "cluster_all": bool(params.get("cluster_all", True)),
        "label_column": label_column,
        "n_iter": int(n_iter),
        "parameters": dict(params),
    }


def centers_parquet(centers: np.ndarray, feature_columns: Sequence[str]) -> bytes:
    """``centers.parquet``: one row per cluster in label order, one float64 column per feature."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: np.asarray(centers, dtype=np.float64)[:, j] for j, c in enumerate(feature_columns)})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def _read_centers_file(model: dict, source: str, storage_options: Optional[dict]) -> Any:
    import posixpath

    import fsspec
    import pyarrow.parquet as pq

    path = posixpath.join(posixpath.dirname(source), str(model["cluster_centers_file"]))
    try:
        with fsspec.open(path, "rb", **(storage_options or {})) as fh:
            table = pq.read_table(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"model {source!r}: cannot read its centers file {path!r}: {exc}") from None
    missing = [c for c in model["feature_columns"] if c not in table.column_names]
    if missing:
        raise UserError(f"model {source!r}: {path!r} lacks the feature columns {', '.join(map(repr, missing))}")
    return np.column_stack([table.column(c).to_numpy() for c in model["feature_columns"]])


def load_model(model: Any, source: str, storage_options: Optional[dict] = None) -> dict[str, Any]:
    """Validate a parsed ``model.json`` (and read its ``centers.parquet`` when it has one).

    Parameters
    ----------
    model : Any
        The parsed JSON.
    source : str
        Its path or URL (for messages, and to find a centers file next to it).
    storage_options : dict, optional
        fsspec options for the centers file.

    Returns
    -------
    dict
        With ``cluster_centers`` as a float64 array (k, d).

    Raises
    ------
    UserError
        Naming the missing or malformed key.
    """
    if not isinstance(model, dict):
        raise UserError(f"model {source!r}: expected a JSON object")
    for key in ("cluster_centers", "bandwidth", "feature_columns"):
        if key not in model:
            raise UserError(f"model {source!r}: missing key {key!r} (is this a dshift model.json?)")
    if model.get("cluster_centers_file") and isinstance(model["feature_columns"], list):
        model = {**model, "cluster_centers": _read_centers_file(model, source, storage_options)}
    try:
        centers = np.asarray(model["cluster_centers"], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"model {source!r}: cluster_centers must be a list of lists of numbers") from None
    if centers.ndim != 2 or centers.shape[0] == 0 or not np.isfinite(centers).all():
        raise UserError(f"model {source!r}: cluster_centers must be a non-empty k x d list of finite numbers")
    bandwidth = model["bandwidth"]
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise UserError(f"model {source!r}: bandwidth must be a number > 0 (got {bandwidth!r})")
    cols = model["feature_columns"]
    if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols) or len(cols) != centers.shape[1]:
        raise UserError(
            f"model {source!r}: feature_columns must list {centers.shape[1]} column names, one per center coordinate"
        )
    out = dict(model)
    out["cluster_centers"] = centers
    out["bandwidth"] = float(bandwidth)
    out["cluster_all"] = bool(model.get("cluster_all", True))
    return out


def report_dict(
    *,
    n_rows: int,
    n_rows_fit: int,
    feature_columns: Sequence[str],
    bandwidth: float,
    bandwidth_estimated: bool,
    n_seeds: Optional[int],
    n_clusters: int,
    n_iter: Optional[int],
    cluster_sizes: Mapping[int, int],
    timings: Mapping[str, float],
    input_path: str,
    output_path: str,
    nan_policy: str = "error",
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The content of ``report.json``.

    Parameters
    ----------
    n_rows : int
        Input rows (all labelled).
    n_rows_fit : int
        Rows the model was fitted on (fewer under ``nan_policy: drop``).
    cluster_sizes : mapping
        Label -> rows; -1 included when present. Keys become strings in JSON. Beyond
        :data:`MAX_REPORTED_SIZES` clusters only the largest are listed (and -1), and
        ``cluster_sizes_omitted`` counts the others.
    timings : mapping
        Phase -> seconds.
    Other parameters are copied as they are.

    Returns
    -------
    dict
    """
    report = {
        "dshift_version": dshift_version(),
        "input_path": input_path,
        "output_path": output_path,
        "n_rows": int(n_rows),
        "n_rows_fit": int(n_rows_fit),
        "n_rows_dropped": int(n_rows - n_rows_fit),
        "nan_policy": nan_policy,
        "n_features": len(feature_columns),
        "feature_columns": list(feature_columns),
        "bandwidth": float(bandwidth),
        "bandwidth_estimated": bool(bandwidth_estimated),
        "n_seeds": None if n_seeds is None else int(n_seeds),
        "n_clusters": int(n_clusters),
        "n_iter": None if n_iter is None else int(n_iter),
        "cluster_sizes": {str(int(k)): int(v) for k, v in sorted(_largest(cluster_sizes).items())},
        "cluster_sizes_omitted": max(len([k for k in cluster_sizes if k >= 0]) - MAX_REPORTED_SIZES, 0),
        "timings": {k: round(float(v), 4) for k, v in timings.items()},
    }
    if extra:
        report.update(extra)
    return report


def _largest(sizes: Mapping[int, int]) -> dict[int, int]:
    """The outliers' count and the :data:`MAX_REPORTED_SIZES` largest clusters."""
    clusters = {k: v for k, v in sizes.items() if k >= 0}
    if len(clusters) <= MAX_REPORTED_SIZES:
        return dict(sizes)
    keys = np.fromiter(clusters, dtype=np.int64, count=len(clusters))
    counts = np.fromiter(clusters.values(), dtype=np.int64, count=len(clusters))
    top = np.lexsort((keys, -counts))[:MAX_REPORTED_SIZES]
    kept = {int(keys[i]): int(counts[i]) for i in top}
    return {**({-1: sizes[-1]} if -1 in sizes else {}), **kept}


def _projection(
    sample: pd.DataFrame, centers: np.ndarray, feature_columns: Sequence[str], x: Optional[str], y: Optional[str]
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """2-D coordinates of the sample and centers: chosen columns, the features, or PCA."""
    X = sample[list(feature_columns)].to_numpy(dtype=np.float64, na_value=np.nan)
    C = np.asarray(centers, dtype=np.float64)
    d = X.shape[1]
    if x is not None and y is not None:
        ix, iy = list(feature_columns).index(x), list(feature_columns).index(y)
        return X[:, [ix, iy]], C[:, [ix, iy]], x, y
    if d == 1:
        return np.c_[X[:, 0], np.zeros(len(X))], np.c_[C[:, 0], np.zeros(len(C))], feature_columns[0], ""
    if d == 2:
        return X, C, feature_columns[0], feature_columns[1]
    # PCA through an SVD of the centered sample; centers go through the same projection.
    finite = np.isfinite(X).all(axis=1)
    mean = X[finite].mean(axis=0) if finite.any() else C.mean(axis=0)
    basis_src = X[finite] - mean if finite.sum() >= 2 else C - mean
    _, _, vt = np.linalg.svd(basis_src, full_matrices=False)
    basis = vt[:2].T
    if basis.shape[1] < 2:  # degenerate sample: pad with a zero axis
        basis = np.c_[basis, np.zeros(d)]
    return (X - mean) @ basis, (C - mean) @ basis, "PC 1", "PC 2"


def plot_png(
    sample: pd.DataFrame,
    centers: np.ndarray,
    *,
    feature_columns: Sequence[str],
    label_column: str,
    bandwidth: float,
    x: Optional[str] = None,
    y: Optional[str] = None,
) -> bytes:
    """Scatter plot of a sample coloured by cluster, centers as big X markers (PNG bytes).

    Parameters
    ----------
    sample : pandas.DataFrame
        Sampled rows with the feature and label columns.
    centers : numpy.ndarray
        Cluster centers (k, d).
    feature_columns : sequence of str
        Features in center order.
    label_column : str
        Label column of ``sample``.
    bandwidth : float
        For the title.
    x, y : str, optional
        Feature columns for the axes; by default the two features, or a PCA 2-D projection
        when there are more than two.

    Returns
    -------
    bytes
    """
    import matplotlib

    k = len(centers)
    # The most populated clusters come first; millions of markers would say nothing.
    pts, ctr, xlabel, ylabel = _projection(sample, np.asarray(centers)[:MAX_PLOTTED_CENTERS], feature_columns, x, y)
    shown = pts[np.isfinite(pts).all(axis=1)]
    with np.errstate(over="ignore"):
        spans = np.ptp(shown, axis=0) if len(shown) else np.zeros(2)
    for span, name in zip(spans, (xlabel, ylabel)):
        # matplotlib's autoscaling and ticks overflow on a span near float64's largest value
        if not span <= _PLOTTABLE_SPAN:
            raise UserError(f"plot: the sampled rows span {_fmt(span)} along {name!r}, more than a plot can show; "
                            "set plot.x and plot.y to other columns, scale the data or set plot: null")
    labels = sample[label_column].to_numpy()
    fig, ax = _figure((8, 6.5))
    n_colors = 10 if k <= 10 else 20
    cmap = matplotlib.colormaps[f"tab{n_colors}"]
    noise = labels < 0
    if noise.any():
        ax.scatter(pts[noise, 0], pts[noise, 1], s=3, c="0.7", alpha=0.5, linewidths=0, label="-1 (outlier)")
    ok = ~noise
    if ok.any():
        ax.scatter(pts[ok, 0], pts[ok, 1], s=3, c=[cmap(int(k) % n_colors) for k in labels[ok]], alpha=0.6, linewidths=0)
    few = len(ctr) <= 100
    ax.scatter(ctr[:, 0], ctr[:, 1], marker="X", s=260 if few else 40, c=[cmap(i % n_colors) for i in range(len(ctr))],
               edgecolors="black", linewidths=1.5 if few else 0.5, zorder=3,
               label="centers" if len(ctr) == k else f"centers of the {len(ctr):,} most populated clusters")
    ax.set_title(f"Mean shift: {k:,} cluster{'s' if k != 1 else ''}, bandwidth {_fmt(bandwidth)} "
                 f"({len(sample):,} sampled points)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def sweep_png(table: pd.DataFrame, chosen: int, *, stable: Optional[tuple[int, int]] = None,
              selected_by: str = "rule") -> bytes:
    """The bandwidth sweep's picture (PNG bytes): clusters and largest-cluster share against bandwidth.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`dshift.sweep.summarize`'s table (``bandwidth``, ``n_clusters``,
        ``largest_cluster_share``), increasing bandwidths.
    chosen : int
        Row of the bandwidth the job labelled with, marked by a vertical line.
    stable : (int, int), optional
        First and last row of the widest stable range (:func:`dshift.sweep.select_bandwidth`),
        shaded.
    selected_by : str
        How the bandwidth was chosen (``rule`` or ``select``), for the legend.

    Returns
    -------
    bytes
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, ax = _figure((8, 5))
    bw = table["bandwidth"].to_numpy()
    counts = table["n_clusters"].to_numpy()
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.plot(bw, counts, "o-", color="tab:blue", label="clusters", zorder=3)
    ax.set_xscale("log")
    if len(bw) <= 12:  # few bandwidths: each one a tick
        ax.set_xticks(bw)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v)))
    # Cluster counts run from 1 to about one per point: a log axis shows both ends.
    if counts.max() > 20:
        ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plain)
    if len(bw) <= 24:
        ax.margins(y=0.12)  # room for the counts above the points
        for b, k in zip(bw, counts):
            ax.annotate(f"{k:,}", (b, k), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8,
                        color="tab:blue")
    ax.set_xlabel("bandwidth (log scale)")
    ax.set_ylabel("clusters", color="tab:blue")
    if stable is not None:
        ax.axvspan(bw[stable[0]], bw[stable[1]], color="tab:green", alpha=0.12,
                   label=f"widest stable range: {_fmt(bw[stable[0]])} to {_fmt(bw[stable[1]])}")
    b, k = bw[chosen], int(counts[chosen])
    ax.axvline(b, color="tab:green", linewidth=2, alpha=0.8,
               label=f"chosen ({selected_by}): {_fmt(b)}, {k:,} cluster{'s' if k != 1 else ''}")
    share = ax.twinx()
    share.plot(bw, table["largest_cluster_share"], "s--", color="tab:orange", label="largest cluster's share")
    share.set_ylim(0, 1.05)
    share.set_ylabel("largest cluster's share of the rows", color="tab:orange")
    handles, labels = ax.get_legend_handles_labels()
    more = share.get_legend_handles_labels()
    fig.legend(handles + more[0], labels + more[1], loc="upper center", ncol=2, fontsize="small",
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    ax.set_title(f"Bandwidth sweep: {len(bw)} bandwidths from {_fmt(bw[0])} to {_fmt(bw[-1])}")
    return _png(fig)


def _figure(size: tuple[float, float]):
    """A matplotlib figure and its axes, drawn off screen (no GUI backend, no pyplot state)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _fmt(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"
