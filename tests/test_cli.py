"""The ``dshift`` command as a user runs it: help, version, validate, and every bad input.

Every user error must exit 2 with one line naming the key/column/file and write nothing at
output.path. Most are caught before a cluster starts; NaN, empty data and an unreachable
scheduler need one.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from conftest import assert_user_error, base_config, free_port, make_frame, run_cli, write_parquet_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def job(tmp_path, blobs, write_config):
    """``job(**sections) -> (config path, output path)`` on the shared blobs."""
    _, data = blobs
    out = tmp_path / "out" / "result"

    def make(*, input_path=None, **sections):
        cfg = base_config(input_path or data, out, **sections)
        return write_config(cfg), out

    return make


def assert_nothing_written(out: Path, proc: Optional[subprocess.CompletedProcess] = None) -> None:
    """Nothing at ``out`` nor next to it, except a log that the last line of ``proc`` names (a
    job that ran on the cluster keeps its log when libraries wrote to it)."""
    assert not out.exists()
    if out.parent.exists():
        left = list(out.parent.iterdir())
        last = proc.stderr.strip().splitlines()[-1] if proc is not None else ""
        assert [p for p in left if f"; log: {p}" not in last] == [], (left, last)


# --------------------------------------------------------------------------------------------
# help, version, validate


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["validate", "--help"], ["predict", "--help"]])
def test_help(cli, args):
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "usage: dshift" in proc.stdout


def test_predict_help_documents_data_lake_options(cli):
    text = " ".join(cli("predict", "--help").stdout.split())
    assert "--filters JSON" in text and "--partition-by COL [COL ...]" in text and "not in" in text


def test_version_and_console_script():
    import dshift.report

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"dshift {dshift.report.dshift_version()}"
    script = Path(__import__("sys").executable).with_name("dshift")
    if script.exists():
        assert subprocess.run([str(script), "--help"], capture_output=True, text=True).returncode == 0


@pytest.mark.parametrize("args, line", [
    ([], "dshift: error: the following arguments are required: COMMAND (see dshift --help)"),
    (["run"], "dshift run: error: the following arguments are required: CONFIG.yaml (see dshift run --help)"),
    (["validate"], "dshift validate: error: the following arguments are required: CONFIG.yaml (see dshift validate "
                   "--help)"),
    (["run", "job.yaml", "extra"], "dshift: error: unrecognized arguments: extra (see dshift --help)"),
    (["run", "--bogus", "job.yaml"], "dshift: error: unrecognized arguments: --bogus (see dshift --help)"),
    (["predict", "--model", "m.json"], "dshift predict: error: the following arguments are required: --input, "
                                       "--output (see dshift predict --help)"),
])
def test_usage_errors_are_one_line(cli, args, line):
    proc = cli(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")


def test_usage_error_of_the_program_is_one_line():
    proc = run_cli("run")
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "dshift run: error: the following arguments are required: CONFIG.yaml (see dshift run --help)"]


def test_validate_good(cli, job):
    cfg, _ = job()
    proc = cli("validate", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout and "4,000 rows" in proc.stdout and "a, b, c" in proc.stdout


def test_validate_demo_config():
    proc = run_cli("validate", str(REPO / "configs" / "demo.yaml"), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout


def test_validate_bad(cli, job):
    cfg, _ = job(model={"bandwidth": -1})
    assert_user_error(cli("validate", str(cfg)), "model.bandwidth", "> 0", "-1")


# --------------------------------------------------------------------------------------------
# config errors (no cluster is started)


@pytest.mark.parametrize(
    "sections, needles",
    [
        ({"modle": {}}, ["unknown key 'modle'", "did you mean 'model'"]),
        ({"model": {"bandwdth": 1.0}}, ["model.bandwdth", "did you mean 'model.bandwidth'"]),
        ({"cluster": {"n_worker": 2}}, ["cluster.n_worker", "cluster.n_workers"]),
        ({"model": {"bandwidth": -1}}, ["model.bandwidth", "must be > 0", "got -1"]),
        ({"model": {"bandwidth": 0}}, ["model.bandwidth", "must be > 0"]),
        ({"model": {"bandwidth": "2"}}, ["model.bandwidth", "must be a number"]),
        ({"model": {"bandwidth": float("inf")}}, ["config error: model.bandwidth: must be a finite number (got .inf)"]),
        ({"cluster": {"n_workers": 100_000}}, ["config error: cluster.n_workers: 100,000 worker processes are too many "
                                               "for a local cluster", "use fewer, or cluster.address"]),
        ({"cluster": {"memory_limit": "1KiB"}}, ["config error: cluster.memory_limit: '1KiB' per worker is too small: "
                                                 "a worker needs at least 512 MiB"]),
        ({"model": {"min_bin_freq": 0}}, ["model.min_bin_freq", ">= 1"]),
        ({"model": {"min_bin_freq": 1.5}}, ["model.min_bin_freq", "integer"]),
        ({"model": {"max_iter": -1}}, ["model.max_iter", ">= 0"]),
        ({"model": {"quantile": 1.5}}, ["model.quantile", "<= 1"]),
        ({"model": {"quantile": -0.1}}, ["model.quantile", ">= 0"]),
        ({"model": {"bin_seeding": "yes"}}, ["model.bin_seeding", "true or false"]),
        ({"model": {"cluster_all": 1}}, ["model.cluster_all", "true or false"]),
        ({"input": {"nan_policy": "ignore"}}, ["input.nan_policy", "error", "drop"]),
        ({"cluster": {"persist": "sometimes"}}, ["cluster.persist", "auto, true or false"]),
        ({"cluster": {"address": "localhost"}}, ["cluster.address", "tcp://"]),
        ({"output": {"overwrite": "no"}}, ["output.overwrite", "true or false"]),
        ({"output": ...}, ["output", "required"]),
        ({"plot": {"x": "a"}}, ["plot", "both"]),
    ],
)
def test_config_errors(cli, job, sections, needles):
    cfg, out = job(**sections)
    assert_user_error(cli("run", str(cfg)), *needles)
    assert_nothing_written(out)


def test_yaml_syntax_error_names_file_and_line(cli, write_config, tmp_path):
    cfg = write_config("input:\n  path: data\n  columns: [a, b\noutput:\n  path: out\n")
    line = assert_user_error(cli("run", str(cfg)), str(cfg), "line")
    assert line.startswith("config error:")


def test_python_yaml_tag_is_rejected_not_executed(write_config, tmp_path):
    marker = tmp_path / "pwned"
    cfg = write_config(f"input: !!python/object/apply:os.system ['touch {marker}']\noutput:\n  path: out\n")
    assert_user_error(run_cli("run", str(cfg)), "python/object/apply:os.system", "not allowed")
    assert not marker.exists()


def test_missing_config_file(cli, tmp_path):
    assert_user_error(cli("run", str(tmp_path / "nope.yaml")), "nope.yaml", "does not exist")


@pytest.mark.parametrize("sections", [{"model": {"bandwidth": float("inf")}}, {"cluster": {"n_workers": 100_000}},
                                      {"cluster": {"memory_limit": "1KiB"}}])
def test_validate_catches_values_that_cannot_run(cli, job, sections):
    cfg, out = job(**sections)
    line = assert_user_error(cli("validate", str(cfg)), *(f"{section}.{key}" for section, values in sections.items()
                                                          for key in values))
    assert line.startswith("config error:")
    assert_nothing_written(out)


def test_validate_refuses_repeated_keys(cli, job):
    cfg, out = job()
    cfg.write_text(cfg.read_text() + "model:\n  bandwidth: 99.0\n")
    first = 1 + cfg.read_text().splitlines().index("model:")
    last = len(cfg.read_text().splitlines()) - 1
    assert_user_error(cli("validate", str(cfg)), f"config error: {cfg}: line {last}, column 1: duplicate key 'model' "
                                                 f"(also on line {first}); keep one of them")
    assert_nothing_written(out)


def test_predict_n_workers_bound_names_the_options(cli, tmp_path, blobs):
    _, data = blobs
    proc = cli("predict", "--model", str(tmp_path / "model.json"), "--input", str(data), "--output",
               str(tmp_path / "pred"), "--n-workers", "100000")
    assert_user_error(proc, "error: --n-workers: 100,000 worker processes are too many", "or --address (an existing")


# --------------------------------------------------------------------------------------------
# data and path errors caught before the cluster starts


def test_input_path_missing(cli, job, tmp_path):
    cfg, out = job(input_path=tmp_path / "no-such-data")
    assert_user_error(cli("run", str(cfg)), "input.path", "no-such-data", "does not exist")
    assert_nothing_written(out)


def test_missing_column_is_named_with_available(cli, job):
    cfg, out = job(input={"columns": ["a", "bee", "c"]})
    assert_user_error(cli("run", str(cfg)), "'bee'", "available", "uid", "ts")
    assert_nothing_written(out)


def test_non_numeric_feature_columns_named(cli, job):
    cfg, out = job(input={"columns": ["a", "uid", "ts"]})
    assert_user_error(cli("run", str(cfg)), "numeric", "'uid'", "'ts'")
    assert_nothing_written(out)


def test_corrupt_parquet_file_named(cli, tmp_path, job):
    frame = make_frame(n=400)
    data = tmp_path / "corrupt"
    paths = write_parquet_files(frame, data, n_files=3)
    paths[1].write_bytes(paths[1].read_bytes()[:-100])  # truncated footer
    cfg, out = job(input_path=data)
    assert_user_error(cli("run", str(cfg)), paths[1].name, "not a readable Parquet file")
    assert_nothing_written(out)


def test_directory_without_parquet_files_is_empty(cli, tmp_path, job):
    (tmp_path / "empty").mkdir()
    cfg, out = job(input_path=tmp_path / "empty")
    assert_user_error(cli("run", str(cfg)), "empty")
    assert_nothing_written(out)


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_equal_to_or_inside_input(cli, tmp_path, write_config, where):
    frame = make_frame(n=300)
    data = tmp_path / "data"
    write_parquet_files(frame, data, n_files=2)
    before = sorted(p.name for p in data.iterdir())
    out = data if where == "same" else data / "sub" / "out"
    cfg = write_config(base_config(data, out))
    assert_user_error(cli("run", str(cfg)), "output.path", "input.path")
    assert sorted(p.name for p in data.iterdir()) == before


def test_predict_feature_count_mismatch(cli, tmp_path, blobs):
    _, data = blobs
    model = {"cluster_centers": [[0.0, 0.0], [5.0, 5.0]], "bandwidth": 1.0, "feature_columns": ["a", "b"]}
    (tmp_path / "model.json").write_text(__import__("json").dumps(model))
    out = tmp_path / "pred"
    proc = cli("predict", "--model", str(tmp_path / "model.json"), "--input", str(data), "--output", str(out),
                   "--columns", "a", "b", "c")
    assert_user_error(proc, "--columns", "2 features", "3 columns")
    assert not out.exists()
    model["feature_columns"] = ["a", "zz"]
    (tmp_path / "model.json").write_text(__import__("json").dumps(model))
    proc = cli("predict", "--model", str(tmp_path / "model.json"), "--input", str(data), "--output", str(out))
    assert_user_error(proc, "'zz'", "not in the input")
    assert not out.exists()


def test_predict_bad_model_file(cli, tmp_path, blobs):
    _, data = blobs
    (tmp_path / "model.json").write_text("{not json")
    proc = cli("predict", "--model", str(tmp_path / "model.json"), "--input", str(data),
                   "--output", str(tmp_path / "pred"))
    assert_user_error(proc, "model.json", "not valid JSON")


# --------------------------------------------------------------------------------------------
# errors found on the cluster (one worker to keep them quick)


@pytest.mark.slow
def test_nan_in_features_counts_rows(tmp_path, job):
    frame = make_frame(n=600)
    frame.loc[[3, 10, 400], "b"] = np.nan
    frame.loc[500, "c"] = np.inf
    data = tmp_path / "nan"
    write_parquet_files(frame, data, n_files=2)
    cfg, out = job(input_path=data, cluster={"n_workers": 1})
    proc = run_cli("run", str(cfg), "--quiet")
    assert_user_error(proc, "4 of 600 rows", "NaN or infinity", "nan_policy")
    assert_nothing_written(out, proc)


@pytest.mark.slow
def test_zero_row_data_set(tmp_path, job):
    data = tmp_path / "zero"
    write_parquet_files(make_frame(n=10).iloc[:0], data, n_files=2)
    cfg, out = job(input_path=data, cluster={"n_workers": 1})
    proc = run_cli("run", str(cfg), "--quiet")
    assert_user_error(proc, "empty", "0 rows")
    assert_nothing_written(out, proc)


@pytest.mark.slow
def test_unreachable_scheduler_fails_within_timeout(job):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    cfg, out = job(cluster={"address": address, "connect_timeout": 5})
    t0 = time.monotonic()
    proc = run_cli("run", str(cfg), "--quiet", timeout=120)
    elapsed = time.monotonic() - t0
    assert_user_error(proc, "cluster.address", address)
    assert elapsed < 5 + 25, elapsed  # the timeout plus interpreter start-up
    assert_nothing_written(out, proc)
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr


def test_unexpected_error_is_one_line_and_the_traceback_is_in_the_log(capsys):
    """Exit 1 for a bug: one line on the terminal naming the log, the traceback in the log."""
    from dshift.cli import _Outcome
    from dshift.logs import JobLog

    outcome = _Outcome("run", JobLog(), set())
    try:
        {}["missing"]
    except KeyError as exc:
        failure = exc
    code, line = outcome.classify(failure, None)
    assert (code, line) == (1, "dshift: unexpected error: KeyError: 'missing'")
    assert outcome.finish(code, line, restore_stderr=True) == 1
    terminal = capsys.readouterr().err.strip()
    assert terminal.startswith(line + "; log: ") and "Traceback" not in terminal
    log = Path(terminal.split("; log: ")[1]).read_text()
    assert "Traceback (most recent call last)" in log and "KeyError: 'missing'" in log
