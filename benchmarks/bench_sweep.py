"""Sweep benchmark: a bandwidth sweep vs single-bandwidth fits, side by side in one run.

Two measurements (targets from issue #10):

  scale    ``dshift run`` with ``model.sweep`` of 8 bandwidths on the 10M-row benchmark data vs
           one single-bandwidth ``dshift run`` on the same data (bench_scale.py's data, fixed
           bandwidth and job settings: bin seeding, 2 workers x 1 thread, plot off)   <= 3x
  library  ``dshift.bandwidth_sweep`` of 8 bandwidths on P1 (1,000,000 x 3 blobs, bin seeding;
           bench_fit.py's data and bandwidth) vs 8 scikit-learn ``MeanShift(n_jobs=-1)`` fits,
           one per bandwidth (every one measured; none extrapolated)              >= 100x

The 8 bandwidths are log-spaced from bw/2 to 4*bw around the benchmark's bandwidth bw (the
estimate with quantile 0.2, n_samples 500): a sweep a user would run, from a few spurious small
modes through the 3 blobs to one cluster. The smallest bandwidth sets the number of passes (it
climbs longest); the larger ones ride along in the same passes.

Library: dshift is warmed up first (numba), timed best of --repeat (default 3), and every
bandwidth's model is checked against scikit-learn's fit of that bandwidth (same clusters, order,
centers within 1e-3 * bandwidth, labels >= 99.99 % equal). scikit-learn is timed once per
bandwidth. Wall and CPU-time ratios are printed with the load average (the machine is shared).

Scale: wall time of each ``dshift run`` subprocess (interpreter start, cluster start-up and
teardown included, the same for both) and peak RSS of its process tree; phases from report.json.

With --separate the scale part also runs every swept bandwidth on its own (what the sweep
replaces) and sums their wall times.

Usage:
    python benchmarks/bench_sweep.py [--part scale|library|all] [--rows 10000000] [--files 20]
        [--workdir /tmp/dshift-bench-sweep] [--repeat 3] [--separate] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from _engine import engine_fingerprint, load

N_BANDWIDTHS = 8
SCALE_TARGET = 3.0  # sweep run / single run, wall
LIBRARY_TARGET = 100.0  # 8 sklearn fits / one sweep, wall
GiB = 2**30


def sweep_bandwidths(bandwidth: float) -> list[float]:
    """8 bandwidths log-spaced from bandwidth/2 to 4*bandwidth (the config's range gives the same)."""
    lo, hi = bandwidth / 2, 4 * bandwidth
    return [lo * (hi / lo) ** (i / (N_BANDWIDTHS - 1)) for i in range(N_BANDWIDTHS - 1)] + [hi]


# ---------------------------------------------------------------------------------------------
# scale: `dshift run`, one bandwidth vs a sweep of 8


def scale(args) -> dict:
    from bench_scale import cli_command, fixed_bandwidth, make_data, run_measured, write_config

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"data-{args.rows}"
    make_data(data, args.rows, args.files)
    bw = fixed_bandwidth(data, work / f"bandwidth-{args.rows}-{args.files}.json")
    swept = sweep_bandwidths(bw)
    print(f"\n== scale: {args.rows:,} rows, {args.files} files; single bandwidth {bw:.6g} vs a sweep of "
          f"{N_BANDWIDTHS} from {swept[0]:.4g} to {swept[-1]:.4g} (log-spaced)", flush=True)
    cli = cli_command()
    res: dict = {"rows": args.rows, "files": args.files, "bandwidth": bw, "swept": swept}
    for name in ("single", "sweep"):
        out, cfg = work / f"out-{name}", work / f"{name}.yaml"
        shutil.rmtree(out, ignore_errors=True)
        write_config(cfg, data, out, bw, 2, "auto", "auto", plot=False)
        if name == "sweep":
            job = yaml.safe_load(cfg.read_text())
            job["model"] = {"bin_seeding": True, "sweep": {"range": {"min": swept[0], "max": swept[-1],
                                                                      "num": N_BANDWIDTHS}}}
            cfg.write_text(yaml.safe_dump(job, sort_keys=False))
        before = load()
        m = run_measured(cli + ["run", str(cfg)], work / f"{name}.log", args.timeout)
        m["load_before"], m["load_after"] = before, load()
        if (out / "report.json").exists():
            rep = json.loads((out / "report.json").read_text())
            m.update(phases=rep["timings"], n_clusters=rep["n_clusters"], n_iter=rep["n_iter"],
                     n_seeds=rep["n_seeds"], bandwidth_used=rep["bandwidth"], sweep=rep.get("sweep"))
        res[name] = m
        print(f"{name:6}: wall {m['wall_s']:7.1f}s  peak RSS {m['peak_rss_bytes'] / GiB:5.2f} GiB  rc {m['returncode']}"
              f"  clusters {m.get('n_clusters')}  n_iter {m.get('n_iter')}  ({before} -> {m['load_after']})",
              flush=True)
        print(f"        phases {m.get('phases')}", flush=True)
        if m.get("sweep"):
            for row in m["sweep"]["table"]:
                print(f"        bandwidth {row['bandwidth']:8.4g}: {row['n_clusters']:>5} clusters, "
                      f"{row['n_seeds']:>6} seeds, {row['n_iter']:>3} iterations, largest "
                      f"{100 * row['largest_cluster_share']:.1f}%")
            print(f"        chosen {m['sweep']['chosen']:.4g}: {m['sweep']['reason']}")
        shutil.rmtree(out, ignore_errors=True)
    if not (res["single"]["returncode"] or res["sweep"]["returncode"]):
        ratio = res["sweep"]["wall_s"] / res["single"]["wall_s"]
        res.update(ratio=ratio, target_met=ratio <= SCALE_TARGET)
        print(f"scale: sweep {res['sweep']['wall_s']:.1f}s / single {res['single']['wall_s']:.1f}s = {ratio:.2f}x "
              f"(target <= {SCALE_TARGET:g}x: {'PASS' if ratio <= SCALE_TARGET else 'FAIL'})", flush=True)
    if args.separate:  # what the sweep replaces: one run per swept bandwidth
        walls = []
        for b in swept:
            out, cfg = work / "out-separate", work / "separate.yaml"
            shutil.rmtree(out, ignore_errors=True)
            write_config(cfg, data, out, b, 2, "auto", "auto", plot=False)
            m = run_measured(cli + ["run", str(cfg)], work / "separate.log", args.timeout)
            shift = json.loads((out / "report.json").read_text())["timings"]["shift"] if not m["returncode"] else None
            walls.append(m["wall_s"])
            print(f"separate run, bandwidth {b:8.4g}: wall {m['wall_s']:6.1f}s (shift {shift}s) rc {m['returncode']}; "
                  f"{load()}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        res["separate_s"] = walls
        print(f"scale: {len(walls)} separate runs {sum(walls):.1f}s; the sweep {res['sweep']['wall_s']:.1f}s is "
              f"{sum(walls) / res['sweep']['wall_s']:.2f}x faster", flush=True)
    return res


# ---------------------------------------------------------------------------------------------
# library: bandwidth_sweep vs 8 scikit-learn fits on P1


def library(args) -> dict:
    from bench_fit import CASES, compare, cpu_since, make_data, tree_cpu, warm_up
    from sklearn.cluster import MeanShift as SkMeanShift
    from sklearn.cluster import estimate_bandwidth as sk_estimate_bandwidth

    import dshift

    X = make_data(CASES["P1"])
    bw = float(sk_estimate_bandwidth(X, quantile=0.2, n_samples=500))
    swept = sweep_bandwidths(bw)
    print(f"\n== library: P1 {X.shape[0]:,} x {X.shape[1]}, bin seeding; {N_BANDWIDTHS} bandwidths from "
          f"{swept[0]:.4g} to {swept[-1]:.4g} around {bw:.4g}", flush=True)
    print(f"   dshift warm-up (numba, not timed): {warm_up(X.shape[1]):.1f}s", flush=True)
    times, cpus, sweep = [], [], None
    for i in range(max(args.repeat, 1)):
        c0, t0 = tree_cpu(), time.perf_counter()
        result = dshift.bandwidth_sweep(X, swept, bin_seeding=True, n_jobs=-1)
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_since(c0))
        sweep = sweep or result
        print(f"   dshift sweep #{i + 1}: {times[-1]:7.2f}s (CPU {cpus[-1]:.1f}s; {load()})", flush=True)
    print(sweep.table.to_string(index=False))
    print(f"   chosen {sweep.chosen:.4g}: {sweep.reason}")
    sk_times, sk_cpu, same = [], 0.0, True
    for b, model in zip(swept, sweep.models):
        c0, t0 = tree_cpu(), time.perf_counter()
        sk = SkMeanShift(bandwidth=b, bin_seeding=True, n_jobs=-1).fit(X)
        sk_times.append(time.perf_counter() - t0)
        sk_cpu += cpu_since(c0)
        ok, info = compare(sk, model, b)
        same &= ok
        print(f"   sklearn bandwidth {b:7.4g}: {sk_times[-1]:7.2f}s, {len(sk.cluster_centers_)} clusters; "
              f"dshift {'SAME' if ok else 'DIFFERENT: ' + info.get('why', '')} (max center distance "
              f"{info.get('max_center_distance', float('nan')):.2g}); {load()}", flush=True)
    best = min(times)
    ratio, cpu_ratio = sum(sk_times) / best, sk_cpu / min(cpus)
    print(f"library: 8 sklearn fits {sum(sk_times):.1f}s (CPU {sk_cpu:.1f}s) / dshift sweep {best:.2f}s (CPU "
          f"{min(cpus):.1f}s) = {ratio:.0f}x (CPU {cpu_ratio:.0f}x) (target >= {LIBRARY_TARGET:g}x: "
          f"{'PASS' if ratio >= LIBRARY_TARGET else 'FAIL'}); clusters {'identical' if same else 'DIFFERENT'}",
          flush=True)
    return {"bandwidth": bw, "swept": swept, "dshift_s": times, "dshift_cpu_s": cpus, "sklearn_s": sk_times,
            "sklearn_cpu_s": sk_cpu, "ratio": ratio, "cpu_ratio": cpu_ratio, "target_met": ratio >= LIBRARY_TARGET,
            "same_clusters": same, "table": sweep.table.to_dict(orient="records"), "chosen": sweep.chosen}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["scale", "library", "all"], default="all")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--workdir", default="/tmp/dshift-bench-sweep")
    p.add_argument("--repeat", type=int, default=3, help="dshift sweeps in the library part; the best counts")
    p.add_argument("--timeout", type=float, default=None, help="seconds before a dshift run is killed")
    p.add_argument("--separate", action="store_true", help="scale: also run every swept bandwidth on its own")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    engine = engine_fingerprint()
    print(f"dshift engine: {engine}; {os.cpu_count()} cores; {load()}", flush=True)
    res: dict = {"engine": engine}
    if args.part in ("scale", "all"):
        res["scale"] = scale(args)
    if args.part in ("library", "all"):
        res["library"] = library(args)
    if engine_fingerprint() != engine:
        print("WARNING: dshift's sources changed during the run", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    failed = res.get("scale", {}).get("single", {}).get("returncode") or res.get("scale", {}).get("sweep", {}).get(
        "returncode") or res.get("library", {}).get("same_clusters") is False
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
