"""s3:// input and output against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import (
    BANDWIDTH,
    add_pruned_partition,
    assert_user_error,
    base_config,
    make_frame,
    make_lake_frame,
    read_hive_labels,
    read_labels,
    run_cli,
    sklearn_labels,
    write_hive,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def upload_parquet(frame, url: str, options: dict, n_files: int = 3) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **options)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        with fs.open(f"{root}/part-{i:03d}.parquet", "wb") as fh:
            frame.iloc[rows].to_parquet(fh, index=False)


def s3_listing(bucket: str, options: dict) -> list[str]:
    import fsspec

    fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **options)
    fs.invalidate_cache()
    return sorted(p[len(bucket) + 1:] for p in fs.find(bucket))


def test_s3_read_and_write(s3_server, s3_bucket, tmp_path):
    frame = make_frame(n=1500, seed=5)
    upload_parquet(frame, f"s3://{s3_bucket}/in", s3_server)
    inputs_before = s3_listing(s3_bucket, s3_server)
    out = f"s3://{s3_bucket}/results/run"
    cfg = base_config(f"s3://{s3_bucket}/in", out, input={"storage_options": s3_server},
                      output={"storage_options": s3_server}, cluster={"n_workers": 1})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet")
    assert proc.returncode == 0, proc.stderr

    listing = s3_listing(s3_bucket, s3_server)
    written = [p for p in listing if p.startswith("results/")]
    assert "results/run/_SUCCESS" in written and "results/run/model.json" in written
    assert "results/run/clusters.png" in written and "results/run/report.json" in written
    assert "results/run/dshift.log" in written  # the log, copied from the local state directory
    assert not any(".tmp-" in p or "_DSHIFT_COMMITTING" in p for p in listing)  # staging cleaned up
    assert [p for p in listing if p.startswith("in/")] == inputs_before  # input untouched

    labels = read_labels(f"{out}/labels", storage_options=s3_server)
    assert labels["uid"].tolist() == frame["uid"].tolist()
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), sklearn_labels(frame, BANDWIDTH, bin_seeding=True))

    import fsspec

    with fsspec.open(f"{out}/report.json", "r", **s3_server) as fh:
        assert json.load(fh)["n_rows"] == 1500

    # Existing output: exit 2, untouched.
    again = run_cli("run", str(tmp_path / "job.yaml"), "--quiet")
    assert again.returncode == 2 and "already exists" in again.stderr and out in again.stderr
    assert s3_listing(s3_bucket, s3_server) == listing


def test_s3_missing_input_is_a_user_error(s3_server, s3_bucket, tmp_path):
    cfg = base_config(f"s3://{s3_bucket}/nothing-here", f"s3://{s3_bucket}/out",
                      input={"storage_options": s3_server}, output={"storage_options": s3_server})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "input.path" in proc.stderr and "nothing-here" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.startswith("out") for p in s3_listing(s3_bucket, s3_server))


def test_s3_output_stage_overwrite_and_leftover(s3_server, s3_bucket):
    """Object-store commit: copy + _SUCCESS last; a half-copied leftover is replaced."""
    from dshift.errors import UserError
    from dshift.io.outputs import COMMITTING_MARKER, OutputStage, write_json

    url = f"s3://{s3_bucket}/o/run"
    for content in ("first", "second"):
        stage = OutputStage(url, s3_server, overwrite=True)
        with stage:
            write_json(stage.url_for("labels/x.json"), content, s3_server)
            stage.commit()
    assert s3_listing(s3_bucket, s3_server) == ["o/run/_SUCCESS", "o/run/labels/x.json"]
    with pytest.raises(UserError, match="already exists"):
        OutputStage(url, s3_server).check()

    # A killed commit leaves the marker and no _SUCCESS: the next run may replace it.
    import fsspec

    fs, _ = fsspec.core.url_to_fs(url, **s3_server)
    fs.rm(f"{s3_bucket}/o/run/_SUCCESS")
    fs.pipe(f"{s3_bucket}/o/run/{COMMITTING_MARKER}", b"")
    stage = OutputStage(url, s3_server, overwrite=False)
    with stage:
        write_json(stage.url_for("labels/y.json"), 1, s3_server)
        stage.commit()
    assert s3_listing(s3_bucket, s3_server) == ["o/run/_SUCCESS", "o/run/labels/y.json"]


def test_s3_hive_filters_pruning_and_partitioned_output(s3_server, s3_bucket, tmp_path, cli):
    """Hive keys, pruning past a corrupt file, and partitioned labels, all on the S3 server."""
    frame = make_lake_frame(n=1200, seed=4)
    write_hive(frame, f"s3://{s3_bucket}/lake", s3_server, files_per_dir=1)
    add_pruned_partition(f"s3://{s3_bucket}/lake", s3_server)
    out = f"s3://{s3_bucket}/results/lake"
    filters = [[["city", "==", "sf"]], [["city", "!=", "la"], ["month", "in", [3, 11]], ["b", "<", 3.0]]]
    cfg = base_config(f"s3://{s3_bucket}/lake", out, input={"storage_options": s3_server, "filters": filters},
                      output={"storage_options": s3_server, "partition_by": ["month"]}, cluster={"n_workers": 1},
                      plot=None)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_cli("run", str(tmp_path / "job.yaml"), "--quiet")
    assert proc.returncode == 0, proc.stderr

    want = frame[(frame.city == "sf") | (frame.month.isin([3, 11]) & (frame.b < 3.0))]
    want = want.sort_values("uid").reset_index(drop=True)
    labels = read_hive_labels(f"{out}/labels", storage_options=s3_server)
    assert labels["uid"].tolist() == want["uid"].tolist()  # every filtered row once, no la-* rows
    assert labels["month"].tolist() == want["month"].tolist() and "city" in labels  # city=... is a column again
    np.testing.assert_array_equal(labels["cluster"].to_numpy(), sklearn_labels(want, BANDWIDTH, bin_seeding=True))
    listing = s3_listing(s3_bucket, s3_server)
    assert {p.split("/")[3] for p in listing if p.startswith("results/lake/labels/")} == {"month=3", "month=4",
                                                                                         "month=11"}
    assert "results/lake/_SUCCESS" in listing

    import fsspec

    with fsspec.open(f"{out}/report.json", "r", **s3_server) as fh:
        report = json.load(fh)
    assert (report["n_rows"], report["n_files"], report["n_files_pruned"]) == (len(want), 7, 4)
    assert report["n_rows_input"] == int(((frame.city == "sf") | frame.month.isin([3, 11])).sum())

    cfg["input"]["filters"] = [["city", "==", "sf"], ["yeer", "==", 1]]
    cfg["output"]["path"] = f"s3://{s3_bucket}/results/other"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    assert_user_error(cli("run", str(tmp_path / "bad.yaml")), "input.filters[1]", "'yeer'", "not in the input")


def test_s3_output_lock_is_a_leased_marker(s3_server, s3_bucket):
    """On S3 the lock is a marker with a lease: created write-if-absent, refused while live, taken
    over once expired with a conditional write (only one of two racers wins), checked before
    the commit, removed at the end."""
    import socket
    import time

    import fsspec

    from dshift.errors import UserError
    from dshift.io.locks import OutputLock, Owner
    from dshift.io.outputs import OutputStage, write_json

    url = f"s3://{s3_bucket}/o/run"
    fs, _ = fsspec.core.url_to_fs(url, **s3_server)
    marker = f"{s3_bucket}/o/.run.lock"
    first = OutputStage(url, s3_server).open()
    try:
        assert Owner.parse(fs.cat_file(marker)).token == first.lock.token
        with pytest.raises(UserError, match=rf"output.path '{url}' is in use by another dshift job \(host "):
            OutputStage(url, s3_server).open()
    finally:
        first.close()
    assert s3_listing(s3_bucket, s3_server) == []

    # A marker from another host: live while its lease runs, stale after.
    other = Owner(host="elsewhere", pid=1, started=time.time() - 600, token="0f0f0f", renewed=time.time())
    fs.pipe_file(marker, other.dump())
    with pytest.raises(UserError, match=r"\(host elsewhere, pid 1, started .*\); wait for it"):
        OutputStage(url, s3_server).open()
    other.renewed = time.time() - 300
    fs.pipe_file(marker, other.dump())
    stage = OutputStage(url, s3_server)
    assert stage.holder() is None
    with stage:
        assert stage.lock.held and Owner.parse(fs.cat_file(marker)).host == socket.gethostname()
        # Of two jobs replacing the same version (a stale marker), one wins: If-Match.
        fs.invalidate_cache()
        version = fs.info(marker)["ETag"]
        racers = [OutputLock(fs, f"{s3_bucket}/o", "run", url=url, what="output.path") for _ in range(2)]
        assert racers[0]._replace_marker(version) and not racers[1]._replace_marker(version)
        # Another job took the lock over (this job's lease lapsed): nothing is committed.
        fs.pipe_file(marker, other.dump())
        write_json(stage.url_for("x.json"), 1, s3_server)
        with pytest.raises(UserError, match="lock was taken over by another dshift job .host elsewhere"):
            stage.commit()
    assert s3_listing(s3_bucket, s3_server) == ["o/.run.lock"]  # the other job's marker, kept


def test_a_store_that_cannot_be_reached_is_one_line(tmp_path, parquet_input):
    """No server at the endpoint, or storage_options its client refuses: one line naming the
    setting and what to check; exit 2 for the input, 74 (a storage fault) for the output."""
    pytest.importorskip("s3fs")
    from conftest import free_port

    _, data = parquet_input
    dead = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    cases = [
        ("validate", {"input": {"path": "s3://bucket/in", "storage_options": dead}}, 2,
         ["input.path: cannot list 's3://bucket/in' (EndpointConnectionError", "check the address"]),
        ("validate", {"input": {"path": "s3://bucket/in", "storage_options": {"endpointurl": "http://x"}}}, 2,
         ["input.path: cannot list 's3://bucket/in' (TypeError", "storage_options"]),
        ("run", {"output": {"path": "s3://bucket/out", "storage_options": dead}}, 74,
         ["output: cannot write 's3://bucket/out' (EndpointConnectionError", "check the address"]),
    ]
    for i, (command, sections, code, needles) in enumerate(cases):
        cfg = base_config(str(data), str(tmp_path / "out"), cluster={"n_workers": 1})
        for section, values in sections.items():
            cfg[section].update(values)
        (tmp_path / f"job{i}.yaml").write_text(yaml.safe_dump(cfg))
        proc = run_cli(command, str(tmp_path / f"job{i}.yaml"), *(["--quiet"] if command == "run" else []))
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
        assert all(n in lines[-1] for n in needles), lines[-1]
