"""Ball sums: the mass and sum of an index's points within ``bandwidth`` of each seed.

The query half of :mod:`dshift.index`. Seeds are split into compact groups
(:func:`group_seeds`) that share one walk of the tree: nodes inside every ball of a group add
their sums once, points near some sphere are tested per seed, branch-free, into compensated
lane accumulators. In a leaf the sphere cuts, the rows inside are listed and added, or, when
they are most of the leaf, the leaf's own sums are added and the rows outside subtracted:
fewer additions, and the compensated sum is the same exact sum either way. The decisions are
exact with respect to the per-point test ``sum((p - m) ** 2) <= bandwidth ** 2`` (see
:mod:`dshift.index`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dshift._compensated import add_pair, two_prod
from dshift.index import ChunkIndex

__all__ = ["group_seeds", "ball_sums", "GROUP_SIZE", "GROUP_WIDTH", "GROUP_FULL", "LANES"]

GROUP_SIZE = 64
"""Most seeds that share one tree traversal."""

GROUP_WIDTH = 0.35
"""Largest diagonal of a full seed group, as a fraction of the bandwidth: points farther than
that from every ball's sphere are decided once for the whole group."""

GROUP_FULL = 16
"""Seeds from which a group may be :data:`GROUP_WIDTH` wide. A group of ``m`` fewer seeds has a
diagonal of at most ``GROUP_WIDTH * m / GROUP_FULL`` bandwidths: the points near its spheres
are tested once per seed, so a small group only pays when it is tight. Kernel time of whole
climbs against the earlier ``sqrt(m / GROUP_FULL)``: 3-13 % less on every case measured (P1's
sweep of 8 bandwidths 8 %, P2 1 %, P3 (8-D) 4 %, image-like colours 7 %, 10M rows at
bandwidth 3.4 13 %, where seeds that converge in dense data form many groups of 2-8)."""


@njit(cache=True)
def _group_seeds(centers: np.ndarray, max_size: int, max_diag2: float, full: int):
    k, d = centers.shape
    order = np.arange(k)
    bounds = np.empty(k + 1, np.int64)
    n_groups = 0
    stack = np.empty((2 * k + 2, 2), np.int64)
    stack[0, 0], stack[0, 1] = 0, k
    top = 1 if k > 0 else 0
    while top > 0:
        top -= 1
        a, b = stack[top, 0], stack[top, 1]
        diag2 = 0.0
        widest = -1.0
        dim = 0
        for j in range(d):
            lo = np.inf
            hi = -np.inf
            for i in range(a, b):
                v = centers[order[i], j]
                lo = min(lo, v)
                hi = max(hi, v)
            diag2 += (hi - lo) * (hi - lo)
            if hi - lo > widest:
                widest = hi - lo
                dim = j
        share = min(1.0, (b - a) / full)
        if b - a == 1 or (b - a <= max_size and diag2 <= max_diag2 * share * share):
            bounds[n_groups] = a
            n_groups += 1
            continue
        seg = order[a:b].copy()
        order[a:b] = seg[np.argsort(centers[seg, dim], kind="mergesort")]
        mid = (a + b) // 2
        stack[top, 0], stack[top, 1] = mid, b
        stack[top + 1, 0], stack[top + 1, 1] = a, mid
        top += 2
    bounds[n_groups] = k
    return order, bounds[: n_groups + 1]


def group_seeds(centers: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """Split seeds into compact groups that share a tree traversal: median splits of the
    widest dimension until a part holds at most :data:`GROUP_SIZE` seeds within the diagonal
    its size allows (:data:`GROUP_WIDTH`, :data:`GROUP_FULL`), or one seed.

    Parameters
    ----------
    centers : ndarray of shape (k, d)
    bandwidth : float

    Returns
    -------
    order : ndarray of shape (k,), int64
        Seed numbers, group after group.
    bounds : ndarray of shape (n_groups + 1,), int64
        Group ``g`` is ``order[bounds[g]:bounds[g + 1]]``.
    """
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    width = GROUP_WIDTH * float(bandwidth)
    return _group_seeds(centers, GROUP_SIZE, width * width, GROUP_FULL)


LANES = 8
"""Independent compensated accumulators a leaf's listed rows are added to in turn: the sums'
dependency chains interleave instead of waiting on each other."""


@njit(inline="always", cache=True)
def _lane_add_rows(lane_s, lane_c, points, weights, rows, n_rows, sign, d, weighted):
    """Add ``sign`` (1.0 or -1.0) times ``(w * p, w)`` of rows ``rows[:n_rows]`` into the lanes,
    ``LANES`` rows at a time, one row per lane."""
    for k0 in range(0, n_rows, LANES):
        n = min(LANES, n_rows - k0)
        if not weighted:
            for j in range(d):
                sj = lane_s[j]
                cj = lane_c[j]
                for r in range(n):
                    x = points[rows[k0 + r], j] * sign
                    s = sj[r]
                    t = s + x
                    bb = t - s
                    cj[r] += (s - (t - bb)) + (x - bb)
                    sj[r] = t
            for r in range(n):
                lane_s[d, r] += sign  # integer counts: exact without compensation
            continue
        for j in range(d + 1):
            sj = lane_s[j]
            cj = lane_c[j]
            for r in range(n):
                i = rows[k0 + r]
                if j == d:
                    x, low = weights[i], 0.0
                else:
                    x, low = two_prod(weights[i], points[i, j])
                x *= sign
                s = sj[r]
                t = s + x
                bb = t - s
                cj[r] += (s - (t - bb)) + (x - bb) + low * sign
                sj[r] = t


@njit(inline="always", cache=True)
def _add_inside(lane_s, lane_c, points, weights, rows_in, n_in, rows_out, n_out, d, weighted):
    """Add a cut leaf's rows inside, or subtract its rows outside when they are fewer: then
    returns True and the caller adds the leaf's own sums (an exact sum either way)."""
    if n_in <= n_out:
        _lane_add_rows(lane_s, lane_c, points, weights, rows_in, n_in, 1.0, d, weighted)
        return False
    _lane_add_rows(lane_s, lane_c, points, weights, rows_out, n_out, -1.0, d, weighted)
    return True


@njit(inline="always", cache=True)
def _lone_leaf(points, weights, a, b, centre, radius2, lane_s, lane_c, rows_in, rows_out, weighted, d):
    """Rows ``a .. b - 1`` of a leaf the ball of one seed cuts, each tested exactly (listed
    branch-free); returns whether the caller must add the leaf's sums (see :func:`_add_inside`)."""
    n_in = 0
    n_out = 0
    for i in range(a, b):
        dist2 = 0.0
        for j in range(d):
            t = points[i, j] - centre[j]
            dist2 += t * t
        inside = dist2 <= radius2
        rows_in[n_in] = i
        rows_out[n_out] = i
        n_in += 1 if inside else 0
        n_out += 0 if inside else 1
    return _add_inside(lane_s, lane_c, points, weights, rows_in, n_in, rows_out, n_out, d, weighted)


@njit(inline="always", cache=True)
def _group_leaf(points, weights, a, b, glo, ghi, radius2, lane_s, lane_c, rows_in, rows_out, band, weighted, d):
    """Rows ``a .. b - 1`` of a leaf a group's box cuts: rows inside every ball of the group go
    to the group's sums (see :func:`_add_inside`), rows near some sphere are listed in ``band``.
    Returns (rows in ``band``, whether the caller must add the leaf's sums). The box tests are
    the per-seed tests' bounds (rounding is monotone)."""
    n_band = 0
    n_in = 0
    n_out = 0
    for i in range(a, b):
        near = 0.0
        far = 0.0
        for j in range(d):
            p = points[i, j]
            t = max(glo[j] - p, p - ghi[j], 0.0)
            near += t * t
            t = max(p - glo[j], ghi[j] - p)
            far += t * t
        inside = far <= radius2
        rows_in[n_in] = i
        rows_out[n_out] = i
        band[n_band] = i
        n_in += 1 if inside else 0
        n_out += 0 if inside else 1
        n_band += 1 if near <= radius2 and not inside else 0
    whole = _add_inside(lane_s, lane_c, points, weights, rows_in, n_in, rows_out, n_out, d, weighted)
    return n_band, whole


@njit(inline="always", cache=True)
def _band_point(points, weights, i, d, m, cx, radius2, dist, mask, acc_s, acc_c, weighted):
    """Add row ``i`` to the sums of each of the group's ``m`` seeds whose ball holds it.

    Vectorised over the seeds (``cx`` holds their coordinates column by column): the
    distance is summed in coordinate order, the per-point test of the scalar code, and
    every seed's compensated sum takes ``x * mask`` (``x`` or 0), so there is no branch.
    """
    p = points[i, 0]
    c0 = cx[0]
    for q in range(m):
        t = p - c0[q]
        dist[q] = t * t
    for j in range(1, d):
        p = points[i, j]
        cj = cx[j]
        for q in range(m):
            t = p - cj[q]
            dist[q] += t * t
    for q in range(m):
        mask[q] = 1.0 if dist[q] <= radius2 else 0.0
    if not weighted:  # the common case, kept free of the product's error terms
        for j in range(d):
            _masked_add(acc_s[j], acc_c[j], m, points[i, j], 0.0, mask)
        count = acc_s[d]
        for q in range(m):
            count[q] += mask[q]  # integer counts: exact without compensation
        return
    w = weights[i]
    for j in range(d):
        h, low = two_prod(w, points[i, j])
        _masked_add(acc_s[j], acc_c[j], m, h, low, mask)
    _masked_add(acc_s[d], acc_c[d], m, w, 0.0, mask)


@njit(inline="always", cache=True)
def _masked_add(s, c, m, x0, low, mask):
    """Add ``(x0 + low) * mask[q]`` to the compensated sums ``(s[q], c[q])``, ``q < m``."""
    if low == 0.0:
        for q in range(m):
            x = x0 * mask[q]
            t = s[q] + x
            bb = t - s[q]
            c[q] += (s[q] - (t - bb)) + (x - bb)
            s[q] = t
    else:
        for q in range(m):
            x = x0 * mask[q]
            t = s[q] + x
            bb = t - s[q]
            c[q] += (s[q] - (t - bb)) + (x - bb) + low * mask[q]
            s[q] = t


@njit(nogil=True, cache=True)
def _ball_sums(points, weights, start, stop, left, lower, upper, sum_s, sum_c, centers, order, bounds, radius2, dims):
    # ``dims`` is a tuple of d items: its length is part of its type, so each dimension gets
    # its own compiled kernel in which the loops over coordinates have a known trip count and
    # are unrolled (bit-identical sums; P1, bandwidth 3.4: 10 % less kernel time). The band
    # loop keeps a run-time d: unrolled, its loops over the group's seeds ran 10-20 % slower.
    k, d = centers.shape[0], len(dims)
    weighted = weights.shape[0] > 0
    out_s = np.zeros((k, d + 1))
    out_c = np.zeros((k, d + 1))
    if start.shape[0] == 0:
        return out_s, out_c
    widest = 1
    for g in range(bounds.shape[0] - 1):
        widest = max(widest, bounds[g + 1] - bounds[g])
    # Per-group scratch, seeds along the last axis so the band loop is contiguous.
    cx = np.empty((d, widest))
    acc_s = np.empty((d + 1, widest))
    acc_c = np.empty((d + 1, widest))
    dist = np.empty(widest)
    mask = np.empty(widest)
    stack = np.empty(256, np.int64)
    glo = np.empty(d)
    ghi = np.empty(d)
    gs = np.empty(d + 1)
    gc = np.empty(d + 1)
    lane_s = np.empty((d + 1, LANES))
    lane_c = np.empty((d + 1, LANES))
    leaf_rows = 1
    for node in range(start.shape[0]):
        if left[node] < 0:
            leaf_rows = max(leaf_rows, stop[node] - start[node])
    band = np.empty(leaf_rows, np.int64)
    rows_in = np.empty(leaf_rows, np.int64)
    rows_out = np.empty(leaf_rows, np.int64)
    for g in range(bounds.shape[0] - 1):
        # The group's box: every test against it holds for each of its seeds (rounding
        # is monotone), so a decision taken for the box is exact for every seed.
        first, last = bounds[g], bounds[g + 1]
        m = last - first
        for j in range(d):
            glo[j] = np.inf
            ghi[j] = -np.inf
            for q in range(m):
                v = centers[order[first + q], j]
                cx[j, q] = v
                glo[j] = min(glo[j], v)
                ghi[j] = max(ghi[j], v)
        for j in range(d + 1):
            gs[j] = 0.0
            gc[j] = 0.0
            for r in range(LANES):
                lane_s[j, r] = 0.0
                lane_c[j, r] = 0.0
            for q in range(m):
                acc_s[j, q] = 0.0
                acc_c[j, q] = 0.0
        stack[0] = 0
        top = 1
        while top > 0:
            top -= 1
            node = stack[top]
            near = 0.0
            far = 0.0
            for j in range(d):
                lo = lower[node, j]
                hi = upper[node, j]
                t = max(lo - ghi[j], glo[j] - hi, 0.0)
                near += t * t
                t = max(hi - glo[j], ghi[j] - lo)
                far += t * t
            if near > radius2:
                continue
            if far <= radius2:
                for j in range(d + 1):
                    add_pair(gs, gc, j, sum_s[node, j], sum_c[node, j])
                continue
            child = left[node]
            if child >= 0:
                stack[top] = child + 1
                stack[top + 1] = child
                top += 2
                continue
            a, b = start[node], stop[node]
            if m == 1:  # a lone seed: the box test is its exact test, done once
                whole = _lone_leaf(points, weights, a, b, glo, radius2, lane_s, lane_c, rows_in, rows_out, weighted, d)
                n_band = 0
            else:
                n_band, whole = _group_leaf(points, weights, a, b, glo, ghi, radius2, lane_s, lane_c, rows_in,
                                            rows_out, band, weighted, d)
            if whole:  # the leaf's rows outside were subtracted
                for j in range(d + 1):
                    add_pair(gs, gc, j, sum_s[node, j], sum_c[node, j])
            for r in range(n_band):
                _band_point(points, weights, band[r], points.shape[1], m, cx, radius2, dist, mask, acc_s, acc_c,
                            weighted)
        for j in range(d + 1):
            for r in range(LANES):
                add_pair(gs, gc, j, lane_s[j, r], lane_c[j, r])
        for q in range(m):
            r = order[first + q]
            for j in range(d + 1):
                add_pair(out_s[r], out_c[r], j, gs[j], gc[j])
                add_pair(out_s[r], out_c[r], j, acc_s[j, q], acc_c[j, q])
    return out_s, out_c


def ball_sums(index: ChunkIndex, centers: np.ndarray, bandwidth: float, groups=None):
    """Mass and weighted sum, per center, of the chunk's points within ``bandwidth``
    (boundary included).

    Parameters
    ----------
    index : ChunkIndex
        The chunk's tree.
    centers : ndarray of shape (k, d)
        Ball centers (float64).
    bandwidth : float
        Ball radius.
    groups : tuple of ndarray, optional
        ``(order, bounds)`` from :func:`group_seeds`; computed here when omitted (pass it
        to share one grouping among all chunks of a pass).

    Returns
    -------
    s, c : ndarray of shape (k, d + 1)
        Compensated sums (``s + c`` is the sum): columns ``0..d-1`` hold the sum of
        ``w * p``, column ``d`` the mass (the point count for unit weights).
    """
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    order, bounds = group_seeds(centers, bandwidth) if groups is None else groups
    dims = (0,) * centers.shape[1]  # the kernel compiled for this many dimensions (see _ball_sums)
    return _ball_sums(*index.opened(), centers, order, bounds, float(bandwidth) * float(bandwidth), dims)
