"""Row filters (``input.filters``): their shape, their types, and partition pruning.

Filters take the form pyarrow and Dask accept: a list of ``[column, op, value]`` terms that
must all hold, or a list of such lists of which one must hold (OR of ANDs). Dask applies them
to the rows (``dd.read_parquet(filters=...)``); before that, :func:`prune_files` drops the
files whose Hive partition keys rule out every term list, so those files are never opened.

Semantics are Dask's: ``!=`` and ``not in`` keep rows where the column is null (or NaN),
the other operators drop them.
"""

from __future__ import annotations

import datetime
import functools
import operator
from typing import Any, Iterator, Optional, Sequence

import pyarrow as pa
import pyarrow.dataset as pa_ds

from dshift.errors import UserError

__all__ = ["OPERATORS", "check_filters", "filter_columns", "filters_expression", "check_filter_types", "pruned_index"]

#: The operators, as Dask and pyarrow accept them ("=" is "==").
OPERATORS = ("==", "=", "!=", "<", "<=", ">", ">=", "in", "not in")
_SHOWN_OPERATORS = "==, !=, <, <=, >, >=, in, not in"
# YAML dates (2024-01-01) are datetime.date; bool is an int too.
_SCALARS = (str, int, float, datetime.date)

Term = tuple  # (column, op, value)


def _show(value: Any) -> str:
    """A filter value as written in YAML (dates as ISO dates)."""
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    return value.isoformat() if isinstance(value, datetime.date) else repr(value)


def _kind(value: Any) -> str:
    return "null" if value is None else "a list" if isinstance(value, list) else type(value).__name__


def _check_term(term: Any, where: str) -> tuple:
    if not isinstance(term, (list, tuple)) or len(term) != 3:
        raise UserError(f"{where}: a filter is [column, op, value] (got {term!r})")
    column, op, value = term
    if not isinstance(column, str) or not column:
        raise UserError(f"{where}: the column must be a non-empty string (got {column!r})")
    if op not in OPERATORS:
        raise UserError(f"{where}: unknown operator {op!r} (use {_SHOWN_OPERATORS})")
    if op in ("in", "not in"):
        if not isinstance(value, (list, tuple)) or not value:
            raise UserError(f"{where}: {op!r} needs a non-empty list of values (got {value!r})")
        bad = [v for v in value if not isinstance(v, _SCALARS)]
        if bad:
            raise UserError(f"{where}: the values must be strings, numbers, booleans or dates (got {bad[0]!r})")
        return column, op, tuple(value)
    if not isinstance(value, _SCALARS):
        raise UserError(f"{where}: {op!r} needs one string, number, boolean or date (got {_kind(value)}: {value!r})")
    return column, "==" if op == "=" else op, value


def _is_flat(filters: Sequence) -> bool:
    """A list of terms (AND) rather than a list of term lists (OR of ANDs), as Dask decides."""
    return not isinstance(filters[0], (list, tuple)) or not filters[0] or not isinstance(filters[0][0], (list, tuple))


def check_filters(filters: Any, what: str = "input.filters") -> Optional[list]:
    """Check the shape of filters; return them with terms as tuples and ``=`` as ``==``.

    Parameters
    ----------
    filters : list or None
        ``[[column, op, value], ...]`` (AND) or ``[[[column, op, value], ...], ...]`` (OR of ANDs).
    what : str
        Name of the setting, for messages (terms are named ``what[i]`` or ``what[i][j]``).

    Returns
    -------
    list or None
        Same form as given.

    Raises
    ------
    UserError
        Naming the first malformed term.
    """
    if filters is None:
        return None
    if not isinstance(filters, (list, tuple)) or not filters:
        raise UserError(f"{what}: must be a non-empty list of [column, op, value] filters, or a list of such "
                        f"lists (any of which may hold), or null (got {filters!r})")
    if _is_flat(filters):
        return [_check_term(t, f"{what}[{i}]") for i, t in enumerate(filters)]
    out = []
    for i, conjunction in enumerate(filters):
        if not isinstance(conjunction, (list, tuple)) or not conjunction:
            raise UserError(f"{what}[{i}]: must be a non-empty list of [column, op, value] filters "
                            f"(got {conjunction!r})")
        out.append([_check_term(t, f"{what}[{i}][{j}]") for j, t in enumerate(conjunction)])
    return out


def _terms(filters: Sequence, what: str) -> Iterator[tuple[str, Term]]:
    """(name for messages, term) of every term of checked filters."""
    if not filters:
        return
    if _is_flat(filters):
        yield from ((f"{what}[{i}]", t) for i, t in enumerate(filters))
    else:
        yield from ((f"{what}[{i}][{j}]", t) for i, c in enumerate(filters) for j, t in enumerate(c))


def filter_columns(filters: Optional[Sequence]) -> set[str]:
    """The columns that checked filters (or None) compare."""
    return {term[0] for _, term in _terms(filters, "")}


def _as_dnf(filters: Sequence) -> list[list[Term]]:
    """Checked filters as a list of term lists (OR of ANDs)."""
    return [list(filters)] if _is_flat(filters) else [list(c) for c in filters]


def _term_expression(column: str, op: str, value: Any) -> pa_ds.Expression:
    field = pa_ds.field(column)
    if op in ("in", "not in"):
        expr = field.isin(list(value))
    else:
        expr = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
                ">=": operator.ge}[op](field, value)
    if op in ("!=", "not in"):  # Dask's rule: these keep nulls (and NaN)
        return field.is_null(nan_is_null=True) | (~expr if op == "not in" else expr)
    return expr


def filters_expression(filters: Sequence) -> pa_ds.Expression:
    """Checked filters as a pyarrow expression with Dask's semantics."""
    return functools.reduce(operator.or_, [
        functools.reduce(operator.and_, [_term_expression(*t) for t in conjunction]) for conjunction in _as_dnf(filters)
    ])


def check_filter_types(filters: Optional[Sequence], schema: pa.Schema, what: str = "input.filters",
                       *, only: Optional[Sequence[str]] = None) -> None:
    """Check that every filtered column exists and can be compared with its value(s).

    Each term (each value of an ``in`` list) is evaluated on an empty table of ``schema``,
    so pyarrow itself says whether the comparison is defined.

    Parameters
    ----------
    filters : list or None
        Checked filters (:func:`check_filters`).
    schema : pyarrow.Schema
        The columns of the input (file columns and partition keys).
    what : str
        Name of the setting, for messages.
    only : sequence of str, optional
        Check only terms on these columns (the others are not known yet).

    Raises
    ------
    UserError
        Naming the term: a column not in the input, or a value of the wrong type.
    """
    empty = schema.empty_table()
    for where, (column, op, value) in _terms(filters, what):
        if only is not None and column not in only:
            continue
        if column not in schema.names:
            raise UserError(f"{where}: column {column!r} is not in the input (columns: {', '.join(schema.names)})")
        kind = schema.field(column).type
        shown = "string" if pa.types.is_dictionary(kind) else str(kind)
        # Each value alone first (to name it), then the term as Dask will evaluate it.
        for v in value if op in ("in", "not in") else [value]:
            temporal = _temporal_problem(kind, v)
            if temporal:
                raise UserError(f"{where}: column {column!r} is {kind}; {temporal} (got {_show(v)})")
            if not _evaluates(empty, column, "==" if op in ("in", "not in") else op, v):
                raise UserError(f"{where}: cannot compare column {column!r} ({shown}) with {_show(v)} "
                                f"({type(v).__name__})")
        if not _evaluates(empty, column, op, value):
            raise UserError(f"{where}: column {column!r} ({shown}) cannot be matched against {list(value)!r}; "
                            "give values of one type")


def _temporal_problem(kind: pa.DataType, value: Any) -> Optional[str]:
    """Date/time values pyarrow would cast but Dask compares in Python with row-group
    statistics (where a date, a datetime and a time-zone-aware datetime do not compare)."""
    is_datetime = isinstance(value, datetime.datetime)
    if pa.types.is_timestamp(kind) and isinstance(value, datetime.date):
        if not is_datetime:
            return "compare it with a timestamp such as 2024-01-01 00:00:00"
        if (value.tzinfo is None) != (kind.tz is None):
            return f"compare it with a timestamp {'with' if kind.tz else 'without'} a time zone"
    if pa.types.is_date(kind) and is_datetime:
        return "compare it with a date such as 2024-01-01"
    return None


def _evaluates(empty: pa.Table, column: str, op: str, value: Any) -> bool:
    try:
        empty.filter(_term_expression(column, op, value))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def pruned_index(filters: Optional[Sequence], keys: pa.Table) -> Optional[list[int]]:
    """The rows of ``keys`` (one per file) whose partition keys the filters do not rule out.

    A term list rules a file out when one of its terms on a partition key is false for the
    file's key values (terms on other columns are unknown until the rows are read). Files are
    kept whenever a term list has no term on a key.

    Parameters
    ----------
    filters : list or None
        Checked filters whose key terms passed :func:`check_filter_types`.
    keys : pyarrow.Table
        One row per file, one column per partition key.

    Returns
    -------
    list of int or None
        The kept rows; None when the filters cannot prune (no filter, or a term list without
        a key term).
    """
    if not filters or not keys.num_columns:
        return None
    names = set(keys.column_names)
    key_terms = [[t for t in conjunction if t[0] in names] for conjunction in _as_dnf(filters)]
    if not all(key_terms):
        return None
    index = keys.append_column("__file__", pa.array(range(keys.num_rows), pa.int64()))
    return index.filter(filters_expression(key_terms))["__file__"].to_pylist()
