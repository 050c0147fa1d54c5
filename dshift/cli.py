"""The ``dshift`` command: run, validate and predict.

Exit status: 0 on success; 2 on a user error (bad config or data, existing output, an output
another job is writing, unreachable scheduler) with one line on stderr saying what is wrong;
74 (EX_IOERR) when the storage refused to take the output (no space, quota, read-only file
system, no permission: one line naming the output and the cause); 1 when the cluster fails
under the job (workers keep dying, no workers left, scheduler lost: one line naming the
scheduler) or on an unexpected failure (one line; the traceback is in the log); 130 / 143 when
SIGINT / SIGTERM stopped the job.

The terminal shows dshift's own lines only; library logs, warnings and tracebacks go to a log
file (:mod:`dshift.logs`) that the last line of a failure names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, NoReturn, Optional, Sequence

from dshift.errors import EXIT_STORAGE, ClusterError, Interrupted, UserError
from dshift.interrupts import InterruptHandler
from dshift.logs import JobLog, log_path

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILURE, EXIT_USER_ERROR = 0, 1, 2
GRACE = 4.0  # seconds an interrupted job may take to unwind before it is killed


def _version() -> str:
    from dshift.report import dshift_version

    return dshift_version()


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (it imports the report module's stack)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"dshift {_version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its usage errors one line like every other user error."""

    def error(self, message: str) -> NoReturn:
        """Print ``dshift run: error: MESSAGE (see dshift run --help)`` and exit 2 (argparse
        prints the usage first: a second line)."""
        message = " ".join(message.split())
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="dshift",
        description="Exact, distributed mean shift clustering of Parquet data sets on Dask.",
        epilog="Exit status: 0 success, 2 user error (one line on stderr), 74 the output's storage failed (no "
               "space, read-only, no permission), 1 cluster or unexpected failure, 130/143 interrupted "
               "(SIGINT/SIGTERM).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run a clustering job described by a YAML config",
                         description="Cluster input.path with mean shift; write labels/, model.json, "
                                     "report.json and clusters.png to output.path (all or nothing).")
    run.add_argument("config", metavar="CONFIG.yaml", help="job configuration (see README.md, 'The batch tool')")
    _add_terminal_flags(run)

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
    _add_terminal_flags(pred)
    return parser


def _add_terminal_flags(sub: argparse.ArgumentParser) -> None:
    terminal = sub.add_mutually_exclusive_group()
    terminal.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only errors")
    terminal.add_argument("--verbose", "-v", action="store_true",
                          help="also show library logs (distributed, workers, warnings) as they are written "
                               "to the log file")


@dataclass
class _Job:
    """A command, ready to run: what it does and where its output (and so its log) goes."""

    run: Callable[[], None]
    output: Optional[str] = None
    storage_options: dict = field(default_factory=dict)


def _load_config(path: str) -> "Config":  # noqa: F821
    """The validated config, its output not inside its input (before any log is created
    next to the output, so nothing is ever written into an input)."""
    from dshift.config_load import load_config

    cfg = load_config(path)  # before the heavy imports: a bad config is refused at once
    from dshift.io.outputs import check_paths_disjoint

    check_paths_disjoint(cfg.input.path, cfg.output.path, cfg.input.storage_options, cfg.output.storage_options)
    return cfg


def _prepare_run(args: argparse.Namespace) -> _Job:
    cfg = _load_config(args.config)

    def run() -> None:
        from dshift.workers import start_worker_server

        start_worker_server(cfg.cluster)  # the workers' imports and kernels load while the driver imports
        from dshift.pipelines.cluster_parquet import run as run_job

        run_job(cfg)

    return _Job(run, cfg.output.path, cfg.output.storage_options)


def _prepare_validate(args: argparse.Namespace) -> _Job:
    cfg = _load_config(args.config)
    return _Job(lambda: _validate(cfg, args.config))


def _validate(cfg: "Config", config: str) -> None:  # noqa: F821
    from dshift.io.outputs import OutputStage
    from dshift.batch import precheck_seeds
    from dshift.pipelines.cluster_parquet import open_job_input
    from dshift.pipelines.make_demo_data import exists

    notes = []
    if cfg.demo is not None and not exists(cfg.input.path, cfg.input.storage_options):
        notes.append(f"input {cfg.input.path} will be created (demo: {cfg.demo.rows:,} rows)")
    else:
        source = open_job_input(cfg)
        pruned = f" ({source.files.n_pruned:,} pruned by input.filters)" if source.files.n_pruned else ""
        filtered = " before input.filters" if source.filters else ""
        notes.append(f"input: {len(source.files.files)} files{pruned}, {source.n_rows_input:,} rows{filtered}, "
                     f"features {', '.join(source.feature_columns)}")
        notes.append(precheck_seeds(cfg, source))
    output = OutputStage(cfg.output.path, cfg.output.storage_options, overwrite=cfg.output.overwrite)
    try:
        output.check()
    except UserError as exc:  # a condition of the next run, not of the config itself
        notes.append(f"note: {exc}")
    running = output.holder()
    if running is not None:
        notes.append(f"note: output.path {cfg.output.path!r} is in use by another dshift job ({running}); "
                     "a run now would be refused")
    print(f"config OK: {config}")
    for note in notes:
        print(f"  {note}")


def _prepare_predict(args: argparse.Namespace) -> _Job:
    from pydantic import ValidationError

    from dshift.config import ClusterConfig
    from dshift.config_load import absolute_path, format_validation_error
    from dshift.io.filters import check_filters
    from dshift.io.outputs import check_paths_disjoint

    options = _json_option(args.storage_options, "--storage-options") or {}
    if not isinstance(options, dict):
        raise UserError("--storage-options: must be a JSON object")
    filters = check_filters(_json_option(args.filters, "--filters"), "--filters")
    columns, partition_by = _column_list(args.columns), _column_list(args.partition_by)
    try:
        cluster = ClusterConfig(address=args.address, n_workers=args.n_workers)
    except ValidationError as exc:
        # the options' names for the keys': "--n-workers: ...; use fewer, or --address ..."
        raise UserError(f"--{format_validation_error(exc).replace('cluster.', '--').replace('_', '-')}") from None
    input_path, output_path = absolute_path(args.input), absolute_path(args.output)
    check_paths_disjoint(input_path, output_path, options, options)

    def run() -> None:
        from dshift.pipelines.predict_parquet import run as run_job

        run_job(model_path=absolute_path(args.model), input_path=input_path, output_path=output_path,
                columns=columns, storage_options=options, overwrite=args.overwrite,
                nan_policy=args.nan_policy, cluster=cluster, filters=filters, partition_by=partition_by)

    return _Job(run, output_path, options)


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
        Arguments without the program name; ``sys.argv[1:]`` when None. None also means this
        process *is* the dshift program: stderr then stays on the log file, and SIGINT/SIGTERM
        are ignored, until it exits.

    Returns
    -------
    int
        The exit status (0, 1, 2, 74, 130 or 143).
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, with one line
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    log = JobLog(quiet=quiet or args.command == "validate", verbose=verbose)
    outcome = _Outcome(args.command, log, _children())
    prepare = {"run": _prepare_run, "validate": _prepare_validate, "predict": _prepare_predict}[args.command]
    program = argv is None  # this process is the dshift program and exits after main()
    if program:
        from dshift.workers import use_fork_server

        use_fork_server()
    with InterruptHandler(GRACE, outcome.overrun, restore=not program) as interrupts:
        failure: Optional[BaseException] = None
        try:
            try:
                job = prepare(args)
                outcome.job = job
                outcome.committed_before = _success_marker(job)
                log.open(log_path(job.output, args.command))
                job.run()
            except BaseException as exc:  # noqa: BLE001 - classified below, once signals no longer raise
                failure = exc
            interrupts.disarm()
        except KeyboardInterrupt as exc:  # the first signal came between the job's end and disarm()
            failure = exc
            interrupts.disarm()
        code, line = outcome.classify(failure, interrupts.received)
        code = outcome.finish(code, line, restore_stderr=not program)
    if program:
        _exit_program(code)
    return code


def _exit_program(code: int) -> NoReturn:
    """End the dshift program once its job is over (outputs committed or removed, log closed):
    without the interpreter's teardown of the libraries it loaded (about 0.3 s of freeing
    modules, numba's dispatchers and idle thread pools; nothing of the job's is left to it)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@dataclass
class _Outcome:
    """How a command ended: its last line, its log, and (interrupted) what it leaves behind."""

    command: str
    log: JobLog
    children_before: set
    job: Optional[_Job] = None
    committed_before: Optional[str] = None

    def classify(self, failure: Optional[BaseException], signum: Optional[int]) -> tuple[int, Optional[str]]:
        """Exit status and last line for how the command ended."""
        if signum is not None or isinstance(failure, KeyboardInterrupt):
            # interrupted, whatever error the interrupt caused on its way
            return self.interrupted(signum or getattr(failure, "signum", signal.SIGINT))
        if failure is None:
            return EXIT_OK, None
        if isinstance(failure, UserError):  # exit 2, or 74 for a storage fault
            return failure.exit_code, failure.one_line()
        if isinstance(failure, ClusterError):  # the cluster failed under the job, not the config
            return EXIT_FAILURE, failure.one_line()
        if self.log.path is None:  # failed before its log was opened: the traceback needs one
            self.log.open(log_path(None, self.command))
        self.log.write("".join(traceback.format_exception(failure)))
        return EXIT_FAILURE, f"dshift: unexpected error: {type(failure).__name__}: {_first_line(failure)}"

    def interrupted(self, signum: int) -> tuple[int, str]:
        exc = Interrupted(signum)
        # a worker the cluster's shutdown missed; resource trackers end with this process (killed,
        # they would be relaunched at its shutdown, and complain)
        _kill_children(self.children_before, spare_trackers=True)
        line = f"dshift: interrupted ({exc.signame})"
        if self.job is not None and self.job.output is not None:
            after = _success_marker(self.job)
            if after is not None and after != self.committed_before:
                line += f" after the output was committed: {self.job.output} is complete"
            else:
                line += f"; nothing was written to {self.job.output}"
        return exc.exit_code, line

    def overrun(self, signum: int) -> None:
        """The job did not unwind within the grace period: kill what is left and exit."""
        exc = Interrupted(signum)
        self.log.write_stacks()
        _kill_children(self.children_before)
        line = f"dshift: interrupted ({exc.signame}); the job did not stop within {GRACE:g} s and was killed"
        outputs = sys.modules.get("dshift.io.outputs")  # loaded if the job staged an output
        left = outputs.discard_open_stages() if outputs is not None else []
        if left:
            line += f" (its staged output {', '.join(left)} is removed by the next run)"
        self.log.final(_with_log(line, self.log.path))
        os._exit(exc.exit_code)

    def finish(self, code: int, line: Optional[str], *, restore_stderr: bool) -> int:
        log = self.log
        if code == EXIT_OK:
            into = self.job.output if self.job is not None else None
            log.close(keep=False, into=into, storage_options=self.job.storage_options if into else None,
                      restore_stderr=restore_stderr)
            return code
        # A user error or storage fault whose log only repeats dshift's lines (found before any
        # cluster ran) leaves no log behind; every other failure keeps it and names it.
        keep = code not in (EXIT_USER_ERROR, EXIT_STORAGE) or log.has_library_output()
        log.final(_with_log(line, log.path if keep else None))
        log.close(keep=keep, restore_stderr=restore_stderr)
        return code


def _with_log(line: str, path: Optional[str]) -> str:
    return f"{line}; log: {path}" if path else line


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def _success_marker(job: _Job) -> Optional[str]:
    """A fingerprint of ``<output>/_SUCCESS`` (None if absent): tells whether a commit happened."""
    if job.output is None:
        return None
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(job.output, **job.storage_options)
        info = fs.info(f"{root.rstrip('/')}/_SUCCESS")
    except Exception:  # noqa: BLE001 - absent or unreadable: no committed output to report
        return None
    return repr(sorted((str(k), str(v)) for k, v in info.items()))


def _children() -> set:
    """(pid, start time) of this process's descendants."""
    import psutil

    out = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            out.add((proc.pid, proc.create_time()))
        except psutil.Error:
            pass
    return out


def _kill_children(before: set, *, spare_trackers: bool = False) -> None:
    """SIGKILL every descendant process started since ``before`` was taken (by pid), except,
    with ``spare_trackers``, multiprocessing's resource trackers."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        try:
            if (proc.pid, proc.create_time()) in before:
                continue
            if spare_trackers and any("resource_tracker" in arg for arg in proc.cmdline()):
                continue
            proc.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    sys.exit(main())
