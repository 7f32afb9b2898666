r"""A bounded, damped Newton minimiser in pure JAX (fixed shapes, vmap-able).

One problem is ``min_x f(x, *args)`` subject to ``lower <= x <= upper``, with some
coordinates held fixed. Each iteration

1. finds the *free set*: coordinates that are not fixed and not pinned at a bound
   by a gradient pointing outwards (``x = lower`` with ``g > 0``, or ``x = upper``
   with ``g < 0``);
2. tests convergence with the Newton decrement on the free set,
   :math:`\delta = g_F^\top H_{FF}^{-1} g_F` (twice the decrease the quadratic model
   still promises); converged when :math:`\delta/2 \le` ``tol``;
3. takes a Levenberg–Marquardt step :math:`(H_{FF} + \lambda D)\,d_F = -g_F`
   (``D`` the Hessian's diagonal, floored), clipped to the bounds, and accepts it if
   ``f`` decreases. Accepted steps shrink :math:`\lambda` (back to the pure Newton
   step); rejected ones, including steps into a region where ``f`` is not finite
   (negative Poisson rates, say), grow it.

The loop is a :func:`jax.lax.while_loop` with a step cap, so a batch of problems
runs under :func:`jax.vmap` until all have stopped. Nothing here branches on traced
values in Python.

Status codes (:data:`STATUS_MESSAGES`): 0 converged; 1 converged to round-off (no
step lowers ``f`` and the decrement is below ``sqrt(tol)``); 2 the iteration cap was
reached; 3 stalled (no step lowers ``f`` though the decrement is large); 4 ``f`` or its
gradient is not finite at the starting point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from difflike._pytree import pytree_dataclass, static
from difflike.fit._linalg import symmetric_solve

__all__ = ["STATUS_MESSAGES", "LowRankHessian", "MinimizeResult", "minimize"]

STATUS_MESSAGES = {
    0: "converged",
    1: "converged to round-off: no step lowers the objective further",
    2: "not converged: iteration limit reached",
    3: "not converged: no step lowers the objective, but the gradient is not small",
    4: "not converged: the objective or its gradient is not finite at the starting point",
}
_RUNNING = -1
_LAMBDA_MAX = 1e12


class MinimizeResult(NamedTuple):
    """Outcome of :func:`minimize` for one problem (a batch under ``vmap``).

    Attributes:
        x: the minimiser, ``(n,)``.
        fun: ``f`` there, ``()``.
        grad: the gradient at the last point where derivatives were taken, ``(n,)``:
            ``x`` itself, or the point one final polishing step before it (a step
            that changed ``f`` by round-off only).
        free: coordinates free at the solution (not fixed, not pinned at a bound), ``(n,)``.
        status: see :data:`STATUS_MESSAGES`, ``()`` int.
        nit: iterations (accepted and rejected steps), ``()`` int.
        decrement: the last Newton decrement, ``()``.
    """

    x: Float[Array, " n"]
    fun: Float[Array, ""]
    grad: Float[Array, " n"]
    free: Bool[Array, " n"]
    status: Int[Array, ""]
    nit: Int[Array, ""]
    decrement: Float[Array, ""]


@pytree_dataclass
class LowRankHessian:
    r"""A Hessian of the form :math:`H = \mathrm{diag}(a) + V V^\top`, ``(n, n)``.

    What a likelihood with few bins and many constrained parameters has under the
    Gauss–Newton approximation: :math:`a` the constraint terms' curvature (one
    parameter each), :math:`V = J^\top W^{1/2}` the main bins' Jacobian scaled by
    the Poisson weights (``r`` = number of bins). A step then costs
    :math:`O(n r^2 + r^3)` (Woodbury) instead of the :math:`O(n^3)` of a dense
    factorisation.

    Attributes:
        diag: :math:`a`, ``(n,)``; positive except on ``dense`` coordinates.
        factor: :math:`V`, ``(n, r)``.
        dense: the coordinates whose ``diag`` is zero by construction (parameters
            without a constraint term: normfactors, shapefactors), static; they
            are eliminated as a small dense block (a Schur complement).
    """

    diag: Float[Array, " n"]
    factor: Float[Array, "n r"]
    dense: tuple[int, ...] = static(default=())


class _State(NamedTuple):
    x: Array
    f: Array
    x_prev: Array  # the point before the last move, and f there
    f_prev: Array
    g: Array  # gradient where the last derivatives were taken
    mask: Array  # free set of the last iteration
    dx: Array  # the last move (0 if the step was rejected), on that free set
    keep_s: Array  # whether the last iteration's model h + s was positive definite
    s: Array  # learned correction to h (see the loop body)
    lam: Array
    nit: Array
    status: Array
    decrement: Array


def free_set(x, g, lower, upper, free):
    """Coordinates a step may move: not fixed and not pinned at a bound, ``(n,)``."""
    pinned = ((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0))
    return free & ~pinned


def _curvature(fun, x, d, args):
    """``d^T H d``: the exact second derivative of ``fun`` along ``d`` at ``x``.

    Forward over forward mode: a few evaluations' cost, no gradient or Hessian.
    """

    def slope(t):
        return jax.jvp(lambda u: fun(x + u * d, *args), (t,), (jnp.ones_like(t),))[1]

    zero = jnp.zeros((), x.dtype)
    return jax.jvp(slope, (zero,), (jnp.ones_like(zero),))[1]


def _solve(h, g, mask, lam):
    """``(H_FF + lam D) d_F = -g_F`` with ``d = 0`` off the free set; ``(d, ok)``.

    ``lam`` may carry a leading axis (several dampings of one system: one compiled
    solve, mapped); ``d`` and ``ok`` then carry it too.
    """
    diag = jnp.abs(jnp.diagonal(h))
    floor = 1e-10 * (1.0 + jnp.max(jnp.where(mask, diag, 0.0)))
    both = mask[:, None] & mask[None, :]
    a = jnp.where(both, h, 0.0)
    gm = jnp.where(mask, g, 0.0)

    def one(lam):
        damping = lam * jnp.maximum(diag, floor)
        d = -symmetric_solve(a + jnp.diag(jnp.where(mask, damping, 1.0)), gm)
        ok = jnp.all(jnp.isfinite(d))  # NaN where not positive definite
        return jnp.where(ok, d, 0.0), ok

    return jnp.vectorize(one, signature="()->(n),()")(lam)


def _correction(s: _State, g, h):
    """The quasi-Newton correction added to a dense approximate Hessian ``h``."""
    # An approximate Hessian (Gauss-Newton leaves out the residual term) can
    # be far from the exact one along some directions, and convergence is
    # then linear. The model h + s learns the missing part: after each
    # accepted move dx, the secant condition (h(x_new) + s_new) dx = g_new - g
    # = y fixes s_new (structured quasi-Newton, as in NL2SOL). Far from the
    # minimum (last decrement >= 1) by a symmetric rank-one update; near it by
    # a BFGS update of h + s, which keeps it positive definite when y.dx > 0:
    # the rank-one model turned indefinite every few steps there, wasting one
    # step in four and converging linearly (ATLAS-SUSY-2018-16 random-yield
    # fits took 77 steps at the median; ATLAS-SUSY-2019-08 grid fits up to 86).
    # Where h + s stopped being positive definite, s is dropped.
    kept = jnp.where(s.keep_s, s.s, 0.0)
    miss = jnp.where(s.mask, (g - s.g) - (h + s.s) @ s.dx, 0.0)
    denom = jnp.dot(miss, s.dx)
    size = jnp.linalg.norm(miss) * jnp.linalg.norm(s.dx)
    update = (s.nit > 0) & (jnp.abs(denom) > 1e-8 * size) & (size > 0)
    rank_one = kept + jnp.where(
        update, jnp.outer(miss, miss) / jnp.where(update, denom, 1.0), 0.0
    )
    b_dx = jnp.where(s.mask, (h + kept) @ s.dx, 0.0)
    y = jnp.where(s.mask, g - s.g, 0.0)
    y_dx, dx_b_dx = jnp.dot(y, s.dx), jnp.dot(s.dx, b_dx)
    curved = (
        (s.nit > 0)
        & (y_dx > 1e-10 * jnp.linalg.norm(y) * jnp.linalg.norm(s.dx))
        & (dx_b_dx > 0)
    )
    bfgs = kept + jnp.where(
        curved,
        jnp.outer(y, y) / jnp.where(curved, y_dx, 1.0)
        - jnp.outer(b_dx, b_dx) / jnp.where(curved, dx_b_dx, 1.0),
        0.0,
    )
    return jnp.where(s.decrement < 1.0, bfgs, rank_one)


def _solve_lowrank(h: LowRankHessian, g, mask, lam):
    """:func:`_solve` for a :class:`LowRankHessian`, by block elimination.

    With ``c`` the coordinates of positive ``diag`` and ``u`` the ``dense`` ones,
    :math:`A_{cc} = D + V_c V_c^\top` is inverted by Woodbury through the
    capacitance :math:`K = I + V_c^\top D^{-1} V_c` (``r x r``, positive
    definite); the ``u`` block's Schur complement is :math:`S = D_u + V_u K^{-1}
    V_u^\top` (``k x k``), whose Cholesky factorisation also tells whether
    :math:`H` is positive definite. Damping adds ``lam`` times the (floored)
    diagonal of :math:`H` to :math:`D`, as in :func:`_solve`.
    """
    n = g.shape[0]
    u = np.asarray(h.dense, dtype=int)
    c = np.setdiff1d(np.arange(n), u)
    v = jnp.where(mask[:, None], h.factor, 0.0)
    diag = jnp.abs(h.diag + jnp.sum(v * v, axis=1))
    floor = 1e-10 * (1.0 + jnp.max(jnp.where(mask, diag, 0.0)))
    gm = jnp.where(mask, g, 0.0)
    vc, vu, gc, gu = v[c], v[u], gm[c], gm[u]
    eye = jnp.eye(v.shape[1], dtype=v.dtype)

    def one(lam):
        a = jnp.where(mask, h.diag + lam * jnp.maximum(diag, floor), 1.0)
        ac, au = jnp.maximum(a[c], floor), a[u]
        vd = vc / ac[:, None]  # D^-1 V_c
        k = eye + vc.T @ vd
        # K^-1 [t, V_u^T] with t = V_c^T D^-1 g_c: the only solve with K
        rhs = jnp.concatenate([(vd.T @ gc)[:, None], vu.T], axis=1)
        sol = symmetric_solve(k, rhs)
        if len(u):
            schur = jnp.diag(au) + vu @ sol[:, 1:]
            du = -symmetric_solve(schur, gu - vu @ sol[:, 0])
        else:
            du = jnp.zeros((0,), g.dtype)
        # d_c = -A_cc^-1 r_c with r_c = g_c + V_c V_u^T d_u, where
        # K^-1 V_c^T D^-1 r_c = K^-1 t + (I - K^-1) V_u^T d_u (as V_c^T D^-1 V_c = K - I)
        w = vu.T @ du
        rc = gc + vc @ w
        dc = -(rc / ac - vd @ (sol[:, 0] + w - sol[:, 1:] @ du))
        d = jnp.zeros(n, g.dtype).at[c].set(dc).at[u].set(du)
        d = jnp.where(mask, d, 0.0)
        ok = jnp.all(jnp.isfinite(d))  # NaN where S is not positive definite
        return jnp.where(ok, d, 0.0), ok

    return jnp.vectorize(one, signature="()->(n),()")(lam)


def minimize(
    fun: Callable[..., Array],
    x0: Float[Array, " n"],
    lower: Float[Array, " n"],
    upper: Float[Array, " n"],
    free: Bool[Array, " n"],
    args: tuple[Any, ...] = (),
    *,
    tol: float = 1e-10,
    max_iter: int = 200,
    derivs: Callable[..., tuple[Array, Array]] | None = None,
) -> MinimizeResult:
    """Minimise ``fun(x, *args)`` within bounds; coordinates with ``free=False`` stay.

    Args:
        fun: scalar objective, twice differentiable in ``x``.
        x0: start, ``(n,)``; clipped to the bounds.
        lower, upper: bounds, ``(n,)``.
        free: which coordinates may move, ``(n,)`` bool.
        args: further arguments of ``fun`` (pytrees).
        tol: converged when half the Newton decrement is at most this.
        max_iter: cap on iterations (accepted plus rejected steps).
        derivs: ``derivs(x, *args) -> (gradient, hessian)``; the Hessian may be an
            approximation (Gauss–Newton, say) as long as it is positive
            semi-definite near the minimum; the gradient must be exact. Default:
            both by automatic differentiation. A dense Hessian ``(n, n)`` is
            corrected by quasi-Newton updates (see the loop body); a
            :class:`LowRankHessian` is used as it is (Gauss–Newton steps at
            :math:`O(n r^2)` each, more of them).

    Returns:
        :class:`MinimizeResult`.
    """
    if derivs is None:
        grad = jax.grad(fun)
        hess = jax.jacfwd(grad)

        def derivs(x, *a):
            return grad(x, *a), hess(x, *a)

    x0 = jnp.clip(jnp.asarray(x0, jnp.float64), lower, upper)
    f0 = fun(x0, *args)
    n = x0.shape[0]
    lowrank = isinstance(jax.eval_shape(derivs, x0, *args)[1], LowRankHessian)
    state = _State(
        x=x0,
        f=f0,
        x_prev=x0,
        f_prev=f0,
        g=jnp.zeros_like(x0),
        mask=jnp.zeros(n, bool),
        dx=jnp.zeros_like(x0),
        keep_s=jnp.asarray(False),
        s=jnp.zeros((0, 0) if lowrank else (n, n), x0.dtype),
        lam=jnp.asarray(0.0),
        nit=jnp.asarray(0),
        status=jnp.where(jnp.isfinite(f0), _RUNNING, 4),
        decrement=jnp.asarray(jnp.inf),
    )

    def cond(s: _State):
        return s.status == _RUNNING

    def body(s: _State) -> _State:
        # Derivatives are taken once per iteration, here, at the current point
        # (one compiled copy: under vmap a conditional evaluation would cost the
        # same, as both branches run).
        g, h = derivs(s.x, *args)
        g_ok = jnp.all(jnp.isfinite(g))
        mask = free_set(s.x, g, lower, upper, free)
        lams = jnp.stack([jnp.zeros_like(s.lam), s.lam])
        if lowrank:
            correction = s.s
            steps, oks = _solve_lowrank(h, g, mask, lams)
        else:
            correction = _correction(s, g, h)
            # the Newton step and the damped one, solved together
            steps, oks = _solve(h + correction, g, mask, lams)

        newton, newton_ok = steps[0], oks[0]
        step, step_ok = steps[1], oks[1]
        decrement = jnp.where(newton_ok & g_ok, -jnp.dot(g, newton), jnp.inf)
        converged = newton_ok & g_ok & (0.5 * decrement <= tol)

        # An approximate Hessian can overestimate the curvature along the step
        # (Gauss-Newton leaves out the residual term), which makes every step too
        # short and convergence slow. The exact curvature along the step (a
        # scalar, by forward-over-forward mode) gives the 1-D Newton length; both
        # the step and the lengthened one are tried and the better is kept.
        curvature = _curvature(fun, s.x, step, args)
        slope = jnp.dot(g, step)
        length = jnp.where(curvature > 0, -slope / curvature, 1.0)
        length = jnp.clip(jnp.where(jnp.isfinite(length), length, 1.0), 1e-3, 100.0)
        x_one = jnp.clip(s.x + step, lower, upper)
        x_long = jnp.clip(s.x + length * step, lower, upper)
        f_one, f_long = jax.vmap(lambda x: fun(x, *args))(jnp.stack([x_one, x_long]))
        longer = jnp.isfinite(f_long) & (
            f_long < jnp.where(jnp.isfinite(f_one), f_one, jnp.inf)
        )
        x_try = jnp.where(longer, x_long, x_one)
        f_try = jnp.where(longer, f_long, f_one)
        accept = step_ok & g_ok & jnp.isfinite(f_try) & (f_try < s.f) & ~converged
        # Once converged, the undamped step is still taken when it does not raise
        # -ln L beyond round-off: the value has converged, but in flat directions
        # the parameters gain digits from it (derivatives of fitted parameters and
        # finite differences of them need those).
        polish = (
            converged
            & (s.lam == 0.0)
            & jnp.isfinite(f_one)
            & (f_one <= s.f + 1e-13 * (1.0 + jnp.abs(s.f)))
        )
        x_try = jnp.where(polish, x_one, x_try)
        f_try = jnp.where(polish, f_one, f_try)
        accept = accept | polish
        x = jnp.where(accept, x_try, s.x)
        f = jnp.where(accept, f_try, s.f)

        lam = jnp.where(
            accept,
            jnp.where(s.lam < 1e-6, 0.0, 0.1 * s.lam),
            jnp.maximum(10.0 * s.lam, 1e-4),
        )
        nit = s.nit + 1
        stalled = ~accept & ~converged & (lam > _LAMBDA_MAX)
        status = jnp.select(
            [
                ~g_ok & (s.nit == 0),
                converged,
                stalled & (0.5 * decrement <= jnp.sqrt(tol)),
                stalled,
                nit >= max_iter,
            ],
            [4, 0, 1, 3, 2],
            _RUNNING,
        )
        new = _State(
            x=x,
            f=f,
            x_prev=s.x,
            f_prev=s.f,
            g=g,
            mask=mask,
            dx=jnp.where(mask, x - s.x, 0.0),
            keep_s=newton_ok,
            s=correction,
            lam=lam,
            nit=jnp.where(g_ok | (s.nit > 0), nit, 0),
            status=status,
            decrement=decrement,
        )
        # The last move reached a point where f is finite but its gradient is
        # not: the move is undone and counts as a rejected step.
        undo = s._replace(
            x=s.x_prev,
            f=s.f_prev,
            dx=jnp.zeros_like(s.dx),
            lam=jnp.maximum(10.0 * s.lam, 1e-4),
            nit=nit,
            status=jnp.where(nit >= max_iter, 2, _RUNNING),
        )
        return jax.tree_util.tree_map(
            lambda a, b: jnp.where(g_ok | (s.nit == 0), a, b), new, undo
        )

    s = lax.while_loop(cond, body, state)
    return MinimizeResult(
        x=s.x,
        fun=s.f,
        grad=s.g,
        free=free_set(s.x, s.g, lower, upper, free),
        status=s.status,
        nit=s.nit,
        decrement=s.decrement,
    )
