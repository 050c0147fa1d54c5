"""Issue 13: storage faults and one job per output path.

Real mechanisms: a small tmpfs is a real full disk, a tmpfs remounted read-only a real
read-only file system, a job run as ``nobody`` (``setpriv``) really lacks permission (root
bypasses permission bits), two real ``dshift run`` processes race for one output, a real
SIGKILLed job leaves its lock. Tests that mount skip, with the reason, where mounting is not
permitted; every mount is unmounted in teardown.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from conftest import (
    CENTERS,
    FEATURES,
    assert_user_error,
    base_config,
    make_frame,
    mount_tmpfs,
    read_labels,
    run_cli,
    tree_digest,
    unmount,
    write_parquet_files,
)
from test_reliability import Job, assert_whole, logs_next_to, siblings, write_yaml

NO_SPACE = "(no space left on device); free space or choose another output.path"


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def small_disk(mounting, tmp_path) -> Iterator[Path]:
    """An 8 MB tmpfs: a real file system that fills up."""
    mnt = tmp_path / "small"
    mount_tmpfs(mnt, "8m")
    try:
        yield mnt
    finally:
        unmount(mnt)


@pytest.fixture(scope="module")
def padded(tmp_path_factory) -> Path:
    """20,000 rows (12 MB: a 600-character random string per row) in 4 files: the fit reads the
    3 features only and is quick, the labels do not fit on :func:`small_disk`."""
    frame = make_frame(n=20_000, seed=7)
    text = np.random.default_rng(7).bytes(300 * len(frame)).hex()
    frame["pad"] = [text[i * 600:(i + 1) * 600] for i in range(len(frame))]
    directory = tmp_path_factory.mktemp("padded") / "data"
    write_parquet_files(frame, directory)
    return directory


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The last stderr line, after checking that every other line is one of dshift's."""
    assert "Traceback" not in proc.stderr, proc.stderr
    *progress, last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert all(ln.startswith("[dshift ") for ln in progress), proc.stderr
    return last


def lock_of(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


# --------------------------------------------------------------------------------------------
# 1. storage faults: one line naming the output and the cause, exit 74, nothing written


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "replacing"])
def test_full_disk_while_writing_labels(padded, blobs, small_disk, existing):
    """The labels fill the disk on the workers: exit 74 naming the output (not the input), no
    staging directory or lock left, an old output (overwrite: true) whole and readable."""
    out = small_disk / "out" / "result"
    if existing:
        frame, data = blobs
        old = run_cli("run", str(write_yaml(small_disk / "old.yaml", base_config(data, out))), "--quiet")
        assert old.returncode == 0, old.stderr
        (small_disk / "old.yaml").unlink()
        before = tree_digest(out)
    cfg = write_yaml(padded.parent / f"full-{existing}.yaml",
                     base_config(padded, out, output={"overwrite": existing}, plot=None))
    proc = run_cli("run", str(cfg))
    assert proc.returncode == 74, proc.stderr
    last = last_line(proc)
    assert last.startswith(f"error: output: cannot write '{out}' {NO_SPACE}; log: "), last
    assert "input" not in last
    log = Path(last.split("; log: ")[1])
    assert logs_next_to(out) == [log] and "No space left on device" in log.read_text()
    if existing:
        assert tree_digest(out) == before
        assert len(read_labels(out / "labels")) == len(frame)
    else:
        assert not out.exists()
    assert siblings(out) == (["result"] if existing else [])  # no .tmp-, .old- or .lock


@pytest.mark.timeout(120)
def test_read_only_output_file_system(mounting, blobs, tmp_path):
    """A read-only file system is refused at once (the lock cannot be written): exit 74, the old
    output untouched, no log (nothing but dshift's lines was written)."""
    _, data = blobs
    mnt = tmp_path / "ro"
    mount_tmpfs(mnt, "1m")
    try:
        out = mnt / "result"
        out.mkdir()
        (out / "labels").mkdir()
        (out / "labels" / "part.00000.parquet").write_bytes(b"old labels")
        before = tree_digest(out)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        cfg = write_yaml(tmp_path / "job.yaml", base_config(data, out, output={"overwrite": True}))
        proc = run_cli("run", str(cfg))
        assert proc.returncode == 74, proc.stderr
        assert last_line(proc) == (f"error: output: cannot write '{out}' (read-only file system); "
                                   "remount it read-write or choose another output.path")
        assert tree_digest(out) == before and sorted(os.listdir(mnt)) == ["result"]
    finally:
        unmount(mnt)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory under the system's temporary directory that every user may read."""
    path = Path(tempfile.mkdtemp(prefix="dshift-perm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_output_without_write_permission(public_dir):
    """Run as ``nobody`` (root ignores permission bits): a parent directory it may not write is
    refused at once with exit 74, naming the directory to fix."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the job as another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to run the job as")
    data = public_dir / "data"
    for path in write_parquet_files(make_frame(n=300, seed=2), data, n_files=1):
        path.chmod(0o644)
    data.chmod(0o755)
    home = public_dir / "home"
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    parent = public_dir / "shared"
    parent.mkdir(mode=0o755)  # root's, not writable by nobody
    out = parent / "result"
    cfg = write_yaml(public_dir / "job.yaml", base_config(data, out))
    cfg.chmod(0o644)
    env = {"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "NUMBA_CACHE_DIR": str(home / "numba")}
    proc = subprocess.run([setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                           sys.executable, "-m", "dshift.cli", "run", str(cfg)],
                          cwd=home, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 74, proc.stderr
    assert last_line(proc) == (f"error: output: cannot write '{out}' (permission denied); "
                               f"grant write access to '{parent}' or choose another output.path")
    assert os.listdir(parent) == []


# --------------------------------------------------------------------------------------------
# 2. one job per output path


@pytest.fixture(scope="module")
def steady(tmp_path_factory) -> tuple:
    """40,000 rows in 4 files: a job of several seconds (bandwidth 1)."""
    frame = make_frame(n=40_000, seed=5)
    directory = tmp_path_factory.mktemp("steady") / "data"
    write_parquet_files(frame, directory)
    return frame, directory


def _in_use(out: Path, pid: int) -> str:
    return f"error: output.path '{out}' is in use by another dshift job (host {socket.gethostname()}, pid {pid}, started "


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_jobs_on_one_output(steady, tmp_path):
    """Two jobs started together on one output: one runs to a whole output; the other refuses
    at once with exit 2 naming it, and removes nothing of its work."""
    frame, data = steady
    out = tmp_path / "out" / "result"
    cfg = write_yaml(tmp_path / "job.yaml", base_config(data, out, model={"bandwidth": 1.0, "bin_seeding": True}))
    jobs = [Job(cfg), Job(cfg)]
    try:
        t0 = time.monotonic()
        codes = {}
        while len(codes) < 2 and time.monotonic() - t0 < 200:
            for job in jobs:
                if job.proc.pid not in codes and job.proc.poll() is not None:
                    codes[job.proc.pid] = (job.wait(), time.monotonic() - t0)
            time.sleep(0.05)
    finally:
        for job in jobs:
            job.close()
    winner, loser = sorted(jobs, key=lambda job: codes[job.proc.pid][0])
    assert codes[winner.proc.pid][0] == 0, winner.stderr
    assert codes[loser.proc.pid][0] == 2, loser.stderr
    assert codes[loser.proc.pid][1] < codes[winner.proc.pid][1]  # refused while the other ran
    last = loser.lines[-1]
    assert last.startswith(_in_use(out, winner.proc.pid)), last
    assert last.endswith("); wait for it or choose another output.path"), last
    assert "Traceback" not in loser.stderr and len(loser.lines) == 1, loser.stderr
    assert_whole(out, frame["uid"])
    assert siblings(out) == ["result"] and logs_next_to(out) == []  # no lock, no staging, no log


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_lock_of_a_killed_job_is_taken_over(steady, tmp_path):
    """SIGKILL a job mid-fit: its lock and staging directory stay; the next run says it takes
    the lock over, removes the leftovers and writes a whole output."""
    frame, data = steady
    out = tmp_path / "out" / "result"
    cfg = write_yaml(tmp_path / "job.yaml", base_config(data, out, model={"bandwidth": 1.0, "bin_seeding": True}))
    killed = Job(cfg)
    try:
        assert killed.wait_for_line("shift iteration"), killed.stderr
    finally:
        killed.kill()
    assert json.loads(lock_of(out).read_text())["pid"] == killed.proc.pid
    assert [p for p in siblings(out) if ".tmp-" in p], siblings(out)
    job = Job(cfg)
    assert job.wait() == 0, job.stderr
    took = next(ln for ln in job.lines if "took over the lock" in ln)
    assert f"a dshift job that is gone (host {socket.gethostname()}, pid {killed.proc.pid}, started " in took
    assert any("removed what killed jobs left" in ln for ln in job.lines), job.stderr
    assert_whole(out, frame["uid"])
    assert siblings(out) == ["result"]


def _model(path: Path) -> Path:
    from dshift.report import model_dict

    path.write_text(json.dumps(model_dict(centers=CENTERS, bandwidth=2.0, feature_columns=FEATURES, params={},
                                          n_iter=1, label_column="cluster")))
    return path


def test_predict_and_validate_see_the_lock(cli, blobs, tmp_path, write_config):
    """A job holding the output's lock (here this process): predict refuses at once, validate
    notes it; once released, validate is quiet about it."""
    from dshift.io.outputs import OutputStage

    _, data = blobs
    out = tmp_path / "out"
    cfg = write_config(base_config(data, out))
    stage = OutputStage(str(out)).open()
    try:
        proc = cli("predict", "--model", str(_model(tmp_path / "model.json")), "--input", str(data),
                   "--output", str(out))
        last = assert_user_error(proc, "is in use by another dshift job")
        assert last.startswith(_in_use(out, os.getpid()).replace("output.path", "--output")), last
        assert last.endswith("wait for it or choose another --output"), last
        proc = cli("validate", str(cfg))
        assert proc.returncode == 0, proc.stderr
        assert f"note: output.path '{out}' is in use by another dshift job (host " in proc.stdout
    finally:
        stage.close()
    assert not lock_of(out).exists() and not out.exists()
    proc = cli("validate", str(cfg))
    assert proc.returncode == 0 and "in use" not in proc.stdout, proc.stdout
