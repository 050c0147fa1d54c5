"""Grouping rows by key in a compiled hash table: the grid bins of :mod:`dshift.seeding` and
the distinct rows of :mod:`dshift.dedup`.

A table numbers its groups in order of first appearance, sums each group's weights
(compensated) and keeps the row where it first appeared; tables of consecutive row ranges
merge into the table of the whole range. Keys are float64 rows compared bit for bit (callers
fold -0.0 into 0.0).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from dshift._compensated import add_pair

__all__ = ["BinTable", "key_hash", "find", "insert", "empty_store", "merge_rows", "merge_tables"]


class BinTable(NamedTuple):
    """Groups of equal keys (grid bins, or distinct rows) of some rows, in order of first appearance."""

    bins: np.ndarray  # (g, d) float64 keys: integral bin numbers, or the distinct rows
    counts: np.ndarray  # (g,) float64 points (or weight) in the group: compensated sum, value part
    counts_c: np.ndarray  # (g,) float64 error part (0 for unit or integer weights)
    first: np.ndarray  # (g,) int64, global row of the group's first point (of positive weight)

    @property
    def frequency(self) -> np.ndarray:
        """Points (or weight) per bin, as scikit-learn counts them on repeated rows."""
        return self.counts + self.counts_c


@njit(inline="always", cache=True)
def key_hash(bits: np.ndarray) -> np.uint64:
    """64-bit hash of a key's bit patterns: every input bit reaches every output bit
    (integral floats have long runs of zero low bits, which a plain multiplicative hash
    leaves clustered)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for j in range(bits.shape[0]):
        h ^= np.uint64(bits[j])
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h


@njit(inline="always", cache=True)
def _slot(bits: np.ndarray, mask: int) -> int:
    return np.int64(key_hash(bits) & np.uint64(mask))


@njit(inline="always", cache=True)
def find(keys, slots, key_bits) -> tuple[int, int]:
    """The group of key ``key_bits`` and its slot, or -1 and the free slot it would take."""
    mask = slots.shape[0] - 1
    kbits = keys.view(np.int64)
    s = _slot(key_bits, mask)
    while True:
        g = slots[s]
        if g < 0:
            return -1, s
        same = True
        for j in range(key_bits.shape[0]):
            if kbits[g, j] != key_bits[j]:
                same = False
                break
        if same:
            return g, s
        s = (s + 1) & mask


@njit(inline="always", cache=True)
def insert(keys, counts, counts_c, first, slots, n_groups, key_bits, weight, weight_c, row):
    """Add ``weight`` (+ ``weight_c``) to the group of key ``key_bits`` (a new group starts at ``row``).

    Returns the (possibly regrown) arrays and the new group count; groups are numbered
    in order of first appearance. Callers that mostly meet known keys look them up with
    :func:`find` first: returning the arrays costs more than the lookup.
    """
    g, s = find(keys, slots, key_bits)
    if g >= 0:
        add_pair(counts, counts_c, g, weight, weight_c)
        return keys, counts, counts_c, first, slots, n_groups
    kbits = keys.view(np.int64)
    if n_groups == keys.shape[0]:  # grow the group store
        keys = np.concatenate((keys, np.empty_like(keys)))
        counts = np.concatenate((counts, np.zeros_like(counts)))
        counts_c = np.concatenate((counts_c, np.zeros_like(counts_c)))
        first = np.concatenate((first, np.empty_like(first)))
        kbits = keys.view(np.int64)
    for j in range(key_bits.shape[0]):
        kbits[n_groups, j] = key_bits[j]
    counts[n_groups] = weight
    counts_c[n_groups] = weight_c
    first[n_groups] = row
    slots[s] = n_groups
    n_groups += 1
    if 2 * n_groups > slots.shape[0]:  # keep the table at most half full
        slots = np.full(2 * slots.shape[0], -1, np.int64)
        mask = slots.shape[0] - 1
        for g in range(n_groups):
            s = _slot(kbits[g], mask)
            while slots[s] >= 0:
                s = (s + 1) & mask
            slots[s] = g
    return keys, counts, counts_c, first, slots, n_groups


def empty_store(d: int) -> tuple[np.ndarray, ...]:
    """A table's empty arrays for keys of ``d`` values: ``keys, counts, counts_c, first, slots``
    (grown by :func:`insert` as groups arrive)."""
    return np.empty((64, d)), np.zeros(64), np.zeros(64), np.empty(64, np.int64), np.full(128, -1, np.int64)


@njit(nogil=True, cache=True)
def merge_rows(bins, in_counts, in_counts_c, firsts, keys, counts, counts_c, first, slots):
    """Group the rows ``bins`` with their (compensated) weights and first rows into the table
    ``keys .. slots`` (from :func:`empty_store`); returns the table's keys, sums and first rows."""
    bits = bins.view(np.int64)
    n_groups, i = 0, 0
    while True:  # known keys in a tight loop (no array reassigned in it), the table grows between
        i = _merge_known(bits, in_counts, in_counts_c, i, keys, counts, counts_c, slots)
        if i == bits.shape[0]:
            return keys[:n_groups], counts[:n_groups], counts_c[:n_groups], first[:n_groups]
        keys, counts, counts_c, first, slots, n_groups = insert(
            keys, counts, counts_c, first, slots, n_groups, bits[i], in_counts[i], in_counts_c[i], firsts[i])
        i += 1


@njit(nogil=True, cache=True)
def _merge_known(bits, in_counts, in_counts_c, start, keys, counts, counts_c, slots):
    """From row ``start``: add each key's counts to its group, up to the first new key (returned)."""
    for i in range(start, bits.shape[0]):
        g, _ = find(keys, slots, bits[i])
        if g < 0:
            return i
        add_pair(counts, counts_c, g, in_counts[i], in_counts_c[i])
    return bits.shape[0]


def merge_tables(a: BinTable, b: BinTable) -> BinTable:
    """Merge the tables of two row ranges, ``a`` before ``b``."""
    bins = np.ascontiguousarray(np.concatenate([a.bins, b.bins]))
    return BinTable(
        *merge_rows(
            bins,
            np.concatenate([a.counts, b.counts]),
            np.concatenate([a.counts_c, b.counts_c]),
            np.concatenate([a.first, b.first]),
            *empty_store(bins.shape[1]),
        )
    )
