"""Spatial index of row chunks: a k-d tree whose nodes carry point masses and coordinate sums.

Built in Morton order (a radix sort of quantised coordinates, splits on key bits, median
splits where keys tie); :mod:`dshift.forest` decides which rows each tree of a fit holds.
:mod:`dshift.ballsums` queries it: "mass and sum of the points within ``bandwidth`` of each
seed" without visiting most points: a node whose bounding box lies wholly inside a ball adds
its precomputed (compensated) sums, a node wholly outside is skipped, and only the leaves
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

from dshift import _mapped
from dshift._compensated import add_pair, add_product, add_value

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
        """Bytes held by the index (its points on disk after :meth:`to_disk`)."""
        return sum(a.nbytes for a in self)

    def to_disk(self) -> ChunkIndex:
        """The index with its points and weights in nameless files on local disk
        (:mod:`dshift._mapped`), for indexes that do not fit in memory: a pass maps them and
        reads only the leaves it needs. Node arrays (~15 % of the points' size) stay."""
        return self._replace(points=_mapped.store(self.points),
                             weights=_mapped.store(self.weights) if len(self.weights) else self.weights)

    def opened(self) -> ChunkIndex:
        """The index as kernels take it: points and weights mapped if on disk (unmapped
        when the returned index is released)."""
        return self._replace(points=_mapped.opened(self.points), weights=_mapped.opened(self.weights))


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


@njit(inline="always", cache=True)
def _counting_pass(src, dst, payload, payload_dst, shift, count):
    """One stable pass of the radix sort: ``src`` into ``dst`` by its :data:`DIGIT` bits from
    bit ``shift``; ``payload`` (unless empty) moves along into ``payload_dst``."""
    digit_mask = np.uint64((1 << DIGIT) - 1)
    at_bit = np.uint64(shift)
    carry = payload.shape[0] > 0
    count[:] = 0
    for i in range(src.shape[0]):
        count[((src[i] >> at_bit) & digit_mask) + 1] += 1
    for b in range(1 << DIGIT):
        count[b + 1] += count[b]
    for i in range(src.shape[0]):
        bucket = (src[i] >> at_bit) & digit_mask
        at = count[bucket]
        count[bucket] = at + 1
        dst[at] = src[i]
        if carry:
            payload_dst[at] = payload[i]


@njit(nogil=True, cache=True)
def _radix_order(keys, n_bits):
    """Stable LSD radix sort: the permutation ordering ``keys``, and the keys in that order.

    Where a key and a row number fit in 64 bits together, the row number rides in the low
    bits and each pass moves 8 bytes a row instead of 16 (2M rows: 136-140 -> 73-89 ms; the
    tree builds of the 100M job are memory-bound, two at a time)."""
    n = keys.shape[0]
    row_bits = 0
    while (1 << row_bits) < n:
        row_bits += 1
    count = np.empty((1 << DIGIT) + 1, np.int64)
    if row_bits + n_bits <= 64:
        none = np.empty(0, np.uint64)
        packed = np.empty(n, np.uint64)
        for i in range(n):
            packed[i] = (keys[i] << np.uint64(row_bits)) | np.uint64(i)
        spare = np.empty(n, np.uint64)
        for shift in range(row_bits, row_bits + n_bits, DIGIT):
            _counting_pass(packed, spare, none, none, shift, count)
            packed, spare = spare, packed
        order = np.empty(n, np.int64)
        rows = np.uint64((1 << row_bits) - 1)
        for i in range(n):
            order[i] = np.int64(packed[i] & rows)
            spare[i] = packed[i] >> np.uint64(row_bits)
        return order, spare
    order = np.arange(n)
    order_spare = np.empty(n, np.int64)
    k = keys.copy()
    k_spare = np.empty(n, np.uint64)
    for shift in range(0, n_bits, DIGIT):
        _counting_pass(k, k_spare, order, order_spare, shift, count)
        k, k_spare = k_spare, k
        order, order_spare = order_spare, order
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


def morton_keys(points: np.ndarray) -> tuple[np.ndarray, int]:
    """Each row's Morton key on a grid over the rows' bounding box (the trees' row order).

    Parameters
    ----------
    points : ndarray of shape (n, d), float64, C-contiguous

    Returns
    -------
    keys : ndarray of shape (n,), uint64
    n_bits : int
        Bits the keys use (0: no keys, for no rows or too many dimensions).
    """
    n, d = points.shape
    bits = _key_layout(d)
    if n == 0 or bits == 0:
        return np.zeros(n, np.uint64), 0
    lower, upper = _bounds(points)
    scale = (2.0**bits) / np.where(upper > lower, upper - lower, 1.0)
    return _keys(points, lower, scale, (1 << bits) - 1, _spread_tables(d, bits)), bits * d


def _sort_by_keys(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows in Morton order of a grid over their bounding box: ``(points, perm, keys, bits)``."""
    keys, n_bits = morton_keys(points)
    if n_bits == 0:  # no keys: median splits all the way (on a copy: they reorder rows)
        return points.copy(), np.arange(len(points), dtype=np.int64), keys, 0
    perm, keys = _radix_order(keys, n_bits)
    return _gather(points, perm), perm, keys, n_bits


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
