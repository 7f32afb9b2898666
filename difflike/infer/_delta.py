r"""Signal-yield likelihoods: :math:`\Delta(s)` for each expectation.

For a signal-region model (or a patched one) and a data set,

.. math::

    \Delta(s) = \ln L(\mu s;\ \hat{\hat\theta}(\mu s)) - \ln L(0;\ \hat{\hat\theta}(0)),

both terms profiled over the nuisance parameters, with :math:`\mu = 1` by default,
so :math:`-2\Delta` is the profile-likelihood ratio of the signal hypothesis against
the background-only one. Positive where the data prefer some signal.

The data set is chosen by ``expectation`` (spey's words):

``"observed"``
    the data as given;
``"aposteriori"``
    the background-only post-fit expectation: expected main and auxiliary data at the
    fit to the observed data with :math:`\mu = 0`;
``"apriori"``
    the pre-fit background: expected main data at the suggested initial values with
    :math:`\mu = 0`, and the nominal auxiliary data;
``"<expectation>_asimov"``
    the Asimov data set that the asymptotic formulas of the :math:`\tilde q_\mu` test
    build from that expectation's data (pyhf's: the expected data at the fit with
    :math:`\mu = 0`).

pyhf's Asimov data at :math:`\mu = 0` *are* the background-only post-fit
expectation, so ``"observed_asimov"`` and ``"aposteriori"`` name the same data, and
the Asimov data of an expectation that is already an expectation of the model
(``"aposteriori"``, ``"apriori"``) are that data again, up to the fit's tolerance.
All six are offered so that code can ask for the data a formula needs by its name.

Fits start from the model's initial values, as pyhf's do; where the likelihood of a
hypothesis is not finite there (a negative yield larger than a bin's nominal
background makes its rate negative), that fit starts from the background-only fit
instead. A fit that still fails leaves :math:`\Delta` not finite;
``return_details=True`` says which (``converged``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from difflike._pytree import pytree_dataclass, replace
from difflike._vectorize import vectorize
from difflike.errors import InputError
from difflike.fit._api import MAX_ITER, TOL, _check_batch, _fit_kernel
from difflike.histfactory import Model
from difflike.histfactory._model import model_batch_ndim
from difflike.infer._api import _inputs, _starts

__all__ = ["EXPECTATIONS", "DeltaResult", "delta", "expectation_data"]

#: the expectations :func:`delta` and :func:`expectation_data` accept
EXPECTATIONS = (
    "observed",
    "aposteriori",
    "apriori",
    "observed_asimov",
    "aposteriori_asimov",
    "apriori_asimov",
)


@pytree_dataclass
class DeltaResult:
    """:func:`delta` with its fits, broadcast batch shape ``(*batch,)``.

    Attributes:
        delta: :math:`\\ln L(s) - \\ln L(0)`, both profiled.
        nll: profiled ``-ln L`` with the signal (at ``mu``).
        nll_background: profiled ``-ln L`` of the background-only hypothesis.
        converged: both fits (and the fit building the expectation's data, where
            there is one) converged.
    """

    delta: Float[Array, "*batch"]
    nll: Float[Array, "*batch"]
    nll_background: Float[Array, "*batch"]
    converged: Bool[Array, "*batch"]


def _check_expectation(expectation: str) -> None:
    if expectation not in EXPECTATIONS:
        raise InputError(
            "unknown expectation",
            got=expectation,
            expected=", ".join(repr(e) for e in EXPECTATIONS),
        )


def _background_pars(model: Model) -> Array:
    init = model.config.init
    return init.at[..., model.config.poi_index].set(0.0)


@jax.jit
def _asimov0(model, data, tol, max_iter):
    """``(expected data, converged)`` at the fit to ``data`` with :math:`\\mu = 0`."""
    zero = jnp.zeros(model.config.nsignal)
    fits = _fit_kernel(
        model,
        data,
        zero,
        jnp.zeros(()),
        model.config.init,
        fix_poi=True,
        tol=tol,
        max_iter=max_iter,
    )
    return model.expected_data(fits.pars, signal=zero), fits.converged


def _expectation_data_kernel(model, data, expectation, tol, max_iter):
    """``(data, converged)`` of ``expectation``; see the module doc. Traceable.

    Built from one compiled Asimov kernel whatever the expectation, so asking for
    several expectations compiles it once.
    """
    base = expectation.removesuffix("_asimov")
    ok = jnp.ones(data.shape[:-1], bool)
    if base == "aposteriori":
        data, ok = _asimov0(model, data, tol, max_iter)
    elif base == "apriori":
        zero = jnp.zeros(model.config.nsignal)
        main = model.expected_actualdata(_background_pars(model), signal=zero)
        aux = jnp.broadcast_to(
            model.config.auxdata, main.shape[:-1] + model.config.auxdata.shape[-1:]
        )
        data = jnp.concatenate([main, aux], axis=-1)
        ok = jnp.ones(data.shape[:-1], bool)
    if expectation.endswith("_asimov"):
        data, ok2 = _asimov0(model, data, tol, max_iter)
        ok = ok & ok2
    return data, ok


def expectation_data(
    model: Model,
    data: Float[ArrayLike, "*batch ndata"],
    expectation: str = "observed",
    *,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> Float[Array, "*batch ndata"]:
    """The data set of ``expectation`` (module doc), main bins then auxiliary data.

    The background-only fits behind ``"aposteriori"`` and the Asimov expectations
    do not depend on signal yields; a grid model's point axis broadcasts as usual.
    """
    _check_expectation(expectation)
    data, _ = _inputs(model, data, None)
    if expectation == "observed":
        return data
    return _expectation_data_kernel(model, data, expectation, tol, max_iter)[0]


def _start(model: Model, data, signal, mu, background):
    """Where the fit of a hypothesis starts: the model's initial values, or the
    background-only fit where the likelihood is not finite there (yields below the
    nominal background of a bin make its rate negative at the initial values)."""
    init = model.config.init
    poi = model.config.poi_index
    pars = init if poi is None else init.at[poi].set(mu)
    finite = jnp.isfinite(model._logpdf(pars, data, signal))
    return jnp.where(finite, init, background)


@jax.jit
def _delta_fits(model, data, signal, mu, tol, max_iter, starts=None):
    fit = partial(_fit_kernel, fix_poi=True, tol=tol, max_iter=max_iter, starts=starts)
    # the background-only fit depends on the data only: once per data set
    zero = jnp.zeros(model.config.nsignal)
    background = fit(model, data, zero, jnp.zeros(()), model.config.init)
    start = vectorize(_start, "(n),(s),(),(p)->(p)", batch_ndim=model_batch_ndim)(
        model, data, signal, mu, background.pars
    )
    hypothesis = fit(model, data, signal, mu, start)
    delta = background.nll - hypothesis.nll
    return DeltaResult(
        delta=delta,
        nll=hypothesis.nll,
        nll_background=jnp.broadcast_to(background.nll, delta.shape),
        converged=hypothesis.converged & background.converged,
    )


def _delta_kernel(model, data, signal, mu, *, expectation, tol, max_iter, starts=None):
    data, ok = _expectation_data_kernel(model, data, expectation, tol, max_iter)
    out = _delta_fits(model, data, signal, mu, tol, max_iter, starts)
    return replace(out, converged=out.converged & ok)


def delta(
    model: Model,
    data: Float[ArrayLike, "*batch ndata"],
    signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    *,
    expectation: str = "observed",
    mu: Float[ArrayLike, "*batch"] = 1.0,
    return_details: bool = False,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    starts: Float[ArrayLike, "k npars"] | None = None,
) -> Float[Array, "*batch"] | DeltaResult:
    r""":math:`\Delta(s) = \ln L(\mu s) - \ln L(0)`, both profiled (module doc).

    Args:
        model: a signal-region model (``signal`` gives the yields ``s``), or a
            patched model (its signal sample is ``s``).
        data: observed main bins then auxiliary data, ``(*batch, ndata)``; the
            expectation's data are built from them.
        signal: signal yields per signal-region bin, ``(*batch, nsignal)``
            (order: ``model.config.signal_regions``).
        expectation: one of :data:`EXPECTATIONS`.
        mu: signal strength applied to ``s``, ``(*batch,)``; 1 by default.
        return_details: return a :class:`DeltaResult` (with both NLLs and a
            convergence flag) instead of the values alone.
        tol, max_iter: fit settings (see :func:`difflike.fit`).
        starts: other starting points of both fits, ``(k, npars)``, the deepest
            converged minimum kept (k + 1 times the cost), for a profile with
            minima that Newton does not reach from the initial values: a dataset's
            :meth:`~difflike.sample.YieldDataset.starts` give the labels' Δ. The
            expectation's data stay pyhf's (as for :func:`difflike.hypotest`).

    Returns:
        :math:`\Delta`, ``(*batch,)``, differentiable with respect to ``signal``,
        ``mu`` and ``data`` (envelope theorem), or a :class:`DeltaResult`.

    The background-only fit and the expectation's data depend only on ``data``, so
    a batch of many yield vectors against one data set fits the background once.
    """
    _check_expectation(expectation)
    data, signal = _inputs(model, data, signal)
    mu = jnp.asarray(mu, dtype=jnp.float64)
    _check_batch(data, signal, mu, model.config.init, model=model)
    out = _delta_kernel(
        model,
        data,
        signal,
        mu,
        expectation=expectation,
        tol=tol,
        max_iter=max_iter,
        starts=_starts(model, starts),
    )
    return out if return_details else out.delta
