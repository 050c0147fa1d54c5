"""The job against a real ``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import (
    BANDWIDTH,
    add_pruned_partition,
    base_config,
    read_hive_labels,
    read_labels,
    run_cli,
    sklearn_labels,
    tree_digest,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_run_on_existing_scheduler_matches_sklearn(dask_scheduler, blobs, tmp_path):
    frame, data = blobs
    before = tree_digest(data)
    out = tmp_path / "out"
    cfg = base_config(data, out, cluster={"address": dask_scheduler, "connect_timeout": 20}, plot=None)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"connected to {dask_scheduler} (2 workers)" in proc.stderr
    labels = read_labels(out / "labels")
    assert labels["uid"].tolist() == frame["uid"].tolist()
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), sklearn_labels(frame, BANDWIDTH, bin_seeding=True))
    report = json.loads((out / "report.json").read_text())
    assert report["n_rows"] == len(frame) and not (out / "clusters.png").exists()
    assert tree_digest(data) == before

    # predict on the same scheduler reproduces the labels from model.json alone
    pred = tmp_path / "pred"
    proc = run_cli("predict", "--model", str(out / "model.json"), "--input", str(data), "--output", str(pred),
                   "--address", dask_scheduler, "--quiet")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_labels(pred / "labels")["cluster"], labels["cluster"])


def test_scheduler_survives_a_failed_job(dask_scheduler, tmp_path):
    """A user error on a shared scheduler exits 2 and leaves the scheduler usable."""
    from conftest import make_frame, write_parquet_files

    frame = make_frame(n=200)
    frame.loc[7, "a"] = np.nan
    write_parquet_files(frame, tmp_path / "nan", n_files=2)
    cfg = base_config(tmp_path / "nan", tmp_path / "out", cluster={"address": dask_scheduler})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet")
    assert proc.returncode == 2 and "1 of 200 rows" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
    from distributed import Client

    with Client(dask_scheduler, timeout=20) as client:
        assert client.submit(sum, [1, 2]).result() == 3


def test_hive_filters_and_partitioned_output_on_scheduler(dask_scheduler, hive_lake, tmp_path):
    """Workers in other processes read the given partitioning; predict takes the same options."""
    frame, d = hive_lake
    lake = tmp_path / "lake"
    shutil.copytree(d, lake)
    add_pruned_partition(str(lake))
    filters = [["city", "in", ["sf", "san jose"]], ["month", "!=", 4]]
    cfg = base_config(lake, tmp_path / "out", input={"filters": filters}, output={"partition_by": ["city"]},
                      cluster={"address": dask_scheduler, "connect_timeout": 20}, plot=None)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    want = frame[frame.city.isin(["sf", "san jose"]) & (frame.month != 4)].sort_values("uid").reset_index(drop=True)
    labels = read_hive_labels(tmp_path / "out" / "labels")
    assert labels["uid"].tolist() == want["uid"].tolist() and labels["city"].tolist() == want["city"].tolist()
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), sklearn_labels(want, BANDWIDTH, bin_seeding=True))
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["city=san%20jose", "city=sf"]

    pred = tmp_path / "pred"
    proc = run_cli("predict", "--model", str(tmp_path / "out" / "model.json"), "--input", str(lake),
                   "--output", str(pred), "--address", dask_scheduler, "--quiet",
                   "--filters", json.dumps(filters), "--partition-by", "month", "cluster")
    assert proc.returncode == 0, proc.stderr
    predicted = read_hive_labels(pred / "labels")
    assert predicted["uid"].tolist() == want["uid"].tolist()
    np.testing.assert_array_equal(predicted["cluster"].to_numpy(), labels["cluster"].to_numpy())
    assert {p.parent.parent.name for p in (pred / "labels").rglob("*.parquet")} == {"month=3", "month=11"}
    report = json.loads((pred / "report.json").read_text())
    assert (report["n_rows"], report["n_files_pruned"], report["filters"]) == (len(want), 12, filters)

    bad = run_cli("predict", "--model", str(tmp_path / "out" / "model.json"), "--input", str(lake),
                  "--output", str(tmp_path / "bad"), "--address", dask_scheduler, "--filters", '[["city", "=>", 1]]')
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: --filters[0]: unknown operator '=>' (use ==, !=, <, <=, >, >=, in, not in)"), bad.stderr
