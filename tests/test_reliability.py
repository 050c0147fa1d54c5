"""Issues 5 and 13, reliability and safety: bad input, lost workers, killed and interrupted
jobs, a quiet terminal, listening sockets.

Every process is real: ``dshift run`` runs as a subprocess in its own session (so the test can
SIGKILL its whole process group, LocalCluster workers included), remote clusters are
``python -m dask scheduler`` / ``dask worker`` processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
import pytest
import yaml

from conftest import (
    assert_user_error,
    base_config,
    dask_processes,
    make_frame,
    read_labels,
    tree_digest,
    write_parquet_files,
)

WHOLE = ["_SUCCESS", "clusters.png", "dshift.log", "labels", "model.json", "report.json"]


# --------------------------------------------------------------------------------------------
# helpers


class Job:
    """``dshift run CONFIG`` in its own session; stderr lines are collected by a thread."""

    def __init__(self, config: Path, *args: str, env: Optional[dict] = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dshift.cli", "run", str(config), *args], cwd=config.parent,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 120, interval: float = 0.005) -> bool:
        """Poll ``predicate`` while the job runs; True once it holds, False if the job ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                return predicate()
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s; stderr so far:\n{self.stderr}")

    def wait_for_line(self, text: str, timeout: float = 120) -> bool:
        return self.wait_until(lambda: any(text in ln for ln in list(self.lines)), timeout, interval=0.01)

    def kill(self) -> None:
        """SIGKILL the job's whole process group (driver + LocalCluster processes)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(10)

    def wait(self, timeout: float = 240) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()

    def leftovers(self, timeout: float = 15) -> list[str]:
        """Processes still in the job's session (driver, workers, ...) once they had ``timeout``
        seconds to go: every process the job started, however it was reparented."""
        import psutil

        deadline = time.monotonic() + timeout
        while True:
            alive = []
            for proc in psutil.process_iter(["name", "status"]):
                try:
                    if os.getsid(proc.pid) == self.proc.pid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                        alive.append(f"{proc.pid} {proc.info['name']}")
                except (OSError, psutil.Error):
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def assert_whole(out: Path, uids: pd.Series, *, plot: bool = True, log: bool = True) -> pd.DataFrame:
    """``out`` is a complete output: every file, and every input row exactly once. ``log=False``:
    ``dshift.log`` may be missing (a job killed between its commit and moving its log in)."""
    expected = sorted(WHOLE if plot else [n for n in WHOLE if n != "clusters.png"])
    names = sorted(p.name for p in out.iterdir())
    if not log and "dshift.log" not in names:
        expected.remove("dshift.log")
    assert names == expected
    labels = read_labels(out / "labels")
    assert labels["uid"].tolist() == sorted(uids.tolist())
    model = json.loads((out / "model.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert report["n_rows"] == len(uids) and sum(report["cluster_sizes"].values()) == len(uids)
    assert len(model["cluster_centers"]) == report["n_clusters"]
    assert set(labels["cluster"]) == {int(k) for k in report["cluster_sizes"]}
    return labels


def siblings(out: Path) -> list[str]:
    """Names next to ``out``, without the logs of failed or killed jobs (see :func:`logs_next_to`)."""
    if not out.parent.exists():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p not in logs_next_to(out))


def logs_next_to(out: Path) -> list[Path]:
    """Logs left next to ``out`` by jobs that did not succeed (``.<name>.dshift-*.log``)."""
    return sorted(out.parent.glob(f".{out.name}.dshift-*.log")) if out.parent.exists() else []


def _dataset(tmp_path_factory, name: str, n: int, seed: int, n_files: int) -> tuple[pd.DataFrame, Path]:
    frame = make_frame(n=n, seed=seed)
    directory = tmp_path_factory.mktemp(name) / "data"
    write_parquet_files(frame, directory, n_files=n_files)
    return frame, directory


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """40,000 rows in 4 files: a LocalCluster job of several seconds with bandwidth 1."""
    return _dataset(tmp_path_factory, "medium", 40_000, 5, 4)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """300,000 rows in 6 files for the lost-worker runs."""
    return _dataset(tmp_path_factory, "large", 300_000, 11, 6)


# --------------------------------------------------------------------------------------------
# 1. bad input: the cases test_cli.py does not cover


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
])
def test_python_tags_anywhere_are_rejected_not_executed(cli, tmp_path, tag):
    marker = tmp_path / "pwned"
    text = (f"input:\n  path: {tmp_path}/data\noutput:\n  path: {tmp_path}/out\n"
            f"model:\n  bandwidth: {tag.format(marker=marker)}\n")
    (tmp_path / "job.yaml").write_text(text)
    assert_user_error(cli("run", str(tmp_path / "job.yaml")), "job.yaml", "line 6", "not allowed")
    assert_user_error(cli("validate", str(tmp_path / "job.yaml")), "not allowed")
    time.sleep(0.2)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sections, needles", [
    ({"cluster": {"no_workers_timeout": 0}}, ["cluster.no_workers_timeout", "> 0"]),
    ({"cluster": {"connect_timeout": -1}}, ["cluster.connect_timeout", "> 0"]),
    ({"cluster": {"tls": {"ca_file": "ca.pem"}}}, ["tls://"]),
    ({"cluster": {"dashbord": True}}, ["cluster.dashbord", "did you mean 'cluster.dashboard'"]),
    ({"input": {"nan_polcy": "drop"}}, ["input.nan_polcy", "input.nan_policy"]),
    ({"model": {"n_samples": 0}}, ["model.n_samples", ">= 1"]),
    ({"model": {"quantile": "0.5"}}, ["model.quantile", "must be a number"]),
    ({"model": {"bandwidth": "1e-3"}}, ["model.bandwidth", "write 1.0e-3"]),
])
def test_more_config_errors(cli, blobs, tmp_path, write_config, sections, needles):
    _, data = blobs
    out = tmp_path / "out"
    assert_user_error(cli("run", str(write_config(base_config(data, out, **sections)))), *needles)
    assert not out.exists()


def test_input_inside_output_is_refused(cli, tmp_path, write_config):
    data = tmp_path / "area" / "data"
    write_parquet_files(make_frame(n=200), data, n_files=1)
    before = tree_digest(tmp_path / "area")
    assert_user_error(cli("run", str(write_config(base_config(data, tmp_path / "area", output={"overwrite": True})))),
                      "input.path", "inside output.path")
    assert tree_digest(tmp_path / "area") == before


def test_predict_model_with_inconsistent_centers(cli, tmp_path, blobs):
    _, data = blobs
    model = {"cluster_centers": [[0.0, 0.0, 0.0, 0.0]], "bandwidth": 1.0, "feature_columns": ["a", "b", "c"]}
    (tmp_path / "model.json").write_text(json.dumps(model))
    proc = cli("predict", "--model", str(tmp_path / "model.json"), "--input", str(data),
               "--output", str(tmp_path / "pred"))
    assert_user_error(proc, "model.json")
    assert not (tmp_path / "pred").exists()


@pytest.mark.slow
def test_silent_scheduler_fails_within_connect_timeout(blobs, tmp_path, write_config):
    """A port that accepts TCP but never speaks Dask: fail within connect_timeout, naming it."""
    from conftest import run_cli

    _, data = blobs
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    out = tmp_path / "out"
    try:
        cfg = write_config(base_config(data, out, cluster={"address": address, "connect_timeout": 3}))
        t0 = time.monotonic()
        proc = run_cli("run", str(cfg), "--quiet", timeout=120)
        elapsed = time.monotonic() - t0
    finally:
        server.close()
    assert_user_error(proc, "cluster.address", address)
    assert elapsed < 3 + 25, elapsed
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# 2. lost workers


def _lost_worker_job(tmp_path: Path, data: Path, address: str, name: str) -> Job:
    """A job on the 3-worker cluster of the lost-worker tests, its trees kept on the workers."""
    return Job(write_yaml(tmp_path / f"{name}.yaml", base_config(
        data, tmp_path / name, model={"bandwidth": 1.5, "bin_seeding": True},
        cluster={"address": address, "persist": True}, plot=None)))


def _assert_same_as_calm(tmp_path: Path, frame: pd.DataFrame) -> None:
    """The disturbed job wrote the calm job's labels and model."""
    calm_labels = assert_whole(tmp_path / "calm", frame["uid"], plot=False)
    assert calm_labels["cluster"].nunique() > 1
    pd.testing.assert_frame_equal(assert_whole(tmp_path / "disturbed", frame["uid"], plot=False), calm_labels)
    calm_model = json.loads((tmp_path / "calm" / "model.json").read_text())
    model = json.loads((tmp_path / "disturbed" / "model.json").read_text())
    assert model["cluster_centers"] == calm_model["cluster_centers"] and model["n_iter"] == calm_model["n_iter"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_worker_during_shift_gives_identical_labels(large, tmp_path):
    frame, data = large
    # --no-nanny: the killed process is the worker itself, with its persisted chunks.
    with dask_processes(tmp_path, 3, worker_args=("--memory-limit", "2GiB", "--no-nanny")) as cluster:
        calm = _lost_worker_job(tmp_path, data, cluster.address, "calm")
        assert calm.wait() == 0, calm.stderr
        assert "connected to" in calm.stderr and "(3 workers)" in calm.stderr
        index_line = next(ln for ln in calm.lines if "] index:" in ln)
        assert "re-read" not in index_line, index_line  # persisted on the workers

        job = _lost_worker_job(tmp_path, data, cluster.address, "disturbed")
        try:
            assert job.wait_for_line("shift iteration"), job.stderr
            cluster.kill_worker(1)
            killed_during = [ln for ln in job.lines if "shift iteration" in ln]
            assert job.wait() == 0, job.stderr
        finally:
            job.close()
        # the kill landed while iterations were still to come
        n_iter = sum("shift iteration" in ln for ln in job.lines)
        assert len(killed_during) < n_iter, (killed_during, n_iter)
        sched_log = (tmp_path / "scheduler.log").read_text()
        assert "Remove worker" in sched_log
        # the terminal said that the job went on without the worker
        left = [ln for ln in job.lines if "worker(s) left" in ln]
        assert len(left) == 1 and f"the scheduler at {cluster.address} (3 -> 2 workers)" in left[0], job.lines
        assert "goes on with the rest" in left[0], left
    _assert_same_as_calm(tmp_path, frame)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_worker_during_the_first_pass_gives_identical_labels(large, tmp_path):
    """The single-read path: the fit's first pass reads, counts and checks the rows and routes
    them to the trees of their regions. A worker holding a finished tree is killed while other
    trees are still being built; the job rebuilds what it lost (re-reading the chunks it needs)
    and writes the calm run's labels and model."""
    from distributed import Client
    from distributed.diagnostics.plugin import SchedulerPlugin

    frame, data = large
    with dask_processes(tmp_path, 3, worker_args=("--memory-limit", "2GiB", "--no-nanny")) as cluster:
        calm = _lost_worker_job(tmp_path, data, cluster.address, "calm")
        assert calm.wait() == 0, calm.stderr

        pids = {f"w{i}": proc.pid for i, proc in enumerate(cluster.workers)}  # names are w0, w1, w2
        trees = ("build_region_index", "build_group_index")

        class KillATreeHolder(SchedulerPlugin):
            """When the job's first tree is built while others are not, SIGKILL its worker in the
            same step of the scheduler's event loop (trees build in milliseconds here: polling
            from outside missed the moment). The job's trees are those its client wants."""

            name = "kill-a-tree-holder"

            def __init__(self) -> None:
                self.victim, self.unbuilt = "", 0

            async def start(self, scheduler) -> None:
                self.scheduler = scheduler

            def transition(self, key, start, finish, *args, **kwargs) -> None:
                if self.victim or finish != "memory" or not str(key).startswith(trees):
                    return
                ts = self.scheduler.tasks.get(key)
                wanted = [t for t in self.scheduler.tasks.values() if t.who_wants and str(t.key).startswith(trees)]
                unbuilt = [t for t in wanted if t.state != "memory"]
                if ts is None or not ts.who_wants or not ts.who_has or not unbuilt:
                    return
                self.victim, self.unbuilt = next(iter(ts.who_has)).name, len(unbuilt)
                os.kill(pids[self.victim], signal.SIGKILL)

        with Client(cluster.address, timeout=30) as client:
            client.register_plugin(KillATreeHolder())
            job = _lost_worker_job(tmp_path, data, cluster.address, "disturbed")
            try:
                assert job.wait() == 0, job.stderr
            finally:
                job.close()
            victim, unbuilt = client.run_on_scheduler(
                lambda dask_scheduler: (dask_scheduler.plugins["kill-a-tree-holder"].victim,
                                        dask_scheduler.plugins["kill-a-tree-holder"].unbuilt))
        assert victim and unbuilt > 0, (victim, unbuilt)  # killed while trees were still being built
        cluster.kill_worker(int(victim[1:]))  # reap it
        assert "Remove worker" in (tmp_path / "scheduler.log").read_text()
    _assert_same_as_calm(tmp_path, frame)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_workers_that_keep_dying_fail_the_job_cleanly(medium, tmp_path):
    """allowed-failures=0 on the scheduler: one death under a running task is too many ->
    exit 1, one line naming the scheduler, nothing at output.path."""
    from distributed import Client

    _, data = medium
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with dask_processes(tmp_path, 1, env=env, worker_args=("--no-nanny",)) as cluster, \
            Client(cluster.address, timeout=30) as watcher:
        out = tmp_path / "out" / "result"
        cfg = write_yaml(tmp_path / "job.yaml", base_config(
            data, out, model={"bandwidth": 1.0, "bin_seeding": True},
            cluster={"address": cluster.address, "persist": True, "no_workers_timeout": 60}))
        job = Job(cfg)
        try:
            assert job.wait_for_line("shift iteration"), job.stderr
            # Kill while the scheduler has a task running on the worker: that task is the one
            # that "kept killing" workers. The check and the kill happen in one step of the
            # scheduler's event loop, so the task cannot finish in between.
            pid = cluster.workers[0].pid

            def kill_if_busy(dask_scheduler) -> bool:
                if not any(ws.processing for ws in dask_scheduler.workers.values()):
                    return False
                os.kill(pid, signal.SIGKILL)
                return True

            assert job.wait_until(lambda: watcher.run_on_scheduler(kill_if_busy), timeout=60, interval=0.002)
            cluster.kill_worker(0)  # reap it
            code = job.wait(timeout=60)
        finally:
            job.close()
    assert code == 1, job.stderr
    assert "Traceback" not in job.stderr
    last = job.lines[-1]
    assert last.startswith("error: cluster:") and cluster.address in last and "allowed-failures=0" in last, last
    assert not out.exists() and siblings(out) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_no_workers_left_fails_after_timeout(medium, tmp_path):
    """Every worker gone: Dask would wait forever; the job stops after no_workers_timeout."""
    _, data = medium
    with dask_processes(tmp_path, 1, worker_args=("--no-nanny",)) as cluster:
        out = tmp_path / "out"
        cfg = write_yaml(tmp_path / "job.yaml", base_config(
            data, out, model={"bandwidth": 1.0, "bin_seeding": True},
            cluster={"address": cluster.address, "persist": True, "no_workers_timeout": 3}))
        job = Job(cfg)
        try:
            assert job.wait_for_line("shift iteration"), job.stderr
            cluster.kill_worker(0)
            t0 = time.monotonic()
            code = job.wait(timeout=90)
            elapsed = time.monotonic() - t0
        finally:
            job.close()
    assert code == 1, job.stderr
    assert "Traceback" not in job.stderr
    last = job.lines[-1]
    assert last.startswith("error: cluster: no workers left") and cluster.address in last, last
    assert 3 <= elapsed < 40, elapsed
    left = [ln for ln in job.lines if "worker(s) left" in ln]  # said at once, before the timeout
    assert len(left) == 1 and "(1 -> 0 workers): the job waits up to 3 s for a worker" in left[0], job.lines
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# 3. whole outputs or none


def _staged(out: Path, name: str) -> Callable[[], bool]:
    """True once a staging sibling of ``out`` holds ``name`` (the moment right before commit)."""
    def check() -> bool:
        if not out.parent.exists():
            return False
        return any((p / name).exists() for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-"))
    return check


def _kill_at(job: Job, moment: str, out: Path) -> None:
    if moment == "0.5s":
        time.sleep(0.5)
    elif moment == "shift":
        job.wait_for_line("shift iteration")
    elif moment == "labelling":
        job.wait_for_line("labelling:")
        time.sleep(0.3)  # workers are writing labels/
    elif moment == "staged":
        job.wait_until(_staged(out, "report.json"), interval=0.001)
    else:
        raise ValueError(moment)
    job.kill()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_killed_job_leaves_whole_output_or_none(medium, tmp_path):
    """SIGKILL the job's process group at several moments: output.path holds nothing or a whole
    output; then (overwrite: true) the old output stays whole until the new one replaces it."""
    frame, data = medium
    out = tmp_path / "out" / "result"
    cluster = {"n_workers": 1}
    first = write_yaml(tmp_path / "first.yaml", base_config(
        data, out, model={"bandwidth": 2.0, "bin_seeding": True}, cluster=cluster))
    for moment in ("0.5s", "shift"):
        job = Job(first)
        try:
            _kill_at(job, moment, out)
        finally:
            job.close()
        assert not out.exists(), moment
    # Stale .tmp- siblings do not block a rerun, which removes them.
    job = Job(first)
    assert job.wait() == 0, job.stderr
    assert_whole(out, frame["uid"])
    assert siblings(out) == ["result"]

    old = tree_digest(out)
    replace = write_yaml(tmp_path / "replace.yaml", base_config(
        data, out, model={"bandwidth": 1.0, "bin_seeding": True}, cluster=cluster, output={"overwrite": True}))
    for moment in ("labelling", "staged"):
        job = Job(replace)
        try:
            _kill_at(job, moment, out)
        finally:
            job.close()
        assert_whole(out, frame["uid"], log=False)  # killed after its commit: the log stays next to it
        if tree_digest(out) != old:  # the kill came after the commit: the whole new output
            assert json.loads((out / "model.json").read_text())["bandwidth"] == 1.0
            old = tree_digest(out)
    job = Job(replace)
    assert job.wait() == 0, job.stderr
    assert_whole(out, frame["uid"])
    assert json.loads((out / "model.json").read_text())["bandwidth"] == 1.0
    assert tree_digest(out) != old
    assert siblings(out) == ["result"]


def test_local_overwrite_is_one_atomic_exchange(tmp_path, monkeypatch):
    """On Linux the commit swaps old and new in one renameat2(RENAME_EXCHANGE): no instant
    without an output (os.rename is not used at all)."""
    from dshift.io import outputs

    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    probe_a, probe_b = tmp_path / "a", tmp_path / "b"
    probe_a.mkdir(), probe_b.mkdir()
    if not outputs._exchange_paths(str(probe_a), str(probe_b)):
        pytest.skip("renameat2(RENAME_EXCHANGE) not available here")

    def no_rename(*args, **kwargs):
        raise AssertionError("os.rename used")

    stage = outputs.OutputStage(str(target), overwrite=True).open()
    (Path(stage.tmp) / "new.txt").write_text("new")
    monkeypatch.setattr(outputs.os, "rename", no_rename)
    stage.commit()
    assert sorted(p.name for p in target.iterdir()) == ["_SUCCESS", "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]


# --------------------------------------------------------------------------------------------
# 4. nothing listens where it should not


def _listening(pid: int) -> list[tuple[int, str, int]]:
    import psutil

    root = psutil.Process(pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((proc.pid, conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return found


def _speaks_http(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(5) == b"HTTP/"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("dashboard", [False, True])
def test_local_cluster_listens_on_loopback_only(medium, tmp_path, dashboard):
    _, data = medium
    cfg = write_yaml(tmp_path / "job.yaml", base_config(
        data, tmp_path / "out", model={"bandwidth": 1.0, "bin_seeding": True},
        cluster={"n_workers": 2, "dashboard": dashboard}))
    job = Job(cfg)
    try:
        assert job.wait_for_line("shift iteration"), job.stderr
        sockets = _listening(job.proc.pid)
        http = [port for _, _, port in sockets if _speaks_http(port)]
        assert job.proc.poll() is None, "the job ended before the sockets were listed"
    finally:
        job.kill()
    # scheduler + 2 nannies + 2 workers (+ the dashboard)
    assert len(sockets) == 5 + dashboard, sockets
    assert {ip for _, ip, _ in sockets} == {"127.0.0.1"}, sockets
    if dashboard:
        assert len(http) == 1, sockets
        assert f"dashboard at http://127.0.0.1:{http[0]}/" in job.stderr
    else:
        assert http == [], sockets
        assert "dashboard" not in job.stderr and "8787" not in job.stderr


# --------------------------------------------------------------------------------------------
# 5. interrupts (issue 13): SIGINT / SIGTERM stop the job within 5 s in any phase, cleanly


def _interrupt(job: Job, signum: int, *, group: bool) -> float:
    """Send ``signum`` as a terminal's Ctrl-C does (the whole foreground group) or as ``kill PID``;
    a second one follows while the job stops. Returns the seconds until the job exited."""
    assert job.proc.poll() is None, f"the job ended before the signal; make its pass longer:\n{job.stderr}"
    t0 = time.monotonic()
    for _ in range(2):
        try:
            if group:
                os.killpg(job.proc.pid, signum)
            else:
                job.proc.send_signal(signum)
        except ProcessLookupError:  # already gone
            pass
        time.sleep(0.3)
    job.wait(timeout=60)
    return time.monotonic() - t0


def assert_interrupted(job: Job, signum: int, elapsed: float, out: Path) -> None:
    name = signal.Signals(signum).name
    assert job.proc.returncode == 128 + signum, (job.proc.returncode, job.stderr)
    assert elapsed < 15, elapsed  # 5 s promised; a margin for a loaded 2-core machine
    assert "Traceback" not in job.stderr, job.stderr
    *progress, last = job.lines
    assert all(ln.startswith("[dshift ") for ln in progress), job.stderr  # dshift's own lines only
    assert last.startswith(f"dshift: interrupted ({name}); nothing was written to {out}; log: "), last
    log = Path(last.split("; log: ")[1])
    assert logs_next_to(out) == [log]
    assert last in log.read_text()
    assert not out.exists() and siblings(out) == []  # no staging directory either
    assert job.leftovers() == []


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("moment", ["start", "long pass", "next pass", "labelling"])
def test_interrupt_stops_the_job_cleanly(moment, request, tmp_path):
    """start: Ctrl-C (SIGINT to the process group, twice) while the local cluster starts;
    long pass: Ctrl-C during a long shift pass (300,000 rows, every row a seed: workers busy in
    kernels for seconds); next pass: SIGTERM to the driver alone between short passes;
    labelling: Ctrl-C while workers write into the staging directory."""
    dataset, model = "medium", {"bandwidth": 1.0, "bin_seeding": moment in ("start", "labelling")}
    if moment == "long pass":
        dataset, model = "large", {"bandwidth": 0.5, "bin_seeding": False}
    _, data = request.getfixturevalue(dataset)
    out = tmp_path / "out" / "result"
    job = Job(write_yaml(tmp_path / "job.yaml", base_config(data, out, model=model, plot=None)))
    signum = signal.SIGTERM if moment == "next pass" else signal.SIGINT
    try:
        if moment == "start":
            assert job.wait_for_line("cluster: starting"), job.stderr
            time.sleep(1.0)  # worker processes starting
        elif moment == "labelling":
            assert job.wait_until(_staged(out, "labels"), interval=0.002), job.stderr
        else:
            # a shift pass is done, the next one runs
            assert job.wait_until(lambda: any("shift" in ln.partition("] ")[2] for ln in list(job.lines)),
                                  interval=0.01), job.stderr
        elapsed = _interrupt(job, signum, group=signum == signal.SIGINT)
    finally:
        job.close()
    assert_interrupted(job, signum, elapsed, out)


# --------------------------------------------------------------------------------------------
# 6. a quiet terminal (issue 13): library logs go to the log file


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("verbose", [False, True])
def test_input_file_deleted_during_the_job(tmp_path, verbose):
    """The workers fail to read a file: the terminal shows dshift's lines and one last line
    naming the file (with --verbose, distributed's logs too); the log holds the worker's
    'Compute Failed' report."""
    data = tmp_path / "data"
    victim = write_parquet_files(make_frame(n=4000, seed=3), data, n_files=4)[2]
    out = tmp_path / "out" / "result"
    cfg = write_yaml(tmp_path / "job.yaml", base_config(data, out, cluster={"persist": False}, plot=None))
    job = Job(cfg, *(["--verbose"] if verbose else []))
    try:
        assert job.wait_for_line("read:"), job.stderr
        victim.unlink()  # every later pass reads the files again (persist: false)
        code = job.wait(timeout=120)
    finally:
        job.close()
    assert code == 2, job.stderr
    last = job.lines[-1]
    assert last.startswith(f"error: input file '{victim}' cannot be read: ") and "; log: " in last, last
    log = Path(last.split("; log: ")[1]).read_text()
    assert "Compute Failed" in log and "No such file or directory" in log
    if verbose:
        assert "Compute Failed" in job.stderr
    else:
        assert all(ln.startswith("[dshift ") for ln in job.lines[:-1]), job.stderr
        assert "Traceback" not in job.stderr and "distributed" not in job.stderr
    assert not out.exists() and siblings(out) == []
    assert job.leftovers() == []
