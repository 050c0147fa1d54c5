"""dshift.io.labels: labelling partitions and writing the labelled data set (threaded scheduler)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from conftest import FEATURES
from dshift.io.inputs import open_input
from dshift.io.labels import label_frame, label_partition, write_labels

pytestmark = pytest.mark.usefixtures("threaded_dask")


def test_label_partition_marks_nonfinite_and_outliers():
    df = pd.DataFrame({"a": [0.0, 0.1, np.nan, 9.0], "b": [0.0, 0.0, 1.0, 9.0], "s": list("wxyz")})
    centers = np.array([[0.0, 0.0], [1.0, 1.0]])
    out = label_partition(df, ["a", "b"], centers, 1.0, False, "cluster")
    assert out["cluster"].tolist() == [0, 0, -1, -1] and out["cluster"].dtype == np.int64
    assert list(out.columns) == ["a", "b", "s", "cluster"] and "cluster" not in df
    assert label_partition(df, ["a", "b"], centers, 1.0, True, "k")["k"].tolist() == [0, 0, -1, 1]


def test_write_labels_counts_and_sample(tmp_path, parquet_input):
    frame, d = parquet_input
    source = open_input(str(d), columns=FEATURES)
    labelled = label_frame(source.data, FEATURES, np.array([[0.0, 0, 0], [6, 6, 0], [0, 6, 6]]), 2.0, True, "cl")
    sizes, sample = write_labels(labelled, str(tmp_path / "labels"), label_column="cl", n_rows=900,
                                 sample_columns=FEATURES + ["cl"], sample_rows=300)
    assert sum(sizes.values()) == 900 and set(sizes) <= {0, 1, 2}
    assert 100 < len(sample) < 600 and list(sample.columns) == FEATURES + ["cl"]
    written = pd.read_parquet(tmp_path / "labels")
    assert len(written) == 900 and written["cl"].value_counts().to_dict() == sizes
    assert sorted(os.listdir(tmp_path / "labels")) == [f"part.{i:05d}.parquet" for i in range(3)]
