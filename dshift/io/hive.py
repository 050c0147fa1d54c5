"""Hive partition keys: ``key=value`` directories as columns, read from paths and written back.

``trips/year=2024/city=nyc/part-0.parquet`` gives the file the columns ``year`` (2024) and
``city`` ("nyc"). Keys are parsed from the directories below the data set's base directory,
with pyarrow's rules (the value is URI-decoded, ``__HIVE_DEFAULT_PARTITION__`` is null) and
typed as pyarrow infers them: int32 when every value is an integer, otherwise a dictionary
of strings (a pandas categorical). Types come from the paths of *every* listed file, so they
do not depend on which files a filter keeps, and no file is opened to find them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["NULL_VALUE", "HiveKeys", "parse_keys", "discover_keys", "dir_value"]

#: The directory value of a null key (as in Hive, Spark, pyarrow and dask).
NULL_VALUE = "__HIVE_DEFAULT_PARTITION__"

_STRING_KEY = pa.dictionary(pa.int32(), pa.string())


def parse_keys(relpath: str) -> dict[str, Optional[str]]:
    """The ``key=value`` directories of a path relative to the base directory.

    Parameters
    ----------
    relpath : str
        File path below the base directory (the file name itself is not a key).

    Returns
    -------
    dict
        Key -> URI-decoded value (None for ``__HIVE_DEFAULT_PARTITION__``), in path order.
    """
    keys: dict[str, Optional[str]] = {}
    for segment in relpath.strip("/").split("/")[:-1]:
        name, eq, value = segment.partition("=")
        if eq and name:
            keys[name] = None if value == NULL_VALUE else unquote(value)
    return keys


def _key_type(values: Sequence[Optional[str]]) -> pa.DataType:
    present = pa.array([v for v in values if v is not None], pa.string())
    if len(present):
        try:
            pc.cast(present, pa.int32())  # pyarrow's own inference: int32 when every value parses
            return pa.int32()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return _STRING_KEY


@dataclass
class HiveKeys:
    """The partition keys of a list of files.

    Attributes
    ----------
    schema : pyarrow.Schema
        The keys (int32, or dictionary-encoded strings), in order of first appearance.
    values : list of dict
        Per file, key -> typed value (a key missing from a file's path, or null, is absent).
    dictionaries : dict
        String key -> its sorted values over every listed file (the categories).
    """

    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))
    values: list[dict[str, Any]] = field(default_factory=list)
    dictionaries: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The key names."""
        return list(self.schema.names)

    def subset(self, index: Sequence[int]) -> "HiveKeys":
        """The keys of the files at ``index`` (same schema)."""
        return HiveKeys(self.schema, [self.values[i] for i in index], self.dictionaries)

    def table(self) -> pa.Table:
        """One row per file, one column per key (to evaluate filters on the keys alone)."""
        return pa.table({f.name: pa.array([v.get(f.name) for v in self.values], f.type) for f in self.schema},
                        schema=self.schema)

    def dataset_options(self, base: str) -> dict[str, Any]:
        """``dataset=`` options for ``dd.read_parquet``: this exact partitioning below ``base``.

        Without keys, partitioning is switched off, so ``key=value`` directories *above*
        ``base`` never become columns (dask's default would parse the whole path).
        """
        if not self.names:
            return {"partitioning": None}
        return {
            "partitioning": {"flavor": "hive", "schema": self.schema, "dictionaries": self.dictionaries or None},
            "partition_base_dir": base,
        }


def discover_keys(relpaths: Sequence[str]) -> HiveKeys:
    """Parse and type the partition keys of files (paths only, no I/O).

    Parameters
    ----------
    relpaths : sequence of str
        File paths relative to the base directory.

    Returns
    -------
    HiveKeys
    """
    raw = [parse_keys(p) for p in relpaths]
    names = list(dict.fromkeys(name for keys in raw for name in keys))
    types = {n: _key_type([keys.get(n) for keys in raw]) for n in names}
    values = [
        {n: (int(keys[n]) if types[n] == pa.int32() else keys[n]) for n in names if keys.get(n) is not None}
        for keys in raw
    ]
    dictionaries = {
        n: pa.array(sorted({v[n] for v in values if n in v}), pa.string()) for n in names if types[n] == _STRING_KEY
    }
    return HiveKeys(pa.schema([(n, types[n]) for n in names]), values, dictionaries)


def dir_value(value: Any) -> str:
    """A (non-null) column value as the value of a ``key=value`` directory.

    URI-encoded like pyarrow's writer, so ``/``, ``=`` and ``%`` in values survive the round trip
    through pyarrow's (URI-decoding) reader.
    """
    return quote(str(value), safe="")
