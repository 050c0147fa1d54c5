"""``dshift run`` with many seeds or many clusters: max_seeds, progress, a cluster per point."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FEATURES, assert_user_error, base_config, make_frame, read_labels, run_cli, write_parquet_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def rows15k(tmp_path_factory):
    """15,000 rows in 3 files: more clusters than model.json holds inline when each row is one."""
    frame = make_frame(n=15_000, seed=21)
    directory = tmp_path_factory.mktemp("rows15k") / "data"
    write_parquet_files(frame, directory, n_files=3)
    return frame, directory


def _write(tmp_path, cfg: dict):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("model, needles", [
    ({"bin_seeding": False, "max_seeds": 1000}, ["4,000 seeds", "max_seeds=1,000", "bin_seeding: false",
                                                 "set model.bin_seeding: true"]),
    ({"bin_seeding": True, "bandwidth": 1.0e-9, "max_seeds": 1000},
     ["4,000 seeds", "every row in a bin of its own", "raise model.bandwidth"]),
])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_max_seeds_refuses_before_shifting(blobs, tmp_path, model, needles, command):
    _, data = blobs
    out = tmp_path / "out"
    cfg = _write(tmp_path, base_config(data, out, model=model))
    proc = run_cli(command, str(cfg), cwd=tmp_path)
    last = assert_user_error(proc, "model.max_seeds:", *needles)
    assert "shift iteration" not in proc.stderr
    assert not out.exists() and not any(p.name.startswith(".out.tmp") for p in tmp_path.iterdir()), last


def test_validate_reports_the_seed_count(blobs, tmp_path):
    _, data = blobs
    cfg = _write(tmp_path, base_config(data, tmp_path / "out", model={"bin_seeding": False}))
    proc = run_cli("validate", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "seeds: 4,000 (every row)" in proc.stdout
    cfg = _write(tmp_path, base_config(data, tmp_path / "out"))
    proc = run_cli("validate", str(cfg), cwd=tmp_path)
    assert re.search(r"seeds: at least \d+ grid bins \([\d,]+ rows sampled\)", proc.stdout), proc.stdout


@pytest.mark.parametrize("bin_size", [0.5, 1.0, 3.0, 1e-9])
def test_precheck_counts_the_bins_bin_seeding_finds(bin_size):
    """The driver counts a sample's bins with NumPy (no compiled kernel before the cluster starts);
    the count is bin_table's, with halves rounded to even and -0.0 in the bin of 0.0."""
    from dshift.batch import count_bins
    from dshift.seeding import bin_table

    rng = np.random.default_rng(7)
    sample = np.concatenate([rng.normal(0, 4, (3000, 3)), np.round(rng.normal(0, 4, (2000, 3)) * 2) / 2,
                             [[-0.0, 0.0, -0.0], [0.0, -0.0, 0.0], [-0.25, 0.25, 0.5]]])
    assert count_bins(sample, bin_size) == len(bin_table(sample, bin_size).counts)


def test_long_pass_reports_progress(blobs, tmp_path):
    """Every row a seed in small blocks, progress every 0.2 s: lines name blocks done of total."""
    frame, data = blobs
    cfg = _write(tmp_path, base_config(data, tmp_path / "out", model={"bin_seeding": False}))
    proc = run_cli("run", str(cfg), cwd=tmp_path, env={"DASK_DSHIFT__PROGRESS_INTERVAL": "0.05",
                                                         "DASK_DSHIFT__SEED_BLOCK_SIZE": "400"})
    assert proc.returncode == 0, proc.stderr
    progress = re.findall(r"shift iteration 0 \(4,000 seeds in (\d+) blocks\): (\d+)/(\d+) seed blocks done, "
                          r"(\d+) s", proc.stderr)
    assert progress and all(int(total) == int(n) >= 8 for n, _, total, _ in progress), proc.stderr
    assert all(line.startswith("[dshift ") for line in proc.stderr.splitlines() if line.strip())
    import dshift

    ref = dshift.MeanShift(bandwidth=2.0).fit(frame[FEATURES].to_numpy())  # exact vs sklearn: test_estimator
    np.testing.assert_array_equal(read_labels(tmp_path / "out" / "labels")["cluster"].to_numpy(), ref.labels_)


def test_a_cluster_per_row_round_trips_through_centers_parquet(rows15k, tmp_path):
    """bandwidth 1e-9: 15,000 clusters; the centers go to centers.parquet, labels and predict agree."""
    frame, data = rows15k
    out = tmp_path / "out"
    cfg = _write(tmp_path, base_config(data, out, model={"bandwidth": 1.0e-9, "max_seeds": 20_000}))
    proc = run_cli("run", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = json.loads((out / "model.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert model["cluster_centers"] is None and model["cluster_centers_file"] == "centers.parquet"
    centers = pd.read_parquet(out / "centers.parquet")[FEATURES].to_numpy()
    assert len(centers) == report["n_clusters"] == report["n_seeds"] == 15_000
    assert len(report["cluster_sizes"]) == 1_000 and report["cluster_sizes_omitted"] == 14_000
    labels = read_labels(out / "labels")
    X = frame[FEATURES].to_numpy()
    np.testing.assert_array_equal(centers[labels["cluster"].to_numpy()], X)  # each row its own center
    # scikit-learn's order: all intensities are 1, so centers sort by coordinates, descending
    assert np.all(np.diff(centers[:, 0]) <= 0)
    pred = tmp_path / "pred"
    proc = run_cli("predict", "--model", str(out / "model.json"), "--input", str(data), "--output", str(pred),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_labels(pred / "labels")["cluster"], labels["cluster"])
