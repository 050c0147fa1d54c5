"""dshift.io.features: choosing and checking the feature columns."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FEATURES
from dshift.errors import UserError
from dshift.io.features import select_feature_columns


def test_select_feature_columns(parquet_input):
    frame, _ = parquet_input
    assert select_feature_columns(frame, None) == FEATURES  # every numeric column
    assert select_feature_columns(frame, ["c", "a"]) == ["c", "a"]
    with pytest.raises(UserError, match=r"'zz' not in the input \(available: uid, a, b, c, ts, note\)"):
        select_feature_columns(frame, ["a", "zz"])
    with pytest.raises(UserError, match=r"not numeric: 'uid' \(.*\), 'ts'"):
        select_feature_columns(frame, ["uid", "ts", "a"])
    with pytest.raises(UserError, match="already has a column 'a'"):
        select_feature_columns(frame, ["b"], label_column="a")


def _rewrite(path, change) -> None:
    """Rewrite one Parquet file with ``change(frame)``."""
    import pandas as pd

    change(pd.read_parquet(path)).to_parquet(path, index=False)


@pytest.mark.parametrize("change, error", [
    (lambda f: f.drop(columns="c"), r"column 'c' is not in input file '.*part-001.parquet' \(columns: uid, a, b, ts, "
                                    r"note\); every file must have it"),
    (lambda f: f.astype({"c": str}),  # numbers as text: they were converted silently
     r"column 'c' is (large_)?string in input file '.*part-001.parquet'; it must be numeric in every file"),
    (lambda f: f.assign(c=["abc"] * len(f)), r"column 'c' is (large_)?string in input file '.*part-001.parquet'"),
    (lambda f: f.assign(c=f.c > 0), r"column 'c' is bool in input file '.*part-001.parquet'"),  # as in one file
], ids=["missing", "numbers-as-text", "text", "bool"])
def test_every_file_must_have_the_feature_columns_as_numbers(parquet_input, cli, write_config, tmp_path, change,
                                                             error):
    """The features are chosen on the first file's columns; a later file without one, or with it
    as text, is named from the footers before any data is read (it was a KeyError or a late
    float conversion in the fit, exit 1 or a message naming neither file nor column)."""
    from conftest import assert_user_error, base_config
    from dshift.io.inputs import open_input

    _, d = parquet_input
    _rewrite(d / "part-001.parquet", change)
    with pytest.raises(UserError, match="input.columns: " + error):
        open_input(str(d), columns=FEATURES)
    line = assert_user_error(cli("validate", str(write_config(base_config(d, tmp_path / "out")))), "part-001.parquet")
    assert "column 'c'" in line and not (tmp_path / "out").exists()


def test_every_file_must_have_the_weight_column_as_numbers(parquet_input):
    from dshift.io.inputs import open_input

    _, d = parquet_input
    for i in range(3):
        _rewrite(d / f"part-{i:03d}.parquet", lambda f: f.assign(w=1.0))
    _rewrite(d / "part-002.parquet", lambda f: f.assign(w="1"))
    with pytest.raises(UserError, match=r"input.weight_column: column 'w' is (large_)?string in input file "
                                        r"'.*part-002.parquet'; it must be numeric in every file"):
        open_input(str(d), columns=FEATURES, weight_column="w")
    _rewrite(d / "part-002.parquet", lambda f: f.assign(w=np.float32(1)))  # numbers of another width: fine
    assert open_input(str(d), columns=FEATURES, weight_column="w").weight_column == "w"


def test_decimal_features_are_numbers_in_any_file(parquet_input, threaded_dask):
    """As in a data set of one file (dask reads decimals as numeric Arrow columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dshift.io.inputs import open_input, scan_input

    _, d = parquet_input
    path = d / "part-001.parquet"
    table = pq.read_table(path)
    c = table.schema.get_field_index("c")
    pq.write_table(table.set_column(c, "c", table["c"].cast(pa.decimal128(20, 12))), path)
    assert scan_input(open_input(str(d), columns=FEATURES)).n_rows == 900
    assert open_input(str(path), columns=FEATURES).feature_columns == FEATURES
