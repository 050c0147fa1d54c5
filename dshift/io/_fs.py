"""fsspec helpers shared by the input and output sides."""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dshift.errors import UserError

#: Characters that make a path a glob pattern (as in fsspec).
GLOB_CHARS = "*?["


def has_glob(path: str) -> bool:
    """Whether ``path`` is a glob pattern."""
    return any(c in path for c in GLOB_CHARS)


def glob_base(path: str) -> str:
    """The directory holding a glob pattern's first wildcard (``/d/x=*/*.pq`` -> ``/d``)."""
    first = min(path.find(c) for c in GLOB_CHARS if c in path)
    return path[:first].rsplit("/", 1)[0]


def show_path(fs: Any, path: str) -> str:
    """A path of ``fs`` (its own form) as the user would write it: a URL but for local files."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def url_to_fs(url: str, storage_options: dict, what: str) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs``, with a bad URL or a missing protocol package as UserError.

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    storage_options : dict
        Passed to fsspec.
    what : str
        Name of the setting, for messages.

    Returns
    -------
    fs : fsspec.AbstractFileSystem
    path : str
        ``url`` in the file system's own path form.
    """
    try:
        return fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as exc:
        raise UserError(f"{what}: cannot open {url!r}: {exc} (install the package for this protocol)") from None
    except (ValueError, TypeError, OSError) as exc:  # OSError: e.g. HDFS without a JVM
        raise UserError(f"{what}: cannot open {url!r}: {exc}") from None
