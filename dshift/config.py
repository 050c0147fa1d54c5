"""Configuration schema of the dshift batch tool (``dshift run CONFIG.yaml``).

The schema is a tree of strict pydantic models, one per section: every mapping rejects
unknown keys, a string is never coerced to a number and booleans must be real YAML booleans.
:mod:`dshift.config_load` reads a file into a :class:`Config` (bounded, ``yaml.safe_load``
only, every problem one line such as ``model.bandwidth: must be > 0 (got -1)``);
:mod:`dshift.config_text` words the messages.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dshift.config_text import MAX_ECHO, excerpt, show_value
from dshift.errors import ConfigError, UserError

__all__ = [
    "Config",
    "InputConfig",
    "ModelConfig",
    "SweepConfig",
    "SweepRangeConfig",
    "ClusterConfig",
    "TLSConfig",
    "OutputConfig",
    "PlotConfig",
    "DemoConfig",
]


_ADDRESS_RE = re.compile(r"^(tcp|tls|ws|wss|ucx|inproc)://\S+$")
# PyYAML (YAML 1.1) reads "1e-3" as a string: recognise it to give a helpful hint.

_Finite = Annotated[float, Field(allow_inf_nan=False)]
"""Every float setting: YAML's .inf and .nan are numbers, but no setting means anything by them
(an infinite bandwidth or timeout would only fail at the end, e.g. writing model.json)."""

MAX_THREADS_PER_CPU = 4
"""A local cluster may run at most this many worker threads (``n_workers * threads_per_worker``)
per CPU of the machine. The job is CPU-bound, so more only costs start-up time and memory: each
worker process takes about a second to start on a busy machine (100 took 110 s on 2 CPUs) and
some 300 MiB; a bigger cluster is an existing scheduler's (``cluster.address``)."""

MIN_WORKER_MEMORY = 512 * 2**20
"""The smallest ``cluster.memory_limit`` (bytes per worker) of a local cluster. A warm worker
holds about 300 MiB before any data (Python, Dask, pandas, pyarrow, the compiled kernels), and
distributed pauses a worker at 80 % of its limit and restarts it at 95 %: with 250 MiB a job
stalled with its worker paused, with 150 MiB its workers "kept dying"."""


class _Strict(BaseModel):
    """Base of every config section: unknown keys and type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


def _check_nonempty(value: str, what: str = "must not be empty") -> str:
    if not value.strip():
        raise ValueError(what)
    return value


def _check_auto_or_bool(value: Any) -> Union[str, bool]:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"must be auto, true or false (got {show_value(value)})")


def _check_column_list(value: Optional[list[str]], when_null: str) -> Optional[list[str]]:
    if value is None:
        return value
    if not value:
        raise ValueError(f"must list at least one column (or be null {when_null})")
    dupes = sorted(c for c, n in Counter(value).items() if n > 1)  # linear: configs may be wide
    if dupes:
        raise ValueError(f"lists {excerpt(', '.join(map(repr, dupes)))} more than once")
    return value


class InputConfig(_Strict):
    """``input:`` — where the data is and which columns are the features."""

    path: str
    columns: Optional[list[str]] = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    nan_policy: Literal["error", "drop"] = "error"
    # [[column, op, value], ...] (AND) or a list of such lists (OR), as Dask/pyarrow take them.
    filters: Optional[list[Any]] = None
    # A numeric column of row weights (a row of weight w counts as w rows); never a feature.
    weight_column: Optional[str] = None

    _path_nonempty = field_validator("path")(_check_nonempty)

    @field_validator("weight_column")
    @classmethod
    def _weight_column_ok(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else _check_nonempty(value)

    @field_validator("columns")
    @classmethod
    def _columns_ok(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        return _check_column_list(value, "for every numeric column")

    @field_validator("filters")
    @classmethod
    def _filters_ok(cls, value: Optional[list[Any]]) -> Optional[list[Any]]:
        from dshift.io.filters import check_filters

        try:
            return check_filters(value, "input.filters")
        except UserError as exc:
            # Not a ValueError, so pydantic lets it through: the message keeps the term's index
            # (input.filters[1]) that pydantic's location would not have.
            raise ConfigError(exc.message) from None


MAX_SWEEP = 64
"""Bandwidths a sweep may hold: each adds a bin table to the first pass and climbs to every pass."""

SWEEP_MATCH = 1e-9
"""``model.sweep.select`` names a swept value when within this relative distance of it."""

_SweptBandwidth = Annotated[_Finite, Field(gt=0)]
_SweptQuantile = Annotated[_Finite, Field(gt=0, le=1)]


class SweepRangeConfig(_Strict):
    """``model.sweep.range:`` — ``num`` bandwidths from ``min`` to ``max``, evenly spaced on a log scale."""

    min: _Finite = Field(gt=0)
    max: _Finite = Field(gt=0)
    num: int = Field(ge=2, le=MAX_SWEEP)

    @model_validator(mode="after")
    def _increasing(self) -> "SweepRangeConfig":
        if not self.min < self.max:
            raise ValueError(f"min must be < max (got min {show_value(self.min)}, max {show_value(self.max)})")
        return self

    def values(self) -> list[float]:
        """``min * (max / min) ** (i / (num - 1))`` for i = 0 .. num - 1, the ends exactly ``min`` and ``max``."""
        ratio = self.max / self.min
        return [self.min * ratio ** (i / (self.num - 1)) for i in range(self.num - 1)] + [self.max]


class SweepConfig(_Strict):
    """``model.sweep:`` — several bandwidths in one job, instead of ``model.bandwidth``.

    Exactly one of ``bandwidths``, ``quantiles`` (each estimated as ``model.bandwidth: null`` would
    be, with ``model.n_samples`` and ``model.random_state``) and ``range``; ``select`` is ``auto``
    (the rule of :func:`dshift.sweep.select_bandwidth`) or the swept value to label with: one of
    the bandwidths (or the range's values), or of the quantiles, within :data:`SWEEP_MATCH`.
    """

    bandwidths: Optional[list[_SweptBandwidth]] = None
    quantiles: Optional[list[_SweptQuantile]] = None
    range: Optional[SweepRangeConfig] = None
    select: Any = "auto"

    @field_validator("bandwidths", "quantiles")
    @classmethod
    def _list_ok(cls, value: Optional[list[float]]) -> Optional[list[float]]:
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError(f"must list at least 2 values, got {len(value)} (for one bandwidth set model.bandwidth)")
        if len(value) > MAX_SWEEP:
            raise ValueError(f"lists {len(value):,} values; a sweep takes at most {MAX_SWEEP}")
        dupes = sorted(v for v, n in Counter(value).items() if n > 1)
        if dupes:
            raise ValueError(f"lists {excerpt(', '.join(map(show_value, dupes)))} more than once")
        return value

    @field_validator("select")
    @classmethod
    def _select_ok(cls, value: Any, info: ValidationInfo) -> Union[str, float]:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be auto or one of the swept values (got {show_value(value)})")
        kinds = [k for k in ("bandwidths", "quantiles", "range") if info.data.get(k) is not None]
        if len(kinds) == 1:  # else the sweep itself is wrong, and says so
            values = _swept_values(info.data[kinds[0]])
            if _match(value, values) is None:
                what = "quantiles" if kinds[0] == "quantiles" else "swept bandwidths"
                raise ValueError(f"{show_value(value)} is not one of the {what} "
                                 f"({excerpt(', '.join(f'{v:.10g}' for v in values), 4 * MAX_ECHO)}); "
                                 "use one of them or auto")
        return float(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> "SweepConfig":
        given = [k for k in ("bandwidths", "quantiles", "range") if getattr(self, k) is not None]
        if len(given) != 1:
            got = f" (got {' and '.join(given)})" if given else ""
            raise ValueError(f"set exactly one of bandwidths, quantiles and range{got}")
        return self

    def values(self) -> list[float]:
        """The swept values as configured: bandwidths (a list or the range's), or quantiles."""
        return _swept_values(self.quantiles if self.quantiles is not None else self.bandwidths
                             if self.bandwidths is not None else self.range)

    def selected(self) -> Optional[int]:
        """Index in :meth:`values` of ``select``, None for ``auto``."""
        return None if self.select == "auto" else _match(self.select, self.values())


def _swept_values(spec: Union[list[float], SweepRangeConfig]) -> list[float]:
    return spec.values() if isinstance(spec, SweepRangeConfig) else list(spec)


def _match(value: float, values: list[float]) -> Optional[int]:
    """Index of the value within :data:`SWEEP_MATCH` relative of ``value`` (None if none)."""
    return next((i for i, v in enumerate(values) if abs(v - value) <= SWEEP_MATCH * abs(v)), None)


class ModelConfig(_Strict):
    """``model:`` — MeanShift's parameters (same names and defaults) plus the bandwidth estimate."""

    bandwidth: Optional[_Finite] = Field(None, gt=0)
    quantile: _Finite = Field(0.3, ge=0, le=1)
    n_samples: Optional[int] = Field(10000, ge=1)
    random_state: Optional[int] = 0
    bin_seeding: bool = False
    min_bin_freq: int = Field(1, ge=1)
    cluster_all: bool = True
    max_iter: int = Field(300, ge=0)
    # Batch runs only (the library never refuses): every seed is a climb, so a run with more
    # seeds than this is refused before any shifting. A million seeds (every row of a
    # million-row data set) take a couple of minutes on 2 cores; far more usually means
    # bin_seeding: false on big data or a bandwidth far too small.
    max_seeds: int = Field(1_000_000, ge=1)
    # Collapse identical feature rows into one weighted row before the fit (same results):
    # auto decides from a sample of the rows, true / false force it.
    deduplicate: Any = "auto"
    # Several bandwidths in one job (sweep.csv, sweep.png), the selected one labelled.
    sweep: Optional[SweepConfig] = None

    _deduplicate_ok = field_validator("deduplicate")(_check_auto_or_bool)

    @model_validator(mode="after")
    def _sweep_or_bandwidth(self) -> "ModelConfig":
        if self.sweep is not None and self.bandwidth is not None:
            raise ValueError("set model.bandwidth or model.sweep, not both")
        if self.sweep is not None and "quantile" in self.model_fields_set:
            raise ValueError("model.quantile does not apply to a sweep; list the quantiles in model.sweep.quantiles")
        return self


class TLSConfig(_Strict):
    """``cluster.tls:`` — client certificates for a ``tls://`` scheduler."""

    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None

    @property
    def enabled(self) -> bool:
        """Whether any TLS file is configured."""
        return any((self.ca_file, self.cert_file, self.key_file))


class ClusterConfig(_Strict):
    """``cluster:`` — a LocalCluster (address null) or an existing scheduler."""

    address: Optional[str] = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    # str ("auto", "4GiB"), bytes (int), fraction of RAM (float), or null for no limit.
    memory_limit: Any = "auto"
    persist: Any = "auto"
    dashboard: Any = False
    tls: TLSConfig = Field(default_factory=TLSConfig)
    connect_timeout: _Finite = Field(30, gt=0)
    # Dask waits for workers forever; a batch job fails after this long without any (null: wait).
    no_workers_timeout: Optional[_Finite] = Field(120, gt=0)

    @field_validator("address")
    @classmethod
    def _address_ok(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _ADDRESS_RE.match(value):
            raise ValueError(
                f"must look like tcp://host:port or tls://host:port, or be null for a local "
                f"cluster (got {show_value(value)})"
            )
        return value

    @field_validator("n_workers", "threads_per_worker")
    @classmethod
    def _fits_this_machine(cls, value: int, info: ValidationInfo) -> int:
        # Fields validate in order: n_workers is checked alone (threads_per_worker not read yet),
        # then threads_per_worker with it; absent from info.data when it failed itself.
        workers = value if info.field_name == "n_workers" else info.data.get("n_workers")
        if info.data.get("address", "") is not None or workers is None:
            return value  # an existing scheduler's workers are not started here
        threads = value * (workers if info.field_name == "threads_per_worker" else 1)
        from dask.system import CPU_COUNT  # what LocalCluster counts: affinity and cgroup quota

        bound = MAX_THREADS_PER_CPU * CPU_COUNT
        if threads > bound:
            what = (f"{workers:,} worker processes" if info.field_name == "n_workers"
                    else f"{workers:,} workers x {value:,} threads")
            raise ValueError(f"{what} are too many for a local cluster on this machine's {CPU_COUNT} CPUs (at most "
                             f"{bound} threads, {MAX_THREADS_PER_CPU} per CPU); use fewer, or cluster.address "
                             "(an existing scheduler) for a bigger cluster")
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit_ok(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or value == "auto":
            return value
        size, fraction = _memory_limit_bytes(value)
        if 0 < size < MIN_WORKER_MEMORY and info.data.get("address", "") is None:
            from dask.utils import format_bytes

            what = f"of this machine's memory is {format_bytes(size)} per worker," if fraction else "per worker is"
            raise ValueError(f"{show_value(value)} {what} too small: a worker needs at least "
                             f"{MIN_WORKER_MEMORY >> 20} MiB (about 300 MiB before it holds any data); "
                             "set a larger size, auto, or null for no limit")
        return value

    _persist_ok = field_validator("persist")(_check_auto_or_bool)

    @field_validator("dashboard")
    @classmethod
    def _dashboard_ok(cls, value: Any) -> Union[bool, int]:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and 0 <= value <= 65535:
            return value
        raise ValueError(f"must be true, false or a port number 0-65535 (got {show_value(value)})")

    @model_validator(mode="after")
    def _tls_needs_tls_address(self) -> "ClusterConfig":
        if self.tls.enabled and not (self.address or "").startswith("tls://"):
            raise ValueError("tls files are set but cluster.address is not a tls:// address")
        return self


def _memory_limit_bytes(value: Any) -> tuple[int, bool]:
    """The bytes per worker distributed makes of an explicit ``cluster.memory_limit`` (0: no
    limit), and whether the value was a fraction of the machine's memory.

    As distributed's ``parse_memory_limit``: a number, or a string that reads as one, is a
    fraction of the memory when at most 1 and bytes otherwise; other strings are sizes.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be 'auto', a size like '4GiB', a number of bytes or null (got {show_value(value)})")
    number: Optional[float] = None
    try:
        size = number = float(value)
    except OverflowError:  # an integer beyond any float
        size = number = math.inf
    except ValueError:  # not a number: a size such as "4GiB"
        from dask.utils import parse_bytes

        try:
            size = parse_bytes(value)
        except (ValueError, TypeError, OverflowError):  # OverflowError: "1e400MiB"
            raise ValueError(f"is not a memory size like '4GiB' (got {show_value(value)})") from None
    if not math.isfinite(size):
        raise ValueError(f"must be a finite number (got {show_value(value)})")
    fraction = number is not None and 0 < number <= 1
    if fraction:
        from distributed.system import MEMORY_LIMIT  # imports distributed: only for a fraction

        size *= MEMORY_LIMIT
    if size < 0:
        raise ValueError(f"must be >= 0 (got {show_value(value)})")
    return int(size), fraction


class OutputConfig(_Strict):
    """``output:`` — the output directory (local path or fsspec URL)."""

    path: str
    label_column: str = "cluster"
    overwrite: bool = False
    storage_options: dict[str, Any] = Field(default_factory=dict)
    partition_by: Optional[list[str]] = None

    _path_nonempty = field_validator("path", "label_column")(_check_nonempty)

    @field_validator("partition_by")
    @classmethod
    def _partition_by_ok(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        return _check_column_list(value, "for one file per input partition")


class PlotConfig(_Strict):
    """``plot:`` — the clusters.png scatter plot; ``plot: null`` skips it."""

    x: Optional[str] = None
    y: Optional[str] = None
    sample: int = Field(20000, ge=1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> "PlotConfig":
        if (self.x is None) != (self.y is None):
            raise ValueError("set both plot.x and plot.y, or neither")
        return self


_DEMO_CENTERS = [[27.0, 72.0, 91.0], [36.0, 90.0, 99.0], [9.0, 81.0, 99.0]]


class DemoConfig(_Strict):
    """``demo:`` — synthetic blobs written to ``input.path`` when it does not exist."""

    rows: int = Field(1_000_000, ge=1)
    centers: list[list[_Finite]] = Field(default_factory=lambda: [list(c) for c in _DEMO_CENTERS])
    std: _Finite = Field(2.79, gt=0)
    seed: int = 0
    files: int = Field(8, ge=1)

    @field_validator("centers")
    @classmethod
    def _centers_ok(cls, value: list[list[float]]) -> list[list[float]]:
        if not value or not value[0]:
            raise ValueError("must list at least one center with at least one coordinate")
        if len({len(c) for c in value}) != 1:
            raise ValueError("all centers must have the same number of coordinates")
        return value


class Config(_Strict):
    """The whole ``dshift run`` configuration."""

    input: InputConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    output: OutputConfig
    plot: Optional[PlotConfig] = Field(default_factory=PlotConfig)
    demo: Optional[DemoConfig] = None

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        if self.input.columns and self.output.label_column in self.input.columns:
            raise ValueError(
                f"output.label_column {show_value(self.output.label_column)} is also a feature column in input.columns"
            )
        return self
