r"""Derivatives through an optimum, without unrolling the optimiser's iterations.

For :math:`x^*(a) = \arg\min_x f(x, a)` found by :func:`~difflike.fit.minimize`:

* :func:`optimal_value` is :math:`f(x^*(a), a)` with the envelope theorem as its
  derivative, :math:`\mathrm{d}f^*/\mathrm{d}a = \partial_a f(x^*, a)`: the optimum's
  own movement contributes nothing, because the gradient vanishes on the free set and
  pinned or fixed coordinates do not move. One extra evaluation, no Hessian.
* :func:`optimal_point` is :math:`x^*(a)` with the implicit function theorem as its
  derivative: on the free set :math:`F`,
  :math:`H_{FF}\,\mathrm{d}x_F = -\partial_a \nabla_{x_F} f\,\mathrm{d}a`, and
  :math:`\mathrm{d}x = 0` elsewhere (fixed coordinates, and coordinates pinned at a
  bound, which stay pinned under a small change of ``a``).

Both are :func:`jax.custom_jvp` rules that are linear in the tangents, so JAX
transposes them for reverse mode: ``jax.grad`` and ``jax.jacrev`` work too. The
solution ``x`` passed in carries no derivative (compute it under
:func:`jax.lax.stop_gradient`); only ``args`` are differentiated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from difflike.fit._linalg import symmetric_solve

__all__ = ["optimal_point", "optimal_value"]


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def optimal_value(
    fun: Callable[..., Array], x: Float[Array, " n"], args: tuple[Any, ...]
) -> Float[Array, ""]:
    """``fun(x, *args)`` at a minimiser ``x``, differentiated by the envelope theorem."""
    return fun(x, *args)


@optimal_value.defjvp
def _optimal_value_jvp(fun, primals, tangents):
    x, args = primals
    _, t_args = tangents
    return jax.jvp(lambda a: fun(x, *a), (args,), (t_args,))


@partial(jax.custom_jvp, nondiff_argnums=(0,))
def optimal_point(
    fun: Callable[..., Array],
    x: Float[Array, " n"],
    free: Bool[Array, " n"],
    args: tuple[Any, ...],
) -> Float[Array, " n"]:
    """The minimiser ``x`` itself, differentiated by the implicit function theorem.

    Args:
        fun: the objective ``fun(x, *args)``.
        x: a minimiser, ``(n,)``.
        free: coordinates free at the minimiser (not fixed, not pinned), ``(n,)``.
        args: the objective's further arguments; derivatives are taken with respect
            to these.
    """
    return x


@optimal_point.defjvp
def _optimal_point_jvp(fun, primals, tangents):
    x, free, args = primals
    _, _, t_args = tangents
    grad_x = jax.grad(fun)
    _, cross = jax.jvp(lambda a: grad_x(x, *a), (args,), (t_args,))
    h = jax.hessian(fun)(x, *args)
    both = free[:, None] & free[None, :]
    a = jnp.where(both, h, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    dx = symmetric_solve(a, -jnp.where(free, cross, 0.0), positive=False)
    return x, jnp.where(free, dx, 0.0)
