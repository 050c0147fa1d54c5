"""dshift.io.inputs: the read stage (open_input, scan_input) on the local threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FEATURES, make_frame, write_parquet_files
from dshift.errors import UserError
from dshift.io.inputs import open_input, scan_input

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
