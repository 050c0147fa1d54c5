"""dshift.io.filters: the shape and types of row filters, and which files their keys rule out."""

from __future__ import annotations

import datetime

import pyarrow as pa
import pytest

from dshift.errors import UserError
from dshift.io.filters import check_filter_types, check_filters, filters_expression, pruned_index


def test_check_filters_keeps_both_forms():
    assert check_filters(None) is None
    assert check_filters([["a", "=", 1], ("b", "in", ["x", "y"])]) == [("a", "==", 1), ("b", "in", ("x", "y"))]
    assert check_filters([[["a", ">=", 1.5]], [["d", "<", datetime.date(2024, 1, 1)], ["b", "not in", [True]]]]) == [
        [("a", ">=", 1.5)], [("d", "<", datetime.date(2024, 1, 1)), ("b", "not in", (True,))]]


@pytest.mark.parametrize("filters, message", [
    ([], "input.filters: must be a non-empty list"),
    ("a > 1", "input.filters: must be a non-empty list"),
    ([["a", ">", 1], ["b", "=>", 2]], "input.filters[1]: unknown operator '=>' (use ==, !=, <, <=, >, >=, in, not in)"),
    ([[["a", ">", 1]], [["b", "==", 2], ["c", "like", "x"]]], "input.filters[1][1]: unknown operator 'like'"),
    ([["a", ">"]], "input.filters[0]: a filter is [column, op, value]"),
    (["a", ">", 1], "input.filters[0]: a filter is [column, op, value] (got 'a')"),
    ([[1, ">", 1]], "input.filters[0]: the column must be a non-empty string"),
    ([["a", "in", 3]], "input.filters[0]: 'in' needs a non-empty list of values (got 3)"),
    ([["a", "in", []]], "input.filters[0]: 'in' needs a non-empty list"),
    ([["a", "not in", [1, [2]]]], "input.filters[0]: the values must be strings, numbers, booleans or dates"),
    ([["a", "==", [1, 2]]], "input.filters[0]: '==' needs one string, number, boolean or date (got a list"),
    ([["a", "==", None]], "input.filters[0]: '==' needs one string, number, boolean or date (got null"),
    ([[["a", ">", 1]], []], "input.filters[1]: must be a non-empty list"),
])
def test_check_filters_names_the_bad_term(filters, message):
    with pytest.raises(UserError) as info:
        check_filters(filters)
    assert message in str(info.value)


SCHEMA = pa.schema([("a", pa.float64()), ("s", pa.string()), ("ts", pa.timestamp("us")),
                    ("city", pa.dictionary(pa.int32(), pa.string())), ("month", pa.int32())])


@pytest.mark.parametrize("filters, message", [
    ([["yeer", "==", 2024]], "input.filters[0]: column 'yeer' is not in the input (columns: a, s, ts, city, month)"),
    ([["month", "==", "3"]], "input.filters[0]: cannot compare column 'month' (int32) with '3' (str)"),
    ([["city", "in", ["nyc", 3]]], "input.filters[0]: cannot compare column 'city' (string) with 3 (int)"),
    ([[["a", ">", 0]], [["ts", ">=", "2024-01-01"]]], "input.filters[1][0]: cannot compare column 'ts'"),
])
def test_check_filter_types_names_column_and_value(filters, message):
    with pytest.raises(UserError) as info:
        check_filter_types(check_filters(filters), SCHEMA)
    assert message in str(info.value)


def test_check_filter_types_accepts_comparable_values():
    check_filter_types(check_filters([["a", ">", 1], ["month", "in", [3, 4]], ["city", "<", "m"],
                                      ["ts", ">=", datetime.datetime(2024, 1, 1)], ["s", "!=", "x"]]), SCHEMA)
    check_filter_types(check_filters([["yeer", "==", 1], ["month", ">", 2]]), SCHEMA, only=["month"])


def test_pruned_index_follows_dask_null_semantics():
    keys = pa.table({"city": pa.array(["nyc", "sf", None], pa.dictionary(pa.int32(), pa.string())),
                     "month": pa.array([3, None, 11], pa.int32())})
    assert pruned_index(None, keys) is None
    assert pruned_index(check_filters([["city", "==", "nyc"]]), keys) == [0]
    # != and not in keep nulls, as Dask's row filters do; == and in drop them.
    assert pruned_index(check_filters([["city", "!=", "nyc"]]), keys) == [1, 2]
    assert pruned_index(check_filters([["month", "not in", [3]]]), keys) == [1, 2]
    assert pruned_index(check_filters([["month", "in", [3, 11]]]), keys) == [0, 2]
    # AND within a term list, OR across lists; terms on other columns are unknown (kept).
    assert pruned_index(check_filters([["city", "==", "sf"], ["month", ">", 1]]), keys) == []
    assert pruned_index(check_filters([[["city", "==", "sf"], ["a", ">", 1]], [["month", "==", 11]]]), keys) == [1, 2]
    assert pruned_index(check_filters([[["city", "==", "sf"]], [["a", ">", 1]]]), keys) is None


def test_filters_expression_matches_row_semantics():
    table = pa.table({"a": [1.0, float("nan"), None, 5.0], "s": ["x", "y", None, "z"]})
    kept = table.filter(filters_expression(check_filters([[["a", "!=", 1.0]], [["s", "==", "x"]]])))
    assert kept.num_rows == 4  # NaN and null count as null: != keeps them
    assert table.filter(filters_expression(check_filters([["a", ">", 0], ["s", "not in", ["z"]]]))).num_rows == 1


@pytest.mark.parametrize("column, value, message", [
    ("ts", datetime.date(2024, 1, 1), "column 'ts' is timestamp[us]; compare it with a timestamp such as "
                                      "2024-01-01 00:00:00 (got 2024-01-01)"),
    ("tz", datetime.datetime(2024, 1, 1), "column 'tz' is timestamp[us, tz=UTC]; compare it with a timestamp with "
                                          "a time zone (got 2024-01-01 00:00:00)"),
    ("d", datetime.datetime(2024, 1, 1), "column 'd' is date32[day]; compare it with a date such as 2024-01-01"),
])
def test_dates_and_timestamps_must_match_the_column(column, value, message):
    """pyarrow would cast these, but Dask compares them in Python with row-group statistics."""
    schema = pa.schema([("ts", pa.timestamp("us")), ("tz", pa.timestamp("us", tz="UTC")), ("d", pa.date32())])
    with pytest.raises(UserError) as info:
        check_filter_types(check_filters([[column, ">=", value]]), schema)
    assert message in str(info.value)
    utc = datetime.timezone.utc
    check_filter_types(check_filters([["ts", ">=", datetime.datetime(2024, 1, 1)],
                                      ["d", "<", datetime.date(2024, 1, 1)],
                                      ["tz", "<", datetime.datetime(2024, 1, 1, tzinfo=utc)]]), schema)
