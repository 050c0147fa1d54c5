"""Diagnostic: how much of a seed's ball query the k-d tree answers from node sums.

For the P1 (3-D) and P3 (8-D) data of bench_fit.py, builds dshift's index on one chunk (half
the rows, as the 2-chunk in-memory fit does) and counts, per seed, the points in leaves the
ball only cuts (scanned one by one by ``_ball_sums``) and in leaves wholly inside (answered
by a precomputed sum) -- for the bin seeds (first iteration) and for seeds at the final
centers (last iterations). A leaf is scanned exactly when it is cut (no ancestor can then be
wholly inside or outside), so these counts are exact. It also shows what bounding spheres
(leaf centroid + radius) would give instead of boxes.

Usage: python benchmarks/leaf_cut.py
"""

import numpy as np
from sklearn.cluster import estimate_bandwidth, get_bin_seeds

import bench_fit as bf
import dshift
from dshift.index import build_index


def main() -> None:
    for name in ("P1", "P3"):
        case = bf.CASES[name]
        X = bf.make_data(case)
        bw = float(estimate_bandwidth(X, quantile=0.2, n_samples=500))
        half = X[: len(X) // 2]
        ix = build_index(half)
        leaf = ix.left < 0
        lo, hi, n = ix.lower[leaf], ix.upper[leaf], (ix.stop - ix.start)[leaf]
        spans = list(zip(ix.start[leaf], ix.stop[leaf]))
        cen = np.array([ix.points[a:b].mean(0) for a, b in spans])
        rad = np.array([np.sqrt(((ix.points[a:b] - c) ** 2).sum(1).max()) for (a, b), c in zip(spans, cen)])
        seeds = get_bin_seeds(X, bw, 1)
        centers = dshift.MeanShift(bandwidth=bw, bin_seeding=True).fit(X).cluster_centers_
        print(f"{name}: d={X.shape[1]}, bandwidth {bw:.3g}, chunk {len(half):,} rows, {leaf.sum():,} leaves")
        for label, S in (("bin seeds (iteration 0)", seeds), ("seeds at final centers", centers)):
            box_scan = box_in = sph_scan = sph_in = 0
            for m in S:
                near = (np.maximum(lo - m, 0) ** 2 + np.maximum(m - hi, 0) ** 2).sum(1)
                far = np.maximum((lo - m) ** 2, (hi - m) ** 2).sum(1)
                box_scan += n[(near <= bw * bw) & (far > bw * bw)].sum()
                box_in += n[far <= bw * bw].sum()
                dc = np.sqrt(((cen - m) ** 2).sum(1))
                inside = dc + rad <= bw
                sph_scan += n[~inside & (dc - rad <= bw)].sum()
                sph_in += n[inside].sum()
            k = len(S)
            print(f"  {label:24} per seed: boxes -> scanned {box_scan / k:8,.0f}, from sums {box_in / k:8,.0f};"
                  f"  spheres -> scanned {sph_scan / k:8,.0f}, from sums {sph_in / k:8,.0f}")


if __name__ == "__main__":
    main()
