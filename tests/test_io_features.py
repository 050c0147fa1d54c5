"""dshift.io.features: choosing and checking the feature columns."""

from __future__ import annotations

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
