"""``dshift run`` with ``input.weight_column`` and ``model.deduplicate`` (issue 11)."""

from __future__ import annotations

import json

import dask
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.cluster import MeanShift as SkMeanShift

from conftest import FEATURES, assert_user_error, base_config, make_frame, read_labels, run_cli, write_parquet_files
from dshift.config import ModelConfig
from dshift.io.inputs import open_input, scan_input
from dshift.batch import deduplicate_rows, fit_models

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _counts_frame(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Blobs rounded to a grid (rows repeat), a weight column with zeros, two NaN rows."""
    frame = make_frame(n=n, seed=seed)
    frame[FEATURES] = frame[FEATURES].round(0)
    frame["count"] = np.random.default_rng(seed).integers(0, 4, n)
    frame.loc[[5, 2000], "b"] = np.nan
    return frame


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    frame = _counts_frame()
    directory = tmp_path_factory.mktemp("counts") / "data"
    write_parquet_files(frame, directory, n_files=3)
    return frame, directory


def _run(tmp_path, data, name: str, **model) -> tuple:
    out = tmp_path / name
    cfg = base_config(data, out, input={"weight_column": "count", "nan_policy": "drop"},
                      model={"bin_seeding": False, **model})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return out, proc, json.loads((out / "report.json").read_text()), json.loads((out / "model.json").read_text())


def test_weighted_job_with_and_without_deduplication(counts, tmp_path):
    frame, data = counts
    out_a, proc_a, report_a, model_a = _run(tmp_path, data, "auto")  # auto: 3,000 rows, few distinct
    out_b, _, report_b, model_b = _run(tmp_path, data, "off", deduplicate=False)
    assert "deduplicate: auto:" in proc_a.stderr and "collapsing identical rows" in proc_a.stderr
    fit = frame.drop(index=[5, 2000])
    n_distinct = len(fit[fit["count"] > 0].drop_duplicates(FEATURES))
    assert report_a["deduplication"]["ran"] and report_a["n_rows_distinct"] == report_a["n_seeds"] == n_distinct
    assert report_b["deduplication"] == {"setting": False, "ran": False} and report_b["n_rows_distinct"] is None
    for r in (report_a, report_b):
        assert (r["n_rows"], r["n_rows_fit"], r["weight_column"]) == (3000, 2998, "count")
        assert r["weight_total"] == fit["count"].sum() and r["n_rows_zero_weight"] == (fit["count"] == 0).sum()
    # identical outputs: centers, n_iter, and the labels of every row, file by file
    assert model_a["cluster_centers"] == model_b["cluster_centers"] and model_a["n_iter"] == model_b["n_iter"]
    files = sorted(p.name for p in (out_a / "labels").iterdir())
    assert files == sorted(p.name for p in (out_b / "labels").iterdir())
    for name in files:
        pd.testing.assert_frame_equal(pd.read_parquet(out_a / "labels" / name), pd.read_parquet(out_b / "labels" / name))
    # scikit-learn on the repeated rows; rows of weight 0 labelled, NaN rows -1
    X, w = fit[FEATURES].to_numpy(), fit["count"].to_numpy()
    ref = SkMeanShift(bandwidth=2.0).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(model_a["cluster_centers"], ref.cluster_centers_, rtol=0, atol=1e-12)
    assert model_a["n_iter"] == ref.n_iter_
    labels = read_labels(out_a / "labels")
    assert labels["count"].tolist() == frame["count"].tolist()  # the weights stay a column of the output
    np.testing.assert_array_equal(labels["cluster"].to_numpy()[fit.index], ref.predict(X))
    assert (labels["cluster"].to_numpy()[[5, 2000]] == -1).all()


def test_bad_weights_are_a_user_error(counts, tmp_path):
    frame, _ = counts
    frame = frame.astype({"count": float})
    frame.loc[[7, 8, 1500], "count"] = [-1.0, np.nan, np.inf]
    write_parquet_files(frame, tmp_path / "bad", n_files=3)
    out = tmp_path / "out"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path / "bad", out,
                                                input={"weight_column": "count", "nan_policy": "drop"})))
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert_user_error(proc, "input.weight_column: 3 of 2,998 rows have a negative, NaN or infinite weight in 'count'")
    assert not out.exists()


@pytest.mark.usefixtures("threaded_dask")
@pytest.mark.parametrize("bin_seeding", [True, False])
def test_auto_decides_from_a_sample_and_the_fit_is_the_same(counts, tmp_path, bin_seeding):
    _, data = counts
    source = open_input(str(data), columns=FEATURES, weight_column="count")
    scanned = scan_input(source, nan_policy="drop", sample_rows=1000)
    model = ModelConfig(bandwidth=2.0, bin_seeding=bin_seeding)
    X, weights, fields = deduplicate_rows(scanned, model)
    assert fields["deduplication"]["ran"] and 500 < fields["deduplication"]["sample_rows"] < 1500
    assert fields["deduplication"]["sample_distinct_fraction"] <= 0.5 and X.shape[0] == fields["n_rows_distinct"]
    with dask.config.set({"dshift.persist": True}):
        (got,) = fit_models(X, [2.0], model, weights)
        (want,) = fit_models(scanned.X, [2.0], model.model_copy(update={"deduplicate": False}), scanned.weights)
    np.testing.assert_array_equal(got.cluster_centers, want.cluster_centers)
    assert got.n_iter == want.n_iter
    # continuous values: every row distinct, so auto leaves the rows alone
    write_parquet_files(make_frame(n=2000), tmp_path / "distinct", n_files=2)
    plain = scan_input(open_input(str(tmp_path / "distinct"), columns=FEATURES), sample_rows=1000)
    X, weights, fields = deduplicate_rows(plain, model)
    assert not fields["deduplication"]["ran"] and fields["deduplication"]["sample_distinct_fraction"] == 1.0
    assert X is plain.X and weights is None and fields["n_rows_distinct"] is None


def test_sweep_on_weighted_distinct_rows_equals_the_sweep_of_every_row(counts):
    """model.sweep with a weight column: the fits and the table of the distinct rows (their
    weights summed) are those of every row; shares are shares of the weight."""
    from dshift.batch import sweep_bandwidths
    from dshift.report import Stopwatch

    frame, data = counts
    scanned = scan_input(open_input(str(data), columns=FEATURES, weight_column="count"), nan_policy="drop")
    model = ModelConfig(bin_seeding=True, sweep={"bandwidths": [1.0, 2.0, 4.0]}, deduplicate=True)
    with dask.config.set({"dshift.persist": True}):
        got = sweep_bandwidths(scanned, model, Stopwatch())
        want = sweep_bandwidths(scanned, model.model_copy(update={"deduplicate": False}), Stopwatch())
    assert got.rows.fields["n_rows_distinct"] < scanned.n_rows_fit and want.rows.fields["n_rows_distinct"] is None
    for a, b in zip(got.fits, want.fits):
        np.testing.assert_array_equal(a.cluster_centers, b.cluster_centers)
        assert a.n_iter == b.n_iter
    columns = ["bandwidth", "n_clusters", "n_iter", "n_seeds"]
    pd.testing.assert_frame_equal(got.table[columns], want.table[columns])
    np.testing.assert_allclose(got.table["largest_cluster_share"], want.table["largest_cluster_share"], rtol=1e-12)
    fit = frame.dropna()
    labels = want.fits[1].labels.compute() if hasattr(want.fits[1].labels, "compute") else want.fits[1].labels
    shares = np.bincount(labels, weights=fit["count"].to_numpy()) / fit["count"].sum()
    assert want.table["largest_cluster_share"].iloc[1] == pytest.approx(shares.max(), rel=1e-12)


@pytest.mark.usefixtures("threaded_dask")
@pytest.mark.parametrize("rounded", [True, False])
def test_one_read_decides_auto_in_the_first_pass(tmp_path, rounded):
    """defer_scan: the fit's first pass counts the rows and takes the sample; auto collapsing
    then starts the fit again on the distinct rows. Same fit and fields as after a read pass."""
    from dshift.batch import fit_input
    from dshift.io.inputs import defer_scan
    from dshift.report import Stopwatch

    frame = make_frame(n=3000, seed=2)
    if rounded:
        frame[FEATURES] = frame[FEATURES].round(0)  # rows repeat: auto collapses them
    write_parquet_files(frame, tmp_path / "data", n_files=3)
    source = open_input(str(tmp_path / "data"), columns=FEATURES)
    model = ModelConfig(bandwidth=2.0, bin_seeding=True)
    data = defer_scan(source, sample_rows=1000)
    assert data.scan is None and np.isnan(data.X.shape[0]) and len(data.first_pass) == len(data.X.chunks[0])
    clock = Stopwatch()
    (fit,), rows = fit_input(data, [2.0], model, clock)
    assert ("read" in clock.timings) is rounded  # the dropped first pass is the read pass when collapsing
    (want,), want_rows = fit_input(scan_input(source, sample_rows=1000), [2.0], model, Stopwatch())
    assert rows.fields == want_rows.fields and rows.fields["deduplication"]["ran"] is rounded
    assert data.n_rows == 3000 and rows.X.shape[0] == (rows.fields["n_rows_distinct"] or 3000)
    np.testing.assert_array_equal(fit.cluster_centers, want.cluster_centers)
    ref = SkMeanShift(bandwidth=2.0, bin_seeding=True).fit(frame[FEATURES].to_numpy())
    np.testing.assert_allclose(fit.cluster_centers, ref.cluster_centers_, rtol=0, atol=1e-3 * 2.0)
    assert fit.n_iter == ref.n_iter_
