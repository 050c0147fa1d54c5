"""Per-chunk spatial index: a k-d tree whose nodes carry point masses and coordinate sums.

Built once per row chunk (and persisted with it when it fits in memory), the index
answers "mass and sum of the points within ``bandwidth`` of each seed" without
visiting most points: a node whose bounding box lies wholly inside a ball adds its
precomputed (compensated) sums, a node wholly outside is skipped, and only the leaves
the sphere cuts through are scanned point by point.

Sums have ``d + 1`` columns: the weighted coordinates ``w * p`` (added exactly) and, last,
the mass ``w``; unweighted data has ``w = 1``, so the mass is the point count.

The inside/outside decisions are exact with respect to the per-point test
``sum((p - m) ** 2) <= bandwidth ** 2`` evaluated in float64 in coordinate order
(the test scikit-learn's k-d tree applies): rounding is monotone, so a box whose
farthest corner passes the test holds only points that pass it, and a box whose
nearest point fails holds only points that fail.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dshift._compensated import add_pair, add_product, add_value, two_prod

LEAF_SIZE = 64
"""Points per leaf: small enough that boundary leaves are cheap, large enough that
node bookkeeping stays a small fraction of the index's memory."""


class ChunkIndex(NamedTuple):
    """A k-d tree over one chunk of rows; all arrays are plain NumPy (picklable)."""

    points: np.ndarray  # (n, d) float64, rows permuted into leaf order
    weights: np.ndarray  # (n,) float64 in the same order, or (0,) for unit weights
    start: np.ndarray  # (m,) int64, first row of each node
    stop: np.ndarray  # (m,) int64, one past the last row
    left: np.ndarray  # (m,) int64, left child or -1 for a leaf (right child = left + 1)
    lower: np.ndarray  # (m, d) float64, bounding box
    upper: np.ndarray  # (m, d) float64
    sum_s: np.ndarray  # (m, d + 1) float64, compensated sums of (w * p, w): value part
    sum_c: np.ndarray  # (m, d + 1) float64, error part

    @property
    def nbytes(self) -> int:
        """Memory held by the index."""
        return sum(a.nbytes for a in self)


@njit(inline="always", cache=True)
def _swap_rows(x: np.ndarray, perm: np.ndarray, i: int, j: int) -> None:
    for k in range(x.shape[1]):
        t = x[i, k]
        x[i, k] = x[j, k]
        x[j, k] = t
    r = perm[i]
    perm[i] = perm[j]
    perm[j] = r


@njit(cache=True)
def _select(x: np.ndarray, perm: np.ndarray, lo: int, hi: int, kth: int, dim: int) -> None:
    """Partially sort rows ``x[lo:hi+1]`` on column ``dim`` so that row ``kth`` is in place.

    Hoare partitioning with a median-of-three pivot; duplicates split evenly. ``perm``
    follows the rows.
    """
    while hi > lo:
        mid = (lo + hi) // 2
        a, b, c = x[lo, dim], x[mid, dim], x[hi, dim]
        if a > b:
            a, b = b, a
        if b > c:
            b = c
        pivot = a if a > b else b
        i, j = lo, hi
        while i <= j:
            while x[i, dim] < pivot:
                i += 1
            while x[j, dim] > pivot:
                j -= 1
            if i <= j:
                _swap_rows(x, perm, i, j)
                i += 1
                j -= 1
        if kth <= j:
            hi = j
        elif kth >= i:
            lo = i
        else:
            return


@njit(nogil=True, cache=True)
def _build(points: np.ndarray, perm: np.ndarray, leaf_size: int):
    n, d = points.shape
    cap = 2 * (2 * n // max(leaf_size, 2) + 1) + 1
    start = np.empty(cap, np.int64)
    stop = np.empty(cap, np.int64)
    left = np.full(cap, -1, np.int64)
    lower = np.zeros((cap, d))
    upper = np.zeros((cap, d))
    if n == 0:
        return start[:0], stop[:0], left[:0], lower[:0], upper[:0]
    start[0], stop[0] = 0, n
    m = 1
    stack = np.empty(256, np.int64)
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        a, b = start[node], stop[node]
        for k in range(d):
            lower[node, k] = points[a, k]
            upper[node, k] = points[a, k]
        for i in range(a + 1, b):
            for k in range(d):
                v = points[i, k]
                if v < lower[node, k]:
                    lower[node, k] = v
                elif v > upper[node, k]:
                    upper[node, k] = v
        dim = 0
        spread = -1.0
        for k in range(d):
            w = upper[node, k] - lower[node, k]
            if w > spread:
                spread = w
                dim = k
        if b - a <= leaf_size or spread <= 0.0:
            continue
        mid = (a + b) // 2
        _select(points, perm, a, b - 1, mid, dim)
        left[node] = m
        start[m], stop[m] = a, mid
        start[m + 1], stop[m + 1] = mid, b
        stack[top] = m
        stack[top + 1] = m + 1
        top += 2
        m += 2
    return start[:m], stop[:m], left[:m], lower[:m], upper[:m]


@njit(nogil=True, cache=True)
def _node_sums(points, weights, start, stop, left):
    """Compensated sums of ``(w * p, w)`` of every node: leaves point by point, in row
    order; parents from their children (numbered after them), in a reverse sweep."""
    m = start.shape[0]
    d = points.shape[1]
    weighted = weights.shape[0] > 0
    sum_s = np.zeros((m, d + 1))
    sum_c = np.zeros((m, d + 1))
    for node in range(m - 1, -1, -1):
        child = left[node]
        if child < 0:
            for i in range(start[node], stop[node]):
                w = weights[i] if weighted else 1.0
                for k in range(d):
                    if weighted:
                        add_product(sum_s[node], sum_c[node], k, w, points[i, k])
                    else:
                        add_value(sum_s[node], sum_c[node], k, points[i, k])
                add_value(sum_s[node], sum_c[node], d, w)
            continue
        for k in range(d + 1):
            sum_s[node, k] = sum_s[child, k]
            sum_c[node, k] = sum_c[child, k]
            add_pair(sum_s[node], sum_c[node], k, sum_s[child + 1, k], sum_c[child + 1, k])
    return sum_s, sum_c


def build_index(chunk: np.ndarray, weights: np.ndarray | None = None, leaf_size: int = LEAF_SIZE) -> ChunkIndex:
    """Build the k-d tree of one chunk of rows.

    Parameters
    ----------
    chunk : ndarray of shape (n, d)
        The rows; any real dtype (converted to float64, as scikit-learn's tree does).
        The input is not modified.
    weights : ndarray of shape (n,), optional
        Non-negative finite sample weights (None: every row weighs 1).
    leaf_size : int
        Maximum points per leaf (leaves of identical points may hold more).

    Returns
    -------
    ChunkIndex
    """
    return build_tree(chunk, weights, leaf_size)[0]


def build_tree(points: np.ndarray, weights: np.ndarray | None = None,
               leaf_size: int = LEAF_SIZE) -> tuple[ChunkIndex, np.ndarray]:
    """Build a k-d tree and say where each row went.

    Parameters
    ----------
    points : ndarray of shape (n, d)
        Any real dtype (converted to float64); not modified.
    weights : ndarray of shape (n,), optional
        Sample weights (None: unit weights, not stored).
    leaf_size : int
        Maximum points per leaf.

    Returns
    -------
    index : ChunkIndex
    perm : ndarray of shape (n,), int64
        ``index.points[i]`` is row ``perm[i]`` of ``points``.
    """
    tree_points = np.array(points, dtype=np.float64, order="C", copy=True)
    perm = np.arange(len(tree_points), dtype=np.int64)
    start, stop, left, lower, upper = _build(tree_points, perm, leaf_size)
    tree_weights = np.zeros(0) if weights is None else np.asarray(weights, dtype=np.float64)[perm]
    sums = _node_sums(tree_points, tree_weights, start, stop, left)
    return ChunkIndex(tree_points, tree_weights, start, stop, left, lower, upper, *sums), perm


GROUP_SIZE = 64
"""Most seeds that share one tree traversal."""

GROUP_WIDTH = 0.25
"""Largest diagonal of a seed group, as a fraction of the bandwidth: points farther than
that from every ball's sphere are decided once for the whole group."""


@njit(cache=True)
def _group_seeds(centers: np.ndarray, max_size: int, max_diag2: float):
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
        if b - a == 1 or (b - a <= max_size and diag2 <= max_diag2):
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
    """Split seeds into compact groups that share a tree traversal.

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
    return _group_seeds(centers, GROUP_SIZE, width * width)


@njit(inline="always", cache=True)
def _add_point(s, c, points, weights, i, d, weighted):
    """Add row ``i``'s ``(w * p, w)`` to the compensated sums ``(s, c)`` of length ``d + 1``."""
    if not weighted:
        for j in range(d):
            add_value(s, c, j, points[i, j])
        s[d] += 1.0  # integer counts: exact without compensation
        return
    for j in range(d):
        add_product(s, c, j, weights[i], points[i, j])
    add_value(s, c, d, weights[i])


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
def _ball_sums(points, weights, start, stop, left, lower, upper, sum_s, sum_c, centers, order, bounds, radius2):
    k, d = centers.shape
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
            if m == 1:  # a lone seed: the box test is its exact test, done once
                for i in range(start[node], stop[node]):
                    dist2 = 0.0
                    for j in range(d):
                        t = points[i, j] - glo[j]
                        dist2 += t * t
                    if dist2 <= radius2:
                        _add_point(gs, gc, points, weights, i, d, weighted)
                continue
            for i in range(start[node], stop[node]):
                near = 0.0
                far = 0.0
                for j in range(d):  # branch-free: the same values as the exact per-seed test
                    p = points[i, j]
                    t = max(glo[j] - p, p - ghi[j], 0.0)
                    near += t * t
                    t = max(p - glo[j], ghi[j] - p)
                    far += t * t
                if near > radius2:
                    continue
                if far <= radius2:
                    _add_point(gs, gc, points, weights, i, d, weighted)
                    continue
                _band_point(points, weights, i, d, m, cx, radius2, dist, mask, acc_s, acc_c, weighted)
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
    return _ball_sums(*index, centers, order, bounds, float(bandwidth) * float(bandwidth))
