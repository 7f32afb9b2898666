"""Small dense linear solves that are safe to batch on the CPU.

jaxlib runs a *batched* LAPACK call (what ``jax.vmap`` of ``jnp.linalg.cholesky`` or
``jnp.linalg.solve`` becomes) by fanning the batch out over XLA's intra-op thread
pool and blocking until it is done. When the caller is itself running on that pool
(asynchronous dispatch, or two computations in flight, as when a fit and a profile
are launched back to back), every pool thread can end up waiting for work that only
a pool thread could do: the process hangs with idle CPUs. On a 2-core machine two
computations in flight are enough.

:func:`symmetric_solve` avoids that at its root: under ``vmap`` on the CPU it maps
the *unbatched* LAPACK call over the batch (:func:`jax.lax.map`), which runs inline
without the pool and measures as fast as the batched call for the systems fits
solve (~100 parameters); on other platforms it batches as usual. It is a
:func:`jax.lax.custom_linear_solve`, so it can be differentiated and transposed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap
from jaxtyping import Array, Float

__all__ = ["symmetric_solve"]


def _cholesky_kernel(a, b):
    chol = jnp.linalg.cholesky(a)
    return jax.scipy.linalg.cho_solve((chol, True), b)


def _lu_kernel(a, b):
    return jnp.linalg.solve(a, b)


def _unbatched_on_cpu(kernel):
    """``kernel(a, b)`` whose ``vmap`` on the CPU is a sequential map (see module doc)."""

    @custom_vmap
    def solve(a, b):
        return kernel(a, b)

    @solve.def_vmap
    def _rule(axis_size, in_batched, a, b):
        a, b = (
            x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
            for x, batched in zip((a, b), in_batched)
        )
        out = lax.platform_dependent(
            a,
            b,
            cpu=lambda a, b: lax.map(lambda ab: solve(*ab), (a, b)),
            default=jax.vmap(kernel),
        )
        return out, True

    return solve


_KERNELS = {
    "pos": _unbatched_on_cpu(_cholesky_kernel),
    "gen": _unbatched_on_cpu(_lu_kernel),
}


def symmetric_solve(
    a: Float[Array, "n n"], b: Float[Array, " n"], *, positive: bool = True
) -> Float[Array, " n"]:
    """``a^-1 b`` for a symmetric ``a``, ``(n,)``.

    Args:
        a: symmetric matrix, ``(n, n)``.
        b: right-hand side, ``(n,)``.
        positive: ``a`` is meant to be positive definite: solve by Cholesky, and
            return NaN where it is not (callers test ``isfinite``). Otherwise by LU.
    """
    kernel = _KERNELS["pos" if positive else "gen"]
    return lax.custom_linear_solve(
        lambda x: a @ x, b, solve=lambda _, r: kernel(a, r), symmetric=True
    )
