"""Configuration schema of the dshift batch tool (``dshift run CONFIG.yaml``).

The schema is a tree of strict pydantic models: every mapping rejects unknown keys, a
string is never coerced to a number and booleans must be real YAML booleans. Files are
parsed with :func:`yaml.safe_load` only, so tags that would build Python objects are
rejected, never executed.

All problems surface as :class:`~dshift.errors.ConfigError` with a one-line message such as
``model.bandwidth: must be > 0 (got -1)`` or ``unknown key 'modle' (did you mean 'model'?)``.
Configs are bounded: a file over :data:`MAX_CONFIG_BYTES` is refused unread, a document whose
YAML aliases expand to more than :data:`MAX_CONFIG_VALUES` values is refused before anything
walks the expansion (an "alias bomb" of a few lines can stand for billions of values), and
messages quote at most :data:`MAX_ECHO` characters of an offending value.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    "load_config",
    "parse_config",
    "is_url",
    "absolute_path",
    "format_validation_error",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_ECHO",
]

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a job config is a few hundred bytes
MAX_CONFIG_VALUES = 100_000  # values in the document with its aliases expanded
MAX_ECHO = 80  # characters of an offending value quoted in a message

_ADDRESS_RE = re.compile(r"^(tcp|tls|ws|wss|ucx|inproc)://\S+$")
# PyYAML (YAML 1.1) reads "1e-3" as a string: recognise it to give a helpful hint.
_FLOATISH_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


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
    raise ValueError(f"must be auto, true or false (got {_show(value)})")


def _check_column_list(value: Optional[list[str]], when_null: str) -> Optional[list[str]]:
    if value is None:
        return value
    if not value:
        raise ValueError(f"must list at least one column (or be null {when_null})")
    dupes = sorted(c for c, n in Counter(value).items() if n > 1)  # linear: configs may be wide
    if dupes:
        raise ValueError(f"lists {_excerpt(', '.join(map(repr, dupes)))} more than once")
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

_SweptBandwidth = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_SweptQuantile = Annotated[float, Field(gt=0, le=1)]


class SweepRangeConfig(_Strict):
    """``model.sweep.range:`` — ``num`` bandwidths from ``min`` to ``max``, evenly spaced on a log scale."""

    min: float = Field(gt=0, allow_inf_nan=False)
    max: float = Field(gt=0, allow_inf_nan=False)
    num: int = Field(ge=2, le=MAX_SWEEP)

    @model_validator(mode="after")
    def _increasing(self) -> "SweepRangeConfig":
        if not self.min < self.max:
            raise ValueError(f"min must be < max (got min {_show(self.min)}, max {_show(self.max)})")
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
            raise ValueError(f"lists {_excerpt(', '.join(map(_show, dupes)))} more than once")
        return value

    @field_validator("select")
    @classmethod
    def _select_ok(cls, value: Any, info: ValidationInfo) -> Union[str, float]:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be auto or one of the swept values (got {_show(value)})")
        kinds = [k for k in ("bandwidths", "quantiles", "range") if info.data.get(k) is not None]
        if len(kinds) == 1:  # else the sweep itself is wrong, and says so
            values = _swept_values(info.data[kinds[0]])
            if _match(value, values) is None:
                what = "quantiles" if kinds[0] == "quantiles" else "swept bandwidths"
                raise ValueError(f"{_show(value)} is not one of the {what} "
                                 f"({_excerpt(', '.join(f'{v:.10g}' for v in values), 4 * MAX_ECHO)}); "
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

    bandwidth: Optional[float] = Field(None, gt=0)
    quantile: float = Field(0.3, ge=0, le=1)
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
    connect_timeout: float = Field(30, gt=0)
    # Dask waits for workers forever; a batch job fails after this long without any (null: wait).
    no_workers_timeout: Optional[float] = Field(120, gt=0)

    @field_validator("address")
    @classmethod
    def _address_ok(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _ADDRESS_RE.match(value):
            raise ValueError(
                f"must look like tcp://host:port or tls://host:port, or be null for a local "
                f"cluster (got {_show(value)})"
            )
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit_ok(cls, value: Any) -> Any:
        if value is None or value == "auto":
            return value
        if isinstance(value, bool):
            raise ValueError(f"must be 'auto', a size like '4GiB', a number of bytes or null (got {_show(value)})")
        if isinstance(value, (int, float)):
            if value < 0:
                raise ValueError(f"must be >= 0 (got {_show(value)})")
            return value
        if isinstance(value, str):
            from dask.utils import parse_bytes

            try:
                parse_bytes(value)
            except (ValueError, TypeError):
                raise ValueError(f"is not a memory size like '4GiB' (got {_show(value)})") from None
            return value
        raise ValueError(f"must be 'auto', a size like '4GiB', a number of bytes or null (got {_show(value)})")

    _persist_ok = field_validator("persist")(_check_auto_or_bool)

    @field_validator("dashboard")
    @classmethod
    def _dashboard_ok(cls, value: Any) -> Union[bool, int]:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and 0 <= value <= 65535:
            return value
        raise ValueError(f"must be true, false or a port number 0-65535 (got {_show(value)})")

    @model_validator(mode="after")
    def _tls_needs_tls_address(self) -> "ClusterConfig":
        if self.tls.enabled and not (self.address or "").startswith("tls://"):
            raise ValueError("tls files are set but cluster.address is not a tls:// address")
        return self


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
    centers: list[list[float]] = Field(default_factory=lambda: [list(c) for c in _DEMO_CENTERS])
    std: float = Field(2.79, gt=0)
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
                f"output.label_column {_show(self.output.label_column)} is also a feature column in input.columns"
            )
        return self


# --------------------------------------------------------------------------------------------
# Loading


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL of a non-local file system (``s3://…``).

    Parameters
    ----------
    path : str
        A path or URL.

    Returns
    -------
    bool
    """
    return "://" in path and not path.startswith("file://")


def absolute_path(path: str) -> str:
    """Resolve a local path against the current directory (workers may run elsewhere)."""
    if is_url(path):
        return path
    if path.startswith("file://"):
        path = path[len("file://"):]
    return os.path.abspath(os.path.expanduser(path))


def parse_config(data: Any, *, source: str = "config") -> Config:
    """Validate a parsed YAML document against the schema.

    Relative local paths (input, output, TLS files) are resolved against the current working
    directory, so the config means the same thing to workers running elsewhere.

    Parameters
    ----------
    data : Any
        The document, normally a mapping from :func:`yaml.safe_load`.
    source : str
        Name of the document for messages (the file name).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        With a one-line message naming the first offending key(s); also when the document holds
        more than :data:`MAX_CONFIG_VALUES` values (shared parts counted each time they occur).
    """
    if data is None:
        raise ConfigError(f"{source}: the file is empty; it needs at least input.path and output.path")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (input, model, ...) at the top level, got {_kind(data)}")
    _check_expanded_size(data, source)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    cfg.input.path = absolute_path(cfg.input.path)
    cfg.output.path = absolute_path(cfg.output.path)
    tls = cfg.cluster.tls
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, name)
        if value is not None:
            setattr(tls, name, absolute_path(value))
    return cfg


def load_config(path: Union[str, os.PathLike]) -> Config:
    """Read and validate a YAML config file.

    Parameters
    ----------
    path : str or path-like
        The YAML file.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        If the file is missing or larger than :data:`MAX_CONFIG_BYTES`, is not valid YAML (the
        message names the file and line), uses Python object tags, expands to more than
        :data:`MAX_CONFIG_VALUES` values through its aliases, or does not match the schema.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)  # not stat(): a FIFO or /dev/zero has no size
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file '{path}' is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the file is larger than {MAX_CONFIG_BYTES >> 20} MiB; a job config is a few "
                          "hundred bytes (is this the right file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file '{path}': not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except _TooLarge as exc:
        raise ConfigError(f"{path}{_where(exc)}: {exc.problem}") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"{path}{_where(exc)}: {_constructor_problem(exc)}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise ConfigError(f"{path}{_where(exc)}: invalid YAML: {_excerpt(detail)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    return parse_config(data, source=str(path))


class _TooLarge(yaml.YAMLError):
    """A mapping whose merge keys (``<<: *anchor``) expand beyond MAX_CONFIG_VALUES entries."""

    def __init__(self, node: yaml.Node) -> None:
        super().__init__()
        self.problem_mark = node.start_mark
        self.problem = (f"too large: merge keys ('<<') expand this mapping beyond {MAX_CONFIG_VALUES:,} entries "
                        f"(at most {MAX_CONFIG_VALUES:,} values are accepted)")


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, with merge keys bounded while they are expanded.

    Plain aliases share one constructed object per anchor (cheap to load; their expansion is
    measured afterwards by :func:`_check_expanded_size`), but merge keys copy entries into each
    mapping as it is built, so nested merges could grow exponentially during loading.
    """

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)
        if len(node.value) > MAX_CONFIG_VALUES:
            raise _TooLarge(node)


def _expanded_sizes(data: Any) -> Optional[dict[int, int]]:
    """Scalars (and keys) in every list/mapping of ``data``, shared (aliased) parts counted each time.

    Linear in the number of distinct containers, however large the expansion. Returns
    ``{id(container): size}``, or None if a container contains itself (a recursive alias).
    """
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()  # containers on the current path
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        obj, finished = stack.pop()
        children = list(obj.values()) if isinstance(obj, dict) else obj
        key = id(obj)
        if finished:
            # scalars count 1, and so do the keys of a mapping
            own = len(obj) if isinstance(obj, dict) else 0
            sizes[key] = own + sum(sizes[id(c)] if isinstance(c, (list, dict)) else 1 for c in children)
            open_ids.discard(key)
        elif key in open_ids:
            return None
        elif key not in sizes:
            open_ids.add(key)
            stack.append((obj, True))
            stack.extend((c, False) for c in children if isinstance(c, (list, dict)))
    return sizes


def _check_expanded_size(data: dict, source: str) -> None:
    """Refuse a document with more than MAX_CONFIG_VALUES values once its aliases are expanded,
    naming the deepest key whose value alone is too large."""
    sizes = _expanded_sizes(data)
    if sizes is not None and sizes[id(data)] <= MAX_CONFIG_VALUES:
        return
    loc: list[Any] = []
    node: Any = data
    seen: set[int] = set()
    while isinstance(node, dict) and id(node) not in seen:
        seen.add(id(node))
        # follow a value that is alone too large (or recursive) down to the key that holds it
        if sizes is None:
            big = [k for k, v in node.items() if isinstance(v, (list, dict)) and _expanded_sizes(v) is None]
        else:  # the largest (the last of equals: anchors tend to come before their use)
            big = sorted((sizes[id(v)], i, k) for i, (k, v) in enumerate(node.items())
                         if isinstance(v, (list, dict)) and sizes[id(v)] > MAX_CONFIG_VALUES)
            big = [k for *_, k in big[-1:]]
        if not big:
            break
        loc.append(big[0])
        node = node[big[0]]
    where = _excerpt(_dotted(tuple(loc))) if loc else source
    if sizes is None:
        raise ConfigError(f"{where}: a YAML alias refers to the value that contains it (an endless value)")
    raise ConfigError(f"{where}: too large: {sizes[id(node)]:,} values once YAML aliases are expanded "
                      f"(at most {MAX_CONFIG_VALUES:,} are accepted)")


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f": line {mark.line + 1}, column {mark.column + 1}"


def _constructor_problem(exc: yaml.constructor.ConstructorError) -> str:
    problem = exc.problem or str(exc)
    tag = re.search(r"tag '([^']+)'", problem)
    if tag:
        shown = _excerpt(tag.group(1).replace("tag:yaml.org,2002:", "!!"))
        return f"YAML tag '{shown}' is not allowed (only plain YAML values are accepted)"
    return _excerpt(problem)


# --------------------------------------------------------------------------------------------
# Error formatting


def _show(value: Any) -> str:
    """Show a config value the way the user wrote it in YAML, at most MAX_ECHO characters."""
    return _excerpt(_render(value, MAX_ECHO + 1))


def _render(value: Any, budget: int) -> str:
    """``value`` as YAML-ish text, stopping once ``budget`` characters are produced: a value may
    stand for billions of items (aliases), so it is never serialised whole."""
    if isinstance(value, str):
        return repr(value[:budget])
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    if isinstance(value, (list, dict)):
        items = value.items() if isinstance(value, dict) else value
        text = "{" if isinstance(value, dict) else "["
        for item in items:
            if len(text) > budget:
                break
            if isinstance(value, dict):
                key, item = item
                text += json.dumps(str(key)[:budget]) + ": "
            text += (json.dumps(item[:budget]) if isinstance(item, str) else _render(item, budget - len(text))) + ", "
        return text.removesuffix(", ") + ("}" if isinstance(value, dict) else "]")
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _excerpt(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, with "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _section_model(loc: tuple) -> Optional[type[BaseModel]]:
    """The model class that holds the mapping at ``loc`` (for 'did you mean')."""
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model


def _unknown_key_message(loc: tuple) -> str:
    key = str(loc[-1])
    shown = _excerpt(_dotted(loc))
    model = _section_model(loc[:-1])
    if model is None:
        return f"unknown key '{shown}'"
    known = list(model.model_fields)
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    prefix = _dotted(loc[:-1])
    if near:
        suggestion = f"{prefix}.{near[0]}" if prefix else near[0]
        return f"unknown key '{shown}' (did you mean '{suggestion}'?)"
    where = f"in {prefix}" if prefix else "at the top level"
    return f"unknown key '{shown}' (valid keys {where}: {', '.join(known)})"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _error_message(err: dict) -> str:
    """One pydantic error → ``key: what is wrong (got X)``."""
    loc = tuple(err.get("loc", ()))
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc)
    where = _dotted(loc) or "config"
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = f" (got {_show(value)})"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "value_error":
        msg = str(ctx.get("error", err.get("msg", "")))
        return f"{_dotted(loc)}: {msg}" if loc else msg
    if kind in ("float_type", "int_type", "bool_type", "string_type", "list_type", "dict_type", "model_type"):
        wanted = {
            "float_type": "a number",
            "int_type": "an integer",
            "bool_type": "true or false",
            "string_type": "a string",
            "list_type": "a list",
            "dict_type": "a mapping",
            "model_type": "a mapping",
        }[kind]
        hint = ""
        if kind == "float_type" and isinstance(value, str) and _FLOATISH_RE.match(value.strip()):
            hint = "; YAML reads numbers like 1e-3 as text, write 1.0e-3"
        elif kind == "bool_type" and isinstance(value, str):
            hint = "; write true or false without quotes"
        return f"{where}: must be {wanted}, not {_kind(value)}{got[:-1]}{hint})"
    bounds = {
        "greater_than": (">", "gt"),
        "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"),
        "less_than_equal": ("<=", "le"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"{where}: must be {op} {_number(ctx.get(key))}{got}"
    if kind == "finite_number":
        return f"{where}: must be a finite number{got}"
    if kind == "literal_error":
        return f"{where}: must be one of {ctx.get('expected', '')}{got}"
    if kind in ("too_short", "too_long"):
        return f"{where}: {err.get('msg', kind).lower()}{got}"
    return f"{where}: {err.get('msg', kind)}{got}"


def format_validation_error(exc: ValidationError) -> str:
    """One line for a pydantic ValidationError: up to three ``key: problem`` messages."""
    messages: list[str] = []
    for err in exc.errors(include_url=False):
        msg = _error_message(err)
        if msg not in messages:
            messages.append(msg)
    shown = "; ".join(messages[:3])
    if len(messages) > 3:
        shown += f"; and {len(messages) - 3} more"
    return shown
