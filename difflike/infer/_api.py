"""Public inference API: hypothesis tests, upper limits, Asimov data.

Every function takes either a compiled :class:`~difflike.Model` with ``data`` (and
``signal`` for a signal-region model), or any :class:`Likelihood` (a surrogate, say)
in place of the model. Leading batch axes of ``mu``, ``data`` and ``signal``
broadcast; a batch is one compiled, vectorised call.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from difflike._vectorize import default_chunk, vectorize
from difflike.errors import InputError
from difflike.fit._api import MAX_ITER, TOL, _check_batch, require_poi
from difflike.histfactory import Model
from difflike.histfactory._model import model_batch_ndim
from difflike.infer._asymptotic import (
    HypotestDetails,
    HypotestResult,
    LimitDetails,
    LimitResult,
    _check_statistic,
    hypotest_one,
    upper_limit_one,
)
from difflike.infer._likelihood import Likelihood, ModelLikelihood

__all__ = [
    "LIMIT_RTOL",
    "LIMIT_TOL",
    "asimov_data",
    "hypotest",
    "likelihood",
    "upper_limit",
]

#: default convergence tolerance of the fits behind an upper limit of a compiled
#: model (half the Newton decrement, in units of -ln L; hypothesis tests use
#: :data:`difflike.fit.TOL`, 1e-12): on the ATLAS-SUSY-2018-04 grid it moves the
#: limits by 4e-7 relative at most and makes them 1.3x faster
LIMIT_TOL = 1e-9
#: default relative tolerance of the roots, by likelihood: Newton's last step is
#: taken once the one before it was below this, so on a compiled model's smooth
#: curves the limits are far more precise than that (pyhf's toms748 scan stops at
#: 1e-4); a network's curves can have kinks, where a small step says less
LIMIT_RTOL = {"model": 1e-5, "likelihood": 1e-7}


def likelihood(
    model: Model,
    data: Float[ArrayLike, " ndata"],
    signal: Float[ArrayLike, " nsignal"] | None = None,
    *,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    mirror: bool = False,
    starts: Float[ArrayLike, "k npars"] | None = None,
) -> ModelLikelihood:
    """The :class:`Likelihood` of a compiled model and one data set (no batch axes);
    ``tol``, ``max_iter``, ``mirror``, ``starts``: fit settings (see
    :func:`hypotest`)."""
    return ModelLikelihood(
        model=model,
        data=model._data(data, model.config.ndata, "data"),
        signal=model._signal(signal),
        init=model.config.init,
        tol=tol,
        max_iter=max_iter,
        mirror=bool(mirror),
        starts=_starts(model, starts),
    )


def _starts(model: Model, starts) -> Array | None:
    """``starts`` as a ``(k, npars)`` float64 array (``None`` stays ``None``)."""
    if starts is None:
        return None
    starts = jnp.asarray(starts, jnp.float64)
    if starts.ndim != 2 or starts.shape[1] != model.config.npars or not len(starts):
        raise InputError(
            "starts must be an array of parameter points, (k, npars)",
            got=tuple(starts.shape),
            expected=f"(k, {model.config.npars})",
        )
    return starts


def _model_only(starts) -> None:
    """Raise :class:`InputError` where ``starts`` are given with a likelihood that
    is not a compiled model (they are starting points of a model's fits)."""
    if starts is not None:
        raise InputError(
            "starts are starting points of a compiled model's fits; this likelihood "
            "has none (for a surrogate, its labels' starts are already in its values)",
            got=type(starts).__name__,
        )


def _inputs(model: Model, data, signal):
    require_poi(model, "inference")
    if data is None:
        raise InputError("data are required with a compiled model", got=None)
    return model._data(data, model.config.ndata, "data"), model._signal(signal)


def _on_model(
    fn, signature: str, kernel: str = "fit", mirror: bool = False, starts=None
):
    """Vectorise ``fn(lik, *args)`` over a model (its grid axis too), data, signal
    and ``args``; the likelihood is built per example (its last two ``args`` are
    the fits' ``tol`` and ``max_iter``; ``starts`` are every example's)."""

    def one(model, data, signal, *args):
        init = model.config.init
        lik = ModelLikelihood(
            model, data, signal, init, *args[-2:], mirror=mirror, starts=starts
        )
        return fn(lik, *args[:-2])

    chunk = default_chunk(kernel)
    return vectorize(one, signature, batch_ndim=model_batch_ndim, chunk=chunk)


@partial(jax.jit, static_argnames=("test_stat", "mirror"))
def _hypotest_model(
    model, data, signal, mu, *, test_stat, tol, max_iter, mirror, starts=None
):
    def one(lik, mu):
        return tuple(hypotest_one(mu, lik, test_stat))

    sig = "(n),(s),(),(),()->(),(5),(),(),(5),(5),(),(),(),(),(),(),(),(),()"
    run = _on_model(one, sig, mirror=mirror, starts=starts)
    out = run(model, data, signal, mu, tol, max_iter)
    return HypotestDetails(*out)


@partial(jax.jit, static_argnames=("test_stat",))
def _hypotest_likelihood(lik, mu, *, test_stat):
    def one(mu):
        return tuple(hypotest_one(mu, lik, test_stat))

    sig = "()->(),(5),(),(),(5),(5),(),(),(),(),(),(),(),(),()"
    return HypotestDetails(*jnp.vectorize(one, signature=sig)(mu))


def hypotest(
    mu: Float[ArrayLike, "*batch"],
    model: Model | Likelihood,
    data: Float[ArrayLike, "*batch ndata"] | None = None,
    signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    *,
    test_stat: str = "qtilde",
    return_details: bool = False,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    mirror: bool = False,
    starts: Float[ArrayLike, "k npars"] | None = None,
) -> HypotestResult | HypotestDetails:
    """Asymptotic CLs of the hypotheses ``mu``, as ``pyhf.infer.hypotest`` computes it.

    Args:
        mu: tested POI values, ``(*batch,)``.
        model: a compiled model (with ``data``), or a :class:`Likelihood`.
        data: main bins then auxiliary data, ``(*batch, ndata)``.
        signal: signal yields of a signal-region model, ``(*batch, nsignal)``.
        test_stat: ``"qtilde"`` (default), ``"q"`` or ``"q0"`` (then the values are
            the discovery p-value :math:`p_0` and its expected band, as in pyhf).
        return_details: also return CLs+b, CLb, the test statistics, the fitted
            :math:`\\hat\\mu` and a convergence flag (:class:`HypotestDetails`).
        tol, max_iter, mirror: fit settings of a model's fits (see
            :func:`difflike.fit`): ``mirror=True`` also fits from each minimum
            mirrored, for likelihoods with minima that differ in the signs of
            several pulls (:mod:`difflike.fit._restarts`), at about twice the cost.
        starts: other starting points of a model's every fit, ``(k, npars)``, the
            deepest converged minimum kept (k + 1 times the cost): for a profile
            with minima that Newton does not reach from the initial parameters,
            such as the other minima :func:`difflike.sample.background_targets`
            finds (``Target.starts``). The Asimov data stay pyhf's (built from
            the fit from the initial parameters), as the labeller's expectation
            data do; the profiles on them use every start.

    Returns:
        ``(cls, cls_exp)``: observed CLs ``(*batch,)`` and expected CLs at
        ``n = 2, 1, 0, -1, -2`` ``(*batch, 5)`` (pyhf's order, smallest first).
    """
    _check_statistic(test_stat)
    mu = jnp.asarray(mu, dtype=jnp.float64)
    if isinstance(model, Model):
        data, signal = _inputs(model, data, signal)
        _check_batch(data, signal, mu, model.config.init, model=model)
        out = _hypotest_model(
            model,
            data,
            signal,
            mu,
            test_stat=test_stat,
            tol=tol,
            max_iter=max_iter,
            mirror=bool(mirror),
            starts=_starts(model, starts),
        )
    else:
        _model_only(starts)
        out = _hypotest_likelihood(model, mu, test_stat=test_stat)
    return out if return_details else HypotestResult(out.cls, out.cls_exp)


@partial(jax.jit, static_argnames=("alpha", "test_stat", "rtol", "mirror"))
def _limit_model(
    model, data, signal, *, alpha, test_stat, tol, max_iter, rtol, mirror, starts=None
):
    def one(lik):
        return tuple(upper_limit_one(lik, alpha, test_stat, rtol))

    sig = "(n),(s),(),()->(),(5),(6),(),(),()"
    run = _on_model(one, sig, "limit", mirror=mirror, starts=starts)
    out = run(model, data, signal, tol, max_iter)
    return LimitDetails(*out)


def upper_limit(
    model: Model | Likelihood,
    data: Float[ArrayLike, "*batch ndata"] | None = None,
    signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    *,
    cl: float = 0.95,
    test_stat: str = "qtilde",
    return_details: bool = False,
    rtol: float | None = None,
    tol: float = LIMIT_TOL,
    max_iter: int = MAX_ITER,
    mirror: bool = False,
    starts: Float[ArrayLike, "k npars"] | None = None,
) -> LimitResult | LimitDetails:
    """Observed and expected upper limits on ``mu`` at confidence level ``cl`` (CLs).

    The roots of :math:`\\mathrm{CL}_s(\\mu) = 1 - \\mathrm{cl}` for the observed and
    the five expected curves, found together by safeguarded Newton steps (see
    :mod:`difflike.infer._asymptotic`). Where a curve is still above
    :math:`1 - \\mathrm{cl}` at the POI's upper bound, the search doubles the bound
    (``details.widened``); where no root is found, ``details.converged`` says so.
    Limits are differentiable (``jax.grad``) with respect to ``signal``, ``data`` and
    the model's arrays. ``rtol`` is the roots' relative tolerance (default
    :data:`LIMIT_RTOL`: 1e-5 for a compiled model, 1e-7 for another likelihood).
    ``tol``, ``max_iter``, ``mirror`` and ``starts`` are a model's fit settings, as
    for :func:`hypotest`, except that ``tol`` defaults to :data:`LIMIT_TOL` (1e-9).

    Returns:
        ``(mu_up, mu_up_exp)``: ``(*batch,)`` and ``(*batch, 5)`` (ascending: the
        expected limits at ``n = 2, 1, 0, -1, -2``, pyhf's order), or
        :class:`LimitDetails` with ``return_details=True``.
    """
    _check_statistic(test_stat)
    if not 0.0 < cl < 1.0:
        raise InputError("cl must lie strictly between 0 and 1", got=cl)
    alpha = 1.0 - cl
    if rtol is None:
        rtol = LIMIT_RTOL["model" if isinstance(model, Model) else "likelihood"]
    if isinstance(model, Model):
        data, signal = _inputs(model, data, signal)
        _check_batch(data, signal, jnp.zeros(()), model.config.init, model=model)
        out = _limit_model(
            model,
            data,
            signal,
            alpha=float(alpha),
            test_stat=test_stat,
            tol=tol,
            max_iter=max_iter,
            rtol=float(rtol),
            mirror=bool(mirror),
            starts=_starts(model, starts),
        )
    else:
        _model_only(starts)
        out = LimitDetails(*upper_limit_one(model, alpha, test_stat, rtol))
    return out if return_details else LimitResult(out.mu_up, out.mu_up_exp)


@partial(jax.jit, static_argnames=("mirror",))
def _asimov_kernel(model, data, signal, mu, tol, max_iter, mirror=False):
    def one(lik, mu):
        return lik.asimov(mu).data

    return _on_model(one, "(n),(s),(),(),()->(n)", mirror=mirror)(
        model, data, signal, mu, tol, max_iter
    )


def asimov_data(
    model: Model,
    data: Float[ArrayLike, "*batch ndata"],
    mu: Float[ArrayLike, "*batch"] = 0.0,
    signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    *,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    mirror: bool = False,
) -> Float[Array, "*batch ndata"]:
    """Asimov data as pyhf builds them: the expected main and auxiliary data at the
    conditional fit to ``data`` at ``mu``, ``(*batch, ndata)``; ``tol``,
    ``max_iter``, ``mirror``: that fit's settings (see :func:`hypotest`)."""
    data, signal = _inputs(model, data, signal)
    mu = jnp.asarray(mu, dtype=jnp.float64)
    _check_batch(data, signal, mu, model.config.init, model=model)
    return _asimov_kernel(model, data, signal, mu, tol, max_iter, bool(mirror))
