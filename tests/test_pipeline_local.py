"""``dshift run`` end to end on a LocalCluster, through the CLI, compared with scikit-learn."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import (
    BANDWIDTH,
    FEATURES,
    add_pruned_partition,
    assert_user_error,
    base_config,
    make_frame,
    read_hive_labels,
    read_labels,
    run_cli,
    sklearn_labels,
    tree_digest,
    write_parquet_files,
)

from dshift._dask import DEFAULTS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPORT_KEYS = {"n_rows", "n_features", "bandwidth", "n_seeds", "n_clusters", "n_iter", "cluster_sizes", "timings"}


@pytest.fixture(scope="module")
def first_run(blobs, tmp_path_factory):
    """One ``dshift run`` on the shared blobs (explicit bandwidth, bin seeding, 2 workers)."""
    frame, data = blobs
    work = tmp_path_factory.mktemp("local-run")
    before = tree_digest(data)
    cfg_path = work / "job.yaml"
    cfg_path.write_text(yaml.safe_dump(base_config(data, work / "out" / "clusters")))
    proc = run_cli("run", str(cfg_path), cwd=work)
    return frame, data, work, work / "out" / "clusters", proc, before


def test_run_succeeds_with_progress(first_run):
    *_, proc, _ = first_run
    assert proc.returncode == 0, proc.stderr
    for phase in ("cluster:", "read:", "bandwidth:", "seeding:", "shift iteration", "merge:", "labelling:",
                  "output: committed", "done:"):
        assert phase in proc.stderr, phase


def test_labels_match_sklearn(first_run):
    frame, _, _, out, proc, _ = first_run
    assert proc.returncode == 0, proc.stderr
    labels = read_labels(out / "labels")
    assert len(labels) == len(frame)
    assert labels["uid"].tolist() == frame["uid"].tolist()  # every row exactly once
    expected = sklearn_labels(frame, BANDWIDTH, bin_seeding=True)
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), expected)
    assert labels["cluster"].dtype == np.int64


def test_labels_keep_every_input_column(first_run):
    frame, _, _, out, proc, _ = first_run
    labels = read_labels(out / "labels")
    assert list(labels.columns) == list(frame.columns) + ["cluster"]
    pd.testing.assert_frame_equal(labels[list(frame.columns)], frame, check_dtype=False)
    # One file per input partition (here, per file: conftest.PER_FILE), written by the workers.
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"part.{i:05d}.parquet" for i in range(4)]


def test_partitions_of_grouped_and_split_files_give_the_same_job(tmp_path):
    """Small files of one schema grouped into partitions and a big file's row groups split over
    several: labels, centers and report as with a partition per row group."""
    frame = make_frame(n=12_000, seed=17)
    data = tmp_path / "data"
    write_parquet_files(frame.iloc[:4_000], data, n_files=20)
    frame.iloc[4_000:].to_parquet(data / "part-big.parquet", index=False, row_group_size=1_000)
    runs = {}
    for name, size in {"grouped": 64 << 10, "per_row_group": 1}.items():
        out = tmp_path / name
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(base_config(data, out, plot=None)))
        proc = run_cli("run", str(cfg), cwd=tmp_path, env={"DASK_DSHIFT__PARTITION_BYTES": str(size)})
        assert proc.returncode == 0, proc.stderr
        runs[name] = (read_labels(out / "labels"), json.loads((out / "model.json").read_text()),
                      json.loads((out / "report.json").read_text()), len(list((out / "labels").iterdir())))
    (labels, model, report, n_files), (labels1, model1, report1, n_files1) = runs["grouped"], runs["per_row_group"]
    assert n_files1 == 28 and 3 <= n_files < 28, (n_files, n_files1)
    assert labels["uid"].tolist() == frame["uid"].tolist()
    pd.testing.assert_frame_equal(labels, labels1)
    np.testing.assert_array_equal(labels["cluster"], sklearn_labels(frame, BANDWIDTH, bin_seeding=True))
    assert model["cluster_centers"] == model1["cluster_centers"] and model["n_iter"] == model1["n_iter"]
    assert report["cluster_sizes"] == report1["cluster_sizes"] and report["n_rows"] == report1["n_rows"] == 12_000


def test_files_of_different_column_types_keep_a_partition_each(tmp_path):
    """Arrow cannot put int32 and int64 (or float32 and float64) of one column in one partition:
    such files are read a partition each, and the job runs as on uniform files."""
    frame = make_frame(n=3_000, seed=18)
    frame["tag"] = np.arange(len(frame))
    data = tmp_path / "data"
    paths = write_parquet_files(frame, data, n_files=3)
    frame.iloc[1_000:2_000].astype({"tag": "int32", "a": "float32"}).to_parquet(paths[1], index=False)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(base_config(data, tmp_path / "out", plot=None)))
    default = {"DASK_DSHIFT__PARTITION_BYTES": str(DEFAULTS["partition-bytes"])}  # not conftest.PER_FILE
    proc = run_cli("run", str(cfg), cwd=tmp_path, env=default)
    assert proc.returncode == 0, proc.stderr
    labels = read_labels(tmp_path / "out" / "labels")
    assert labels["uid"].tolist() == frame["uid"].tolist() and len(list((tmp_path / "out" / "labels").iterdir())) == 3
    expected = frame.copy()
    expected.loc[1_000:1_999, "a"] = frame.loc[1_000:1_999, "a"].astype("float32").astype("float64")
    np.testing.assert_array_equal(labels["cluster"], sklearn_labels(expected, BANDWIDTH, bin_seeding=True))


def test_model_and_report(first_run):
    frame, _, _, out, proc, _ = first_run
    model = json.loads((out / "model.json").read_text())
    report = json.loads((out / "report.json").read_text())
    from sklearn.cluster import MeanShift

    ref = MeanShift(bandwidth=BANDWIDTH, bin_seeding=True).fit(frame[FEATURES].to_numpy())
    np.testing.assert_allclose(model["cluster_centers"], ref.cluster_centers_, rtol=0, atol=1e-3 * BANDWIDTH)
    assert model["bandwidth"] == BANDWIDTH
    assert model["feature_columns"] == FEATURES
    assert model["cluster_all"] is True
    assert model["parameters"]["bin_seeding"] is True
    assert model["dshift_version"]
    assert REPORT_KEYS <= set(report)
    assert report["n_rows"] == len(frame) and report["n_features"] == 3
    assert report["n_clusters"] == len(ref.cluster_centers_)
    assert report["n_iter"] == ref.n_iter_
    counts = pd.Series(ref.labels_).value_counts()
    assert report["cluster_sizes"] == {str(k): int(v) for k, v in sorted(counts.items())}
    for phase in ("bandwidth", "scan", "seeding", "shift", "merge", "label_write", "total"):
        assert report["timings"][phase] >= 0, phase


def test_plot_written(first_run):
    *_, out, proc, _ = first_run
    png = (out / "clusters.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_output_is_clean_and_input_untouched(first_run):
    _, data, work, out, proc, before = first_run
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "clusters.png", "dshift.log", "labels", "model.json",
                                                     "report.json"]
    assert [p.name for p in out.parent.iterdir()] == ["clusters"]  # no .tmp- siblings or logs left
    log = (out / "dshift.log").read_text()
    assert "] cluster: starting a local cluster" in log and "] done: " in log
    assert tree_digest(data) == before


def test_second_run_refuses_then_overwrite_replaces(first_run):
    frame, data, work, out, proc, _ = first_run
    assert proc.returncode == 0
    before = tree_digest(out)
    again = run_cli("run", str(work / "job.yaml"), "--quiet", cwd=work)
    assert_user_error(again, str(out), "already exists", "overwrite")
    assert tree_digest(out) == before

    (out / "stale-marker.txt").write_text("from the old output")
    cfg = yaml.safe_load((work / "job.yaml").read_text())
    cfg["output"]["overwrite"] = True
    cfg["plot"] = None
    (work / "job-overwrite.yaml").write_text(yaml.safe_dump(cfg))
    replaced = run_cli("run", str(work / "job-overwrite.yaml"), "--quiet", cwd=work)
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stderr.strip() == ""  # --quiet: no progress lines
    assert not (out / "stale-marker.txt").exists()
    assert not (out / "clusters.png").exists()  # plot: null
    assert sorted(p.name for p in out.parent.iterdir()) == ["clusters"]
    np.testing.assert_array_equal(read_labels(out / "labels")["cluster"], sklearn_labels(frame, BANDWIDTH, bin_seeding=True))


def test_predict_round_trip(first_run, tmp_path):
    frame, data, work, out, proc, _ = first_run
    pred = tmp_path / "pred"
    done = run_cli("predict", "--model", str(out / "model.json"), "--input", str(data), "--output", str(pred),
                   "--quiet", "--n-workers", "1")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_labels(pred / "labels")["cluster"], read_labels(out / "labels")["cluster"])
    assert "] done: " in (pred / "dshift.log").read_text()
    assert json.loads((pred / "report.json").read_text())["n_rows"] == len(frame)


def test_estimated_bandwidth_nan_drop_cluster_all_false(tmp_path):
    """Bandwidth estimated like sklearn; NaN rows get -1 and stay out of the fit; outliers -1."""
    from sklearn.cluster import estimate_bandwidth

    frame = make_frame(n=3000, seed=3)
    bad = [5, 700, 2999]
    frame.loc[bad[0], "a"] = np.nan
    frame.loc[bad[1], "b"] = np.inf
    frame.loc[bad[2], "c"] = -np.inf
    data = tmp_path / "data"
    write_parquet_files(frame, data, n_files=3)
    cfg = base_config(data, tmp_path / "out", input={"nan_policy": "drop"},
                      model={"bandwidth": None, "quantile": 0.2, "n_samples": 500, "bin_seeding": True,
                             "cluster_all": False},
                      cluster={"n_workers": 1}, plot={"x": "a", "y": "c"})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    finite = frame.drop(index=bad).reset_index(drop=True)
    X = finite[FEATURES].to_numpy()
    bw = estimate_bandwidth(X, quantile=0.2, n_samples=500, random_state=0)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["bandwidth"] == pytest.approx(bw, rel=1e-12)
    assert report["bandwidth_estimated"] is True
    assert report["n_rows"] == 3000 and report["n_rows_fit"] == 2997

    labels = read_labels(tmp_path / "out" / "labels")
    assert (labels.loc[bad, "cluster"] == -1).all()
    expected = sklearn_labels(finite, report["bandwidth"], cluster_all=False, bin_seeding=True)
    np.testing.assert_array_equal(labels.drop(index=bad)["cluster"].to_numpy(), expected)
    assert report["cluster_sizes"]["-1"] == int((expected == -1).sum()) + 3


def test_demo_config_creates_data(tmp_path):
    """A scaled-down copy of configs/demo.yaml: creates the data if missing, then clusters."""
    demo = yaml.safe_load((Path(__file__).parents[1] / "configs" / "demo.yaml").read_text())
    demo["demo"].update(rows=6000, files=3)
    demo["model"]["n_samples"] = 500
    demo["cluster"]["n_workers"] = 1
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo))
    proc = run_cli("run", "demo.yaml", cwd=tmp_path)  # relative paths resolve against the cwd
    assert proc.returncode == 0, proc.stderr
    data = tmp_path / demo["input"]["path"]
    assert len(list(data.glob("*.parquet"))) == 3
    out = tmp_path / demo["output"]["path"]
    report = json.loads((out / "report.json").read_text())
    assert report["n_rows"] == 6000 and report["n_clusters"] == 3
    assert "demo: writing" in proc.stderr


def test_killed_job_leaves_no_output_and_rerun_succeeds(blobs, tmp_path):
    """SIGKILL the job while it stages its output: nothing at output.path; a rerun works."""
    _, data = blobs
    out = tmp_path / "out" / "killed"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(base_config(data, out, cluster={"n_workers": 1})))
    proc = subprocess.Popen([sys.executable, "-m", "dshift.cli", "run", str(tmp_path / "job.yaml"), "--quiet"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if out.parent.exists() and any(p.name.startswith(".killed.tmp-") for p in out.parent.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before its output was staged"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the job's own process group (driver + workers)
        proc.wait(30)
    assert not out.exists()
    again = run_cli("run", str(tmp_path / "job.yaml"), "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    # stale .tmp- sibling removed; the killed job's log stays (the record of what happened)
    assert [p.name for p in out.parent.iterdir() if not p.name.endswith(".log")] == ["killed"]
    assert (out / "_SUCCESS").exists()


# --------------------------------------------------------------------------------------------
# A Hive-partitioned input: filters with partition pruning, a key as a feature, partitioned labels

LAKE_FILTERS = [[["city", "in", ["nyc", "san jose"]], ["month", "<=", 4]], [["city", "==", "sf"], ["a", ">", 2.0]]]


def lake_expected(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows LAKE_FILTERS keep, in uid order."""
    keep = (frame.city.isin(["nyc", "san jose"]) & (frame.month <= 4)) | ((frame.city == "sf") & (frame.a > 2.0))
    return frame[keep].sort_values("uid").reset_index(drop=True)


@pytest.fixture(scope="module")
def lake_run(hive_lake, tmp_path_factory):
    """``dshift run`` on the Hive data plus a pruned partition holding a corrupt file."""
    frame, d = hive_lake
    work = tmp_path_factory.mktemp("lake-run")
    lake = work / "lake"
    shutil.copytree(d, lake)
    add_pruned_partition(str(lake))
    cfg = base_config(lake, work / "out", input={"columns": ["a", "b", "month"], "filters": LAKE_FILTERS},
                      output={"partition_by": ["city", "month"]}, plot={"x": "a", "y": "b", "sample": 500})
    (work / "job.yaml").write_text(yaml.safe_dump(cfg))
    return frame, lake, work, run_cli("run", str(work / "job.yaml"), cwd=work)


def test_lake_filters_prune_and_partition_labels(lake_run):
    frame, lake, work, proc = lake_run
    assert proc.returncode == 0, proc.stderr
    assert "(6 pruned by the filters)" in proc.stderr
    want = lake_expected(frame)
    labels = read_hive_labels(work / "out" / "labels")
    # Every filtered row exactly once (the pruned la rows absent), its partition values intact.
    assert labels["uid"].tolist() == want["uid"].tolist()
    assert labels["city"].tolist() == want["city"].tolist() and labels["month"].tolist() == want["month"].tolist()
    pd.testing.assert_frame_equal(labels[["a", "b", "c", "note"]], want[["a", "b", "c", "note"]], check_dtype=False)
    # The month key is a feature: clusters as scikit-learn's on (a, b, month).
    from sklearn.cluster import MeanShift

    ref = MeanShift(bandwidth=BANDWIDTH, bin_seeding=True).fit(want[["a", "b", "month"]].to_numpy(float))
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), ref.labels_)
    out = work / "out" / "labels"
    dirs = {p.parent.relative_to(out).as_posix() for p in out.rglob("*.parquet")}
    assert dirs == {f"city={c}/month={m}" for c, m in
                    want[["city", "month"]].assign(city=want.city.str.replace(" ", "%20")).itertuples(index=False)}

    report = json.loads((work / "out" / "report.json").read_text())
    unpruned = frame[(frame.city.isin(["nyc", "san jose"]) & (frame.month <= 4)) | (frame.city == "sf")]
    assert (report["n_rows_input"], report["n_rows"], report["n_files"], report["n_files_pruned"]) == (
        len(unpruned), len(want), 14, 6)
    assert report["filters"] == LAKE_FILTERS and report["feature_columns"] == ["a", "b", "month"]
    assert sorted(p.name for p in (work / "out").iterdir()) == [
        "_SUCCESS", "clusters.png", "dshift.log", "labels", "model.json", "report.json"]


def test_lake_validate_and_bad_filters(lake_run, cli, write_config):
    frame, lake, work, proc = lake_run
    cfg = yaml.safe_load((work / "job.yaml").read_text())
    cfg["output"]["path"] = str(work / "elsewhere")
    ok = cli("validate", str(write_config(cfg)))
    assert ok.returncode == 0, ok.stderr
    assert "14 files (6 pruned by input.filters)" in ok.stdout and "before input.filters" in ok.stdout

    cfg["input"]["filters"] = [["city", "==", "sf"], ["month", "=>", 3]]
    line = assert_user_error(cli("run", str(write_config(cfg))), "input.filters[1]", "unknown operator '=>'")
    assert line.startswith("config error:")
    cfg["input"]["filters"] = [["city", "==", "sf"], ["yeer", "==", 2024]]
    assert_user_error(cli("run", str(write_config(cfg))), "input.filters[1]", "column 'yeer' is not in the input",
                      "uid", "city", "month")
    cfg["input"]["filters"] = None  # the corrupt file is read now, and named
    assert_user_error(cli("run", str(write_config(cfg))), "city=la/month=03/part-1.parquet", "not a readable")
    cfg["input"]["filters"], cfg["output"]["partition_by"] = LAKE_FILTERS, ["town"]
    assert_user_error(cli("run", str(write_config(cfg))), "output.partition_by", "'town'")
    assert not (work / "elsewhere").exists()


def test_rows_too_far_apart_for_float64_are_one_line(tmp_path, write_config):
    """Two rows at -1e308 and 1e308: an estimated bandwidth would be infinite and a plot cannot
    show them; each is one line naming the setting, nothing written. With a bandwidth given and
    no plot the job runs."""
    frame = make_frame(n=900, seed=4)
    frame.loc[[3, 400], "a"] = [-1e308, 1e308]
    data = tmp_path / "data"
    write_parquet_files(frame, data, n_files=3)
    cases = [
        ({"model": {"bandwidth": None, "n_samples": None}}, 2, "model.bandwidth: the estimate from 900 sampled rows is inf"),
        ({"model": {"bandwidth": None, "sweep": {"quantiles": [0.3, 0.5]}}}, 2, "model.sweep.quantiles[0]: the estimate"),
        ({}, 2, "plot: the sampled rows span inf along 'PC 1'"),
        ({"plot": None}, 0, None),
    ]
    for i, (sections, code, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        cfg = base_config(data, out, cluster={"n_workers": 1}, **sections)
        if "sweep" in cfg["model"]:
            del cfg["model"]["bandwidth"]
        proc = run_cli("run", str(write_config(cfg, name=f"job{i}.yaml")), "--quiet", cwd=tmp_path)
        if code:
            assert needle in assert_user_error(proc) and not out.exists()
        else:
            assert proc.returncode == 0, proc.stderr
