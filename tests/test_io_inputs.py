"""dshift.io.inputs: the read stage (open_input, scan_input) on the local threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FEATURES, make_frame, write_parquet_files
from dshift.errors import UserError
from dshift.io.inputs import defer_scan, open_input, scan_input

pytestmark = pytest.mark.usefixtures("threaded_dask")


def test_open_and_scan_input_nan_policies(tmp_path):
    frame = make_frame(n=300)
    frame.loc[[0, 150], "a"] = np.nan
    write_parquet_files(frame, tmp_path / "in", n_files=3)
    source = open_input(str(tmp_path / "in"), columns=FEATURES)
    with pytest.raises(UserError, match="2 of 300 rows have NaN or infinity"):
        scan_input(source)
    dropped = scan_input(source, nan_policy="drop")
    assert dropped.n_rows == 300 and dropped.n_rows_fit == 298
    X = dropped.X.compute()
    np.testing.assert_array_equal(X, frame.drop(index=[0, 150])[FEATURES].to_numpy())


def test_defer_scan_leaves_counting_and_checks_to_the_first_pass(tmp_path):
    import dask

    frame = make_frame(n=300)
    write_parquet_files(frame, tmp_path / "in", n_files=3)
    source = open_input(str(tmp_path / "in"), columns=FEATURES)
    data = defer_scan(source, sample_rows=100)
    chunks = data.X.to_delayed().ravel()
    assert data.scan is None and np.isnan(data.X.shape[0]) and len(data.first_pass) == len(chunks)
    rows = [len(c) for c in dask.compute(*chunks)]  # what the first pass counts
    values = dask.compute(*data.first_pass)  # the sample's part of the first pass
    data.count(rows, 0, values)
    assert (data.n_rows, data.n_rows_fit, data.X.shape) == (300, 300, (300, 3))
    np.testing.assert_array_equal(data.X.compute(), frame[FEATURES].to_numpy())
    np.testing.assert_array_equal(np.sort(data.scan.sample), np.sort(scan_input(source, sample_rows=100).scan.sample))
    with pytest.raises(UserError, match="2 of 300 rows have NaN or infinity .*set input.nan_policy: drop"):
        defer_scan(source).count(rows, 2, ())
    with pytest.raises(UserError, match="input.path: the input data set .* is empty"):
        defer_scan(source).count([0] * len(rows), 0, ())
    with pytest.raises(ValueError, match="weight column"):
        defer_scan(open_input(str(tmp_path / "in"), columns=["a", "b"], weight_column="c"))


def test_filters_select_rows_and_count_rows_before_filtering(hive_lake):
    frame, d = hive_lake
    filters = [[["city", "in", ["nyc", "san jose"]], ["month", "<=", 4]], [["city", "==", "sf"], ["a", ">", 2.0]]]
    source = open_input(str(d), columns=["a", "b", "month"], filters=filters)  # a partition key as a feature
    data = scan_input(source)
    want = frame[(frame.city.isin(["nyc", "san jose"]) & (frame.month <= 4)) | ((frame.city == "sf") & (frame.a > 2.0))]
    unpruned = frame[frame.city.isin(["nyc", "san jose"]) & (frame.month <= 4) | (frame.city == "sf")]
    assert data.n_rows == len(want) and data.n_rows_fit == len(want)
    assert data.report_fields() == {"n_rows_input": len(unpruned), "n_files": 14, "n_files_pruned": 4,
                                    "filters": [[["city", "in", ["nyc", "san jose"]], ["month", "<=", 4]],
                                                [["city", "==", "sf"], ["a", ">", 2.0]]]}
    rows = data.data.compute().sort_values("uid")
    assert rows["uid"].tolist() == sorted(want["uid"])
    X = data.X.compute()
    np.testing.assert_array_equal(np.sort(X, axis=0), np.sort(want[["a", "b", "month"]].to_numpy(float), axis=0))


def test_filter_errors_name_the_term(hive_lake):
    _, d = hive_lake
    with pytest.raises(UserError, match=r"input.filters\[1\]: column 'yeer' is not in the input \(columns: uid, a,"):
        open_input(str(d), filters=[["city", "==", "sf"], ["yeer", "==", 2024]])
    with pytest.raises(UserError, match=r"--filters\[0\]: unknown operator '=>'"):
        open_input(str(d), filters=[["month", "=>", 3]], keys={"filters": "--filters"})
    with pytest.raises(UserError, match="input.filters: no row of the .* rows read matches the filters"):
        scan_input(open_input(str(d), filters=[["city", "==", "sf"], ["a", ">", 1000.0]]))


def test_weight_column_is_no_feature_and_drops_with_its_rows(tmp_path):
    frame = make_frame(n=300)
    frame["count"] = np.arange(300) % 4
    frame.loc[[0, 150], "a"] = np.nan
    write_parquet_files(frame, tmp_path / "in", n_files=3)
    for columns in (None, FEATURES + ["count"]):  # neither the default nor a listed weight column is a feature
        source = open_input(str(tmp_path / "in"), columns=columns, weight_column="count")
        assert source.feature_columns == FEATURES
    data = scan_input(source, nan_policy="drop")
    kept = frame.drop(index=[0, 150])
    np.testing.assert_array_equal(data.X.compute(), kept[FEATURES].to_numpy())
    np.testing.assert_array_equal(data.weights.compute(), kept["count"].to_numpy(float))
    assert data.X.chunks[0] == data.weights.chunks[0]
    fields = data.report_fields()
    assert (fields["weight_column"], fields["weight_total"]) == ("count", kept["count"].sum())
    assert fields["n_rows_zero_weight"] == (kept["count"] == 0).sum()


def test_weight_column_errors(tmp_path):
    frame = make_frame(n=300)
    frame["count"] = 1.0
    frame.loc[[3, 7, 200], "count"] = [-1.0, np.nan, np.inf]
    frame.loc[[10], "a"] = np.nan  # out of the fit with nan_policy: drop, so not counted
    frame.loc[[10], "count"] = np.nan
    write_parquet_files(frame, tmp_path / "in", n_files=3)
    source = open_input(str(tmp_path / "in"), columns=FEATURES, weight_column="count")
    with pytest.raises(UserError, match=r"^input.weight_column: 3 of 299 rows have a negative, NaN or infinite "
                                        r"weight in 'count'$"):
        scan_input(source, nan_policy="drop")
    with pytest.raises(UserError, match="input.weight_column: column 'cnt' not in the input"):
        open_input(str(tmp_path / "in"), weight_column="cnt")
    with pytest.raises(UserError, match="input.weight_column: 'note' must be numeric"):
        open_input(str(tmp_path / "in"), weight_column="note")
    with pytest.raises(UserError, match="input.columns: lists only the weight column 'count'"):
        open_input(str(tmp_path / "in"), columns=["count"], weight_column="count")
    frame["count"] = 0
    write_parquet_files(frame, tmp_path / "zero", n_files=1)
    with pytest.raises(UserError, match="every weight in 'count' is 0"):
        scan_input(open_input(str(tmp_path / "zero"), columns=FEATURES, weight_column="count"), nan_policy="drop")


def test_an_input_of_files_without_rows_is_empty_before_any_read(tmp_path, write_config):
    """Footers that count 0 rows: open_input refuses the input, so ``dshift validate`` does."""
    from conftest import assert_user_error, base_config, run_cli

    write_parquet_files(make_frame(n=300).iloc[:0], tmp_path / "in", n_files=2)
    with pytest.raises(UserError, match=r"^input\.path: the input data set .* is empty \(0 rows\)$"):
        open_input(str(tmp_path / "in"), columns=FEATURES)
    proc = run_cli("validate", str(write_config(base_config(tmp_path / "in", tmp_path / "out"))))
    assert "is empty (0 rows)" in assert_user_error(proc)
