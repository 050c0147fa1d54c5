"""Scale benchmark: clustering a Parquet data set end to end vs a plain Dask read/write "floor".

One run:
  0. writes (once; reused when present) ROWS rows of 3-D blobs -- the P1 centers
     [27,72,91], [36,90,99], [9,81,99], std 2.79 -- as --files Parquet files with columns
     id (int64), x, y, z (float64), under WORKDIR/data-ROWS/;
  1. fixes the bandwidth once (dshift.estimate_bandwidth(X, quantile=0.2, n_samples=500) on
     the x, y, z columns; cached in WORKDIR/data-ROWS/../bandwidth-ROWS.json) unless --bandwidth;
  2. floor: a subprocess that starts LocalCluster(n_workers=2, threads_per_worker=1,
     processes=True, host='127.0.0.1', dashboard_address=None, memory_limit=...), reads every
     file (dd.read_parquet), adds one int64 column (map_partitions) and writes the result
     (to_parquet) -- the least any job that labels the data set must do;
  3. dshift: either the CLI (--mode cli: ``dshift run CONFIG.yaml`` with bin_seeding true, the
     fixed bandwidth, the same cluster settings, plot off) or the same job through the Python
     API in a subprocess (--mode api: read_parquet(x,y,z) -> to_dask_array(lengths=True) ->
     dshift.MeanShift(bandwidth, bin_seeding=True).fit -> map_partitions(assign_labels) on all
     columns -> to_parquet);
  4. the floor once more (unless --floors 1): the ratio is against the faster floor, since a
     busy machine slows a floor and flatters the ratio.

For both jobs the parent samples, every 0.1 s, the summed RSS of the job's whole process tree
(driver + nannies + scheduler + workers; psutil, process and all descendants) and reports the
peak, with the peak of the summed PSS (shared pages counted once; the memory target is checked
on it: dshift's workers are forked from a fork server and share its pages, which the RSS sum
counts once per process). Wall time is the subprocess's (interpreter start, imports and cluster start-up included,
the same for both). Targets: dshift/floor <= 2x (issue 9; moonshot 1.5x); peak <= 2 GiB at 10M rows; at 100M rows with
a per-worker memory_limit below the data size (e.g. 1.5GiB) done in <= 10 min, peak <= 4 GiB.

Usage:
    python benchmarks/bench_scale.py --rows 10000000 [--files 20] [--memory-limit 2GiB]
        [--workdir DIR] [--mode cli|api] [--bandwidth BW] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CENTERS = np.array([[27.0, 72.0, 91.0], [36.0, 90.0, 99.0], [9.0, 81.0, 99.0]])
STD = 2.79
FEATURES = ["x", "y", "z"]
GiB = 2**30
TARGET_RATIO = 2.0  # issue 9 (issue 4 asked for 3x)


# ---------------------------------------------------------------------------------------------
# Data


def make_data(path: Path, rows: int, files: int, seed: int = 0) -> None:
    """Write ``rows`` blob rows as ``files`` Parquet files (skipped when already complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = path / "_COMPLETE"
    if marker.exists():
        meta = json.loads(marker.read_text())
        if meta == {"rows": rows, "files": files, "seed": seed}:
            return
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    t0 = time.perf_counter()
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for i in range(files):
        n = int(bounds[i + 1] - bounds[i])
        rng = np.random.default_rng([seed, i])
        blob = rng.integers(0, len(CENTERS), size=n)
        pts = CENTERS[blob] + rng.normal(0.0, STD, size=(n, 3))
        table = pa.table({"id": np.arange(bounds[i], bounds[i + 1], dtype=np.int64),
                          "x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]})
        pq.write_table(table, path / f"part-{i:04d}.parquet")
    marker.write_text(json.dumps({"rows": rows, "files": files, "seed": seed}))
    size = sum(f.stat().st_size for f in path.glob("*.parquet"))
    print(f"data: wrote {rows:,} rows in {files} files ({size / 2**20:.0f} MiB) to {path} "
          f"in {time.perf_counter() - t0:.1f}s", flush=True)


def fixed_bandwidth(data: Path, cache: Path) -> float:
    """dshift.estimate_bandwidth(quantile=0.2, n_samples=500) on the features, computed once."""
    if cache.exists():
        return float(json.loads(cache.read_text())["bandwidth"])
    import dask
    import dask.dataframe as dd

    import dshift

    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        X = dd.read_parquet(str(data), columns=FEATURES, index=False).to_dask_array(lengths=True)
        bw = float(dshift.estimate_bandwidth(X, quantile=0.2, n_samples=500))
    cache.write_text(json.dumps({"bandwidth": bw, "quantile": 0.2, "n_samples": 500}))
    print(f"bandwidth: {bw:.6g} (dshift.estimate_bandwidth quantile=0.2, n_samples=500; "
          f"{time.perf_counter() - t0:.1f}s, not timed)", flush=True)
    return bw


# ---------------------------------------------------------------------------------------------
# Process-tree memory sampling


class TreeRSS:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread, and
    of their summed PSS (proportional set size: a page shared by k processes counts 1/k in
    each, so the sum is the memory the tree uses). dshift's workers are forked from a fork
    server and share its pages (libraries, compiled kernels): the RSS sum counts those pages
    once per process. PSS is read (``/proc/PID/smaps_rollup``, slower) only in samples whose
    RSS sum is within 10 % of the peak so far, to keep the sampler light."""

    def __init__(self, pid: int, interval: float = 0.1):
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.per_process: dict[int, tuple[int, str]] = {}  # pid -> (peak rss, role)
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _role(self, p) -> str:
        try:
            cmd = " ".join(p.cmdline())
        except Exception:  # noqa: BLE001
            return "?"
        if p.pid == self._root.pid:
            return "driver"
        if "resource_tracker" in cmd:
            return "resource_tracker"
        if "forkserver" in cmd:
            return "forkserver"
        return "child " + cmd[-60:]

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total, n = 0, 0
            try:
                procs = [self._root] + self._root.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                n += 1
                old = self.per_process.get(p.pid)
                if old is None or rss > old[0]:
                    self.per_process[p.pid] = (rss, old[1] if old else self._role(p))
            self.samples += 1
            if total >= 0.9 * self.peak:
                self.peak_pss = max(self.peak_pss, self._pss(procs))
            if total > self.peak:
                self.peak, self.peak_procs = total, n
            self._stop.wait(self._interval)

    @staticmethod
    def _pss(procs) -> int:
        import psutil

        total = 0
        for p in procs:
            try:
                total += p.memory_full_info().pss
            except psutil.Error:
                continue
        return total

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(cmd: list[str], log_path: Path, timeout: float | None) -> dict:
    """Run ``cmd``; wall time, exit status and peak tree RSS."""
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        with TreeRSS(proc.pid) as mem:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child only
                rc = proc.wait()
        wall = time.perf_counter() - t0
    top = sorted(mem.per_process.values(), reverse=True)[:4]
    return {"wall_s": wall, "returncode": rc, "peak_rss_bytes": mem.peak, "peak_pss_bytes": mem.peak_pss,
            "peak_processes": mem.peak_procs,
            "samples": mem.samples, "largest_processes": [(round(r / GiB, 3), role) for r, role in top]}


# ---------------------------------------------------------------------------------------------
# The jobs (run in a child process: `bench_scale.py --_job floor|api ...`)


def _add_int_column(df):
    out = df.copy(deep=False)
    out["extra"] = np.zeros(len(df), dtype=np.int64)
    return out


def _add_labels(df, centers, bandwidth):
    from dshift.assigning import assign_labels

    out = df.copy(deep=False)
    out["cluster"] = assign_labels(df[FEATURES].to_numpy(dtype=np.float64), centers, bandwidth, True)
    return out


def _local_cluster(n_workers: int, memory_limit):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, memory_limit=memory_limit)
    return cluster, Client(cluster)


def job(kind: str, data: str, out: str, result: str, n_workers: int, memory_limit, bandwidth: float,
        persist: str) -> None:
    import dask
    import dask.dataframe as dd
    import pandas as pd

    t = {}
    t0 = clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        t[name] = round(now - clock, 3)
        clock = now

    cluster, client = _local_cluster(n_workers, memory_limit)
    lap("cluster_start")
    info: dict = {}
    try:
        if kind == "floor":
            ddf = dd.read_parquet(data, index=False)
            meta = ddf._meta.assign(extra=pd.Series([], dtype="int64"))
            ddf.map_partitions(_add_int_column, meta=meta).to_parquet(out, write_index=False)
            lap("read_add_write")
            info["partitions"] = ddf.npartitions
        else:
            import dshift

            with dask.config.set({"dshift.persist": persist}):
                X = dd.read_parquet(data, columns=FEATURES, index=False).to_dask_array(lengths=True)
                lap("read_lengths")
                model = dshift.MeanShift(bandwidth=bandwidth, bin_seeding=True).fit(X)
                lap("fit")
                centers = np.asarray(model.cluster_centers_, dtype=np.float64)
                ddf = dd.read_parquet(data, index=False)
                meta = ddf._meta.assign(cluster=pd.Series([], dtype="int64"))
                ddf.map_partitions(_add_labels, centers, float(model.bandwidth_), meta=meta).to_parquet(
                    out, write_index=False)
                lap("label_write")
            info.update(fit_timings={k: round(v, 3) for k, v in model.timings_.items()},
                        n_clusters=len(centers), n_seeds=int(model.n_seeds_), n_iter=int(model.n_iter_),
                        centers=centers.round(4).tolist(), chunks=len(X.chunks[0]))
    finally:
        client.close()
        cluster.close()
        lap("cluster_close")
    info.update(phases=t, inner_total_s=round(time.perf_counter() - t0, 3))
    Path(result).write_text(json.dumps(info))


# ---------------------------------------------------------------------------------------------
# Driver


def cli_command() -> list[str] | None:
    """How to invoke the `dshift` CLI, or None while it does not exist yet."""
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in ("dshift.cli", "dshift.pipelines.cluster_parquet")):
        return None
    exe = Path(sys.executable).with_name("dshift")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dshift.cli"]


def write_config(path: Path, data: Path, out: Path, bandwidth: float, n_workers: int, memory_limit, persist,
                 plot: bool) -> None:
    import yaml

    cfg = {
        "input": {"path": str(data), "columns": FEATURES},
        "model": {"bandwidth": bandwidth, "bin_seeding": True},
        "cluster": {"n_workers": n_workers, "threads_per_worker": 1, "memory_limit": memory_limit,
                    "persist": persist},
        "output": {"path": str(out), "overwrite": True},
    }
    if not plot:
        cfg["plot"] = None
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _parse_memory_limit(value: str):
    if value in ("auto", "none", "null"):
        return None if value != "auto" else "auto"
    return value


def _persist_value(value: str):
    return {"true": True, "false": False}.get(value, value)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--memory-limit", default="auto",
                   help="per-worker memory_limit for both jobs: 'auto' (RAM / workers), e.g. '1.5GiB', or none")
    p.add_argument("--workdir", default="/tmp/dshift-bench-scale")
    p.add_argument("--mode", choices=["cli", "api", "auto"], default="auto",
                   help="run dshift through the CLI or the Python API (auto: the CLI when it exists)")
    p.add_argument("--bandwidth", type=float, default=None, help="skip the estimate, use this bandwidth")
    p.add_argument("--persist", choices=["auto", "true", "false"], default="auto", help="dshift's persist policy")
    p.add_argument("--n-workers", type=int, default=2)
    p.add_argument("--plot", action="store_true", help="let the CLI job draw clusters.png (off by default)")
    p.add_argument("--skip-floor", action="store_true")
    p.add_argument("--floors", type=int, choices=[1, 2], default=2,
                   help="floor runs: 2 = before and after the dshift job, the ratio against the faster (default)")
    p.add_argument("--skip-dshift", action="store_true")
    p.add_argument("--timeout", type=float, default=None, help="seconds before a job is killed")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    # internal: the jobs themselves
    p.add_argument("--_job", choices=["floor", "api"], help=argparse.SUPPRESS)
    p.add_argument("--_data", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    p.add_argument("--_result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    memory_limit = _parse_memory_limit(args.memory_limit)

    if args._job:
        job(args._job, args._data, args._out, args._result, args.n_workers, memory_limit,
            args.bandwidth or 0.0, _persist_value(args.persist))
        return 0

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"data-{args.rows}"
    make_data(data, args.rows, args.files)
    bw = args.bandwidth or fixed_bandwidth(data, work / f"bandwidth-{args.rows}-{args.files}.json")
    mode = args.mode
    cli = cli_command()
    if mode == "auto":
        mode = "cli" if cli else "api"
    if mode == "cli" and cli is None:
        print("error: the dshift CLI (dshift.cli, dshift.pipelines.cluster_parquet) is not installed; use --mode api",
              file=sys.stderr)
        return 2
    print(f"scale: {args.rows:,} rows, {args.files} files, bandwidth {bw:.6g}, {args.n_workers} workers x 1 "
          f"thread, memory_limit {memory_limit}, dshift via {mode}", flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _engine import engine_fingerprint, load

    engine = engine_fingerprint()
    print(f"dshift engine: {engine}", flush=True)
    res: dict = {"engine": engine, "rows": args.rows, "files": args.files, "bandwidth": bw, "memory_limit": memory_limit,
                 "mode": mode, "n_workers": args.n_workers}
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--n-workers", str(args.n_workers), "--memory-limit", args.memory_limit]

    def floor(n: int) -> None:
        out, result = work / "out-floor", work / "floor.json"
        shutil.rmtree(out, ignore_errors=True)
        result.unlink(missing_ok=True)
        m = run_measured(me + common + ["--_job", "floor", "--_data", str(data), "--_out", str(out),
                                        "--_result", str(result)], work / "floor.log", args.timeout)
        if result.exists():
            m.update(json.loads(result.read_text()))
        res.setdefault("floors", []).append(m)
        print(f"floor{n}: wall {m['wall_s']:7.1f}s  peak PSS {m['peak_pss_bytes'] / GiB:5.2f} GiB "
              f"(RSS {m['peak_rss_bytes'] / GiB:4.2f})  "
              f"rc {m['returncode']}  phases {m.get('phases')}  {load()}", flush=True)
        if m["returncode"]:
            print(f"floor job failed; see {work / 'floor.log'}", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)

    if not args.skip_floor:
        floor(1)

    if not args.skip_dshift:
        out, result = work / f"out-dshift-{mode}", work / "dshift.json"
        shutil.rmtree(out, ignore_errors=True)
        result.unlink(missing_ok=True)
        if mode == "cli":
            cfg = work / "config.yaml"
            write_config(cfg, data, out, bw, args.n_workers, memory_limit, _persist_value(args.persist), args.plot)
            cmd = cli + ["run", str(cfg)]
        else:
            cmd = me + common + ["--_job", "api", "--_data", str(data), "--_out", str(out), "--_result", str(result),
                                 "--bandwidth", repr(bw), "--persist", args.persist]
        m = run_measured(cmd, work / f"dshift-{mode}.log", args.timeout)
        if mode == "api" and result.exists():
            m.update(json.loads(result.read_text()))
        report = out / "report.json"
        if mode == "cli" and report.exists():
            rep = json.loads(report.read_text())
            m.update(phases=rep.get("timings"), n_clusters=rep.get("n_clusters"), n_seeds=rep.get("n_seeds"),
                     n_iter=rep.get("n_iter"), cluster_sizes=rep.get("cluster_sizes"))
        res["dshift"] = m
        print(f"dshift: wall {m['wall_s']:7.1f}s  peak PSS {m['peak_pss_bytes'] / GiB:5.2f} GiB "
              f"(RSS {m['peak_rss_bytes'] / GiB:4.2f})  "
              f"rc {m['returncode']}  clusters {m.get('n_clusters')}  seeds {m.get('n_seeds')}  "
              f"n_iter {m.get('n_iter')}  {load()}", flush=True)
        print(f"        phases {m.get('phases')}", flush=True)
        if m.get("fit_timings"):
            print(f"        fit timings_ {m['fit_timings']}", flush=True)
        print(f"        largest processes (peak GiB, role) {m['largest_processes']}")
        if m["returncode"]:
            print(f"dshift job failed; see {work / f'dshift-{mode}.log'}", file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)

    if not args.skip_floor and args.floors > 1:
        floor(2)
    if res.get("floors"):  # the fastest floor: a slow one (a busy machine) would flatter the ratio
        res["floor"] = min(res["floors"], key=lambda m: (m["returncode"] != 0, m["wall_s"]))

    if engine_fingerprint() != engine:
        print("WARNING: dshift's sources changed during the run", flush=True)
    status = 0
    failed = [k for k in ("floor", "dshift") if res.get(k, {}).get("returncode")]
    if failed:
        print(f"\nno verdict: the {' and '.join(failed)} job(s) failed or were killed (see the logs)")
    elif "floor" in res and "dshift" in res:
        f, d = res["floor"], res["dshift"]
        ratio = d["wall_s"] / f["wall_s"]
        res["ratio"] = ratio
        mem_target = 2 * GiB if args.rows <= 10_000_000 else 4 * GiB
        ok_ratio = ratio <= TARGET_RATIO
        ok_mem = d["peak_pss_bytes"] <= mem_target
        res.update(ratio_target_met=ok_ratio, memory_target_met=ok_mem)
        walls = ", ".join(f"{m['wall_s']:.1f}" for m in res["floors"])
        print(f"\nsummary ({args.rows:,} rows): floor {f['wall_s']:.1f}s (fastest of {walls}), dshift {d['wall_s']:.1f}s -> "
              f"dshift/floor {ratio:.2f}x (target <= {TARGET_RATIO:g}x: {'PASS' if ok_ratio else 'FAIL'}); "
              f"peak PSS floor {f['peak_pss_bytes'] / GiB:.2f} GiB, dshift {d['peak_pss_bytes'] / GiB:.2f} GiB "
              f"(target <= {mem_target / GiB:g} GiB: {'PASS' if ok_mem else 'FAIL'}; RSS sum "
              f"{f['peak_rss_bytes'] / GiB:.2f} / {d['peak_rss_bytes'] / GiB:.2f} GiB)")
        if args.rows > 10_000_000:
            ok_time = d["wall_s"] <= 600
            res["time_target_met"] = ok_time
            print(f"dshift wall {d['wall_s']:.0f}s (target <= 600 s: {'PASS' if ok_time else 'FAIL'})")
    if any(res.get(k, {}).get("returncode") for k in ("floor", "dshift")):
        status = 1
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
