r"""Pseudo-experiments: toy data sampled from the model, toy-based CLs.

As pyhf's ``ToyCalculator`` does it: the signal-plus-background toys are sampled at
the conditional fit to the observed data at the tested :math:`\mu`, the
background-only toys at the fit with :math:`\mu = 0` (at :math:`\mu = 1` for
:math:`q_0`); each toy carries main data (Poisson) and auxiliary data (a Gaussian
around the fitted nuisance parameter, or a Poisson for ``shapesys``), and each toy's
test statistic needs its own global fit and fit at :math:`\mu`. All toys of both
hypotheses are one vectorised call.

p-values are the fractions of toys whose statistic is at least the observed one,
:math:`\mathrm{CL}_{s+b} = P(q \ge q_\mathrm{obs} \mid s+b)`,
:math:`\mathrm{CL}_b = P(q \ge q_\mathrm{obs} \mid b)` (for :math:`q_0`, tested at
:math:`\mu = 0`, :math:`p_0 = P(q_0 \ge q_\mathrm{obs} \mid \mu = 0)`), and the expected band is CLs at the
quantiles of the background-only toys' statistics, as in pyhf.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm
from jaxtyping import Array, ArrayLike, Float

from difflike._vectorize import default_chunk
from difflike.errors import InputError, ShapeError
from difflike.fit._api import MAX_ITER, TOL
from difflike.histfactory import Model
from difflike.infer._api import _inputs
from difflike.infer._asymptotic import NSIGMA, _check_statistic
from difflike.infer._likelihood import ModelLikelihood, free_and_fixed
from difflike.infer._teststat import from_fits

__all__ = ["ACCELERATOR_CHUNK", "ToyResult", "hypotest_toys", "sample_data"]

#: toys fitted together by default on a GPU (on the CPU: ``default_chunk()``)
ACCELERATOR_CHUNK = 4096


class ToyResult(NamedTuple):
    """Toy-based hypothesis test of one ``mu`` (see :func:`hypotest_toys`).

    Attributes:
        cls: observed CLs (``p0`` for ``q0``), ``()``.
        cls_exp: expected CLs at ``n = 2, 1, 0, -1, -2`` (pyhf's order), ``(5,)``.
        cls_error: binomial standard error of ``cls``, ``()``.
        clsb, clb: the two p-values, ``()``.
        q_obs: observed test statistic, ``()``.
        q_sb, q_b: the toys' statistics under signal plus background and under
            background only, ``(ntoys,)`` each.
        converged: the fits of the observed data and of every toy converged, ``()``.
        failed_toys: toys with a fit that did not converge (kept, as pyhf keeps
            them, and counted here), ``()``.
    """

    cls: Array
    cls_exp: Array
    cls_error: Array
    clsb: Array
    clb: Array
    q_obs: Array
    q_sb: Array
    q_b: Array
    converged: Array
    failed_toys: Array


def sample_data(
    model: Model,
    pars: Float[ArrayLike, " npars"],
    key: Array,
    shape: tuple[int, ...] = (),
    signal: Float[ArrayLike, " nsignal"] | None = None,
) -> Float[Array, "*shape ndata"]:
    """Pseudo-data drawn from the model at ``pars``: main bins then auxiliary data.

    Main bins are Poisson with the expected rates; each auxiliary datum is drawn from
    its constraint term centred at the parameter (Gaussian with the constraint's
    width, or Poisson with rate :math:`\\tau\\gamma` for ``shapesys``). Auxiliary
    data of masked constraints (a grid model's unused parameters) keep their
    nominal values. No batch axes on ``model`` or ``pars``.
    """
    if model.config.batch_shape:
        raise ShapeError(
            "sample_data takes one model, not a grid",
            got=model.config.batch_shape,
            expected="no batch axes (index the grid's point first)",
        )
    pars, signal = model._pars(pars), model._signal(signal)
    return _sample(model, pars, key, tuple(shape), signal)


@partial(jax.jit, static_argnames=("shape",))
def _sample(model: Model, pars, key, shape, signal):
    k_main, k_gauss, k_pois = jax.random.split(key, 3)
    rates = model._main(pars, signal)
    main = jax.random.poisson(k_main, rates, shape + rates.shape).astype(rates.dtype)
    theta = pars[model.aux_param]
    gauss = theta + model.aux_sigma * jax.random.normal(k_gauss, shape + theta.shape)
    pois = jax.random.poisson(
        k_pois,
        jnp.where(model.aux_poisson, theta * model.aux_factor, 1.0),
        shape + theta.shape,
    ).astype(theta.dtype)
    aux = jnp.where(model.aux_poisson, pois, gauss)
    aux = jnp.where(model.aux_mask, aux, model.config.auxdata)
    return jnp.concatenate([main, aux], axis=-1)


def _fraction_at_least(samples, value):
    return jnp.mean(samples >= value, dtype=jnp.float64)


@partial(jax.jit, static_argnames=("ntoys", "test_stat", "chunk"))
def _toys_kernel(
    model, data, signal, mu, key, *, ntoys, test_stat, chunk, tol, max_iter
):
    teststat = from_fits(test_stat)

    def likelihood(data):
        return ModelLikelihood(model, data, signal, model.config.init, tol, max_iter)

    def statistic(data):
        """The statistic at ``mu`` and whether both of its fits converged."""
        muhat, nll_hat, nll_mu, ok = free_and_fixed(likelihood(data), mu)
        return teststat(mu, muhat, nll_mu, nll_hat), ok

    # the generating points: conditional fits to the observed data at mu, and at
    # the background-only hypothesis (mu = 1 for q0's alternative, as in pyhf)
    at = jnp.stack([mu, jnp.asarray(1.0 if test_stat == "q0" else 0.0)])
    lik = likelihood(data)
    _, _, fits_ok, pars = jax.vmap(lambda m: lik.profile_from(m, True, lik.start))(at)
    k_sb, k_b = jax.random.split(key)
    toys = jnp.concatenate(
        [
            _sample(model, pars[0], k_sb, (ntoys,), signal),
            _sample(model, pars[1], k_b, (ntoys,), signal),
        ]
    )
    q_obs, ok_obs = statistic(data)
    # in chunks: a vectorised fit iterates until its slowest member converges, so
    # one hard toy would otherwise hold every toy to its iteration count
    q_toys, ok_toys = jax.lax.map(statistic, toys, batch_size=chunk)
    return q_obs, q_toys[:ntoys], q_toys[ntoys:], ok_obs & jnp.all(fits_ok), ok_toys


def hypotest_toys(
    mu: float | Float[ArrayLike, ""],
    model: Model,
    data: Float[ArrayLike, " ndata"],
    signal: Float[ArrayLike, " nsignal"] | None = None,
    *,
    ntoys: int = 1000,
    seed: int | Array = 0,
    test_stat: str = "qtilde",
    chunk: int | None = None,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> ToyResult:
    """Toy-based CLs of one hypothesis ``mu`` (module doc), with ``ntoys`` toys per
    hypothesis, all fitted in one vectorised call.

    Args:
        mu: the tested POI value, scalar.
        model: one compiled model (not a grid).
        data: observed main bins then auxiliary data, ``(ndata,)``.
        signal: signal yields of a signal-region model, ``(nsignal,)``.
        ntoys: toys per hypothesis.
        seed: an integer seed or a :func:`jax.random.key`.
        test_stat: ``"qtilde"``, ``"q"`` or ``"q0"`` (then ``cls`` is :math:`p_0`).
        chunk: toys fitted together (vectorised); chunks run one after another.
            Default: small groups on the CPU (:func:`~difflike._vectorize.default_chunk`:
            a vectorised fit waits for its slowest member, and vectorising buys
            little there), up to :data:`ACCELERATOR_CHUNK` toys on accelerators.

    Returns:
        :class:`ToyResult`.
    """
    _check_statistic(test_stat)
    if ntoys < 1:
        raise InputError("ntoys must be positive", got=ntoys)
    data, signal = _inputs(model, data, signal)
    mu = jnp.asarray(mu, jnp.float64)
    if model.config.batch_shape or data.ndim != 1 or signal.ndim != 1 or mu.ndim:
        raise ShapeError(
            "hypotest_toys takes one hypothesis of one model and one data set",
            got=f"model points {model.config.batch_shape}, data {data.shape}, "
            f"signal {signal.shape}, mu {mu.shape}",
            expected="no batch axes",
        )
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    q_obs, q_sb, q_b, ok, ok_toys = _toys_kernel(
        model,
        data,
        signal,
        mu,
        key,
        ntoys=int(ntoys),
        test_stat=test_stat,
        chunk=max(
            1, min(int(chunk or default_chunk() or ACCELERATOR_CHUNK), 2 * int(ntoys))
        ),
        tol=tol,
        max_iter=max_iter,
    )
    return _pvalues(q_obs, q_sb, q_b, ok, ok_toys, test_stat)


def _pvalues(q_obs, q_sb, q_b, ok, ok_toys, test_stat) -> ToyResult:
    n = q_sb.shape[0]

    def cls_at(q):
        clsb = _fraction_at_least(q_sb, q)
        clb = _fraction_at_least(q_b, q)
        if test_stat == "q0":  # toys "sb" are at mu = 0 here: p0
            return clsb, clsb, clb
        return clsb / clb, clsb, clb

    cls, clsb, clb = cls_at(q_obs)
    # expected: CLs at the background-only toys' statistics, at the quantiles of
    # the normal distribution's n-sigma points
    band = jax.vmap(lambda q: cls_at(q)[0])(q_b)
    quantiles = norm.cdf(-jnp.asarray(NSIGMA, jnp.float64))
    cls_exp = jnp.quantile(band, quantiles)
    if test_stat == "q0":
        err = jnp.sqrt(clsb * (1 - clsb) / n)
    else:
        rel2 = (1 - clsb) / jnp.maximum(n * clsb, 1) + (1 - clb) / jnp.maximum(
            n * clb, 1
        )
        err = cls * jnp.sqrt(rel2)
    return ToyResult(
        cls=cls,
        cls_exp=cls_exp,
        cls_error=err,
        clsb=clsb,
        clb=clb,
        q_obs=q_obs,
        q_sb=q_sb,
        q_b=q_b,
        converged=ok & jnp.all(ok_toys),
        failed_toys=jnp.sum(~ok_toys),
    )
