"""The batch job: cluster a Parquet data set with mean shift and write labels, model and report.

``run(config)`` reads top to bottom as the job's stages; the work is done by
:mod:`dshift.batch` (bandwidth, deduplication, fit or sweep, seed checks),
:mod:`dshift.io` (:mod:`~dshift.io.inputs` reading, :mod:`~dshift.io.labels` labelling,
:mod:`~dshift.io.outputs` staged output), :mod:`dshift.cluster` (Dask), :mod:`dshift.workers` (the local workers) and
:mod:`dshift.report` (model.json, report.json, clusters.png).

Usage: ``dshift run CONFIG.yaml`` or ``python -m dshift.pipelines.cluster_parquet CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Optional, Sequence

from dshift.batch import (DEDUP_SAMPLE_ROWS, choose_bandwidth, fit_input, precheck_seeds, reads_in_fit,
                          sweep_bandwidths)
from dshift.cluster import connect, persist_policy
from dshift.workers import trim_worker_memory
from dshift.config import Config
from dshift.config_load import load_config
from dshift.errors import UserError
from dshift.io.dataset import read_errors_as_user_errors
from dshift.io.inputs import InputSource, defer_scan, open_input, scan_input
from dshift.io.labels import check_partition_by, label_frame, write_labels
from dshift.io.outputs import OutputStage, check_paths_disjoint, write_bytes, write_json
from dshift.pipelines.make_demo_data import exists, make_demo_data
from dshift.report import Stopwatch, centers_parquet, model_dict, plot_png, report_dict, sweep_png

__all__ = ["run", "open_job_input", "main"]

logger = logging.getLogger("dshift.batch")


def run(config: Config) -> dict[str, Any]:
    """Run the clustering job described by ``config``.

    Parameters
    ----------
    config : Config
        A validated configuration (:func:`dshift.config_load.load_config`).

    Returns
    -------
    dict
        The report (also written to ``output.path/report.json``).

    Raises
    ------
    UserError
        For anything wrong with the config, the data or the cluster address, or another job
        writing ``output.path``; nothing is written at ``output.path`` then.
    StorageError
        The output could not be written (no space, quota, read-only, no permission); nothing
        is written at ``output.path``, an old output stays whole.
    """
    cfg = config
    check_paths_disjoint(cfg.input.path, cfg.output.path, cfg.input.storage_options, cfg.output.storage_options)
    output = OutputStage(cfg.output.path, cfg.output.storage_options, overwrite=cfg.output.overwrite)
    # The output's lock first: a second job on this output refuses at once. The staging
    # directory is removed after the cluster is closed, when no worker writes into it any more.
    with output:
        return _run(cfg, output)


def _run(cfg: Config, output: OutputStage) -> dict[str, Any]:
    """The job, with the output's lock held and its staging directory created."""
    clock = Stopwatch()
    so_in, so_out = cfg.input.storage_options, cfg.output.storage_options

    # Refuse early what would fail late: the input's files and columns are checked on the
    # driver (metadata only) before a cluster starts.
    make_demo = cfg.demo is not None and not exists(cfg.input.path, so_in)
    source = None if make_demo else open_job_input(cfg)
    if source is not None:
        logger.info("%s", precheck_seeds(cfg, source))

    with connect(cfg.cluster) as client, persist_policy(cfg.cluster.persist):
        if make_demo:
            with clock.phase("demo_data"):
                make_demo_data(cfg.input.path, cfg.demo, so_in)
            source = open_job_input(cfg)

        sample_rows = DEDUP_SAMPLE_ROWS if cfg.model.deduplicate == "auto" else 0
        if reads_in_fit(cfg):  # the fit's first pass counts and checks the rows: one read less
            data = defer_scan(source, sample_rows=sample_rows)
        else:
            with clock.phase("read"):
                data = scan_input(source, nan_policy=cfg.input.nan_policy, sample_rows=sample_rows)
            trim_worker_memory(client)  # the read's buffers: room for the trees

        if cfg.model.sweep is None:
            with clock.phase("bandwidth"):
                bandwidth, estimated = choose_bandwidth(data.X, cfg.model, data.weights)
        with read_errors_as_user_errors(cfg.input.path):  # every pass reads the input again
            if cfg.model.sweep is None:
                (fit,), rows = fit_input(data, [bandwidth], cfg.model, clock)
                sweep = None
            else:  # every bandwidth fitted in the same passes; the selected one is labelled
                sweep = sweep_bandwidths(data, cfg.model, clock)
                fit, estimated, rows = sweep.fit, sweep.estimated, sweep.rows
        clock.timings.update(fit.timings)
        centers = fit.cluster_centers
        trim_worker_memory(client)  # the trees are gone: room for the labelling pass

        with output.writing():  # an OSError writing the output is a storage fault, not the input's
            with clock.phase("label_write"):
                logger.info("labelling: %s rows, writing %s/labels/", f"{data.n_rows:,}", cfg.output.path)
                labelled = label_frame(data.data, data.feature_columns, fit.centers_at, fit.bandwidth,
                                       cfg.model.cluster_all, cfg.output.label_column)
                sizes, sample = write_labels(
                    labelled, output.url_for("labels"), label_column=cfg.output.label_column,
                    storage_options=so_out, n_rows=data.n_rows,
                    sample_columns=data.feature_columns + [cfg.output.label_column] if cfg.plot else None,
                    sample_rows=cfg.plot.sample if cfg.plot else 0, input_url=cfg.input.path,
                    partition_by=cfg.output.partition_by,
                )

            with clock.phase("model_report_plot"):
                model = model_dict(centers=centers, bandwidth=fit.bandwidth, feature_columns=data.feature_columns,
                                   params=cfg.model.model_dump(), n_iter=fit.n_iter,
                                   label_column=cfg.output.label_column)
                if sweep is not None:
                    write_bytes(output.url_for("sweep.csv"), sweep.table.to_csv(index=False).encode(), so_out)
                    write_bytes(output.url_for("sweep.png"), sweep_png(
                        sweep.table, sweep.index, stable=sweep.suggestion.stable,
                        selected_by="rule" if sweep.select == "auto" else "select"), so_out)
                write_json(output.url_for("model.json"), model, so_out)
                if model["cluster_centers_file"]:
                    write_bytes(output.url_for(model["cluster_centers_file"]),
                                centers_parquet(centers, data.feature_columns), so_out)
                if cfg.plot is not None and sample is not None:
                    write_bytes(output.url_for("clusters.png"), plot_png(
                        sample, centers, feature_columns=data.feature_columns,
                        label_column=cfg.output.label_column, bandwidth=fit.bandwidth,
                        x=cfg.plot.x, y=cfg.plot.y), so_out)

            clock.timings["total"] = clock.total()
            report = report_dict(
                n_rows=data.n_rows, n_rows_fit=data.n_rows_fit, feature_columns=data.feature_columns,
                bandwidth=fit.bandwidth, bandwidth_estimated=estimated, n_seeds=fit.n_seeds,
                n_clusters=len(centers), n_iter=fit.n_iter, cluster_sizes=sizes, timings=clock.timings,
                input_path=cfg.input.path, output_path=cfg.output.path, nan_policy=cfg.input.nan_policy,
                extra={**data.report_fields(), **rows.fields, **({"sweep": sweep.report()} if sweep is not None else {})},
            )
            write_json(output.url_for("report.json"), report, so_out)
            output.commit()

    logger.info("done: %d clusters, %s rows labelled in %.1f s -> %s",
                len(centers), f"{data.n_rows:,}", clock.total(), cfg.output.path)
    return report


def open_job_input(cfg: Config) -> InputSource:
    """Driver-side checks of the job's input and the settings that depend on its columns.

    Files (pruned by ``input.filters``), footers, filters, feature columns, plot columns and
    ``output.partition_by``; metadata only, no cluster needed (``dshift validate`` too).

    Parameters
    ----------
    cfg : Config
        The job's configuration.

    Returns
    -------
    InputSource
    """
    source = open_input(cfg.input.path, storage_options=cfg.input.storage_options, columns=cfg.input.columns,
                        label_column=cfg.output.label_column, filters=cfg.input.filters,
                        weight_column=cfg.input.weight_column)
    _check_plot_columns(cfg, source.feature_columns)
    check_partition_by(source.data, cfg.output.partition_by, cfg.output.label_column)
    return source


def _check_plot_columns(cfg: Config, feature_columns: list[str]) -> None:
    for key in ("x", "y"):
        col = getattr(cfg.plot, key) if cfg.plot is not None else None
        if col is not None and col not in feature_columns:
            raise UserError(f"plot.{key}: {col!r} is not a feature column (features: {', '.join(feature_columns)})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: run the job of a config with plain logging (``dshift run`` is the full CLI).

    Parameters
    ----------
    argv : sequence of str, optional
        ``CONFIG.yaml``; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success, 2 on a user error, 74 on a storage fault (one line on stderr).
    """
    parser = argparse.ArgumentParser(prog="python -m dshift.pipelines.cluster_parquet",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("config", metavar="CONFIG.yaml", help="job configuration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        run(load_config(args.config))
    except UserError as exc:
        print(exc.one_line(), file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
