"""The batch job's model stages: the bandwidth, deduplication, the fit (one bandwidth or a
sweep) and the guard rails on the number of seeds.

Each stage takes the scanned input (:mod:`dshift.io.inputs`) and the config's ``model:``
section and runs dshift's engine on the cluster; :mod:`dshift.pipelines.cluster_parquet`
composes them into the job, and ``dshift validate`` uses :func:`precheck_seeds`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from dshift import estimate_bandwidth
from dshift._input import prepare_array
from dshift.bandwidth import bandwidth_estimator
from dshift.config import Config, ModelConfig
from dshift.dedup import distinct_fraction, distributed_deduplicate
from dshift.engine import FitResult, fit_many
from dshift.errors import UserError
from dshift.io.inputs import InputData, InputSource
from dshift.report import Stopwatch

if TYPE_CHECKING:
    from dshift.sweep import Choice

__all__ = ["choose_bandwidth", "deduplicate_rows", "dedup_decision", "fit_input", "fit_models", "FitRows", "reads_in_fit",
           "sweep_bandwidths", "SweepOutcome", "check_seed_count", "precheck_seeds", "DEDUP_SAMPLE_ROWS"]

logger = logging.getLogger("dshift.batch")

_TOO_FAR = "rows too far apart for float64 (their squared distances overflow)"


def choose_bandwidth(X, model: ModelConfig, weights=None) -> tuple[float, bool]:
    """The configured bandwidth, or an estimate from a reproducible sample.

    Parameters
    ----------
    X : dask.array.Array
        Features.
    model : ModelConfig
        ``model:`` section.
    weights : dask.array.Array, optional
        Row weights: the estimate is weighted (see :func:`dshift.estimate_bandwidth`).

    Returns
    -------
    bandwidth : float
    estimated : bool

    Raises
    ------
    UserError
        If the estimate is 0 (e.g. all sampled points equal).
    """
    if model.bandwidth is not None:
        logger.info("bandwidth: %g (from the config)", model.bandwidth)
        return float(model.bandwidth), False
    n_samples = None if model.n_samples is None else min(model.n_samples, int(X.shape[0]))
    bandwidth = float(estimate_bandwidth(X, quantile=model.quantile, n_samples=n_samples,
                                         random_state=model.random_state, sample_weight=weights))
    if not bandwidth > 0:
        raise UserError(
            f"model.bandwidth: the estimate from {n_samples or X.shape[0]} sampled rows with quantile "
            f"{model.quantile:g} is {bandwidth:g}; set model.bandwidth or raise model.quantile"
        )
    if not math.isfinite(bandwidth):
        raise UserError(f"model.bandwidth: the estimate from {n_samples or X.shape[0]} sampled rows is {bandwidth:g}: "
                        f"{_TOO_FAR}; scale the feature columns or set model.bandwidth")
    logger.info("bandwidth: estimated %.6g (quantile %g, %s sampled rows)", bandwidth, model.quantile,
                f"{n_samples or int(X.shape[0]):,}")
    return bandwidth, True


class FitRows(NamedTuple):
    """The rows a fit ran on: the input's, or its distinct rows weighted by their counts."""

    X: Any  # dask.array.Array
    weights: Any  # dask.array.Array or None
    fields: dict[str, Any]  # report.json: ``deduplication`` and ``n_rows_distinct``


class _Collapse(Exception):
    """``model.deduplicate: auto`` decided, in the fit's first pass, to collapse identical rows."""


def fit_input(data: InputData, bandwidths: Sequence[float], model: ModelConfig,
              clock: Stopwatch, count_sizes: bool = False) -> tuple[list[FitResult], FitRows]:
    """Deduplicate as ``model.deduplicate`` says, then fit every bandwidth in the same passes.

    After :func:`~dshift.io.inputs.defer_scan` the fit's first pass also counts and checks
    the rows and takes the deduplication sample. When ``auto`` then collapses identical rows,
    that pass is dropped and the fit starts again on the distinct rows (one read more: set
    ``model.deduplicate: true`` for data known to repeat its rows).

    Parameters
    ----------
    data : InputData
        From :func:`~dshift.io.inputs.scan_input` or :func:`~dshift.io.inputs.defer_scan`.
    bandwidths : sequence of float
        Each > 0.
    model : ModelConfig
        ``model:`` section.
    clock : Stopwatch
        Receives the ``deduplicate`` phase when the rows are collapsed (and ``read``, the
        dropped first pass, when that was decided in it).
    count_sizes : bool
        Count every fit's cluster sizes (:func:`dshift.engine.fit_many`).

    Returns
    -------
    fits : list of FitResult
        In the order of ``bandwidths``.
    rows : FitRows
    """
    decided: Optional[dict[str, Any]] = None
    if data.scan is None:
        decided = {}

        def counted(scan, values) -> None:
            data.count(scan.chunk_rows, scan.n_nonfinite, values)
            decided.update(dedup_decision(data, model))
            if decided["ran"]:
                raise _Collapse

        started = time.perf_counter()
        try:
            fits = fit_models(data.X, bandwidths, model, n_rows_hint=data.source.n_rows_input,
                              first_pass=data.first_pass, on_first_pass=counted, count_sizes=count_sizes)
            return fits, FitRows(data.X, None, {"deduplication": decided, "n_rows_distinct": None})
        except _Collapse:  # that first pass was a read pass after all
            clock.timings["read"] = time.perf_counter() - started
    with clock.phase("deduplicate"):
        X, weights, fields = deduplicate_rows(data, model, decided)
    return fit_models(X, bandwidths, model, weights, count_sizes=count_sizes), FitRows(X, weights, fields)


def reads_in_fit(cfg: Config) -> bool:
    """Whether the fit's first pass can do the read pass's work (:func:`~dshift.io.inputs.defer_scan`):
    nothing to drop (``nan_policy: error``) or weigh before the fit, no bandwidth to estimate
    from the rows, no deduplication forced (it needs the rows counted before it runs)."""
    model = cfg.model
    return (cfg.input.nan_policy == "error" and cfg.input.weight_column is None and model.deduplicate is not True
            and (model.bandwidth is not None if model.sweep is None else model.sweep.quantiles is None))


def fit_models(X, bandwidths: Sequence[float], model: ModelConfig, weights=None, *,
               n_rows_hint: Optional[int] = None, first_pass: Sequence = (), on_first_pass=None,
               count_sizes: bool = False) -> list[FitResult]:
    """One fit per bandwidth, sharing every pass over the data (:func:`dshift.engine.fit_many`).

    Parameters
    ----------
    X : dask.array.Array
        Float64 features, checked by :func:`dshift.io.inputs.scan_input` (or row chunks of
        unknown length, at most ``n_rows_hint`` rows, counted by the first pass).
    bandwidths : sequence of float
        Each > 0.
    model : ModelConfig
        ``model:`` section; ``max_seeds`` is enforced for every bandwidth before any shifting.
    weights : dask.array.Array, optional
        Checked row weights, one per row of ``X``.
    n_rows_hint, first_pass, on_first_pass, count_sizes
        As in :func:`dshift._input.prepare_array` and :func:`dshift.engine.fit_many`.

    Returns
    -------
    list of FitResult
        In the order of ``bandwidths``; their centers stay on the workers too (``centers_at``).
    """
    pending = iter(bandwidths)  # fit_many reports the seeds of each bandwidth, in order

    def guard(n_seeds: int, source: str) -> None:
        check_seed_count(n_seeds, source, model, next(pending))

    try:
        return fit_many(prepare_array(X, weights, n_rows_hint), bandwidths=list(bandwidths), seeds=None,
                        bin_seeding=model.bin_seeding, min_bin_freq=model.min_bin_freq, cluster_all=model.cluster_all,
                        max_iter=model.max_iter, n_jobs=None, on_seeds=guard, first_pass=first_pass,
                        on_first_pass=on_first_pass, count_sizes=count_sizes)
    except ValueError as exc:  # e.g. no bin reaches min_bin_freq, no point within bandwidth
        raise UserError(f"model: {exc}") from None


@dataclass
class SweepOutcome:
    """A bandwidth sweep's fits, its table and the bandwidth the job labels with.

    Attributes
    ----------
    fits : list of FitResult
        One per swept bandwidth, increasing.
    table : pandas.DataFrame
        :func:`dshift.sweep.summarize`'s table (``sweep.csv``).
    suggestion : dshift.sweep.Choice
        The rule's bandwidth and why.
    index : int
        Row of the bandwidth labelled: the suggestion, or the one ``select`` names.
    select : str or float
        ``model.sweep.select``: ``auto`` or a swept value.
    estimated : bool
        Whether the bandwidths were estimated (``model.sweep.quantiles``).
    rows : FitRows
        The rows fitted (:func:`fit_input`).
    """

    fits: list[FitResult]
    table: pd.DataFrame
    suggestion: Choice
    index: int
    select: Union[str, float]
    estimated: bool
    rows: FitRows

    @property
    def fit(self) -> FitResult:
        """The fit of the bandwidth labelled."""
        return self.fits[self.index]

    def report(self) -> dict[str, Any]:
        """``report.json``'s ``sweep`` section: the table, the bandwidth labelled, the rule's suggestion and why."""
        stable = self.suggestion.stable
        bandwidths = self.table["bandwidth"].tolist()
        return {"select": self.select, "chosen": float(self.fit.bandwidth),
                "suggested": float(self.suggestion.bandwidth), "reason": self.suggestion.reason,
                "stable_range": None if stable is None else [bandwidths[stable[0]], bandwidths[stable[1]]],
                "table": self.table.to_dict(orient="records")}


def sweep_bandwidths(data: InputData, model: ModelConfig, clock: Stopwatch) -> SweepOutcome:
    """Fit every bandwidth of ``model.sweep`` in the same passes and pick the one to label with.

    The bandwidths (estimated from one sample for ``quantiles``) are fitted together, and the
    fit counts every bandwidth's cluster sizes for the table (:func:`dshift.sweep.summarize`)
    from its trees, without another read; ``select`` names the bandwidth labelled, or ``auto`` takes
    the rule's suggestion (:func:`dshift.sweep.select_bandwidth`).

    Parameters
    ----------
    data : InputData
        The input: bandwidths estimated for ``quantiles`` come from its rows (scanned then).
        The fit deduplicates as :func:`fit_input` does; the table's shares are shares of
        the weight.
    model : ModelConfig
        ``model:`` section with a ``sweep``.
    clock : Stopwatch
        Receives the ``bandwidth`` phase (the fits' own timings hold ``sweep_sizes``).

    Returns
    -------
    SweepOutcome
    """
    from dshift.sweep import order_bandwidths, summarize  # scikit-learn's import: for sweeps only

    sweep = model.sweep
    with clock.phase("bandwidth"):
        values = _swept_bandwidths(data.X, model, data.weights)
    bandwidths, quantiles = order_bandwidths(values, sweep.quantiles)
    logger.info("sweep: %d bandwidths from %.4g to %.4g, climbing together", len(bandwidths), bandwidths[0],
                bandwidths[-1])
    fits, rows = fit_input(data, bandwidths, model, clock, count_sizes=True)
    table, suggestion = summarize(fits, n_points=int(rows.X.shape[0]), weighted=rows.weights is not None,
                                  quantiles=quantiles)
    picked = sweep.selected()
    index = suggestion.index if picked is None else bandwidths.index(values[picked])
    if picked is not None:
        logger.info("sweep: labelling with bandwidth %.6g (model.sweep.select)", bandwidths[index])
    return SweepOutcome(fits, table, suggestion, index, sweep.select, sweep.quantiles is not None, rows)


def _swept_bandwidths(X, model: ModelConfig, weights=None) -> list[float]:
    """The sweep's bandwidths in the config's order: listed, the range's, or estimated per quantile."""
    sweep = model.sweep
    if sweep.quantiles is None:
        return sweep.values()
    n_samples = None if model.n_samples is None else min(model.n_samples, int(X.shape[0]))
    estimate = bandwidth_estimator(X, n_samples=n_samples, random_state=model.random_state,  # one sample for all
                                   sample_weight=weights)
    bandwidths = []
    for i, q in enumerate(sweep.quantiles):
        bandwidths.append(float(estimate(q)))
        if not bandwidths[-1] > 0:
            raise UserError(f"model.sweep.quantiles[{i}]: the estimate from {n_samples or X.shape[0]} sampled rows "
                            f"with quantile {q:g} is 0; raise the quantile or sweep model.sweep.bandwidths")
        if not math.isfinite(bandwidths[-1]):
            raise UserError(f"model.sweep.quantiles[{i}]: the estimate from {n_samples or X.shape[0]} sampled rows "
                            f"is {bandwidths[-1]:g}: {_TOO_FAR}; scale the feature columns or sweep "
                            "model.sweep.bandwidths")
    logger.info("bandwidth: estimated %s for quantiles %s (%s sampled rows)",
                ", ".join(f"{b:.6g}" for b in bandwidths), ", ".join(f"{q:g}" for q in sweep.quantiles),
                f"{n_samples or int(X.shape[0]):,}")
    return bandwidths



DEDUP_SAMPLE_ROWS = 100_000
"""Rows sampled by value (in the read pass) for ``model.deduplicate: auto``."""

DEDUP_MAX_DISTINCT = 0.5
"""``model.deduplicate: auto`` collapses identical rows when at most this share of the sampled
rows is distinct: the fit then handles at most half the rows (and seeds, without bin
seeding) for the price of about one pass over the data."""


def deduplicate_rows(data: InputData, model: ModelConfig,
                     decision: Optional[dict[str, Any]] = None) -> tuple[Any, Any, dict[str, Any]]:
    """The rows the fit runs on: the input's, or its distinct rows with their summed weights.

    The distinct rows keep the order of their first occurrence with bin seeding, else of
    their last, so that the fit equals the fit of every row (:mod:`dshift.dedup`).

    Parameters
    ----------
    data : InputData
        The scanned input (``scan.sample`` taken for ``auto``).
    model : ModelConfig
    decision : dict, optional
        :func:`dedup_decision`'s, when it was taken already.

    Returns
    -------
    X, weights : dask.array.Array (weights may be None)
    fields : dict
        For report.json: ``deduplication`` (setting, whether it ran, the sample) and
        ``n_rows_distinct`` (None when it did not run).
    """
    decision = decision or dedup_decision(data, model)
    if not decision["ran"]:
        return data.X, data.weights, {"deduplication": decision, "n_rows_distinct": None}
    X, weights = distributed_deduplicate(data.X, data.weights, "first" if model.bin_seeding else "last")
    logger.info("deduplicate: %s rows -> %s distinct rows (%.1f%%)", f"{data.n_rows_fit:,}", f"{X.shape[0]:,}",
                100 * X.shape[0] / data.n_rows_fit)
    return X, weights, {"deduplication": decision, "n_rows_distinct": int(X.shape[0])}


def dedup_decision(data: InputData, model: ModelConfig) -> dict[str, Any]:
    """Whether to collapse identical rows: ``model.deduplicate`` ``true`` or ``false``, or
    ``auto``: when at most :data:`DEDUP_MAX_DISTINCT` of the rows sampled by value are distinct.

    Returns
    -------
    dict
        report.json's ``deduplication``: ``setting``, ``ran`` and, for ``auto``, the sample's size
        and distinct fraction.
    """
    setting, run = model.deduplicate, model.deduplicate is True
    decision: dict[str, Any] = {"setting": setting}
    if setting == "auto":
        sample = data.scan.sample
        fraction = distinct_fraction(sample)
        run = fraction <= DEDUP_MAX_DISTINCT
        decision.update(sample_rows=len(sample), sample_distinct_fraction=round(fraction, 6))
        logger.info("deduplicate: auto: %.1f%% of %s rows sampled by value are distinct (%s %g%%): %s",
                    100 * fraction, f"{len(sample):,}", "<=" if run else ">", 100 * DEDUP_MAX_DISTINCT,
                    "collapsing identical rows" if run else "fitting every row")
    decision["ran"] = run
    return decision


def check_seed_count(n_seeds: int, source: str, model: ModelConfig, bandwidth: Optional[float]) -> None:
    """Refuse a run whose seeds exceed ``model.max_seeds``, naming the cause and the fix.

    Parameters
    ----------
    n_seeds : int
        Seeds the run would climb (a lower bound is fine: ``dshift validate`` counts a sample).
    source : str
        Where they come from (see :func:`dshift.engine.fit_many`).
    model : ModelConfig
    bandwidth : float, optional
        The bandwidth in use (for the message).

    Raises
    ------
    UserError
    """
    if n_seeds <= model.max_seeds:
        return
    if source == "points":
        cause, fix = "bin_seeding: false makes every row a seed", "set model.bin_seeding: true"
    else:
        alone = "every row in a bin of its own" if source == "lone-bins" else "that many grid bins"
        cause = (f"bin seeding with bandwidth {bandwidth:g} gives {alone}: the bandwidth is far below the "
                 "data's spread")
        fix = (f"sweep only bandwidths above {bandwidth:g} in model.sweep" if model.sweep is not None
               else "raise model.bandwidth (or set it to null to estimate it)")
    raise UserError(f"model.max_seeds: {n_seeds:,} seeds would climb, more than model.max_seeds={model.max_seeds:,} "
                    f"({cause}); {fix}, or raise model.max_seeds")


SEED_SAMPLE_ROWS = 100_000
"""Rows read to count bin seeds before a run (from the first partition)."""


def count_bins(sample: np.ndarray, bin_size: float) -> int:
    """The grid bins of finite float64 rows, as :func:`dshift.seeding.bin_table` counts them.

    NumPy on purpose: the driver of a job runs no compiled kernel otherwise, and numba's first
    load would cost it ~0.4 s before the cluster starts.
    """
    return len(np.unique(np.rint(sample / bin_size) + 0.0, axis=0))  # + 0.0: -0.0 and 0.0, one bin


def precheck_seeds(cfg: Config, source: InputSource) -> str:
    """What can be told of the seeds before reading the data set (``dshift validate``, and
    ``dshift run`` before it starts a cluster).

    Every row is a seed without bin seeding: the footers count them (an upper bound under
    row filters, so only a note then). With bin seeding and a given bandwidth, the bins of the
    first rows of the first file are counted: a lower bound on the bins, or, when every sampled
    row sits alone in its bin, a sign that every row will be a seed.

    Returns
    -------
    str
        A note for the validate report.

    Raises
    ------
    UserError
        When the run would be refused for ``model.max_seeds``.
    """
    model, rows = cfg.model, source.n_rows_input
    if not model.bin_seeding:
        if source.filters is None and source.weight_column is None and model.deduplicate is not True:
            check_seed_count(rows, "points", model, model.bandwidth)
            return f"seeds: {rows:,} (every row)"
        return (f"seeds: up to {rows:,} (every row that passes input.filters, has a weight > 0 and, with "
                "model.deduplicate, is distinct)")
    if model.sweep is None and model.bandwidth is None or model.sweep is not None and model.sweep.quantiles:
        return "seeds: grid bins, counted when the job reads the data (the bandwidth is estimated then)"
    sample = source.features.get_partition(0).head(SEED_SAMPLE_ROWS, compute=True).to_numpy(dtype=np.float64)
    if source.weight_column is not None:  # the last column: rows of weight 0 are in no bin
        sample = sample[sample[:, -1] > 0, :-1]
    sample = sample[np.isfinite(sample).all(axis=1)]
    notes = []
    for bandwidth in [model.bandwidth] if model.sweep is None else model.sweep.values():  # every swept one
        n_bins = count_bins(sample, bandwidth)
        if len(sample) > 1 and n_bins == len(sample):
            check_seed_count(rows, "lone-bins", model, bandwidth)
            notes.append(f"likely every row ({rows:,}): every sampled row is alone in its bin")
        else:
            check_seed_count(n_bins, "bins", model, bandwidth)
            notes.append(f"at least {n_bins:,} grid bins")
    sampled = f"({len(sample):,} rows sampled)"
    if model.sweep is None:
        return f"seeds: {notes[0]} {sampled}"
    return f"seeds per swept bandwidth {sampled}: " + "; ".join(
        f"{b:.4g}: {n}" for b, n in zip(model.sweep.values(), notes))
