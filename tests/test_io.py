"""dshift.io and dshift.report pieces, on the local threaded scheduler (no cluster)."""

from __future__ import annotations

import json
import os

import dask
import numpy as np
import pandas as pd
import pytest

from conftest import FEATURES, make_frame, write_parquet_files
from dshift.errors import UserError
from dshift.io import (
    OutputStage,
    check_parquet_files,
    check_paths_disjoint,
    label_frame,
    label_partition,
    list_input_files,
    open_input,
    scan_input,
    select_feature_columns,
    write_json,
    write_labels,
)
from dshift.report import load_model, model_dict, plot_png


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def data(tmp_path):
    frame = make_frame(n=900, seed=1)
    write_parquet_files(frame, tmp_path / "in", n_files=3)
    (tmp_path / "in" / "_hidden.parquet").write_bytes(b"junk")  # skipped like dask does
    (tmp_path / "in" / "README.txt").write_text("not data")
    return frame, tmp_path / "in"


def test_list_input_files_dir_glob_file(data):
    _, d = data
    assert [os.path.basename(f) for f in list_input_files(str(d)).files] == [f"part-00{i}.parquet" for i in range(3)]
    assert len(list_input_files(str(d / "part-00[01].parquet")).files) == 2
    assert len(list_input_files(str(d / "part-002.parquet")).files) == 1
    with pytest.raises(UserError, match="does not exist"):
        list_input_files(str(d / "nope"))
    with pytest.raises(UserError, match="no files match"):
        list_input_files(str(d / "*.csv"))


def test_check_parquet_files_counts_rows_and_names_corrupt_file(data):
    _, d = data
    files = list_input_files(str(d))
    assert check_parquet_files(files) == 900
    (d / "part-001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="part-001.parquet' is not a readable Parquet file"):
        check_parquet_files(list_input_files(str(d)))


def test_select_feature_columns(data):
    frame, _ = data
    assert select_feature_columns(frame, None) == FEATURES  # every numeric column
    assert select_feature_columns(frame, ["c", "a"]) == ["c", "a"]
    with pytest.raises(UserError, match=r"'zz' not in the input \(available: uid, a, b, c, ts, note\)"):
        select_feature_columns(frame, ["a", "zz"])
    with pytest.raises(UserError, match=r"not numeric: 'uid' \(.*\), 'ts'"):
        select_feature_columns(frame, ["uid", "ts", "a"])
    with pytest.raises(UserError, match="already has a column 'a'"):
        select_feature_columns(frame, ["b"], label_column="a")


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


def test_label_partition_marks_nonfinite_and_outliers():
    df = pd.DataFrame({"a": [0.0, 0.1, np.nan, 9.0], "b": [0.0, 0.0, 1.0, 9.0], "s": list("wxyz")})
    centers = np.array([[0.0, 0.0], [1.0, 1.0]])
    out = label_partition(df, ["a", "b"], centers, 1.0, False, "cluster")
    assert out["cluster"].tolist() == [0, 0, -1, -1] and out["cluster"].dtype == np.int64
    assert list(out.columns) == ["a", "b", "s", "cluster"] and "cluster" not in df
    assert label_partition(df, ["a", "b"], centers, 1.0, True, "k")["k"].tolist() == [0, 0, -1, 1]


def test_write_labels_counts_and_sample(tmp_path, data):
    frame, d = data
    source = open_input(str(d), columns=FEATURES)
    labelled = label_frame(source.data, FEATURES, np.array([[0.0, 0, 0], [6, 6, 0], [0, 6, 6]]), 2.0, True, "cl")
    sizes, sample = write_labels(labelled, str(tmp_path / "labels"), label_column="cl", n_rows=900,
                                 sample_columns=FEATURES + ["cl"], sample_rows=300)
    assert sum(sizes.values()) == 900 and set(sizes) <= {0, 1, 2}
    assert 100 < len(sample) < 600 and list(sample.columns) == FEATURES + ["cl"]
    written = pd.read_parquet(tmp_path / "labels")
    assert len(written) == 900 and written["cl"].value_counts().to_dict() == sizes
    assert sorted(os.listdir(tmp_path / "labels")) == [f"part.{i:05d}.parquet" for i in range(3)]


# --------------------------------------------------------------------------------------------
# Staged output


def test_output_stage_commit_and_abort(tmp_path):
    target = tmp_path / "deep" / "out"
    stage = OutputStage(str(target))
    with stage:
        write_json(stage.url_for("a.json"), {"x": 1})
        assert not target.exists()
    assert not target.exists() and not (tmp_path / "deep").exists()  # aborted: parents we made are gone

    stage = OutputStage(str(target))
    with stage:
        write_json(stage.url_for("a.json"), {"x": 1})
        stage.commit()
    assert json.loads((target / "a.json").read_text()) == {"x": 1}
    assert sorted(os.listdir(target)) == ["_SUCCESS", "a.json"]
    with pytest.raises(UserError, match="already exists; set output.overwrite: true"):
        OutputStage(str(target)).check()


def test_output_stage_overwrite_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    stage = OutputStage(str(target), overwrite=True)
    with stage:
        write_json(stage.url_for("new.json"), [])
        assert (target / "old.txt").exists()  # untouched until commit
    assert (target / "old.txt").exists()  # failure before commit: old output kept
    (tmp_path / ".out.tmp-deadbeef").mkdir()  # a killed run's leftover
    stage = OutputStage(str(target), overwrite=True)
    with stage:
        write_json(stage.url_for("new.json"), [])
        stage.commit()
    assert sorted(os.listdir(target)) == ["_SUCCESS", "new.json"]
    assert os.listdir(tmp_path) == ["out"]


def test_check_paths_disjoint(tmp_path):
    d = str(tmp_path / "in")
    with pytest.raises(UserError, match="the same as input.path"):
        check_paths_disjoint(d, d)
    with pytest.raises(UserError, match="inside input.path"):
        check_paths_disjoint(d, d + "/x/y")
    with pytest.raises(UserError, match="input.path .* is inside output.path"):
        check_paths_disjoint(d, str(tmp_path))
    check_paths_disjoint(d, str(tmp_path / "in2"))  # a sibling with a common prefix is fine
    check_paths_disjoint(d + "/*.parquet", str(tmp_path / "out"))
    with pytest.raises(UserError, match="inside the input"):
        check_paths_disjoint(str(tmp_path / "*"), str(tmp_path / "out"))
    check_paths_disjoint("s3://b/in", d)  # different file systems


# --------------------------------------------------------------------------------------------
# model.json and the plot


def test_model_round_trip_and_validation():
    m = model_dict(centers=np.eye(3), bandwidth=1.5, feature_columns=FEATURES,
                   params={"cluster_all": False, "bin_seeding": True}, n_iter=4, label_column="cluster")
    loaded = load_model(json.loads(json.dumps(m)), "m.json")
    np.testing.assert_array_equal(loaded["cluster_centers"], np.eye(3))
    assert loaded["cluster_all"] is False and loaded["bandwidth"] == 1.5
    for broken, match in [({**m, "bandwidth": 0}, "bandwidth must be a number > 0"),
                          ({**m, "feature_columns": ["a"]}, "must list 3 column names"),
                          ({k: v for k, v in m.items() if k != "cluster_centers"}, "missing key 'cluster_centers'"),
                          ([], "expected a JSON object")]:
        with pytest.raises(UserError, match=match):
            load_model(broken, "m.json")


@pytest.mark.parametrize("d, xy", [(1, None), (2, None), (4, None), (3, ("c", "a"))])
def test_plot_png(d, xy):
    cols = [f"f{j}" for j in range(d)] if xy is None else ["a", "b", "c"]
    rng = np.random.default_rng(0)
    sample = pd.DataFrame(rng.normal(size=(200, d)), columns=cols)
    sample["cluster"] = rng.integers(-1, 3, 200)
    png = plot_png(sample, rng.normal(size=(3, d)), feature_columns=cols, label_column="cluster", bandwidth=0.5,
                   x=xy[0] if xy else None, y=xy[1] if xy else None)
    assert png.startswith(b"\x89PNG")
