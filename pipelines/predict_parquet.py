"""Label new Parquet data with a saved model (``dshift predict``).

Reads ``model.json`` alone (centers, bandwidth, feature columns), labels every row of the
input on the workers and writes ``DIR/labels/`` (+ a small ``report.json``) with the same
staged, all-or-nothing output as ``dshift run``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from dshift.cluster import connect
from dshift.config import ClusterConfig
from dshift.errors import UserError
from dshift.io.inputs import open_input, scan_input
from dshift.io.labels import check_partition_by, label_frame, write_labels
from dshift.io.outputs import OutputStage, check_paths_disjoint, read_json, write_json
from dshift.report import Stopwatch, load_model, report_dict

__all__ = ["run"]

logger = logging.getLogger("dshift.batch")


def run(
    *,
    model_path: str,
    input_path: str,
    output_path: str,
    columns: Optional[Sequence[str]] = None,
    storage_options: Optional[dict] = None,
    overwrite: bool = False,
    nan_policy: str = "error",
    label_column: Optional[str] = None,
    cluster: Optional[ClusterConfig] = None,
    filters: Optional[list] = None,
    partition_by: Optional[Sequence[str]] = None,
) -> dict[str, Any]:
    """Label ``input_path`` with the model in ``model_path``; write ``output_path/labels/``.

    Parameters
    ----------
    model_path : str
        A ``model.json`` written by ``dshift run``.
    input_path : str
        Parquet file, directory, glob or URL.
    output_path : str
        Output directory (must not exist unless ``overwrite``).
    columns : sequence of str, optional
        Feature columns of the input, in model order; default the model's ``feature_columns``.
    storage_options : dict, optional
        fsspec options for the model, input and output.
    overwrite : bool
        Replace an existing output.
    nan_policy : {"error", "drop"}
        Rows with NaN/inf in a feature: error, or label -1.
    label_column : str, optional
        Default: the model's label column (``cluster``).
    cluster : ClusterConfig, optional
        Default: a local cluster with the config defaults.
    filters : list, optional
        Row filters, as ``input.filters`` (named ``--filters`` in messages).
    partition_by : sequence of str, optional
        Hive-partition ``labels/`` by these columns, as ``output.partition_by``.

    Returns
    -------
    dict
        The report written to ``report.json``.

    Raises
    ------
    UserError
        Malformed model, feature count/column mismatch, an input error, an existing output,
        or another job writing ``output_path``.
    StorageError
        The output could not be written (no space, quota, read-only, no permission).
    """
    clock = Stopwatch()
    so = storage_options or {}
    model = load_model(read_json(model_path, so, what="--model"), model_path, so)
    n_features = model["cluster_centers"].shape[1]
    label_column = label_column or model.get("label_column") or "cluster"
    if columns is not None and len(columns) != n_features:
        raise UserError(
            f"--columns: the model has {n_features} features ({', '.join(model['feature_columns'])}) "
            f"but {len(columns)} columns were given ({', '.join(columns)})"
        )
    features = list(columns) if columns is not None else list(model["feature_columns"])

    check_paths_disjoint(input_path, output_path, so, so)
    output = OutputStage(output_path, so, overwrite=overwrite, what="--output", overwrite_hint="pass --overwrite")
    # The lock first (a second job on this output refuses at once); the staging directory is
    # removed after the cluster is closed.
    with output:
        source = open_input(input_path, storage_options=so, columns=features, label_column=label_column,
                            filters=filters,
                            keys={"path": "--input", "nan_policy": "--nan-policy", "filters": "--filters",
                                  "columns": "--columns" if columns else f"feature_columns of {model_path}"})
        check_partition_by(source.data, partition_by, label_column, what="--partition-by")
        with connect(cluster or ClusterConfig()):
            with clock.phase("read"):
                data = scan_input(source, nan_policy=nan_policy)
            with output.writing():
                with clock.phase("label_write"):
                    labelled = label_frame(data.data, features, model["cluster_centers"], model["bandwidth"],
                                           model["cluster_all"], label_column)
                    sizes, _ = write_labels(labelled, output.url_for("labels"), label_column=label_column,
                                            storage_options=so, input_url=input_path, partition_by=partition_by)
                clock.timings["total"] = clock.total()
                report = report_dict(
                    n_rows=data.n_rows, n_rows_fit=data.n_rows_fit, feature_columns=features,
                    bandwidth=model["bandwidth"], bandwidth_estimated=False, n_seeds=None,
                    n_clusters=len(model["cluster_centers"]), n_iter=None, cluster_sizes=sizes,
                    timings=clock.timings, input_path=input_path, output_path=output_path, nan_policy=nan_policy,
                    extra={"model_path": model_path, **data.report_fields()},
                )
                write_json(output.url_for("report.json"), report, so)
                output.commit()
    logger.info("done: %s rows labelled in %.1f s -> %s", f"{data.n_rows:,}", clock.total(), output_path)
    return report
