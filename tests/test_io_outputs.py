"""dshift.io.outputs: the staged output and the input/output overlap check."""

from __future__ import annotations

import json
import os

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
