"""Weights and deduplication benchmark (issue 11): same clusters, less work.

Cases:

  W1  1,000,000 distinct rows with integer weights summing to 20,000,000, against the
      20,000,000 rows they stand for (each row repeated by its weight), bin seeding.
      Target: weighted fit >= 5x faster, identical clusters.
  W2  colour clustering of every pixel of scikit-learn's sample images (china.jpg,
      flower.jpg), every pixel a seed (bin_seeding=False), with and without
      ``dshift.deduplicate`` (its time included). Target: >= 3x faster, identical results.

Data and bandwidths: W1 is the P1 generator of bench_fit.py (make_blobs around [27,72,91],
[36,90,99], [9,81,99], std 2.79, random_state=0) with weights 1 + multinomial(19M, uniform)
(seed 0); bandwidth ``sklearn.cluster.estimate_bandwidth(X20M, quantile=0.2, n_samples=2000)``.
W2: pixels as float64 RGB rows; bandwidth ``estimate_bandwidth(pixels, quantile=0.1,
n_samples=2000)``. Every bandwidth is computed once and given to every fit.

"Identical" means: cluster_centers_ bit-identical (same order), n_iter_ equal, and the labels
of every original row equal (W1: the weighted fit's labels repeated by the weights; W2: the
deduplicated fit's ``predict(pixels)``). Otherwise the script exits with status 1.

Timings: dshift is warmed up first (numba compilation or cache loading excluded); every
variant is timed ``--repeat`` times, best reported, with the load average next to it.

Usage:
    python benchmarks/bench_weights.py [--case W1|W2|all] [--repeat N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from sklearn.cluster import estimate_bandwidth as sk_estimate_bandwidth
from sklearn.datasets import load_sample_image, make_blobs

import dshift
from _engine import engine_fingerprint

CENTERS_3D = np.array([[27.0, 72.0, 91.0], [36.0, 90.0, 99.0], [9.0, 81.0, 99.0]])
STD = 2.79
IMAGES = ("china.jpg", "flower.jpg")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load avg {one:.1f}/{five:.1f}"


def best_of(repeat: int, label: str, fit) -> tuple[float, object]:
    """Run ``fit()`` ``repeat`` times; the best time and its result."""
    best_t, best = float("inf"), None
    for i in range(repeat):
        t0 = time.perf_counter()
        result = fit()
        dt = time.perf_counter() - t0
        print(f"   {label} #{i + 1}: {dt:8.3f}s  ({load()})", flush=True)
        if dt < best_t:
            best_t, best = dt, result
    return best_t, best


def same_fit(a, b) -> bool:
    return a.cluster_centers_.shape == b.cluster_centers_.shape and \
        np.array_equal(a.cluster_centers_, b.cluster_centers_) and a.n_iter_ == b.n_iter_


def warm_up() -> float:
    t0 = time.perf_counter()
    X, _ = make_blobs(n_samples=3000, centers=CENTERS_3D, cluster_std=STD, random_state=1)
    X = np.round(X)
    for bin_seeding in (True, False):
        dshift.MeanShift(bandwidth=5.0, bin_seeding=bin_seeding).fit(X)
        dshift.MeanShift(bandwidth=5.0, bin_seeding=bin_seeding).fit(*dshift.deduplicate(X))
    return time.perf_counter() - t0


def case_w1(repeat: int) -> dict:
    print("\n== W1: 1,000,000 distinct rows weighted to 20,000,000 vs the 20,000,000 rows, bin seeding "
          "(target >= 5x)", flush=True)
    X, _ = make_blobs(n_samples=1_000_000, centers=CENTERS_3D, cluster_std=STD, random_state=0)
    n = len(X)
    w = 1 + np.random.default_rng(0).multinomial(20_000_000 - n, np.full(n, 1.0 / n))
    full = np.repeat(X, w, axis=0)
    bw = float(sk_estimate_bandwidth(full, quantile=0.2, n_samples=2000))
    print(f"   weights: sum {w.sum():,}, min {w.min()}, max {w.max()}; bandwidth {bw:.6g}", flush=True)
    t_full, m_full = best_of(repeat, "20M rows, unweighted", lambda: dshift.MeanShift(bandwidth=bw, bin_seeding=True)
                             .fit(full))
    t_w, m_w = best_of(repeat, "1M rows, weighted   ", lambda: dshift.MeanShift(bandwidth=bw, bin_seeding=True)
                       .fit(X, sample_weight=w))
    same = same_fit(m_full, m_w) and np.array_equal(np.repeat(m_w.labels_, w), m_full.labels_)
    return dict(case="W1", bandwidth=bw, seeding="bin", n_rows=int(len(full)), n_rows_weighted=n,
                n_clusters=int(len(m_w.cluster_centers_)), n_iter=int(m_w.n_iter_), n_seeds=int(m_w.n_seeds_),
                base_s=t_full, fast_s=t_w, speedup=t_full / t_w, target=5.0, same=bool(same),
                timings_base=m_full.timings_, timings_fast=m_w.timings_)


def case_w2(name: str, repeat: int) -> dict:
    print(f"\n== W2 {name}: every pixel a seed, without and with deduplication (target >= 3x)", flush=True)
    pixels = load_sample_image(name).reshape(-1, 3).astype(np.float64)
    bw = float(sk_estimate_bandwidth(pixels, quantile=0.1, n_samples=2000))
    print(f"   {len(pixels):,} pixels; bandwidth {bw:.6g}", flush=True)
    t_all, m_all = best_of(repeat, "every pixel       ", lambda: dshift.MeanShift(bandwidth=bw).fit(pixels))
    timing: dict = {}

    def deduplicated():
        t0 = time.perf_counter()
        rows, counts = dshift.deduplicate(pixels)  # keep="last": every row a seed
        timing["deduplicate_s"] = time.perf_counter() - t0
        return dshift.MeanShift(bandwidth=bw).fit(rows, sample_weight=counts), len(rows)

    t_dd, (m_dd, n_distinct) = best_of(repeat, "deduplicate + fit", deduplicated)
    same = same_fit(m_all, m_dd) and np.array_equal(m_dd.predict(pixels), m_all.labels_)
    return dict(case=f"W2 {name}", bandwidth=bw, seeding="points", n_rows=int(len(pixels)),
                n_rows_distinct=int(n_distinct), n_clusters=int(len(m_dd.cluster_centers_)),
                n_iter=int(m_dd.n_iter_), base_s=t_all, fast_s=t_dd, speedup=t_all / t_dd, target=3.0,
                same=bool(same), deduplicate_s=timing["deduplicate_s"], timings_base=m_all.timings_,
                timings_fast=m_dd.timings_)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", choices=["W1", "W2", "all"], default="all")
    p.add_argument("--repeat", type=int, default=3, help="fits per variant; the best is reported (default 3)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    import dask
    import numba
    import sklearn

    print(f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"dask {dask.__version__}, numba {numba.__version__}; {os.cpu_count()} cores; {load()}")
    engine = engine_fingerprint()
    print(f"dshift engine: {engine}; warm-up {warm_up():.1f}s (excluded)")
    repeat = max(args.repeat, 1)
    results = [case_w1(repeat)] if args.case in ("W1", "all") else []
    if args.case in ("W2", "all"):
        results += [case_w2(name, repeat) for name in IMAGES]
    for r in results:
        r["engine"] = engine
    print("\ncase            rows         fit rows    clusters  n_iter  base_s   fast_s  speedup  target  result")
    for r in results:
        fit_rows = r.get("n_rows_weighted", r.get("n_rows_distinct"))
        verdict = "PASS" if r["speedup"] >= r["target"] else "FAIL"
        print(f"{r['case']:14}  {r['n_rows']:>11,}  {fit_rows:>11,}  {r['n_clusters']:8}  {r['n_iter']:6}  "
              f"{r['base_s']:7.2f}  {r['fast_s']:7.2f}  {r['speedup']:6.1f}x  {r['target']:5.0f}x  {verdict}"
              f"{'' if r['same'] else '  DIFFERENT RESULTS'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if not all(r["same"] for r in results):
        print("ERROR: the results differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
