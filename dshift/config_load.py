"""From a YAML file to a validated :class:`~dshift.config.Config`.

Files are parsed with :func:`yaml.safe_load` only, so tags that would build Python objects are
rejected, never executed. Configs are bounded: a file over :data:`MAX_CONFIG_BYTES` is refused
unread, and a document whose YAML aliases expand to more than :data:`MAX_CONFIG_VALUES` values
is refused before anything walks the expansion (an "alias bomb" of a few lines can stand for
billions of values). Every problem surfaces as :class:`~dshift.errors.ConfigError` with one
line, such as ``model.bandwidth: must be > 0 (got -1)`` or ``unknown key 'modle' (did you
mean 'model'?)``; relative local paths are made absolute, so the config means the same thing
to workers running elsewhere.
"""

from __future__ import annotations

import os
from typing import Any, Union

from pydantic import ValidationError

from dshift.config import Config
from dshift.config_text import (MAX_CONFIG_BYTES, MAX_CONFIG_VALUES, check_expanded_size,
                                format_validation_error as _format_error, kind_of, read_yaml_file)
from dshift.errors import ConfigError

__all__ = ["load_config", "parse_config", "is_url", "absolute_path", "format_validation_error",
           "MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES"]


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
        raise ConfigError(f"{source}: expected a mapping of sections (input, model, ...) at the top level, got {kind_of(data)}")
    check_expanded_size(data, source)
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
        If the file is missing, not a regular file (a named pipe is refused unread) or larger
        than :data:`MAX_CONFIG_BYTES`, is not valid YAML (the message names the file and line),
        uses Python object tags, repeats a key in a mapping (the key and both lines named),
        expands to more than :data:`MAX_CONFIG_VALUES` values through its aliases, or does not
        match the schema.
    """
    return parse_config(read_yaml_file(path), source=str(path))


def format_validation_error(exc: ValidationError) -> str:
    """One line for a ValidationError of :class:`Config` or one of its sections (see
    :func:`dshift.config_text.format_validation_error`)."""
    return _format_error(exc, Config)
