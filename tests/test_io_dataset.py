"""dshift.io.dataset (and dshift.io.hive): listing the input's Parquet files, their Hive partition keys,
pruning by filters, and checking footers."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa
import pytest

from conftest import LAKE_CITIES, add_pruned_partition
from dshift.errors import UserError
from dshift.io.dataset import check_parquet_files, list_input_files, prune_files, read_parquet
from dshift.io.filters import check_filters
from dshift.io.hive import discover_keys, parse_keys


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
    assert check_parquet_files(files)[:2] == (900, True)
    (d / "part-001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="part-001.parquet' is not a readable Parquet file"):
        check_parquet_files(list_input_files(str(d)))


def test_partitions_of_whole_row_groups_split_big_files_and_group_small_ones(tmp_path, threaded_dask):
    """Partitions hold about dshift.partition-bytes: a big file's row groups are split over several
    (so both workers read and label it), consecutive small files of one schema share one, rows
    stay in input order. Files whose column types differ keep a partition each."""
    import dask
    import pyarrow.parquet as pq

    from dshift._dask import DEFAULTS

    rows = np.arange(40_000, dtype=np.int64)
    big = pa.table({"uid": rows, "x": rows * 0.5, "y": -rows * 0.25})
    tmp_path.joinpath("data").mkdir()
    pq.write_table(big, tmp_path / "data" / "a-big.parquet", row_group_size=5_000)  # 8 groups of ~117 KiB
    for i in range(30):  # 30 small files of 100 rows
        pq.write_table(big.slice(100 * i, 100), tmp_path / "data" / f"b-small-{i:02d}.parquet")
    files = list_input_files(str(tmp_path / "data"))
    footers = check_parquet_files(files)
    assert footers[:2] == (40_000 + 3_000, True)
    want = rows.tolist() + list(range(3_000))
    with dask.config.set({"dshift.partition-bytes": DEFAULTS["partition-bytes"]}):
        assert read_parquet(files, group_files=True).npartitions == 1  # all of it is far below the default
        assert read_parquet(files).npartitions == 31  # not grouped: a partition per file
    with dask.config.set({"dshift.partition-bytes": 256 << 10}):
        data = read_parquet(files, group_files=True)
        assert 4 <= data.npartitions <= 9  # the big file split, the small files grouped
        got = data.compute()
    assert got["uid"].tolist() == want
    assert got["x"].tolist() == (got["uid"] * 0.5).tolist()

    pq.write_table(big.slice(0, 10).cast(pa.schema([("uid", pa.int32()), ("x", pa.float32()), ("y", pa.float64())])),
                   tmp_path / "data" / "c-narrow.parquet")
    assert check_parquet_files(list_input_files(str(tmp_path / "data"))).one_schema is False


def test_a_column_of_integers_in_one_file_and_floats_in_another_is_refused(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"a": [1.5, 2.5], "b": [1, 2], "n": [1, 2]})
    frame.to_parquet(tmp_path / "part-0.parquet")
    frame.astype({"a": "int64", "b": "int32", "n": "float32"}).to_parquet(tmp_path / "part-1.parquet")
    with pytest.raises(UserError, match=r"input.path: column 'a' is double in '.*part-0.parquet' but int64 in "
                                        r"'.*part-1.parquet'; rewrite the files with one type for it"):
        check_parquet_files(list_input_files(str(tmp_path)))
    frame.astype({"b": "int32", "n": "int8"}).to_parquet(tmp_path / "part-1.parquet")  # widths may differ
    assert check_parquet_files(list_input_files(str(tmp_path))).n_rows == 4


# --------------------------------------------------------------------------------------------
# Hive partition keys and partition pruning


def test_parse_and_discover_keys():
    assert parse_keys("year=2024/city=New%20York/x=/part.parquet") == {"year": "2024", "city": "New York", "x": ""}
    assert parse_keys("a=__HIVE_DEFAULT_PARTITION__/plain/b=1.parquet") == {"a": None}  # the file name is no key
    keys = discover_keys(["m=03/c=x/f.pq", "m=11/c=__HIVE_DEFAULT_PARTITION__/f.pq", "f.pq", "m=4/c=7/f.pq"])
    assert keys.schema == pa.schema([("m", pa.int32()), ("c", pa.dictionary(pa.int32(), pa.string()))])
    assert keys.values == [{"m": 3, "c": "x"}, {"m": 11}, {}, {"m": 4, "c": "7"}]
    assert keys.dictionaries["c"].to_pylist() == ["7", "x"]
    assert discover_keys(["f.pq"]).dataset_options("/d") == {"partitioning": None}


def test_hive_keys_become_typed_columns(hive_lake, threaded_dask):
    frame, d = hive_lake
    files = list_input_files(str(d))
    assert len(files.files) == 18 and files.base == str(d)
    data = read_parquet(files)
    # Keys follow the file columns; the run=1 directory above the input is not a key.
    assert list(data.columns) == [c for c in frame.columns if c not in ("city", "month")] + ["city", "month"]
    assert data["month"].dtype == np.int32
    assert list(data["city"].dtype.categories) == sorted(LAKE_CITIES)
    got = data.compute().sort_values("uid").reset_index(drop=True)
    want = frame.sort_values("uid").reset_index(drop=True)
    assert got["city"].astype(str).tolist() == want["city"].tolist()  # "san jose" from city=san%20jose
    assert got["month"].tolist() == want["month"].tolist()  # 3 from month=03


def test_keys_below_a_glob_base_and_none_for_a_file(hive_lake):
    _, d = hive_lake
    globbed = list_input_files(str(d / "city=*" / "month=03"))
    assert globbed.base == str(d) and globbed.keys.names == ["city", "month"] and len(globbed.files) == 6
    one = list_input_files(str(d / "city=sf" / "month=03" / "part-0.parquet"))
    assert one.keys.names == [] and len(one.files) == 1
    # Without keys below the base, key=value directories above it are not parsed either.
    below = list_input_files(str(d / "city=sf" / "month=03"))
    assert below.keys.names == [] and not {"run", "city", "month"} & set(read_parquet(below).columns)


def test_prune_files_never_opens_pruned_files(hive_lake, tmp_path):
    _, d = hive_lake
    lake = tmp_path / "lake"
    shutil.copytree(d, lake)
    add_pruned_partition(str(lake))
    files = list_input_files(str(lake))
    assert len(files.files) == 20
    with pytest.raises(UserError, match=r"city=la/month=03/part-1.parquet' is not a readable Parquet file"):
        check_parquet_files(files)

    kept = prune_files(files, check_filters([["city", "!=", "la"], ["month", "in", [3, 4]]]))
    assert kept.n_pruned == 8 and len(kept.files) == 12
    assert not any("city=la" in f or "month=11" in f for f in kept.files)
    assert check_parquet_files(kept).n_rows > 0  # the corrupt file is not even looked at
    # A term list without a partition-key term may match rows in any file: nothing is pruned.
    assert prune_files(files, check_filters([[["city", "==", "sf"]], [["a", ">", 0]]])).n_pruned == 0
    # Key terms are type-checked before pruning; a filter ruling out every file is an error.
    with pytest.raises(UserError, match=r"input.filters\[0\]: cannot compare column 'month' \(int32\) with '3'"):
        prune_files(files, check_filters([["month", "==", "3"]]))
    with pytest.raises(UserError, match="input.filters: no input file is left"):
        prune_files(files, check_filters([["month", ">", 12]]))


# --------------------------------------------------------------------------------------------
# Reads that fail on the workers name the file


def _corrupt_data_pages(path) -> None:
    """XOR every byte between the leading magic and the footer: the footer still reads."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    data[4:-footer] = bytes(b ^ 0x5A for b in data[4:-footer])
    path.write_bytes(bytes(data))


def test_a_file_with_corrupt_data_pages_is_named(parquet_input, cli, write_config, tmp_path, threaded_dask):
    """Its footer is intact, so only the read of its data fails, in a task: the error names the
    file (it was 'unexpected error: OSError: Couldn't deserialize thrift', exit 1, from the seed
    check of validate and run, which reads the first partition outside any stage's handler)."""
    from conftest import assert_user_error, base_config
    from dshift.io.inputs import open_input, scan_input

    _, d = parquet_input
    _corrupt_data_pages(d / "part-001.parquet")
    files = list_input_files(str(d))
    footers = check_parquet_files(files)
    with pytest.raises(UserError, match=r"^input file '.*/part-001.parquet' cannot be read: "):
        read_parquet(files, footers=footers).compute()
    with pytest.raises(UserError, match=r"^input file '.*/part-001.parquet' cannot be read: "):
        scan_input(open_input(str(d), columns=["a", "b", "c"]))
    _corrupt_data_pages(d / "part-000.parquet")  # the first partition: the one validate samples
    proc = cli("validate", str(write_config(base_config(d, tmp_path / "out"))))
    assert_user_error(proc, f"input file '{d / 'part-000.parquet'}' cannot be read: ")


def test_a_file_truncated_after_the_check_is_named(parquet_input, threaded_dask):
    """A file cut short while the job runs: the read names it, not the input directory."""
    from dshift.io.inputs import open_input, scan_input

    _, d = parquet_input
    source = open_input(str(d), columns=["a", "b", "c"])
    os.truncate(d / "part-002.parquet", 1000)
    with pytest.raises(UserError, match=r"^input file '.*/part-002.parquet' cannot be read: Parquet magic bytes"):
        scan_input(source)


def test_a_file_changed_after_the_check_is_named_under_partition_key_filters(hive_lake, tmp_path, threaded_dask):
    """Filters on partition keys only leave out whole files: the rows of the others are still
    checked against their footers (a filter on a column leaves rows out, so not then)."""
    import pyarrow.parquet as pq

    _, d = hive_lake
    lake = tmp_path / "lake"
    shutil.copytree(d, lake)
    by_key = check_filters([["city", "==", "sf"]])
    files = prune_files(list_input_files(str(lake)), by_key)
    footers = check_parquet_files(files)
    victim = files.files[1]
    before = pq.ParquetFile(victim).metadata.num_rows
    pq.write_table(pq.ParquetFile(victim).read().slice(0, 3), victim + ".tmp")
    os.replace(victim + ".tmp", victim)
    with pytest.raises(UserError, match=rf"^input file '{victim}' changed during the job \({before:,} rows when the "
                                        r"job started, 3 now\); run again$"):
        read_parquet(files, filters=by_key, footers=footers).compute()
    by_column = check_filters([["a", ">", -1e9]])
    assert len(read_parquet(files, filters=by_column, footers=footers).compute()) == footers.n_rows - before + 3
