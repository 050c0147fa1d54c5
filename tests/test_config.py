"""The config schema: defaults, strict types, ranges, unknown keys, YAML safety."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from dshift.config import Config
from dshift.config_load import load_config, parse_config
from dshift.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {"input": {"path": "data/in"}, "output": {"path": "out/x"}}


def err(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def with_(section: str, **values) -> dict:
    return {**MINIMAL, section: {**MINIMAL.get(section, {}), **values}}


def test_defaults_match_spec(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = parse_config(MINIMAL)
    assert cfg.input.path == str(tmp_path / "data" / "in")  # relative to the cwd
    assert cfg.output.path == str(tmp_path / "out" / "x")
    assert cfg.input.columns is None and cfg.input.nan_policy == "error" and cfg.input.storage_options == {}
    m = cfg.model
    assert (m.bandwidth, m.quantile, m.n_samples, m.random_state) == (None, 0.3, 10000, 0)
    assert (m.bin_seeding, m.min_bin_freq, m.cluster_all, m.max_iter) == (False, 1, True, 300)
    c = cfg.cluster
    assert (c.address, c.n_workers, c.threads_per_worker, c.memory_limit) == (None, 2, 1, "auto")
    assert (c.persist, c.dashboard, c.connect_timeout) == ("auto", False, 30)
    assert not c.tls.enabled
    assert (cfg.output.label_column, cfg.output.overwrite) == ("cluster", False)
    assert (cfg.plot.x, cfg.plot.y, cfg.plot.sample) == (None, None, 20000)
    assert cfg.demo is None


def test_urls_are_kept(monkeypatch):
    cfg = parse_config({"input": {"path": "s3://b/in"}, "output": {"path": "s3://b/out"}})
    assert cfg.input.path == "s3://b/in" and cfg.output.path == "s3://b/out"


def test_weight_column_and_deduplicate():
    cfg = parse_config(MINIMAL)
    assert cfg.input.weight_column is None and cfg.model.deduplicate == "auto"
    cfg = parse_config({**with_("input", weight_column="count"), "model": {"deduplicate": True}})
    assert cfg.input.weight_column == "count" and cfg.model.deduplicate is True
    assert "input.weight_column: must not be empty" in err(with_("input", weight_column=" "))
    assert "model.deduplicate: must be auto, true or false (got 'yes')" in err(with_("model", deduplicate="yes"))


def test_int_accepted_for_float_but_no_coercion_from_strings():
    assert parse_config(with_("model", bandwidth=2)).model.bandwidth == 2.0
    assert "must be a number" in err(with_("model", bandwidth="2"))
    assert "must be an integer" in err(with_("model", max_iter=3.0))
    assert "true or false" in err(with_("model", bin_seeding=1))
    assert "true or false" in err(with_("model", cluster_all="true"))


def test_yaml_1e3_hint():
    assert "1.0e-3" in err(with_("model", bandwidth="1e-3"))


@pytest.mark.parametrize(
    "section, values, expected",
    [
        ("model", {"bandwidth": -1}, "model.bandwidth: must be > 0 (got -1)"),
        ("model", {"bandwidth": 0}, "model.bandwidth: must be > 0 (got 0)"),
        ("model", {"min_bin_freq": 0}, "model.min_bin_freq: must be >= 1 (got 0)"),
        ("model", {"max_iter": -1}, "model.max_iter: must be >= 0 (got -1)"),
        ("model", {"quantile": 1.01}, "model.quantile: must be <= 1 (got 1.01)"),
        ("model", {"quantile": -0.5}, "model.quantile: must be >= 0 (got -0.5)"),
        ("model", {"n_samples": 0}, "model.n_samples: must be >= 1 (got 0)"),
        ("cluster", {"n_workers": 0}, "cluster.n_workers: must be >= 1 (got 0)"),
        ("cluster", {"connect_timeout": 0}, "cluster.connect_timeout: must be > 0 (got 0)"),
        ("cluster", {"dashboard": 70000}, "cluster.dashboard: must be true, false or a port number"),
        ("cluster", {"memory_limit": "lots"}, "cluster.memory_limit: is not a memory size"),
        ("cluster", {"memory_limit": -1}, "cluster.memory_limit: must be >= 0"),
        ("cluster", {"address": "127.0.0.1:8786"}, "cluster.address: must look like tcp://host:port"),
        ("input", {"nan_policy": "keep"}, "input.nan_policy: must be one of 'error' or 'drop' (got 'keep')"),
        ("input", {"columns": []}, "input.columns: must list at least one column"),
        ("input", {"columns": "a"}, "input.columns: must be a list"),
        ("output", {"label_column": ""}, "output.label_column: must not be empty"),
        ("output", {"partition_by": []}, "output.partition_by: must list at least one column"),
        ("output", {"partition_by": ["a", "a"]}, "output.partition_by: lists 'a' more than once"),
        ("input", {"filters": "year == 2024"}, "input.filters: must be a list"),
        ("input", {"filters": [["year", "=>", 2024]]},
         "input.filters[0]: unknown operator '=>' (use ==, !=, <, <=, >, >=, in, not in)"),
        ("input", {"filters": [[["year", ">", 1]], [["m", "in", 3]]]}, "input.filters[1][0]: 'in' needs a non-empty list"),
        ("plot", {"sample": 0}, "plot.sample: must be >= 1"),
    ],
)
def test_range_and_type_errors(section, values, expected):
    assert expected in err(with_(section, **values))


def test_filters_and_partition_by():
    cfg = parse_config({"input": {"path": "d", "filters": [["year", "=", 2024], ["city", "in", ["a", "b"]]]},
                        "output": {"path": "o", "partition_by": ["year", "cluster"]}})
    assert cfg.input.filters == [("year", "==", 2024), ("city", "in", ("a", "b"))]
    assert cfg.output.partition_by == ["year", "cluster"]
    assert parse_config(MINIMAL).input.filters is None and parse_config(MINIMAL).output.partition_by is None


def test_valid_alternatives():
    cfg = parse_config({**MINIMAL, "cluster": {"address": "tls://10.0.0.1:8786", "persist": False, "dashboard": 8787,
                                               "memory_limit": "4GiB",
                                               "tls": {"ca_file": "ca.pem", "cert_file": "c.pem", "key_file": "k.pem"}},
                        "plot": None, "demo": {"rows": 10}})
    assert cfg.cluster.persist is False and cfg.cluster.dashboard == 8787 and cfg.cluster.tls.enabled
    assert os.path.isabs(cfg.cluster.tls.ca_file)
    assert cfg.plot is None and cfg.demo.rows == 10 and len(cfg.demo.centers) == 3
    assert parse_config(with_("cluster", memory_limit=None)).cluster.memory_limit is None
    assert parse_config(with_("cluster", persist=True)).cluster.persist is True


def test_unknown_keys_suggest_nearest():
    assert err({**MINIMAL, "modle": {}}) == "unknown key 'modle' (did you mean 'model'?)"
    assert err(with_("model", bandwith=1.0)) == "unknown key 'model.bandwith' (did you mean 'model.bandwidth'?)"
    assert "did you mean 'cluster.tls.ca_file'" in err(with_("cluster", tls={"cafile": "x"}))
    assert "valid keys at the top level: input, model" in err({**MINIMAL, "zzzzzz": 1})


def test_cross_field_rules():
    assert "both plot.x and plot.y" in err({**MINIMAL, "plot": {"x": "a"}})
    assert "not a tls:// address" in err(with_("cluster", tls={"ca_file": "ca.pem"}))
    assert "also a feature column" in err(with_("input", path="d", columns=["a", "cluster"]))
    assert "same number of coordinates" in err({**MINIMAL, "demo": {"centers": [[1, 2], [1]]}})


def test_missing_required_and_bad_top_level():
    assert "input: required key is missing" in err({"output": {"path": "o"}})
    assert "the file is empty" in err(None)
    assert "expected a mapping" in err([1, 2])


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)
    assert ConfigError("x").one_line() == "config error: x"
    assert UserError("a\nb").one_line() == "error: a b"  # always one line


def test_load_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input:\n  path: [unclosed\noutput: {}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: invalid YAML"):
        load_config(bad)
    tag = tmp_path / "tag.yaml"
    tag.write_text("input: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match=r"YAML tag '!!python/object/apply:os.system' is not allowed"):
        load_config(tag)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_are_valid(monkeypatch):
    monkeypatch.chdir(REPO)
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert isinstance(cfg, Config), path
    demo = load_config(REPO / "configs" / "demo.yaml")
    assert demo.demo.rows == 1_000_000 and demo.demo.std == 2.79
    assert demo.demo.centers == [[27, 72, 91], [36, 90, 99], [9, 81, 99]]
    assert demo.model.quantile == 0.2 and demo.model.bin_seeding is True
    assert demo.output.path == str(REPO / "out" / "demo")
    # Keys documented in the README section exist in the schema.
    text = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    assert set(text) <= set(Config.model_fields)


# --------------------------------------------------------------------------------------------
# bounded configs (issue 13): alias bombs, huge files, long echoes


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """11 lines whose anchors make input.columns stand for width**levels strings."""
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * width)}]" for k in range(1, levels)]
    return "\n".join(lines + [f"input: {{path: data, columns: *l{levels - 1}}}", "output: {path: out}", ""])


@pytest.mark.parametrize("command", ["validate", "run"])
def test_alias_bomb_is_refused_fast(tmp_path, command):
    from conftest import assert_user_error, run_cli

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert len(bomb.read_text().splitlines()) == 11
    t0 = time.monotonic()
    proc = run_cli(command, str(bomb), timeout=60)
    elapsed = time.monotonic() - t0
    assert_user_error(proc, "config error: input.columns: too large", "387,420,489", "100,000")
    assert len(proc.stderr) < 300 and proc.stdout == "", proc.stderr
    assert elapsed < 15, elapsed  # well under a second, plus interpreter start-up on a busy machine
    assert not (tmp_path / "out").exists()


def test_alias_bomb_costs_little_memory(tmp_path):
    import tracemalloc

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"^input\.columns: too large"):
            load_config(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, peak


def test_merge_key_bomb_and_recursive_alias_are_refused(tmp_path):
    merges = ["m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8}"]
    merges += [f"m{k}: &m{k} {{<<: [{', '.join([f'*m{k - 1}'] * 9)}], own{k}: 1}}" for k in range(1, 9)]
    bomb = tmp_path / "merge.yaml"
    bomb.write_text("\n".join(merges + ["input: {path: data, storage_options: *m8}", "output: {path: out}", ""]))
    t0 = time.monotonic()
    with pytest.raises(ConfigError):  # unknown keys m0..m8 at the latest; never a huge mapping
        load_config(bomb)
    assert time.monotonic() - t0 < 5
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("input: &in {path: data, storage_options: {again: *in}}\noutput: {path: out}\n")
    with pytest.raises(ConfigError, match=r"^input\.storage_options\.again: a YAML alias refers to the value"):
        load_config(recursive)


def test_wide_config_without_aliases_is_fine_up_to_the_bound():
    cfg = parse_config(with_("input", path="d", columns=[f"c{i}" for i in range(20_000)]))
    assert len(cfg.input.columns) == 20_000
    assert "too large: 100,001 values" in err(with_("input", path="d", columns=[f"c{i}" for i in range(100_001)]))


def test_config_larger_than_1_mib_is_refused_unread(tmp_path):
    from conftest import assert_user_error, run_cli

    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(MINIMAL) + "#" * (1 << 20) + "\n")
    assert_user_error(run_cli("validate", str(big)), "big.yaml", "larger than 1 MiB")
    with pytest.raises(ConfigError, match=r"^config file '/dev/zero' is not a regular file \(a character device\)"):
        load_config("/dev/zero")  # endless: refused unread


@pytest.mark.parametrize("section, values, needle", [
    ("model", {"bandwidth": "x" * 100_000}, "model.bandwidth: must be a number, not a string (got 'xxx"),
    ("cluster", {"address": ["tcp://h:1"] * 50_000}, "cluster.address: must be a string"),
    ("input", {"columns": [f"c{i % 5000}" for i in range(10_000)]}, "input.columns: lists 'c0', 'c1'"),
    ("cluster", {"memory_limit": "y" * 100_000}, "cluster.memory_limit: is not a memory size"),
    ("model", {"k" * 100_000: 1}, "unknown key 'model.kkk"),
])
def test_messages_echo_short_excerpts(section, values, needle):
    message = err(with_(section, **values))
    assert message.startswith(needle), message
    assert len(message) < 250 and "..." in message, message


# --------------------------------------------------------------------------------------------
# values that cannot work (exploratory testing): infinities, local clusters this machine cannot
# hold, config paths that are not files, repeated keys


@pytest.mark.parametrize("section, values, expected", [
    ("model", {"bandwidth": float("inf")}, "model.bandwidth: must be a finite number (got .inf)"),
    ("model", {"bandwidth": float("nan")}, "model.bandwidth: must be a finite number (got .nan)"),
    ("model", {"quantile": float("nan")}, "model.quantile: must be a finite number (got .nan)"),
    ("cluster", {"connect_timeout": float("inf")}, "cluster.connect_timeout: must be a finite number (got .inf)"),
    ("cluster", {"no_workers_timeout": float("inf")}, "cluster.no_workers_timeout: must be a finite number"),
    ("cluster", {"memory_limit": float("inf")}, "cluster.memory_limit: must be a finite number (got .inf)"),
    ("cluster", {"memory_limit": float("nan")}, "cluster.memory_limit: must be a finite number (got .nan)"),
    ("cluster", {"memory_limit": "1e400"}, "cluster.memory_limit: must be a finite number (got '1e400')"),
    ("cluster", {"memory_limit": 10**400}, "cluster.memory_limit: must be a finite number"),
    ("cluster", {"memory_limit": "1e400MiB"}, "cluster.memory_limit: is not a memory size"),
    ("cluster", {"memory_limit": "-5MiB"}, "cluster.memory_limit: must be >= 0 (got '-5MiB')"),
    ("demo", {"std": float("inf")}, "demo.std: must be a finite number (got .inf)"),
    ("demo", {"centers": [[1.0, float("-inf")]]}, "demo.centers[0][1]: must be a finite number (got -.inf)"),
    ("model", {"sweep": {"quantiles": [float("nan"), 0.5]}}, "model.sweep.quantiles[0]: must be a finite number"),
])
def test_float_settings_must_be_finite(section, values, expected):
    assert err(with_(section, **values)).startswith(expected)


def test_infinite_bandwidth_from_yaml_is_refused(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text("input: {path: d}\nmodel: {bandwidth: .inf}\noutput: {path: o}\n")
    with pytest.raises(ConfigError, match=r"^model\.bandwidth: must be a finite number \(got \.inf\)$"):
        load_config(path)


@pytest.fixture
def two_cpus(monkeypatch):
    """This machine has 2 CPUs, as the local cluster's bounds see it."""
    monkeypatch.setattr("dask.system.CPU_COUNT", 2)


def test_local_cluster_size_is_bounded_by_the_cpus(two_cpus):
    assert err(with_("cluster", n_workers=1000)) == (
        "cluster.n_workers: 1,000 worker processes are too many for a local cluster on this machine's 2 CPUs (at "
        "most 8 threads, 4 per CPU); use fewer, or cluster.address (an existing scheduler) for a bigger cluster")
    assert err(with_("cluster", n_workers=2, threads_per_worker=5)).startswith(
        "cluster.threads_per_worker: 2 workers x 5 threads are too many for a local cluster on this machine's 2 CPUs")
    assert err(with_("cluster", threads_per_worker=9)).startswith("cluster.threads_per_worker: 2 workers x 9 threads")
    assert parse_config(with_("cluster", n_workers=8)).cluster.n_workers == 8  # 4 per CPU
    assert parse_config(with_("cluster", n_workers=4, threads_per_worker=2)).cluster.threads_per_worker == 2
    # an existing scheduler's workers are not started on this machine
    remote = parse_config(with_("cluster", address="tcp://10.0.0.1:8786", n_workers=1000, threads_per_worker=64))
    assert remote.cluster.n_workers == 1000
    assert err(with_("cluster", n_workers=0, threads_per_worker=100)) == "cluster.n_workers: must be >= 1 (got 0)"


def test_memory_limit_too_small_for_a_worker(monkeypatch):
    too_small = ("per worker is too small: a worker needs at least 512 MiB (about 300 MiB before it holds any "
                 "data); set a larger size, auto, or null for no limit")
    assert err(with_("cluster", memory_limit="1KiB")) == f"cluster.memory_limit: '1KiB' {too_small}"
    assert err(with_("cluster", memory_limit=1000)) == f"cluster.memory_limit: 1000 {too_small}"
    assert err(with_("cluster", memory_limit="511MiB")).startswith("cluster.memory_limit: '511MiB' per worker is too")
    monkeypatch.setattr("distributed.system.MEMORY_LIMIT", 16 * 2**30)
    assert err(with_("cluster", memory_limit=0.01)).startswith(
        "cluster.memory_limit: 0.01 of this machine's memory is 163.84 MiB per worker, too small: a worker needs at "
        "least 512 MiB")
    for fine in ("512MiB", 2**29, 0.5, "0.5", "auto", 0, None):
        assert parse_config(with_("cluster", memory_limit=fine)).cluster.memory_limit == fine
    # an existing scheduler's workers have their own limits: the setting is not used
    assert parse_config(with_("cluster", address="tcp://h:1", memory_limit="1KiB")).cluster.memory_limit == "1KiB"


def test_config_that_is_not_a_regular_file_is_refused_unread(tmp_path):
    from conftest import assert_user_error, run_cli

    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)  # nothing ever writes to it: opening it to read would wait forever
    for command in ("validate", "run"):
        proc = run_cli(command, str(fifo), timeout=60)
        assert_user_error(proc, f"config error: config file '{fifo}' is not a regular file (a named pipe)")
    with pytest.raises(ConfigError, match=r"^config file '.*' is a directory; give the path of a YAML file$"):
        load_config(tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("input: {path: d}\nmodel: {bandwidth: 6.0}\noutput: {path: o}\nmodel:\n  bandwidth: 2.0\n",
     "line 4, column 1: duplicate key 'model' (also on line 2); keep one of them"),
    ("input: {path: d}\nmodel:\n  bandwidth: 6.0\n  max_iter: 3\n  bandwidth: 2.0\noutput: {path: o}\n",
     "line 5, column 3: duplicate key 'bandwidth' (also on line 3); keep one of them"),
    ("input: {path: d, columns: [a, b]}\noutput: {path: o, overwrite: true, overwrite: false}\n",
     "line 2, column 36: duplicate key 'overwrite' (also on line 2); keep one of them"),
])
def test_duplicate_keys_are_refused(tmp_path, text, expected):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {expected}"


def test_keys_a_merge_brings_in_may_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("defaults: &d {bandwidth: 1.0, max_iter: 5}\ninput: {path: d}\noutput: {path: o}\n"
                    "model:\n  <<: *d\n  bandwidth: 6.0\n")
    with pytest.raises(ConfigError, match="unknown key 'defaults'"):  # merged and overridden, not a duplicate
        load_config(path)
    path.write_text("input: {path: d}\noutput: {path: o}\nmodel:\n  <<: {bandwidth: 1.0, max_iter: 5}\n"
                    "  bandwidth: 6.0\n")
    assert (load_config(path).model.bandwidth, load_config(path).model.max_iter) == (6.0, 5)


# --------------------------------------------------------------------------------------------
# model.sweep


def sweep(**values) -> dict:
    return with_("model", sweep=values)


def test_sweep_forms_and_select():
    cfg = parse_config(sweep(range={"min": 1.0, "max": 16.0, "num": 9}, select=2.8284271247))
    assert cfg.model.sweep.values() == [2 ** (i / 2) for i in range(9)]
    assert cfg.model.sweep.values()[0] == 1.0 and cfg.model.sweep.values()[-1] == 16.0
    assert cfg.model.sweep.selected() == 3  # within 1e-9 of 2 * sqrt(2)
    listed = parse_config(sweep(bandwidths=[4, 0.5, 2], select=2)).model.sweep
    assert (listed.values(), listed.selected(), listed.select) == ([4, 0.5, 2], 2, 2.0)
    quantiles = parse_config(sweep(quantiles=[0.1, 0.3], select=0.3)).model.sweep
    assert (quantiles.values(), quantiles.selected()) == ([0.1, 0.3], 1)
    assert parse_config(sweep(bandwidths=[1, 2])).model.sweep.selected() is None  # select: auto


@pytest.mark.parametrize("values, message", [
    ({"bandwidths": []}, "model.sweep.bandwidths: must list at least 2 values, got 0 (for one bandwidth set "
                         "model.bandwidth)"),
    ({"bandwidths": [1.0, -1]}, "model.sweep.bandwidths[1]: must be > 0 (got -1)"),
    ({"bandwidths": [1.0, 0]}, "model.sweep.bandwidths[1]: must be > 0 (got 0)"),
    ({"bandwidths": [1.0, ".inf"]}, "model.sweep.bandwidths[1]: must be a number, not a string"),
    ({"bandwidths": [1.0, float("inf")]}, "model.sweep.bandwidths[1]: must be a finite number"),
    ({"bandwidths": [1.0, 2, 1]}, "model.sweep.bandwidths: lists 1 more than once"),
    ({"bandwidths": list(range(1, 66))}, "model.sweep.bandwidths: lists 65 values; a sweep takes at most 64"),
    ({"quantiles": [0.2, 0]}, "model.sweep.quantiles[1]: must be > 0 (got 0)"),
    ({"quantiles": [0.2, 1.5]}, "model.sweep.quantiles[1]: must be <= 1 (got 1.5)"),
    ({"range": {"min": 4.0, "max": 1.0, "num": 3}}, "model.sweep.range: min must be < max (got min 4, max 1)"),
    ({"range": {"min": 0, "max": 1.0, "num": 3}}, "model.sweep.range.min: must be > 0 (got 0)"),
    ({"range": {"min": 1.0, "max": 2.0, "num": 1}}, "model.sweep.range.num: must be >= 2 (got 1)"),
    ({"range": {"min": 1.0, "max": 2.0}}, "model.sweep.range.num: required key is missing"),
    ({"range": {"min": 1.0, "max": 2.0, "nun": 3}}, "unknown key 'model.sweep.range.nun' (did you mean "
                                                    "'model.sweep.range.num'?)"),
    ({}, "model.sweep: set exactly one of bandwidths, quantiles and range"),
    ({"bandwidths": [1, 2], "quantiles": [0.1, 0.2]}, "model.sweep: set exactly one of bandwidths, quantiles and "
                                                      "range (got bandwidths and quantiles)"),
    ({"bandwidths": [1, 2], "select": 3}, "model.sweep.select: 3 is not one of the swept bandwidths (1, 2); use one "
                                          "of them or auto"),
    ({"range": {"min": 1.0, "max": 16.0, "num": 9}, "select": 2.83},
     "model.sweep.select: 2.83 is not one of the swept bandwidths (1, 1.414213562, 2, 2.828427125, 4,"),
    ({"quantiles": [0.1, 0.3], "select": 0.2}, "model.sweep.select: 0.2 is not one of the quantiles (0.1, 0.3)"),
    ({"bandwidths": [1, 2], "select": "best"}, "model.sweep.select: must be auto or one of the swept values "
                                               "(got 'best')"),
    ({"bandwidths": [1, 2], "select": True}, "model.sweep.select: must be auto or one of the swept values (got "
                                             "true)"),
    ({"bandwidths": [1, 2], "selekt": 1}, "unknown key 'model.sweep.selekt' (did you mean 'model.sweep.select'?)"),
])
def test_sweep_errors(values, message):
    assert message in err(sweep(**values))


def test_sweep_excludes_bandwidth_and_quantile():
    both = {**MINIMAL, "model": {"bandwidth": 2.0, "sweep": {"bandwidths": [1, 2]}}}
    assert err(both) == "model: set model.bandwidth or model.sweep, not both"
    quantile = {**MINIMAL, "model": {"quantile": 0.2, "sweep": {"quantiles": [0.1, 0.2]}}}
    assert err(quantile).startswith("model: model.quantile does not apply to a sweep")
    assert "must be a mapping" in err({**MINIMAL, "model": {"sweep": [1, 2]}})
