"""Global and fixed-POI maximum-likelihood fits of a compiled model.

:func:`fit` and :func:`profile` minimise ``-model.logpdf`` with the bounded Newton
minimiser (:mod:`difflike.fit._minimize`), starting from the model's suggested
initial values (or ``init``, for warm starts), within ``model.config.bounds``, with
``model.config.fixed`` parameters held at their initial values. They accept leading
batch axes on ``data``, ``signal``, ``mu`` and ``init`` and broadcast them; the
whole batch is one compiled, vectorised call.

Derivatives: ``result.nll`` is differentiable with respect to ``mu``, ``signal``,
``data`` and the model's arrays by the envelope theorem, and ``result.pars`` by the
implicit function theorem (:mod:`difflike.fit._implicit`); neither differentiates
the iterations.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from difflike._pytree import pytree_dataclass
from difflike._vectorize import default_chunk, vectorize
from difflike.errors import InputError, InvalidModelError, ShapeError
from difflike.fit._implicit import optimal_point, optimal_value
from difflike.fit._minimize import STATUS_MESSAGES, LowRankHessian, minimize
from difflike.fit._restarts import deeper, mirrored, probe_starts
from difflike.histfactory import Model
from difflike.histfactory._model import model_batch_ndim

__all__ = ["FitResult", "fit", "nll", "profile", "require_poi"]

#: default convergence tolerance: half the Newton decrement, in units of -ln L
TOL = 1e-12
#: default cap on iterations (accepted plus rejected steps)
MAX_ITER = 500


@pytree_dataclass
class FitResult:
    """The outcome of :func:`fit` or :func:`profile`, with the inputs' batch shape.

    Attributes:
        nll: minimised ``-ln L`` with pyhf's constants (``-model.logpdf``), ``(*batch,)``.
        pars: fitted parameters (all of them, fixed ones included), ``(*batch, npars)``.
        converged: whether the fit converged, ``(*batch,)`` bool.
        status: why it stopped (see :attr:`message`), ``(*batch,)`` int.
        nit: iterations taken, ``(*batch,)`` int.
    """

    nll: Float[Array, "*batch"]
    pars: Float[Array, "*batch npars"]
    converged: Bool[Array, "*batch"]
    status: Int[Array, "*batch"]
    nit: Int[Array, "*batch"]

    @property
    def message(self) -> np.ndarray:
        """A readable reason for each fit's status, ``(*batch,)`` str."""
        status = np.asarray(self.status)
        out = np.empty(status.shape, dtype=object)
        for code, text in STATUS_MESSAGES.items():
            out[status == code] = text
        return out

    def __repr__(self) -> str:
        shape = tuple(np.shape(self.nll))
        if shape:
            n = int(np.size(self.nll))
            ok = int(np.sum(np.asarray(self.converged)))
            return f"FitResult(batch={shape}, converged={ok}/{n})"
        return (
            f"FitResult(nll={float(self.nll):.10g}, converged={bool(self.converged)}, "
            f"status={int(self.status)} ({self.message.item()}), nit={int(self.nit)})"
        )


def nll(x, free, fixed_values, model: Model, data, signal):
    """``-ln L`` of one example, with fixed coordinates taken from ``fixed_values``.

    Injecting the fixed values (rather than reading them from ``x``) is what lets
    derivatives with respect to a fixed POI ``mu`` flow through the envelope theorem.
    """
    pars = jnp.where(free, x, fixed_values)
    return -model._logpdf(pars, data, signal)


def _gauss_newton(x, free, fixed_values, model: Model, data, signal):
    """``(g, jac, weight, h_con)``: the pieces of :func:`nll_derivs` (see there)."""
    nmain = model.config.nmaindata
    n, aux = data[:nmain], data[nmain:]
    pars = jnp.where(free, x, fixed_values)
    lam, jac = model._main_and_jacobian(pars, signal)
    positive = n > 0
    safe = jnp.where(positive, lam, 1.0)
    g_main = jac.T @ (1.0 - jnp.where(positive, n / safe, 0.0))
    weight = jnp.where(positive, n / (safe * safe), 0.0)

    def constraint(p):
        return -model._constraint_logpdf(p, aux)

    g_con, h_con = jax.jvp(jax.grad(constraint), (pars,), (jnp.ones_like(pars),))
    return jnp.where(free, g_main + g_con, 0.0), jac, weight, h_con


def nll_derivs(x, free, fixed_values, model: Model, data, signal):
    r"""Exact gradient and Gauss–Newton Hessian of :func:`nll`, ``((n,), (n, n))``.

    The main-bin term :math:`\sum_b \lambda_b - n_b \ln\lambda_b` contributes
    :math:`J^\top (1 - n/\lambda)` to the gradient and :math:`J^\top
    \mathrm{diag}(n/\lambda^2) J` to the Hessian, with :math:`J` the Jacobian of the
    expected main data (built from the model's structure,
    :meth:`~difflike.histfactory.Model._main_and_jacobian`); the
    constraint terms depend on one parameter each, so their Hessian is diagonal and
    exact. Only the curvature of the rates themselves, weighted by the residuals
    :math:`1 - n/\lambda`, is left out. Rows and columns of fixed coordinates are 0.
    """
    g, jac, weight, h_con = _gauss_newton(x, free, fixed_values, model, data, signal)
    h = (jac.T * weight) @ jac + jnp.diag(h_con)
    both = free[:, None] & free[None, :]
    return g, jnp.where(both, h, 0.0)


def nll_derivs_lowrank(x, free, fixed_values, model: Model, data, signal):
    r""":func:`nll_derivs` with the Hessian as a :class:`LowRankHessian`.

    The same Gauss–Newton Hessian, kept in its factored form: the constraints'
    diagonal plus :math:`V V^\top` with :math:`V = J^\top
    \mathrm{diag}(n/\lambda^2)^{1/2}`, ``(npars, nmain)``; the parameters without a
    constraint term are its dense block.
    """
    g, jac, weight, h_con = _gauss_newton(x, free, fixed_values, model, data, signal)
    factor = jac.T * jnp.sqrt(weight)
    hessian = LowRankHessian(
        diag=jnp.where(free, h_con, 0.0),
        factor=jnp.where(free[:, None], factor, 0.0),
        dense=unconstrained(model.config),
    )
    return g, hessian


def unconstrained(config) -> tuple[int, ...]:
    """Indices of the parameters without a constraint term (static)."""
    return tuple(
        i
        for (start, stop), constraint in zip(config.par_slices, config.par_constraints)
        if constraint is None
        for i in range(start, stop)
    )


#: how a fit solves for its steps: ``"dense"``, a dense Gauss–Newton Hessian
#: corrected by quasi-Newton updates (fewer iterations, :math:`O(P^3)` each);
#: ``"lowrank"``, the Gauss–Newton Hessian in factored form (more iterations,
#: :math:`O(P B^2)` each, with B main bins): faster when B is much smaller than P
SOLVERS = ("dense", "lowrank")


def _fit_one(
    model: Model,
    data,
    signal,
    mu,
    init,
    *,
    fix_poi,
    tol,
    max_iter,
    solver="dense",
    restarts=0,
    probes_only=False,
    mirror=False,
    starts=None,
):
    """Fit one example; returns ``(pars, nll, status, nit)``.

    ``fix_poi`` (a bool, possibly traced) fixes the POI at ``mu``; otherwise the POI
    is free like every other non-fixed parameter and ``mu`` is not used. With
    ``restarts`` (static) the fit is also made from that many probe starts
    (:func:`~difflike.fit._restarts.probe_starts`) and the deepest converged
    minimum kept; ``nit`` is then the sum over all starts. ``probes_only``
    (static) skips the fit from ``init`` itself, for callers that have made it.
    With ``mirror`` (static) the fit is made once more from the minimum found,
    mirrored (:func:`~difflike.fit._restarts.mirrored`), and the deeper converged
    minimum kept (``nit`` summed). ``starts`` (``(k, npars)`` or ``None``): other
    starting points, each fitted too (fixed parameters and a fixed POI keep
    ``init``'s and ``mu``), the deepest converged minimum kept, before the mirror.
    """
    config = model.config
    free = ~config.fixed
    fixed_values = init
    if config.poi_index is not None:  # fix_poi may be traced: one fit for both kinds
        poi = (jnp.arange(config.npars) == config.poi_index) & fix_poi
        free = free & ~poi
        fixed_values = jnp.where(poi, mu, init)
    lower, upper = config.bounds[:, 0], config.bounds[:, 1]
    args = (free, fixed_values, model, data, signal)
    x0 = lax.stop_gradient(jnp.where(free, init, fixed_values))
    frozen = lax.stop_gradient(args)  # the search is not differentiated
    run = partial(
        minimize,
        nll,
        lower=lower,
        upper=upper,
        free=free,
        args=frozen,
        tol=tol,
        max_iter=max_iter,
        derivs=nll_derivs_lowrank if solver == "lowrank" else nll_derivs,
    )
    if restarts:
        probes = probe_starts(nll, x0, lower, upper, free, frozen, restarts)
        if not probes_only:
            probes = jnp.concatenate([x0[None], probes])
        every = jax.vmap(run)(probes)
        ok = every.status <= 1
        # the deepest converged minimum; the first start's outcome if none converged
        best = jnp.where(ok.any(), jnp.argmin(jnp.where(ok, every.fun, jnp.inf)), 0)
        nit = jnp.sum(every.nit)
        res = jax.tree.map(lambda a: a[best], every)._replace(nit=nit)
    else:
        res = run(x0)
    if starts is not None:
        every = jax.vmap(run)(lax.stop_gradient(jnp.where(free, starts, fixed_values)))
        ok = every.status <= 1
        best = jnp.argmin(jnp.where(ok, every.fun, jnp.inf))
        other = jax.tree.map(lambda a: a[best], every)
        keep = deeper(other.status, other.fun, res.status, res.fun)
        nit = res.nit + jnp.sum(every.nit)
        res = jax.tree.map(partial(jnp.where, keep), other, res)._replace(nit=nit)
    if mirror:
        other = run(mirrored(frozen[2], frozen[3], res.x, lower, upper, free))
        keep = deeper(other.status, other.fun, res.status, res.fun)
        nit = res.nit + other.nit
        res = jax.tree.map(partial(jnp.where, keep), other, res)._replace(nit=nit)
    x = optimal_point(nll, res.x, res.free, args)
    value = optimal_value(nll, res.x, args)
    pars = jnp.where(free, x, fixed_values)
    return pars, value, res.status, res.nit


@partial(jax.jit, static_argnames=("fix_poi", "solver", "restarts", "mirror"))
def _fit_kernel(
    model,
    data,
    signal,
    mu,
    init,
    *,
    fix_poi,
    tol,
    max_iter,
    solver="dense",
    restarts=0,
    mirror=False,
    starts=None,
):
    one = partial(
        _fit_one,
        fix_poi=fix_poi,
        tol=tol,
        max_iter=max_iter,
        solver=solver,
        restarts=restarts,
        mirror=mirror,
        starts=starts,
    )
    nstarts = 1 + restarts + (0 if starts is None else len(starts))
    pars, value, status, nit = vectorize(
        one,
        "(n),(s),(),(p)->(p),(),(),()",
        batch_ndim=model_batch_ndim,
        chunk=default_chunk("fit", npars=model.config.npars, starts=nstarts),
    )(model, data, signal, mu, init)
    return FitResult(
        nll=value, pars=pars, converged=status <= 1, status=status, nit=nit
    )


def require_poi(model: Model, what: str) -> None:
    """Raise :class:`InvalidModelError` when ``model`` has no parameter of interest."""
    if model.config.poi_index is None:
        raise InvalidModelError(
            f"{what} needs a parameter of interest, and this model has none "
            "(set the measurement's 'poi', or pass poi_name= to difflike.load)",
            file=model.config.source,
        )


def check_solver(solver: str) -> None:
    """Raise :class:`InputError` unless ``solver`` is one of :data:`SOLVERS`."""
    if solver not in SOLVERS:
        raise InputError(
            "unknown solver", got=solver, expected=" or ".join(map(repr, SOLVERS))
        )


def _run(
    model: Model, data, signal, mu, init, tol, max_iter, solver, restarts, mirror
) -> FitResult:
    """Check the inputs and run the fit kernel; ``mu=None`` is a global fit."""
    check_solver(solver)
    if not (isinstance(restarts, int | np.integer) and restarts >= 0):
        raise InputError("restarts must be a non-negative integer", got=restarts)
    if restarts > model.config.npars:
        raise InputError(
            "restarts exceeds the number of parameters",
            got=restarts,
            expected=f"at most {model.config.npars}",
        )
    data = model._data(data, model.config.ndata, "data")
    signal = model._signal(signal)
    init = model.config.init if init is None else model._pars(init)
    fix_poi = mu is not None
    mu = jnp.asarray(0.0 if mu is None else mu, dtype=jnp.float64)
    _check_batch(data, signal, mu, init, model=model)
    return _fit_kernel(
        model,
        data,
        signal,
        mu,
        init,
        fix_poi=fix_poi,
        tol=tol,
        max_iter=max_iter,
        solver=solver,
        restarts=int(restarts),
        mirror=bool(mirror),
    )


def fit(
    model: Model,
    data: Float[ArrayLike, "*batch ndata"],
    signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    *,
    init: Float[ArrayLike, "*batch npars"] | None = None,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    solver: str = "dense",
    restarts: int = 0,
    mirror: bool = False,
) -> FitResult:
    """Global maximum-likelihood fit: every non-fixed parameter free within its bounds.

    Args:
        model: a compiled model.
        data: main bins then auxiliary data, ``(*batch, ndata)``.
        signal: signal yields of a signal-region model, ``(*batch, nsignal)``.
        init: starting point (warm start), ``(*batch, npars)``; fixed parameters
            keep the values given here. Default: the suggested initial values.
        tol: converged when half the Newton decrement (the decrease in ``-ln L`` still
            available to the local quadratic model) is at most ``tol``.
        max_iter: iteration cap.
        solver: ``"dense"`` (default) or ``"lowrank"``, see :data:`SOLVERS`. The
            two reach the same minimum to within ``tol`` where the likelihood has
            one; on a likelihood with several they may take different paths.
        restarts: also fit from this many probe starts (``init`` with one
            parameter moved where that lowers ``-ln L`` most,
            :mod:`difflike.fit._restarts`) and keep the deepest converged
            minimum: for likelihoods with several minima, at about ``1 +
            restarts`` times the cost. ``nit`` then counts every start's
            iterations.
        mirror: also fit from the minimum found with every Gaussian-constrained
            parameter reflected through its constraint's centre, and keep the
            deeper converged minimum (:func:`~difflike.fit._restarts.mirrored`):
            for minima that differ in the signs of several pulls at once (jet
            energy scales on ATLAS-SUSY-2019-08), at about twice the cost.

    Returns:
        :class:`FitResult` with the broadcast batch shape of the inputs.
    """
    return _run(
        model, data, signal, None, init, tol, max_iter, solver, restarts, mirror
    )


def profile(
    model: Model,
    data: Float[ArrayLike, "*batch ndata"],
    mu: Float[ArrayLike, "*batch"],
    signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    *,
    init: Float[ArrayLike, "*batch npars"] | None = None,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    solver: str = "dense",
    restarts: int = 0,
    mirror: bool = False,
) -> FitResult:
    """Conditional fit at fixed signal strength ``mu``: the nuisance parameters profiled.

    ``result.nll`` is :math:`-\\ln L(\\mu, \\hat{\\hat\\theta}(\\mu))`; its gradient with
    respect to ``mu``, ``signal`` or ``data`` is exact at the optimum (envelope
    theorem).

    Args:
        model: a compiled model with a parameter of interest.
        data: main bins then auxiliary data, ``(*batch, ndata)``.
        mu: the POI value(s), ``(*batch,)``; may lie outside the POI's bounds.
        signal: signal yields of a signal-region model, ``(*batch, nsignal)``.
        init: starting point (warm start), ``(*batch, npars)``.
        tol, max_iter, solver, restarts, mirror: see :func:`fit`.

    Returns:
        :class:`FitResult` with the broadcast batch shape of the inputs.

    Raises:
        InvalidModelError: the model has no parameter of interest.
    """
    require_poi(model, "profile()")
    return _run(model, data, signal, mu, init, tol, max_iter, solver, restarts, mirror)


def _check_batch(
    data: Array, signal: Array, mu: Array, init: Array, *, model: Model
) -> None:
    """Raise :class:`ShapeError` when the inputs' batch axes (and a grid model's point
    axis) do not broadcast."""
    shapes = {
        "data": data.shape[:-1],
        "signal": signal.shape[:-1],
        "mu": mu.shape,
        "init": init.shape[:-1],
    }
    if model.config.batch_shape:
        shapes["model points"] = model.config.batch_shape
    try:
        np.broadcast_shapes(*shapes.values())
    except ValueError:
        raise ShapeError(
            "the batch axes of the inputs do not broadcast",
            got=", ".join(f"{k} {v}" for k, v in shapes.items()),
            expected="leading axes that broadcast together (numpy rules)",
        ) from None
