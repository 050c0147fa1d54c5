"""Reading features from Parquet, labelling partitions, and writing outputs atomically.

Everything that touches data runs on the Dask workers: the driver lists files, reads
Parquet footers (metadata only) to name corrupt files early, and receives small results
(row counts, cluster sizes, a plot sample).

One module per job:

- :mod:`dshift.io.dataset` — the input's Parquet files (listing, pruning by the filters, footer
  checks) and the lazy read.
- :mod:`dshift.io.hive` — Hive partition keys (``key=value`` directories) as typed columns.
- :mod:`dshift.io.filters` — row filters (``input.filters``): shape, types, partition pruning.
- :mod:`dshift.io.features` — feature column selection, the scan pass, the float64 array.
- :mod:`dshift.io.inputs` — the read stage as one call (:func:`open_input`, :func:`scan_input`).
- :mod:`dshift.io.labels` — labelling partitions and writing the labelled data set.
- :mod:`dshift.io.outputs` — the staged, all-or-nothing output (:class:`OutputStage`), storage
  faults writing it, and small files (model.json, report.json).
- :mod:`dshift.io.locks` — one job per output path (:class:`~dshift.io.locks.OutputLock`).

The names below are re-exported here, so ``from dshift.io import OutputStage`` works too.
"""

from dshift.io.dataset import (
    PARQUET_EXTENSIONS,
    InputFiles,
    check_parquet_files,
    list_input_files,
    prune_files,
    read_errors_as_user_errors,
    read_parquet,
    read_schema,
)
from dshift.io.features import ScanResult, feature_array, float_features, scan_features, select_feature_columns
from dshift.io.inputs import InputData, InputSource, open_input, scan_input
from dshift.io.filters import check_filters
from dshift.io.labels import check_partition_by, label_frame, label_partition, write_labels
from dshift.io.outputs import OutputStage, check_paths_disjoint, read_json, write_bytes, write_json

__all__ = [
    "PARQUET_EXTENSIONS",
    "InputFiles",
    "ScanResult",
    "list_input_files",
    "prune_files",
    "check_parquet_files",
    "read_schema",
    "read_parquet",
    "check_filters",
    "select_feature_columns",
    "read_errors_as_user_errors",
    "scan_features",
    "float_features",
    "feature_array",
    "label_partition",
    "label_frame",
    "check_partition_by",
    "write_labels",
    "check_paths_disjoint",
    "OutputStage",
    "write_json",
    "write_bytes",
    "read_json",
    "InputSource",
    "InputData",
    "open_input",
    "scan_input",
]
