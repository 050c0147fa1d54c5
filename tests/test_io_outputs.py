"""dshift.io.outputs: the staged output and the input/output overlap check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from dshift.errors import UserError
from dshift.io.outputs import OutputStage, check_paths_disjoint, write_json


def test_output_stage_commit_and_abort(tmp_path):
    target = tmp_path / "deep" / "out"
    stage = OutputStage(str(target))
    with stage:
        write_json(stage.url_for("a.json"), {"x": 1})
        assert not target.exists()
    assert not target.exists() and not (tmp_path / "deep").exists()  # aborted: parents we made are gone

    stage = OutputStage(str(target))
    with stage:
        write_json(stage.url_for("a.json"), {"x": 1})
        stage.commit()
    assert json.loads((target / "a.json").read_text()) == {"x": 1}
    assert sorted(os.listdir(target)) == ["_SUCCESS", "a.json"]
    with pytest.raises(UserError, match="already exists; set output.overwrite: true"):
        OutputStage(str(target)).check()


def test_output_stage_overwrite_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    stage = OutputStage(str(target), overwrite=True)
    with stage:
        write_json(stage.url_for("new.json"), [])
        assert (target / "old.txt").exists()  # untouched until commit
    assert (target / "old.txt").exists()  # failure before commit: old output kept
    (tmp_path / ".out.tmp-deadbeef").mkdir()  # a killed run's leftover
    stage = OutputStage(str(target), overwrite=True)
    with stage:
        write_json(stage.url_for("new.json"), [])
        stage.commit()
    assert sorted(os.listdir(target)) == ["_SUCCESS", "new.json"]
    assert os.listdir(tmp_path) == ["out"]


def test_check_paths_disjoint(tmp_path):
    d = str(tmp_path / "in")
    with pytest.raises(UserError, match="the same as input.path"):
        check_paths_disjoint(d, d)
    with pytest.raises(UserError, match="inside input.path"):
        check_paths_disjoint(d, d + "/x/y")
    with pytest.raises(UserError, match="input.path .* is inside output.path"):
        check_paths_disjoint(d, str(tmp_path))
    check_paths_disjoint(d, str(tmp_path / "in2"))  # a sibling with a common prefix is fine
    check_paths_disjoint(d + "/*.parquet", str(tmp_path / "out"))
    with pytest.raises(UserError, match="inside the input"):
        check_paths_disjoint(str(tmp_path / "*"), str(tmp_path / "out"))
    check_paths_disjoint("s3://b/in", d)  # different file systems


def test_check_paths_disjoint_names_an_unknown_protocol(tmp_path):
    with pytest.raises(UserError, match="input.path: cannot open 'nosuchproto://x/y'"):
        check_paths_disjoint("nosuchproto://x/y", str(tmp_path / "out"))


def test_one_stage_per_output_and_leftovers_of_dead_jobs(tmp_path):
    """A second stage on the same output refuses (naming the first); the lock and staging
    directory of a job that is gone are taken over and removed; a clean end leaves nothing."""
    target = tmp_path / "out"
    first = OutputStage(str(target)).open()
    try:
        with pytest.raises(UserError, match=rf"output.path '{target}' is in use by another dshift job "
                                            rf"\(host .*, pid {os.getpid()}, started .*\); wait for it"):
            OutputStage(str(target)).open()
        assert first.holder() is not None and "pid" in first.holder()
        assert os.path.basename(first.tmp) == f".out.tmp-{first.lock.token}"
    finally:
        first.close()
    assert os.listdir(tmp_path) == [] and first.holder() is None

    # What a SIGKILLed job leaves: its lock (no flock held any more), staging and .old- sibling.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": time.time() - 60, "token": "a1b2c3"}
    (tmp_path / ".out.lock").write_text(json.dumps(gone))
    (tmp_path / ".out.tmp-a1b2c3").mkdir()
    (tmp_path / ".out.old-a1b2c3").mkdir()
    (tmp_path / ".out.tmp-not-ours").mkdir()  # not a dshift staging name: kept
    stage = OutputStage(str(target))
    assert stage.holder() is None  # stale, not in use
    with stage:
        assert stage.lock.held
        write_json(stage.url_for("a.json"), 1)
        stage.commit()
    assert sorted(os.listdir(tmp_path)) == [".out.tmp-not-ours", "out"]


def test_lock_without_flock_is_a_leased_marker(tmp_path):
    """Where flock fails (file systems without locks) the lock is the object stores' leased
    marker, created with O_EXCL: refused while live, taken over once the lease expired."""
    from fsspec.implementations.local import LocalFileSystem

    from dshift.io.locks import OutputLock, Owner

    def lock() -> OutputLock:
        return OutputLock(LocalFileSystem(), str(tmp_path), "out", url=str(tmp_path / "out"), what="output.path")

    first = lock()
    assert first._acquire_lease() is None and first.held
    with pytest.raises(UserError, match="is in use by another dshift job"):
        lock()._acquire_lease()
    first.verify()
    first.release()
    assert os.listdir(tmp_path) == []
    expired = Owner(host="elsewhere", pid=1, started=time.time() - 900, token="0f0f", renewed=time.time() - 300)
    (tmp_path / ".out.lock").write_bytes(expired.dump())
    second = lock()
    assert second._acquire_lease() == expired
    assert Owner.parse((tmp_path / ".out.lock").read_bytes()).token == second.token
    second.release()
    assert os.listdir(tmp_path) == []
