"""dshift.io.dataset: listing the input's Parquet files and checking their footers."""

from __future__ import annotations

import os

import pytest

from dshift.errors import UserError
from dshift.io.dataset import check_parquet_files, list_input_files


def test_list_input_files_dir_glob_file(parquet_input):
    _, d = parquet_input
    assert [os.path.basename(f) for f in list_input_files(str(d)).files] == [f"part-00{i}.parquet" for i in range(3)]
    assert len(list_input_files(str(d / "part-00[01].parquet")).files) == 2
    assert len(list_input_files(str(d / "part-002.parquet")).files) == 1
    with pytest.raises(UserError, match="does not exist"):
        list_input_files(str(d / "nope"))
    with pytest.raises(UserError, match="no files match"):
        list_input_files(str(d / "*.csv"))


def test_check_parquet_files_counts_rows_and_names_corrupt_file(parquet_input):
    _, d = parquet_input
    files = list_input_files(str(d))
    assert check_parquet_files(files) == 900
    (d / "part-001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="part-001.parquet' is not a readable Parquet file"):
        check_parquet_files(list_input_files(str(d)))
