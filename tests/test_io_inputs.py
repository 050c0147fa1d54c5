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
