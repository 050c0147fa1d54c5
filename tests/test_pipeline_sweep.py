"""``dshift run`` / ``validate`` with ``model.sweep``: sweep.csv, sweep.png, the chosen bandwidth's outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import assert_user_error, base_config, read_labels, run_cli
from dshift.sweep import TABLE_COLUMNS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SWEPT = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0]  # on the shared blobs: 3 clusters from 2 to 4
CHOSEN = 3.0  # the log-middle of 2 .. 4 is 2.83


def _job(work, name: str, data, **model) -> str:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base_config(data, work / name, model={"bandwidth": ..., **model})))
    return str(path)


@pytest.fixture(scope="module")
def sweep_run(blobs, tmp_path_factory):
    """A sweep of 7 bandwidths (listed out of order), select: auto."""
    _, data = blobs
    work = tmp_path_factory.mktemp("sweep-run")
    proc = run_cli("run", _job(work, "sweep", data, sweep={"bandwidths": SWEPT[::-1]}), cwd=work)
    return work, work / "sweep", proc


def test_sweep_writes_table_picture_and_chosen_outputs(sweep_run):
    _, out, proc = sweep_run
    assert proc.returncode == 0, proc.stderr
    for line in ("shift iteration 0 (bandwidth 0.5)", "shift iteration 0 (bandwidth 8)",
                 "sweep: bandwidth 2: 3 clusters",
                 f"sweep: suggested bandwidth {CHOSEN:g}: 3 clusters at every swept bandwidth from 2 to 4"):
        assert line in proc.stderr, line
    assert {p.name for p in out.iterdir()} >= {"labels", "model.json", "report.json", "clusters.png", "sweep.csv",
                                               "sweep.png", "_SUCCESS"}
    table = pd.read_csv(out / "sweep.csv")
    assert list(table.columns) == TABLE_COLUMNS and table["bandwidth"].tolist() == SWEPT
    assert table["n_clusters"].tolist()[3:6] == [3, 3, 3] and table["n_clusters"].iloc[0] > 100
    png = (out / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    assert matplotlib.image.imread(out / "sweep.png").shape[2] in (3, 4)  # decodes as an image
    report = json.loads((out / "report.json").read_text())
    sweep = report["sweep"]
    assert (sweep["select"], sweep["chosen"], sweep["suggested"], sweep["stable_range"]) == ("auto", CHOSEN, CHOSEN,
                                                                                            [2.0, 4.0])
    assert "widest range" in sweep["reason"]
    assert pd.DataFrame(sweep["table"]).equals(table)
    assert (report["bandwidth"], report["n_clusters"], report["bandwidth_estimated"]) == (CHOSEN, 3, False)
    assert "sweep_sizes" in report["timings"]
    row = table.set_index("bandwidth").loc[CHOSEN]
    assert row["largest_cluster_share"] == max(report["cluster_sizes"].values()) / report["n_rows"]


def test_chosen_bandwidth_equals_a_plain_run(sweep_run, blobs):
    work, out, proc = sweep_run
    assert proc.returncode == 0, proc.stderr
    plain = run_cli("run", _job(work, "plain", blobs[1], bandwidth=CHOSEN, bin_seeding=True), cwd=work)
    assert plain.returncode == 0, plain.stderr
    swept_model = json.loads((out / "model.json").read_text())
    plain_model = json.loads((work / "plain" / "model.json").read_text())
    for key in ("cluster_centers", "bandwidth", "n_iter", "feature_columns", "cluster_all"):
        assert swept_model[key] == plain_model[key], key
    assert swept_model["parameters"]["sweep"]["bandwidths"] == SWEPT[::-1]
    pd.testing.assert_frame_equal(read_labels(out / "labels"), read_labels(work / "plain" / "labels"))
    sizes = [json.loads((d / "report.json").read_text())["cluster_sizes"] for d in (out, work / "plain")]
    assert sizes[0] == sizes[1]


def test_select_and_quantiles(blobs, tmp_path, threaded_dask):
    """The pipeline's sweep stage in this process: quantiles from one sample, select naming one."""
    import dshift
    from dshift.config_load import parse_config
    from dshift.io.inputs import scan_input
    from dshift.batch import sweep_bandwidths
    from dshift.pipelines.cluster_parquet import open_job_input
    from dshift.report import Stopwatch

    cfg = parse_config(base_config(blobs[1], tmp_path / "out", model={
        "bandwidth": ..., "n_samples": 500, "sweep": {"quantiles": [0.3, 0.05, 0.15], "select": 0.05}}))
    data = scan_input(open_job_input(cfg), sample_rows=1000)  # model.deduplicate: auto decides from it
    clock = Stopwatch()
    sweep = sweep_bandwidths(data, cfg.model, clock)
    expected = [float(dshift.estimate_bandwidth(data.X, quantile=q, n_samples=500)) for q in (0.05, 0.15, 0.3)]
    assert sweep.table["bandwidth"].tolist() == expected and sweep.table["quantile"].tolist() == [0.05, 0.15, 0.3]
    assert (sweep.index, sweep.fit.bandwidth, sweep.estimated) == (0, expected[0], True)
    report = sweep.report()
    assert (report["select"], report["chosen"]) == (0.05, expected[0])
    assert report["suggested"] in expected
    assert "bandwidth" in clock.timings and "sweep_sizes" in sweep.fit.timings
    one = dshift.MeanShift(bandwidth=expected[0], bin_seeding=True).fit(data.X)
    assert np.array_equal(sweep.fit.cluster_centers, one.cluster_centers_)


def test_validate_and_refusals(blobs, tmp_path, cli):
    data = blobs[1]
    ok = cli("validate", _job(tmp_path, "ok", data, bin_seeding=True, sweep={"range": {"min": 1.0, "max": 4.0,
                                                                                        "num": 3}}))
    assert ok.returncode == 0, ok.stderr
    assert "seeds per swept bandwidth (" in ok.stdout and "1: at least" in ok.stdout and "4: at least" in ok.stdout
    tiny = _job(tmp_path, "tiny", data, bin_seeding=True, max_seeds=1000, sweep={"bandwidths": [1.0e-9, 2.0]})
    for command in ("validate", "run"):  # refused before any cluster starts
        assert_user_error(cli(command, tiny), "model.max_seeds:", "bandwidth 1e-09",
                          "sweep only bandwidths above 1e-09 in model.sweep")
    assert not (tmp_path / "tiny").exists()
    both = _job(tmp_path, "both", data, bandwidth=2.0, sweep={"bandwidths": [1.0, 2.0]})
    assert_user_error(cli("run", both), "config error: model: set model.bandwidth or model.sweep, not both")
    assert not (tmp_path / "both").exists()
