r"""The densities over signal yields that the sampler draws from.

A signal-region model with :math:`N` signal bins has a profiled likelihood of the
signal yields :math:`s \in \mathbb{R}^N` for each expectation :math:`e` (observed,
aposteriori, ...; see :mod:`difflike.infer._delta`):

.. math::

    \Delta_e(s) = \ln L_e(s;\ \hat{\hat\theta}(s)) - \ln L_e(0;\ \hat{\hat\theta}(0)).

A surrogate must learn :math:`\Delta_e` wherever inference will ask for it: near its
maximum (best-fit-like yields, where :math:`\hat\mu` is found), through the 68% and
95% CL contours (where limits are found), and well beyond exclusion, in every
direction of yield space, positive and negative. No single density does that, so
the sampler runs a *ladder of tempered likelihoods*, one group of chains per
expectation and temperature :math:`\beta`:

.. math::

    \log p_{e,\beta}(s) = \beta\,\Delta_e(s) + \log\pi(s),
    \qquad s_i > \ell_i.

With :math:`\beta = 1` the samples follow the likelihood itself: :math:`-2\Delta`
of the samples is roughly :math:`\chi^2_N`-distributed around the best fit, which
places them densely where :math:`\hat\mu` and the 68% contour are decided. A
temperature :math:`\beta` widens the cloud by :math:`1/\sqrt\beta` in every
direction, so :math:`-2\Delta \approx \chi^2_N/\beta`: the default ladder
``(1, 1/4, 1/16, 1/64)`` reaches :math:`-2\Delta` of a few hundred, far past the
95% CL contour (:math:`-2\Delta \approx 4`), while every rung still follows the
likelihood's own shape (its correlations between bins, its asymmetry between
positive and negative yields). Mixed in are *exploratory draws*, independent draws
from the broad prior alone, which reach the yields of strongly excluded signals
that no rung visits often.

The prior :math:`\pi` is a product of Student-t densities (3 degrees of freedom)
centred on zero with width ``prior_width`` times the bin's yield scale
:math:`\sigma_i = \sqrt{\max(b_i, 1)}` (:math:`b_i` the post-fit background of the
bin). It keeps the hot rungs proper where the likelihood flattens and is otherwise
negligible. Negative yields are allowed down to :math:`\ell_i = -(1 - \epsilon)
b_i`, where the bin's expected count would vanish; NUTS runs in unconstrained
coordinates :math:`z` with :math:`s = \ell + \sigma\,\mathrm{softplus}(z)`, linear
for large yields and with the Jacobian included in the density.

That is the *profiled* density (:func:`potential`): every evaluation is a fit. The
default, :func:`joint_potential`, samples the yields together with the nuisance
parameters under the likelihood whose signal bins are tempered; its marginal in
:math:`s` follows the same ladder up to the slowly varying width of the nuisance
parameters' posterior, and one evaluation is one log-likelihood (docs/sampling.md
says why, with figures).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import stats
from jaxtyping import Array, Float, Int

from difflike._pytree import pytree_dataclass
from difflike.fit._api import MAX_ITER, TOL, _fit_one
from difflike.histfactory._model import _poisson_logpdf

__all__ = [
    "Nuisance",
    "Target",
    "YieldSpace",
    "from_unconstrained",
    "joint_potential",
    "joint_yields",
    "log_prior",
    "nuisance_of",
    "potential",
    "to_unconstrained",
]

#: degrees of freedom of the prior's Student-t factors
PRIOR_DF = 3.0
#: the joint density's yields keep each signal bin's rate above this fraction of
#: its background (:func:`joint_potential`)
JOINT_MARGIN = 0.05
#: width of the smooth maximum between the two lower bounds, in yield scales
JOINT_SMOOTHING = 0.05


@pytree_dataclass
class YieldSpace:
    """Where signal yields live, and their natural scale.

    Attributes:
        lower: smallest allowed yield per signal bin, ``(nsignal,)`` (negative).
        scale: yield scale per signal bin, :math:`\\sqrt{\\max(b, 1)}` of the
            post-fit background ``b``, ``(nsignal,)``.
        prior_width: the prior's width in units of ``scale``, ``()``.
    """

    lower: Float[Array, " nsignal"]
    scale: Float[Array, " nsignal"]
    prior_width: Float[Array, ""]


@pytree_dataclass
class Target:
    """One tempered density :math:`\\beta\\,\\Delta_e(s) + \\log\\pi(s)` (module doc).

    Attributes:
        data: the expectation's data set, main bins then auxiliary data, ``(ndata,)``.
        init: the background-only fit to ``data`` (where fits start), ``(npars,)``.
        nll0: the background-only ``-ln L`` (the reference of :math:`\\Delta`), ``()``.
        beta: the temperature :math:`\\beta`, ``()``.
        starts: other starts of a label's fit, one per other minimum ("basin") of
            the profile that :func:`difflike.sample.background_targets` found,
            ``(nstarts, npars)``; ``None`` where there are none (and for the
            sampler's chains, whose densities fit from ``init`` alone).
    """

    data: Float[Array, " ndata"]
    init: Float[Array, " npars"]
    nll0: Float[Array, ""]
    beta: Float[Array, ""]
    starts: Float[Array, "nstarts npars"] | None = None


@pytree_dataclass
class Nuisance:
    """The nuisance parameters a joint density samples beside the yields.

    Attributes:
        index: the model's free parameters other than the POI, ``(nfree,)`` int.
        lower, upper: their bounds, ``(nfree,)``.
    """

    index: Int[Array, " nfree"]
    lower: Float[Array, " nfree"]
    upper: Float[Array, " nfree"]

    def to_parameters(self, u: Float[Array, "*b nfree"]) -> Array:
        """Parameters from unconstrained coordinates: ``lower + width * sigmoid(u)``.

        NUTS runs in ``u``: a bound is never a wall (shapefactors and free
        normalisations often have their mass against one), and the map's Jacobian
        is :meth:`log_jacobian`.
        """
        return self.lower + (self.upper - self.lower) * jax.nn.sigmoid(u)

    def to_unconstrained(self, theta: Float[Array, "*b nfree"]) -> Array:
        """The inverse of :meth:`to_parameters`; points on a bound are moved inside
        by a thousandth of the range."""
        frac = jnp.clip(
            (theta - self.lower) / (self.upper - self.lower), 1e-3, 1 - 1e-3
        )
        return jnp.log(frac) - jnp.log1p(-frac)

    def log_jacobian(self, u: Float[Array, " nfree"]) -> Array:
        r""":math:`\log|d\theta/du|` of :meth:`to_parameters`, ``()``."""
        return jnp.sum(
            jnp.log(self.upper - self.lower)
            + jax.nn.log_sigmoid(u)
            + jax.nn.log_sigmoid(-u)
        )


def nuisance_of(model) -> Nuisance:
    """The model's nuisance parameters: the free ones, the POI excepted (what a
    joint density samples; what a background-only fit's covariance spans)."""
    config = model.config
    free = ~np.asarray(config.fixed)
    free[config.poi_index] = False
    index = np.flatnonzero(free)
    bounds = np.asarray(config.bounds)[index]
    return Nuisance(
        index=jnp.asarray(index),
        lower=jnp.asarray(bounds[:, 0]),
        upper=jnp.asarray(bounds[:, 1]),
    )


def from_unconstrained(z: Float[Array, "*b nsignal"], space: YieldSpace) -> Array:
    """Yields from unconstrained coordinates: :math:`s = \\ell + \\sigma\\,
    \\mathrm{softplus}(z)`, same shape as ``z``."""
    return space.lower + space.scale * jax.nn.softplus(z)


def to_unconstrained(s: Float[Array, "*b nsignal"], space: YieldSpace) -> Array:
    """The inverse of :func:`from_unconstrained`; ``s`` must exceed ``space.lower``."""
    u = (s - space.lower) / space.scale
    return u + jnp.log(-jnp.expm1(-u))  # softplus^{-1}(u), stable for large u


def log_prior(s: Float[Array, "*b nsignal"], space: YieldSpace) -> Array:
    """:math:`\\log\\pi(s)` up to a constant, ``(*b,)``."""
    width = space.prior_width * space.scale
    return jnp.sum(stats.t.logpdf(s / width, PRIOR_DF), axis=-1)


def delta_at(
    model,
    target: Target,
    s,
    *,
    tol=TOL,
    max_iter=MAX_ITER,
    solver="dense",
    restarts=0,
    probes_only=False,
    return_pars=False,
):
    """``(delta, nll, status)`` of one yield vector against one target's data, and
    the fitted parameters ``(npars,)`` after them with ``return_pars``.

    The fit at :math:`\\mu = 1` starts from the background-only fit (``target.init``),
    which is close to the optimum for the yields that matter. ``tol``, ``solver``
    and ``restarts`` are :func:`difflike.fit`'s; ``probes_only`` fits from the
    probe starts alone (:func:`difflike.fit._api._fit_one`).
    """
    pars, value, status, _ = _fit_one(
        model,
        target.data,
        s,
        jnp.ones(()),
        target.init,
        fix_poi=True,
        tol=tol,
        max_iter=max_iter,
        solver=solver,
        restarts=restarts,
        probes_only=probes_only,
    )
    if return_pars:
        return target.nll0 - value, value, status, pars
    return target.nll0 - value, value, status


def potential(z: Float[Array, " nsignal"], model, target: Target, space: YieldSpace):
    """NUTS's potential energy :math:`-\\log p(s(z)) - \\log|ds/dz|`, ``()``.

    Infinite where the fit fails (yields so negative that a rate is not positive),
    which NUTS treats as a divergence and steps away from. Its gradient is the
    profiled likelihood's (envelope theorem): no derivative of the fit's iterations.
    """
    s = from_unconstrained(z, space)
    delta, _, status = delta_at(model, target, s)
    log_jac = jnp.sum(jnp.log(space.scale) + jax.nn.log_sigmoid(z))
    logp = target.beta * delta + log_prior(s, space) + log_jac
    ok = (status <= 2) & jnp.isfinite(logp)
    return jnp.where(ok, -logp, jnp.inf)


def joint_potential(
    z: Float[Array, " nz"], model, target: Target, space: YieldSpace, nuisance: Nuisance
):
    r"""The potential of the *joint* density of yields and nuisance parameters, ``()``.

    ``z`` is the unconstrained yields (``nsignal``) followed by the nuisance
    parameters in unconstrained coordinates (``nfree``, see
    :meth:`Nuisance.to_parameters`). At
    :math:`\mu = 1`,

    .. math::

        \log p(s, \theta) = \beta \sum_{b \in \text{SR}} \ln P(n_b | \lambda_b)
            + \sum_{b \notin \text{SR}} \ln P(n_b | \lambda_b)
            + \ln L_\text{constraint}(\theta) + \log\pi(s):

    only the bins that receive signal are tempered, so a hot rung widens the yields
    while the control regions and the constraints keep the nuisance parameters (and
    free normalisations) where the data put them. At :math:`\beta = 1` the marginal
    in :math:`s` is the likelihood integrated over :math:`\theta`, which differs
    from the profile :math:`e^{\Delta(s)}` by the slowly varying width of
    :math:`\theta`'s posterior (Laplace); the labels are the exact profile either
    way. One evaluation is one log-likelihood and its gradient, no fit.

    The yields' lower bound follows the nuisance parameters: :math:`s = \ell(\theta)
    + \sigma\,\mathrm{softplus}(z)` with :math:`\ell(\theta)` a smooth maximum of
    the fixed bound ``space.lower`` and the yield :math:`-(1 - \epsilon)\,b(\theta)
    / k(\theta)` at which the bin's rate would fall to :math:`\epsilon` of its
    background (:math:`b` the background, :math:`k` the signal's scale factor), so no
    rate is ever negative: NUTS meets no wall there. The map is triangular, so its
    Jacobian is that of :func:`from_unconstrained` times the nuisance parameters'.
    """
    s, pars, background, factor = _joint_point(z, model, target, space, nuisance)
    nsig = space.lower.shape[0]
    zs = z[:nsig]
    bins = jnp.asarray(model.signal_bins)
    nmain = model.config.nmaindata
    rates = background.at[bins].add(factor * s)
    terms = _poisson_logpdf(target.data[:nmain], rates)
    weight = jnp.ones(nmain).at[bins].set(target.beta)
    main = jnp.sum(weight * terms)
    constraint = model._constraint_logpdf(pars, target.data[nmain:])
    log_jac = jnp.sum(jnp.log(space.scale) + jax.nn.log_sigmoid(zs))
    logp = main + constraint + log_prior(s, space) + log_jac
    logp = logp + nuisance.log_jacobian(z[nsig:])
    return jnp.where(jnp.isfinite(logp), -logp, jnp.inf)


def _joint_point(z, model, target: Target, space: YieldSpace, nuisance: Nuisance):
    """``(s, pars, background, factor)`` of one joint-density point (see
    :func:`joint_potential`): the yields, all parameters, the main bins' background
    rates ``(nmain,)`` and the signal's scale factor in its bins ``(nsignal,)``."""
    nsig = space.lower.shape[0]
    pars = target.init.at[nuisance.index].set(nuisance.to_parameters(z[nsig:]))
    pars = pars.at[model.config.poi_index].set(1.0)
    bins = jnp.asarray(model.signal_bins)
    # the rates are linear in the yields, one bin each: their derivative along
    # ones is the signal's scale factor in its bins
    background, slope = jax.jvp(
        lambda s: model._main(pars, s), (jnp.zeros(nsig),), (jnp.ones(nsig),)
    )
    factor = slope[bins]
    vanish = -(1.0 - JOINT_MARGIN) * background[bins] / factor
    tau = JOINT_SMOOTHING * space.scale
    lower = space.lower + tau * jax.nn.softplus((vanish - space.lower) / tau)
    return lower + space.scale * jax.nn.softplus(z[:nsig]), pars, background, factor


def joint_yields(z: Float[Array, " nz"], model, target: Target, space, nuisance):
    """The yields of a joint-density point ``z`` (see :func:`joint_potential`),
    ``(nsignal,)``."""
    return _joint_point(z, model, target, space, nuisance)[0]
