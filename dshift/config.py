"""Configuration schema of the dshift batch tool (``dshift run CONFIG.yaml``).

The schema is a tree of strict pydantic models: every mapping rejects unknown keys, a
string is never coerced to a number and booleans must be real YAML booleans. Files are
parsed with :func:`yaml.safe_load` only, so tags that would build Python objects are
rejected, never executed.

All problems surface as :class:`~dshift.errors.ConfigError` with a one-line message such as
``model.bandwidth: must be > 0 (got -1)`` or ``unknown key 'modle' (did you mean 'model'?)``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dshift.errors import ConfigError, UserError

__all__ = [
    "Config",
    "InputConfig",
    "ModelConfig",
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
]

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


def _check_column_list(value: Optional[list[str]], when_null: str) -> Optional[list[str]]:
    if value is None:
        return value
    if not value:
        raise ValueError(f"must list at least one column (or be null {when_null})")
    dupes = sorted({c for c in value if value.count(c) > 1})
    if dupes:
        raise ValueError(f"lists {', '.join(map(repr, dupes))} more than once")
    return value


class InputConfig(_Strict):
    """``input:`` — where the data is and which columns are the features."""

    path: str
    columns: Optional[list[str]] = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    nan_policy: Literal["error", "drop"] = "error"
    # [[column, op, value], ...] (AND) or a list of such lists (OR), as Dask/pyarrow take them.
    filters: Optional[list[Any]] = None

    _path_nonempty = field_validator("path")(_check_nonempty)

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

    @field_validator("persist")
    @classmethod
    def _persist_ok(cls, value: Any) -> Union[str, bool]:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"must be auto, true or false (got {_show(value)})")

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
                f"output.label_column {self.output.label_column!r} is also a feature column in input.columns"
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
        With a one-line message naming the first offending key(s).
    """
    if data is None:
        raise ConfigError(f"{source}: the file is empty; it needs at least input.path and output.path")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (input, model, ...) at the top level, got {_kind(data)}")
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
        If the file is missing, is not valid YAML (the message names the file and line), uses
        Python object tags, or does not match the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file '{path}' is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"{path}{_where(exc)}: {_constructor_problem(exc)}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise ConfigError(f"{path}{_where(exc)}: invalid YAML: {detail}") from None
    return parse_config(data, source=str(path))


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f": line {mark.line + 1}, column {mark.column + 1}"


def _constructor_problem(exc: yaml.constructor.ConstructorError) -> str:
    problem = exc.problem or str(exc)
    tag = re.search(r"tag '([^']+)'", problem)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"YAML tag '{shown}' is not allowed (only plain YAML values are accepted)"
    return problem


# --------------------------------------------------------------------------------------------
# Error formatting


def _show(value: Any) -> str:
    """Show a config value the way the user wrote it in YAML."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


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
    shown = _dotted(loc)
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
