"""Compensated (Neumaier) sums: results that do not depend on the order of summation.

A mean shift step divides a coordinate sum by a count. Dask adds the same numbers
in a different order than scikit-learn does (per chunk, per tree node, then a tree
reduction), so a plain float sum would change in its last bits with the chunking.
Every sum in dshift is therefore carried as a pair ``(s, c)``: ``s`` the running
float sum and ``c`` the exact rounding errors accumulated alongside. ``s + c``
rounds to the correctly rounded sum except when the exact sum lies within about
``n * eps**2 * sum(|x|)`` of a rounding boundary, i.e. practically never. That makes
results identical across chunk sizes, schedulers and traversal orders, and lets
seeds whose balls hold the same points reach bit-identical means (which
scikit-learn's result dictionary relies on).

Weighted points add ``w * p`` exactly: the product's rounding error comes from a fused
multiply-add (:func:`two_prod`) and joins the error part, so a row of integer weight ``w``
contributes exactly what ``w`` copies of it would.

The kernels must be compiled without fastmath: re-association destroys ``two_sum``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's fma: exact even where the CPU has no FMA unit)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        double = ir.DoubleType()
        fma = builder.module.declare_intrinsic("llvm.fma", [double], ir.FunctionType(double, [double] * 3))
        return builder.call(fma, args)

    return sig, codegen


@njit(inline="always", cache=True)
def two_prod(a: float, b: float) -> tuple[float, float]:
    """Return ``(h, l)`` with ``h = fl(a * b)`` and ``a * b = h + l`` exactly."""
    h = a * b
    return h, _fma(a, b, -h)


@njit(inline="always", cache=True)
def two_sum(a: float, b: float) -> tuple[float, float]:
    """Return ``(s, e)`` with ``s = fl(a + b)`` and ``a + b = s + e`` exactly (Knuth)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@njit(inline="always", cache=True)
def add_value(s: np.ndarray, c: np.ndarray, j: int, x: float) -> None:
    """Add ``x`` into the compensated sum ``(s[j], c[j])`` in place."""
    t, e = two_sum(s[j], x)
    s[j] = t
    c[j] += e


@njit(inline="always", cache=True)
def add_product(s: np.ndarray, c: np.ndarray, j: int, w: float, x: float) -> None:
    """Add ``w * x`` (exactly, see :func:`two_prod`) into ``(s[j], c[j])`` in place."""
    h, low = two_prod(w, x)
    t, e = two_sum(s[j], h)
    s[j] = t
    c[j] += e + low


@njit(inline="always", cache=True)
def add_pair(s: np.ndarray, c: np.ndarray, j: int, s2: float, c2: float) -> None:
    """Add the compensated sum ``(s2, c2)`` into ``(s[j], c[j])`` in place."""
    t, e = two_sum(s[j], s2)
    s[j] = t
    c[j] += e + c2


def combine(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Add two compensated sums ``(s, c)`` elementwise (vectorised).

    Parameters
    ----------
    a, b : tuple of ndarray
        ``(s, c)`` of the same shape (partial ball sums of the same seeds).

    Returns
    -------
    tuple of ndarray
        The compensated sum of both.
    """
    s_a, c_a = a
    s_b, c_b = b
    s = s_a + s_b
    bb = s - s_a
    e = (s_a - (s - bb)) + (s_b - bb)
    return s, c_a + c_b + e


def finish(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Round a compensated sum to floats."""
    return s + c
