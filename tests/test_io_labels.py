"""dshift.io.labels: labelling partitions and writing the labelled data set (threaded scheduler)."""

from __future__ import annotations

import os
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow.dataset as pa_ds
import pytest

from conftest import FEATURES, read_hive_labels
from dshift.errors import UserError
from dshift.io.inputs import open_input
from dshift.io.labels import check_partition_by, label_frame, label_partition, write_labels

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
    source = open_input(str(d), columns=FEATURES)  # a partition per file (conftest.PER_FILE): 3
    labelled = label_frame(source.data, FEATURES, np.array([[0.0, 0, 0], [6, 6, 0], [0, 6, 6]]), 2.0, True, "cl")
    sizes, sample = write_labels(labelled, str(tmp_path / "labels"), label_column="cl", n_rows=900,
                                 sample_columns=FEATURES + ["cl"], sample_rows=300)
    assert sum(sizes.values()) == 900 and set(sizes) <= {0, 1, 2}
    assert 100 < len(sample) < 600 and list(sample.columns) == FEATURES + ["cl"]
    written = pd.read_parquet(tmp_path / "labels")
    assert len(written) == 900 and written["cl"].value_counts().to_dict() == sizes
    assert sorted(os.listdir(tmp_path / "labels")) == [f"part.{i:05d}.parquet" for i in range(3)]


def test_write_labels_dictionary_pages_only_for_columns_of_few_values(tmp_path):
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.normal(size=20_000), "city": rng.choice(["x", "y"], 20_000)})
    labelled = label_frame(dd.from_pandas(frame, npartitions=1), ["a", "b"], np.array([[0.0, 0.0], [1.0, 1.0]]),
                           9.0, True, "cl")
    write_labels(labelled, str(tmp_path / "labels"), label_column="cl", n_rows=len(frame))
    meta = pq.ParquetFile(tmp_path / "labels" / "part.00000.parquet").metadata.row_group(0)
    chunks = {meta.column(j).path_in_schema: meta.column(j) for j in range(meta.num_columns)}
    for name in ("cl", "city"):  # two values: a dictionary
        assert chunks[name].has_dictionary_page and chunks[name].dictionary_page_offset is not None
    for name in ("a", "b"):  # 20,000 distinct doubles: plain after a dictionary page of 64 KiB at most
        assert "PLAIN" in chunks[name].encodings
        assert chunks[name].data_page_offset - chunks[name].dictionary_page_offset <= 70_000
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "labels")[["a", "b", "city"]], frame, check_dtype=False)


def test_write_labels_partitioned_each_row_once(tmp_path, hive_lake):
    frame, d = hive_lake
    source = open_input(str(d), columns=FEATURES, filters=[["month", "!=", 11]])
    labelled = label_frame(source.data, FEATURES, np.array([[0.0, 0, 0], [6, 6, 0], [0, 6, 6]]), 2.0, True, "cl")
    out = tmp_path / "labels"
    sizes, _ = write_labels(labelled, str(out), label_column="cl", partition_by=["month", "city", "cl"])
    want = frame[frame.month != 11].sort_values("uid").reset_index(drop=True)
    written = read_hive_labels(out)
    assert written["uid"].tolist() == want["uid"].tolist()  # every filtered row, once
    assert written["city"].tolist() == want["city"].tolist() and written["month"].tolist() == want["month"].tolist()
    assert written["cl"].value_counts().to_dict() == sizes
    for path in out.rglob("*.parquet"):  # labels/month=3/city=san%20jose/cl=0/part.00000.parquet
        keys = dict(p.split("=", 1) for p in path.relative_to(out).parts[:-1])
        assert list(keys) == ["month", "city", "cl"] and path.name.startswith("part.")
        rows = pd.read_parquet(path)
        assert "city" not in rows and len(rows) > 0
        match = want.set_index("uid").loc[rows["uid"]]
        assert (match["month"] == int(keys["month"])).all() and (match["city"] == unquote(keys["city"])).all()


def test_partition_values_are_encoded_and_nulls_kept(tmp_path):
    import dask.dataframe as dd

    df = pd.DataFrame({"k": ["a/b", None, "50%", "a/b"], "n": pd.array([1, None, 2, 1], dtype="Int64"),
                       "v": [1.0, 2.0, 3.0, 4.0]})
    labelled = label_frame(dd.from_pandas(df, npartitions=2), ["v"], np.array([[0.0]]), 10.0, True, "cl")
    write_labels(labelled, str(tmp_path / "labels"), label_column="cl", partition_by=["k", "n"])
    dirs = sorted(str(p.parent.relative_to(tmp_path / "labels")) for p in (tmp_path / "labels").rglob("*.parquet"))
    assert dirs == ["k=50%25/n=2", "k=__HIVE_DEFAULT_PARTITION__/n=__HIVE_DEFAULT_PARTITION__", "k=a%2Fb/n=1",
                    "k=a%2Fb/n=1"]
    # pyarrow's reader decodes the values back (pandas' cannot yet read null dictionary keys).
    back = pa_ds.dataset(tmp_path / "labels", partitioning="hive").to_table().sort_by("v")
    assert back["k"].to_pylist() == ["a/b", None, "50%", "a/b"] and back["n"].to_pylist() == [1, None, 2, 1]


def test_check_partition_by(parquet_input):
    _, d = parquet_input
    data = open_input(str(d), columns=FEATURES).data
    check_partition_by(data, ["note", "cluster"], "cluster")  # the label column is allowed
    check_partition_by(data, None, "cluster")
    with pytest.raises(UserError, match=r"output.partition_by: column 'nope' is not in the labelled data \(col"):
        check_partition_by(data, ["nope"], "cluster")
    with pytest.raises(UserError, match=r"--partition-by: column 'a' is float64"):
        check_partition_by(data, ["note", "a"], "cluster", what="--partition-by")
    with pytest.raises(UserError, match="lists 'note' more than once"):
        check_partition_by(data, ["note", "note"], "cluster")
    with pytest.raises(UserError, match="no column would be left"):
        check_partition_by(data[["uid", "note"]], ["uid", "note", "cluster"], "cluster")


def _replace_with_first_rows(path, n: int) -> None:
    """Replace a Parquet file (same name) by its first ``n`` rows, as a job rewriting it would."""
    tmp = path.with_suffix(".tmp")
    pd.read_parquet(path).head(n).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def test_a_file_rewritten_between_the_scan_and_the_labelling_fails_the_labelling(tmp_path, parquet_input):
    """The scan counted 900 rows; part-001 then holds 10. Its labels would be 10 rows, with
    report.json saying 900 (the job committed 610 labelled rows): the labelling names the file."""
    from dshift.io.inputs import scan_input

    _, d = parquet_input
    data = scan_input(open_input(str(d), columns=FEATURES))
    _replace_with_first_rows(d / "part-001.parquet", 10)
    labelled = label_frame(data.data, FEATURES, np.array([[0.0, 0, 0]]), 2.0, True, "cl")
    with pytest.raises(UserError, match=r"^input file '.*/part-001.parquet' changed during the job \(300 rows when "
                                        r"the job started, 10 now\); run again$"):
        write_labels(labelled, str(tmp_path / "labels"), label_column="cl", n_rows=data.n_rows, input_url=str(d))


def test_labelled_rows_must_add_up_to_the_rows_read_under_row_filters(tmp_path, parquet_input):
    """Under row filters a file's rows are not the footers' count; the total still has to be
    the read pass's."""
    from dshift.io.inputs import scan_input

    _, d = parquet_input
    data = scan_input(open_input(str(d), columns=FEATURES, filters=[["a", ">", -1e9]]))
    assert data.n_rows == 900
    _replace_with_first_rows(d / "part-001.parquet", 10)
    labelled = label_frame(data.data, FEATURES, np.array([[0.0, 0, 0]]), 2.0, True, "cl")
    with pytest.raises(UserError, match=rf"^input '{d}' changed during the job \(900 rows when it was read, 610 "
                                        r"labelled\); run again$"):
        write_labels(labelled, str(tmp_path / "labels"), label_column="cl", n_rows=data.n_rows, input_url=str(d))
