"""dshift.io.faults: which errors are the output's, and their one-line messages."""

from __future__ import annotations

import errno
import os

import pytest

from dshift.errors import StorageError
from dshift.io.faults import is_write_error
from dshift.io.outputs import OutputStage


def test_storage_faults_name_the_output(tmp_path):
    """An OSError writing the output becomes one line naming the output, the cause, what to do."""
    target = tmp_path / "out"
    stage = OutputStage(str(target))
    with pytest.raises(StorageError, match=rf"^output: cannot write '{target}' \(no space left on device\); "
                                           "free space or choose another output.path$") as info:
        with stage.writing():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.exit_code == 74
    with pytest.raises(StorageError, match=r"\(access denied: Access Denied\); check the credentials"):
        with stage.writing():
            raise PermissionError("Access Denied")  # s3fs's AccessDenied: no errno

    # Which side of a read-and-write computation an error comes from.
    staging = str(tmp_path / ".out.tmp-1234")
    assert is_write_error(OSError(errno.ENOSPC, "No space left on device"), staging)
    assert is_write_error(PermissionError(errno.EACCES, "Permission denied", f"{staging}/labels/p.parquet"), staging)
    assert not is_write_error(FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "in/p.parquet")), staging)
    assert not is_write_error(PermissionError("Access Denied"), staging)  # no clue: the input's, as before
