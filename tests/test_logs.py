"""The command's log file (dshift.logs): where it is, what goes into it, what is left of it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dshift.logs import JobLog, log_path, state_dir


def test_log_locations(tmp_path, state_home):
    local = log_path(str(tmp_path / "out" / "result"), "run")
    assert Path(local).parent == tmp_path / "out"
    assert Path(local).name.startswith(".result.dshift-") and local.endswith(f"-{os.getpid()}.log")
    remote = log_path("s3://bucket/some/result", "run")
    assert Path(remote).parent == state_dir() == state_home / "dshift" / "logs"
    assert Path(remote).name.startswith("result.dshift-")
    assert Path(log_path(None, "validate")).name.startswith("validate.dshift-")


def test_stderr_of_the_process_and_its_children_goes_to_the_log(tmp_path, capsys):
    fd2_before = os.fstat(2)
    log = JobLog()
    path = tmp_path / "out" / ".result.dshift-test.log"  # out/ does not exist yet
    log.open(str(path))
    logging.getLogger("dshift.batch").info("progress line")
    subprocess.run([sys.executable, "-c", "import sys; print('child stderr', file=sys.stderr)"], check=True)
    os.write(2, b"raw fd 2\n")
    assert log.has_library_output()
    log.final("error: it failed")
    assert log.close(keep=True) == str(path)

    text = path.read_text()
    for needle in ("] progress line", "child stderr", "raw fd 2", "error: it failed"):
        assert needle in text, needle
    terminal = capsys.readouterr().err  # the in-process "terminal" (sys.stderr)
    assert "progress line" in terminal and terminal.rstrip().endswith("error: it failed")
    assert "child stderr" not in terminal and "raw fd 2" not in terminal
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (fd2_before.st_dev, fd2_before.st_ino)  # stderr restored
    assert logging.getLogger("dshift").handlers == []  # logging restored


def test_a_log_that_repeats_the_terminal_is_discarded_with_its_directories(tmp_path, capsys):
    log = JobLog(quiet=True)
    path = tmp_path / "a" / "b" / ".result.dshift-test.log"
    log.open(str(path))
    logging.getLogger("dshift.batch").info("only dshift lines")
    assert not log.has_library_output()
    assert log.close(keep=False) is None
    assert list(tmp_path.iterdir()) == []  # a/b were created for the log only
    assert "only dshift lines" not in capsys.readouterr().err  # --quiet


def test_success_moves_the_log_into_the_output(tmp_path):
    out = tmp_path / "result"
    out.mkdir()
    log = JobLog()
    log.open(str(tmp_path / ".result.dshift-test.log"))
    logging.getLogger("dshift").info("done")
    assert log.close(keep=False, into=str(out)) == str(out / "dshift.log")
    assert "] done" in (out / "dshift.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_unwritable_location_falls_back_to_the_state_directory(tmp_path, state_home):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = JobLog()
    log.open(str(blocker / "out" / ".result.dshift-test.log"))
    fallback = state_home / "dshift" / "logs" / "result.dshift-test.log"
    assert log.path == str(fallback)
    assert log.close(keep=True) == str(fallback) and fallback.exists()


@pytest.mark.parametrize("verbose", [False, True])
def test_verbose_copies_the_log_to_the_terminal(tmp_path, capsys, verbose):
    log = JobLog(verbose=verbose)
    log.open(str(tmp_path / ".result.dshift-test.log"))
    logging.getLogger("dshift.batch").info("progress line")
    os.write(2, b"library noise\n")
    log.final("error: the end")
    log.close(keep=True)
    terminal = capsys.readouterr().err
    assert ("library noise" in terminal) is verbose
    assert terminal.count("progress line") == 1 and terminal.rstrip().endswith("error: the end")
