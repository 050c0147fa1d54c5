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

import functools
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


KEY_BITS = 36
"""Bits of a point's grid key (split among the dimensions; 12 per dimension at most):
enough to separate points down to leaves; finer structure comes from median splits."""

DIGIT = 12
"""Bits per pass of the radix sort: 4,096 buckets stay in cache."""


def _key_layout(d: int) -> int:
    """Bits of each coordinate in a key (0: too many dimensions for keys to help)."""
    return min(12, KEY_BITS // d)


@functools.lru_cache(maxsize=32)
def _spread_tables(d: int, bits: int) -> np.ndarray:
    """Per dimension and byte of a quantised coordinate, its bits moved to their key positions:
    bit ``t`` of dimension ``j`` goes to ``t * d + (d - 1 - j)`` (a Morton order)."""
    tables = np.zeros((d, 2, 256), np.uint64)
    for j in range(d):
        for byte in range(2):
            for v in range(256):
                key = 0
                for t in range(8):
                    bit = 8 * byte + t
                    if bit < bits and (v >> t) & 1:
                        key |= 1 << (bit * d + (d - 1 - j))
                tables[j, byte, v] = key
    return tables


@njit(nogil=True, cache=True)
def _keys(points, lower, scale, top, tables):
    n, d = points.shape
    keys = np.empty(n, np.uint64)
    for i in range(n):
        key = np.uint64(0)
        for j in range(d):
            q = min(max(np.int64((points[i, j] - lower[j]) * scale[j]), 0), top)
            key |= tables[j, 0, q & 255] | tables[j, 1, (q >> 8) & 255]
        keys[i] = key
    return keys


@njit(nogil=True, cache=True)
def _radix_order(keys, n_bits):
    """Stable LSD radix sort: the permutation ordering ``keys``, and the keys in that order."""
    n = keys.shape[0]
    order = np.arange(n)
    spare = np.empty(n, np.int64)
    k = keys.copy()
    k_spare = np.empty(n, np.uint64)
    count = np.empty((1 << DIGIT) + 1, np.int64)
    digit_mask = np.uint64((1 << DIGIT) - 1)
    for shift in range(0, n_bits, DIGIT):
        count[:] = 0
        for i in range(n):
            count[((k[i] >> np.uint64(shift)) & digit_mask) + 1] += 1
        for b in range(1 << DIGIT):
            count[b + 1] += count[b]
        for i in range(n):
            bucket = (k[i] >> np.uint64(shift)) & digit_mask
            at = count[bucket]
            count[bucket] += 1
            k_spare[at] = k[i]
            spare[at] = order[i]
        k, k_spare = k_spare, k
        order, spare = spare, order
    return order, k


@njit(inline="always", cache=True)
def _grown(a: np.ndarray, fill: int = 0) -> np.ndarray:
    """``a`` in an array twice its size (the new half set to ``fill``)."""
    out = np.full(2 * a.shape[0], fill, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(nogil=True, cache=True)
def _build(points, perm, keys, n_bits, leaf_size):
    """Split ``points`` (sorted by ``keys``) into a binary tree of leaves of ``leaf_size`` rows.

    A node splits at the highest key bit that differs among its rows (a binary search, the
    rows being sorted); a node whose rows share their key but are too many for a leaf splits
    at the median of its widest dimension (points and ``perm`` reordered by a selection).
    Children are numbered after their parent.
    """
    n, d = points.shape
    # Splits on key bits can be lopsided (a few outlying rows on one side), so the node count
    # has no tight bound: start from a balanced tree's and grow when full.
    cap = 2 * (2 * n // max(leaf_size, 2) + 1) + 1 + 2 * n_bits
    start = np.empty(cap, np.int64)
    stop = np.empty(cap, np.int64)
    left = np.full(cap, -1, np.int64)
    level = np.empty(cap, np.int64)
    if n == 0:
        return start[:0], stop[:0], left[:0]
    start[0], stop[0], level[0] = 0, n, n_bits - 1
    m = 1
    stack = np.empty(256, np.int64)
    stack[0] = 0
    top = 1
    lo = np.empty(d)
    hi = np.empty(d)
    while top > 0:
        top -= 1
        node = stack[top]
        a, b = start[node], stop[node]
        if b - a <= leaf_size:
            continue
        bit = level[node]
        mid = -1
        while bit >= 0:
            mask = np.uint64(1) << np.uint64(bit)
            if (keys[a] & mask) != (keys[b - 1] & mask):
                first, last = a, b - 1
                while first < last:
                    probe = (first + last) // 2
                    if keys[probe] & mask:
                        last = probe
                    else:
                        first = probe + 1
                mid = first
                break
            bit -= 1
        if mid < 0:  # one key for all rows: the median of the widest dimension
            for k in range(d):
                lo[k] = points[a, k]
                hi[k] = points[a, k]
            for i in range(a + 1, b):
                for k in range(d):
                    lo[k] = min(lo[k], points[i, k])
                    hi[k] = max(hi[k], points[i, k])
            dim = 0
            for k in range(d):
                if hi[k] - lo[k] > hi[dim] - lo[dim]:
                    dim = k
            if hi[dim] - lo[dim] <= 0.0:  # identical points: one leaf, whatever its size
                continue
            mid = (a + b) // 2
            _select(points, perm, a, b - 1, mid, dim)
            bit = -1
        if m + 2 > start.shape[0]:
            start, stop, left, level = _grown(start), _grown(stop), _grown(left, -1), _grown(level)
        left[node] = m
        start[m], stop[m], level[m] = a, mid, bit - 1
        start[m + 1], stop[m + 1], level[m + 1] = mid, b, bit - 1
        stack[top] = m
        stack[top + 1] = m + 1
        top += 2
        m += 2
    return start[:m], stop[:m], left[:m]


@njit(inline="always", cache=True)
def box_gap2(lower: np.ndarray, upper: np.ndarray, node: int, x: np.ndarray) -> float:
    """Squared distance from the point ``x`` to ``node``'s bounding box (0 inside it)."""
    near = 0.0
    for j in range(x.shape[0]):
        t = max(lower[node, j] - x[j], x[j] - upper[node, j], 0.0)
        near += t * t
    return near


@njit(nogil=True, cache=True)
def _boxes(points, start, stop, left):
    """Bounding boxes: leaves from their rows, parents from their children (numbered after them)."""
    m = start.shape[0]
    d = points.shape[1]
    lower = np.empty((m, d))
    upper = np.empty((m, d))
    for node in range(m - 1, -1, -1):
        child = left[node]
        if child >= 0:
            for k in range(d):
                lower[node, k] = min(lower[child, k], lower[child + 1, k])
                upper[node, k] = max(upper[child, k], upper[child + 1, k])
            continue
        a, b = start[node], stop[node]
        for k in range(d):
            lower[node, k] = points[a, k]
            upper[node, k] = points[a, k]
        for i in range(a + 1, b):
            for k in range(d):
                lower[node, k] = min(lower[node, k], points[i, k])
                upper[node, k] = max(upper[node, k], points[i, k])
    return lower, upper


def _sort_by_keys(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows in Morton order of a grid over their bounding box: ``(points, perm, keys, bits)``."""
    n, d = points.shape
    bits = _key_layout(d)
    if n == 0 or bits == 0:  # no keys: median splits all the way (on a copy: they reorder rows)
        return points.copy(), np.arange(n, dtype=np.int64), np.zeros(n, np.uint64), 0
    lower, upper = _bounds(points)
    span = np.where(upper > lower, upper - lower, 1.0)
    scale = (2.0**bits) / span
    keys = _keys(points, lower, scale, (1 << bits) - 1, _spread_tables(d, bits))
    perm, keys = _radix_order(keys, bits * d)
    return _gather(points, perm), perm, keys, bits * d


@njit(nogil=True, cache=True)
def _bounds(points):
    lower = points[0].copy()
    upper = points[0].copy()
    for i in range(1, points.shape[0]):
        for k in range(points.shape[1]):
            lower[k] = min(lower[k], points[i, k])
            upper[k] = max(upper[k], points[i, k])
    return lower, upper


@njit(nogil=True, cache=True)
def _gather(points, perm):
    out = np.empty_like(points)
    for i in range(perm.shape[0]):
        out[i] = points[perm[i]]
    return out


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
    tree_points, perm, keys, n_bits = _sort_by_keys(np.ascontiguousarray(points, dtype=np.float64))
    start, stop, left = _build(tree_points, perm, keys, n_bits, leaf_size)
    lower, upper = _boxes(tree_points, start, stop, left)
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


LANES = 8
"""Independent compensated accumulators a leaf scan adds to in turn: the sums' dependency
chains interleave instead of waiting on each other."""


@njit(inline="always", cache=True)
def _lane_add(lane_s, lane_c, lane_mask, points, weights, i0, n, d, weighted):
    """Add rows ``i0 .. i0 + n - 1`` times ``lane_mask`` (1 or 0) to lanes ``0 .. n - 1``,
    without a branch on the mask: ``(w * p, w)`` in columns ``0 .. d``."""
    if not weighted:
        for j in range(d):
            sj = lane_s[j]
            cj = lane_c[j]
            for r in range(n):
                x = points[i0 + r, j] * lane_mask[r]
                s = sj[r]
                t = s + x
                bb = t - s
                cj[r] += (s - (t - bb)) + (x - bb)
                sj[r] = t
        for r in range(n):
            lane_s[d, r] += lane_mask[r]  # integer counts: exact without compensation
        return
    for j in range(d + 1):
        sj = lane_s[j]
        cj = lane_c[j]
        for r in range(n):
            if j == d:
                x, low = weights[i0 + r], 0.0
            else:
                x, low = two_prod(weights[i0 + r], points[i0 + r, j])
            x *= lane_mask[r]
            s = sj[r]
            t = s + x
            bb = t - s
            cj[r] += (s - (t - bb)) + (x - bb) + low * lane_mask[r]
            sj[r] = t


@njit(inline="always", cache=True)
def _lone_leaf(points, weights, a, b, centre, radius2, lane_s, lane_c, lane_mask, weighted):
    """Rows ``a .. b - 1`` of a leaf the ball of one seed cuts: each tested exactly."""
    d = points.shape[1]
    for i0 in range(a, b, LANES):
        n = min(LANES, b - i0)
        for r in range(n):
            dist2 = 0.0
            for j in range(d):
                t = points[i0 + r, j] - centre[j]
                dist2 += t * t
            lane_mask[r] = 1.0 if dist2 <= radius2 else 0.0
        _lane_add(lane_s, lane_c, lane_mask, points, weights, i0, n, d, weighted)


@njit(inline="always", cache=True)
def _group_leaf(points, weights, a, b, glo, ghi, radius2, lane_s, lane_c, lane_mask, band, weighted):
    """Rows ``a .. b - 1`` of a leaf a group's box cuts: rows inside every ball of the group
    are added to the group's sums, rows near some sphere are listed in ``band``; returns how
    many. The box tests are the per-seed tests' bounds (rounding is monotone)."""
    d = points.shape[1]
    n_band = 0
    for i0 in range(a, b, LANES):
        n = min(LANES, b - i0)
        for r in range(n):
            near = 0.0
            far = 0.0
            for j in range(d):
                p = points[i0 + r, j]
                t = max(glo[j] - p, p - ghi[j], 0.0)
                near += t * t
                t = max(p - glo[j], ghi[j] - p)
                far += t * t
            inside = far <= radius2
            lane_mask[r] = 1.0 if inside else 0.0
            band[n_band] = i0 + r
            n_band += 1 if near <= radius2 and not inside else 0
        _lane_add(lane_s, lane_c, lane_mask, points, weights, i0, n, d, weighted)
    return n_band


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
    lane_s = np.empty((d + 1, LANES))
    lane_c = np.empty((d + 1, LANES))
    lane_mask = np.empty(LANES)
    leaf_rows = 1
    for node in range(start.shape[0]):
        if left[node] < 0:
            leaf_rows = max(leaf_rows, stop[node] - start[node])
    band = np.empty(leaf_rows, np.int64)
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
                _lone_leaf(points, weights, a, b, glo, radius2, lane_s, lane_c, lane_mask, weighted)
                continue
            n_band = _group_leaf(points, weights, a, b, glo, ghi, radius2, lane_s, lane_c, lane_mask, band,
                                 weighted)
            for r in range(n_band):
                _band_point(points, weights, band[r], d, m, cx, radius2, dist, mask, acc_s, acc_c, weighted)
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
    return _ball_sums(*index, centers, order, bounds, float(bandwidth) * float(bandwidth))
