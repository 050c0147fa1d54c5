"""Indexes on local disk (dshift._mapped): nameless files, mapped per task, pickled with their
data, a real full disk (a small tmpfs) keeping them in memory."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil

import numpy as np
import pytest
from dask.sizeof import sizeof

import dshift
from _parity import blobs
from conftest import mount_tmpfs, unmount
from dshift import _mapped
from dshift.assigning import index_label_totals
from dshift.ballsums import ball_sums
from dshift.forest import build_group_index
from dshift.index import build_index

X = blobs(5000, 3, 3, 1.0, seed=4)
W = np.random.default_rng(4).uniform(0.5, 2.0, len(X))


def test_store_is_nameless_mapped_and_released(tmp_path):
    arr = np.arange(30_000, dtype=np.float64).reshape(-1, 3)
    stored = _mapped.store(arr, str(tmp_path))
    assert isinstance(stored, _mapped.DiskArray) and stored.shape == arr.shape and stored.nbytes == arr.nbytes
    assert os.listdir(tmp_path) == []  # unlinked at once: nothing is left behind, whatever ends the process
    view = stored.mapped()
    np.testing.assert_array_equal(view, arr)
    assert view.flags.writeable and view.flags.c_contiguous  # the kernels' array type
    view[0, 0] = -1.0  # copy-on-write: the stored data does not change
    assert stored.mapped()[0, 0] == 0.0
    assert sizeof(stored) < 1000  # Dask counts the handle, so it never spills the data
    empty = _mapped.store(np.zeros((0, 3)), str(tmp_path))
    assert empty.mapped().shape == (0, 3)
    assert _open_deleted_files(tmp_path) == 3  # a file per stored array, and the live mapping's own descriptor
    del view, stored, empty
    assert _open_deleted_files(tmp_path) == 0  # released with the array: its space is free


def _open_deleted_files(directory) -> int:
    """This process's open descriptors of unlinked files in ``directory``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            found += target.startswith(str(directory)) and target.endswith("(deleted)")
    return found


def test_pickled_with_its_data_and_stored_again(tmp_path, monkeypatch):
    arr = np.random.default_rng(0).normal(size=(1000, 2))
    stored = _mapped.store(arr, str(tmp_path))
    monkeypatch.setattr(_mapped, "local_directory", lambda: str(tmp_path))
    back = pickle.loads(pickle.dumps(stored))
    assert isinstance(back, _mapped.DiskArray)
    np.testing.assert_array_equal(back.mapped(), arr)
    assert _mapped.opened(arr) is arr


@pytest.mark.parametrize("weighted", [False, True])
def test_index_on_disk_gives_the_same_sums_and_labels(weighted):
    w = W if weighted else None
    tree = build_index(X, w)
    on_disk = build_group_index([X[:2000], X[2000:]], [None, None] if w is None else [w[:2000], w[2000:]], True)
    assert isinstance(on_disk.points, _mapped.DiskArray)
    assert isinstance(on_disk.weights, _mapped.DiskArray) == weighted
    assert sizeof(on_disk) < sizeof(tree) / 3
    seeds = dshift.get_bin_seeds(X, 1.0, 1).astype(np.float64)
    for a, b in zip(ball_sums(tree, seeds, 1.0), ball_sums(on_disk, seeds, 1.0)):
        np.testing.assert_array_equal(a, b)
    centers = seeds[:5]
    for a, b in zip(index_label_totals(tree, centers, 1.0, False, 5), index_label_totals(on_disk, centers, 1.0, False, 5)):
        np.testing.assert_array_equal(a, b)


def test_full_disk_keeps_the_index_in_memory(mounting, tmp_path, caplog):
    mnt = tmp_path / "small"
    mount_tmpfs(mnt, "1m")
    try:
        big = np.ones((100_000, 3))  # 2.4 MB: does not fit
        with caplog.at_level(logging.WARNING, logger="dshift"):
            kept = _mapped.store(big, str(mnt))
        assert kept is big or np.shares_memory(kept, big)
        assert "has no room" in caplog.text and str(mnt) in caplog.text
        assert os.listdir(mnt) == [] and shutil.disk_usage(mnt).used < 100_000  # the partial file went
        small = _mapped.store(np.ones((1000, 3)), str(mnt))
        assert isinstance(small, _mapped.DiskArray)
        del small
    finally:
        unmount(mnt)


def test_missing_directory_keeps_the_index_in_memory(tmp_path, caplog):
    arr = np.ones((10, 3))
    with caplog.at_level(logging.WARNING, logger="dshift"):
        assert _mapped.store(arr, str(tmp_path / "gone")) is arr
    assert "not usable" in caplog.text
