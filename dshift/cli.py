"""The ``dshift`` command: run, validate and predict.

Exit status: 0 on success; 2 on a user error (bad config or data, existing output,
unreachable scheduler) with one line on stderr saying what is wrong; 1 when the cluster fails
under the job (workers keep dying, no workers left, scheduler lost: one line naming the
scheduler) or on an unexpected failure (message and traceback on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from typing import Optional, Sequence

from dshift.errors import ClusterError, UserError

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILURE, EXIT_USER_ERROR = 0, 1, 2


def _version() -> str:
    from dshift.report import dshift_version

    return dshift_version()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="dshift",
        description="Exact, distributed mean shift clustering of Parquet data sets on Dask.",
        epilog="Exit status: 0 success, 2 user error (one line on stderr), 1 unexpected failure.",
    )
    parser.add_argument("--version", action="version", version=f"dshift {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run a clustering job described by a YAML config",
                         description="Cluster input.path with mean shift; write labels/, model.json, "
                                     "report.json and clusters.png to output.path (all or nothing).")
    run.add_argument("config", metavar="CONFIG.yaml", help="job configuration (see README.md, 'The batch tool')")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only errors")

    val = sub.add_parser("validate", help="check a config (and the input's columns when it exists)",
                         description="Validate CONFIG.yaml without running: schema, value ranges, "
                                     "input/output paths and, if the input exists, its columns.")
    val.add_argument("config", metavar="CONFIG.yaml")

    pred = sub.add_parser("predict", help="label new Parquet data with a model.json",
                          description="Label every row of --input with the nearest cluster center of "
                                      "--model; write --output/labels/ (Parquet) and report.json.")
    pred.add_argument("--model", required=True, metavar="MODEL.json", help="model.json from 'dshift run'")
    pred.add_argument("--input", required=True, metavar="PATH", help="Parquet file, directory, glob or URL")
    pred.add_argument("--output", required=True, metavar="DIR", help="output directory (must not exist)")
    pred.add_argument("--columns", nargs="+", metavar="COL",
                      help="feature columns in model order (default: the model's feature_columns)")
    pred.add_argument("--storage-options", metavar="JSON", default=None,
                      help='fsspec options as JSON for model, input and output, e.g. \'{"anon": true}\'')
    pred.add_argument("--filters", metavar="JSON", default=None,
                      help="row filters as JSON, as input.filters: [[column, op, value], ...] (all hold) or "
                           "[[[column, op, value], ...], ...] (any list holds); ops ==, !=, <, <=, >, >=, in, "
                           "not in; files whose Hive partition keys rule them out are not read, "
                           'e.g. \'[["year", ">=", 2024], ["city", "in", ["nyc", "sf"]]]\'')
    pred.add_argument("--partition-by", nargs="+", metavar="COL",
                      help="write labels/ Hive-partitioned by these columns (labels/COL=value/...), "
                           "as output.partition_by")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing output")
    pred.add_argument("--nan-policy", choices=("error", "drop"), default="error",
                      help="rows with NaN/inf in a feature: fail (default) or label -1")
    pred.add_argument("--address", default=None, help="scheduler address (default: a local cluster)")
    pred.add_argument("--n-workers", type=int, default=2, help="local cluster workers (default 2)")
    pred.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only errors")
    return parser


def _setup_logging(quiet: bool) -> None:
    """Progress lines on stderr: dshift's loggers at INFO (WARNING with --quiet)."""
    from dshift.cluster import quiet_distributed_logs

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[dshift %(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    log = logging.getLogger("dshift")
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    quiet_distributed_logs(logging.ERROR if quiet else logging.WARNING)


def _cmd_run(args: argparse.Namespace) -> int:
    from dshift.config import load_config

    cfg = load_config(args.config)
    from dshift.pipelines.cluster_parquet import run

    run(cfg)
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from dshift.config import load_config
    from dshift.io.outputs import OutputStage, check_paths_disjoint
    from dshift.pipelines.cluster_parquet import open_job_input
    from dshift.pipelines.make_demo_data import exists

    cfg = load_config(args.config)
    check_paths_disjoint(cfg.input.path, cfg.output.path, cfg.input.storage_options, cfg.output.storage_options)
    notes = []
    if cfg.demo is not None and not exists(cfg.input.path, cfg.input.storage_options):
        notes.append(f"input {cfg.input.path} will be created (demo: {cfg.demo.rows:,} rows)")
    else:
        source = open_job_input(cfg)
        pruned = f" ({source.files.n_pruned:,} pruned by input.filters)" if source.files.n_pruned else ""
        filtered = " before input.filters" if source.filters else ""
        notes.append(f"input: {len(source.files.files)} files{pruned}, {source.n_rows_input:,} rows{filtered}, "
                     f"features {', '.join(source.feature_columns)}")
    try:
        OutputStage(cfg.output.path, cfg.output.storage_options, overwrite=cfg.output.overwrite).check()
    except UserError as exc:  # a condition of the next run, not of the config itself
        notes.append(f"note: {exc}")
    print(f"config OK: {args.config}")
    for note in notes:
        print(f"  {note}")
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dshift.config import ClusterConfig, absolute_path, format_validation_error
    from dshift.io.filters import check_filters
    from dshift.pipelines.predict_parquet import run

    options = _json_option(args.storage_options, "--storage-options") or {}
    if not isinstance(options, dict):
        raise UserError("--storage-options: must be a JSON object")
    filters = check_filters(_json_option(args.filters, "--filters"), "--filters")
    columns, partition_by = _column_list(args.columns), _column_list(args.partition_by)
    try:
        cluster = ClusterConfig(address=args.address, n_workers=args.n_workers)
    except ValidationError as exc:
        raise UserError(f"--{format_validation_error(exc).replace('_', '-')}") from None
    run(model_path=absolute_path(args.model), input_path=absolute_path(args.input),
        output_path=absolute_path(args.output), columns=columns, storage_options=options,
        overwrite=args.overwrite, nan_policy=args.nan_policy, cluster=cluster, filters=filters,
        partition_by=partition_by)
    return EXIT_OK


def _json_option(text: Optional[str], option: str) -> object:
    """The value of a JSON option (None when not given)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"{option}: not valid JSON: {exc}") from None


def _column_list(items: Optional[Sequence[str]]) -> Optional[list[str]]:
    """Column names given as ``a b c`` or ``a,b,c``."""
    return [c for item in items for c in item.split(",") if c] if items else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``dshift`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status (0, 1 or 2).
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, as argparse does
    _setup_logging(getattr(args, "quiet", False) or args.command == "validate")
    commands = {"run": _cmd_run, "validate": _cmd_validate, "predict": _cmd_predict}
    try:
        return commands[args.command](args)
    except UserError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
    except ClusterError as exc:  # the cluster failed under the job: not the user's config
        print(exc.one_line(), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("dshift: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: report and exit 1
        traceback.print_exc(file=sys.stderr)
        print(f"dshift: unexpected error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
