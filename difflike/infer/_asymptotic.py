r"""Asymptotic CLs (pyhf's ``AsymptoticCalculator``) and upper limits by root finding.

For one hypothesis ``mu``: the test statistic :math:`q` on the data and
:math:`q_A` on Asimov data built at :math:`\mu' = 0` (:math:`\mu' = 1` for ``q0``);
with :math:`\sqrt{q}` and :math:`\sqrt{q_A}` the statistic pyhf compares with its
asymptotic distributions is :math:`t = \sqrt{q} - \sqrt{q_A}` (``q``, ``q0``), and for
``qtilde`` the same where :math:`\sqrt{q} \le \sqrt{q_A}`, else
:math:`(q - q_A)/(2\sqrt{q_A})`. Then :math:`\mathrm{CL}_{s+b} = \Phi(-(t +
\sqrt{q_A}))`, :math:`\mathrm{CL}_b = \Phi(-t)`, :math:`\mathrm{CL}_s =
\mathrm{CL}_{s+b}/\mathrm{CL}_b`, and the expected values put :math:`t = n` for
:math:`n = 2, 1, 0, -1, -2` (pyhf's order: smallest CLs first). Ratios are taken in
log space (``log_ndtr``), so tiny CLs values keep their precision and gradients.

Upper limits solve :math:`\ln \mathrm{CL}_s(\mu) = \ln\alpha` for the observed and
the five expected curves at once: a bracket from the POI's bounds (its upper end
doubled, up to :data:`MAX_WIDEN` times, while a curve is still above
:math:`\alpha` there, which the result reports), a first guess from the Asimov
curve's asymptotic width, then Newton steps on the exact derivative (envelope
theorem) safeguarded by bisection. The μ-independent fits (free fits, Asimov data)
run once. Limits are differentiable with respect to everything the likelihood
depends on (signal yields, data, model arrays) by the implicit function theorem.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import log_ndtr, ndtri
from jaxtyping import Array, Bool, Float, Int

from difflike.errors import InputError
from difflike.infer._likelihood import Likelihood, profiles_of_two
from difflike.infer._teststat import from_fits

__all__ = [
    "MAX_WIDEN",
    "NSIGMA",
    "HypotestResult",
    "LimitResult",
    "hypotest_one",
    "upper_limit_one",
]

#: the expected band's test-statistic values, in pyhf's order
NSIGMA = (2.0, 1.0, 0.0, -1.0, -2.0)
#: how often the upper end of the limit bracket may be doubled
MAX_WIDEN = 10
_ASYMPTOTIC_STATISTICS = ("qtilde", "q", "q0")


class HypotestResult(NamedTuple):
    """Asymptotic hypothesis test of one or more ``mu`` values.

    Unpacks as ``(cls, cls_exp)``; the other values are attributes. For ``q0`` the
    ``cls`` fields hold the discovery p-value :math:`p_0` (``clsb``), as in pyhf.

    Attributes:
        cls: observed CLs, ``(*batch,)``.
        cls_exp: expected CLs at ``n = 2, 1, 0, -1, -2``, ``(*batch, 5)``.
    """

    cls: Float[Array, "*batch"]
    cls_exp: Float[Array, "*batch 5"]


class HypotestDetails(NamedTuple):
    """Everything behind a hypothesis test, ``(*batch, ...)``.

    ``nll_hat`` and ``nll_mu`` are the minimised ``-ln L`` of the global fit and of
    the fit at ``mu`` (``nll_*_asimov``: the same on the Asimov data), so that the
    fits behind a test can be checked without fitting again.
    """

    cls: Array
    cls_exp: Array
    clsb: Array
    clb: Array
    clsb_exp: Array
    clb_exp: Array
    teststat: Array
    q: Array
    q_asimov: Array
    muhat: Array
    converged: Array
    nll_hat: Array
    nll_mu: Array
    nll_hat_asimov: Array
    nll_mu_asimov: Array


def _safe_sqrt(q):
    positive = q > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, q, 1.0)), 0.0)


def _check_statistic(test_stat: str) -> None:
    from_fits(test_stat)  # raises on an unknown name
    if test_stat not in _ASYMPTOTIC_STATISTICS:
        raise InputError(
            "this test statistic has no asymptotic calculator",
            got=repr(test_stat),
            expected=f"one of {list(_ASYMPTOTIC_STATISTICS)}",
        )


def _expected_log_pvalues(sqrt_q_asimov):
    """Log of expected ``(CLs+b, CLb)`` at ``t = n`` for each of :data:`NSIGMA`, ``(5,)``
    each (``sqrt_q_asimov`` scalar, or ``(5,)`` with one value per ``n``)."""
    n = jnp.asarray(NSIGMA)
    return log_ndtr(-(n + sqrt_q_asimov)), log_ndtr(-n)


def _log_cls(log_clsb, log_clb, test_stat: str):
    """Log of the quoted value: CLs, or CLs+b (the p-value :math:`p_0`) for ``q0``."""
    return log_clsb if test_stat == "q0" else log_clsb - log_clb


def log_pvalues(q, q_asimov, test_stat: str):
    """Log of ``(CLs+b, CLb)`` observed, ``()`` each, and expected, ``(5,)`` each."""
    sq, sqa = _safe_sqrt(q), _safe_sqrt(q_asimov)
    if test_stat == "qtilde":
        denom = jnp.where(sqa > 0, 2.0 * sqa, 1.0)
        t = jnp.where(sq <= sqa, sq - sqa, (q - q_asimov) / denom)
    else:
        t = sq - sqa
    return (log_ndtr(-(t + sqa)), log_ndtr(-t), *_expected_log_pvalues(sqa), t)


def _asimov_mu(test_stat: str) -> float:
    return 1.0 if test_stat == "q0" else 0.0


def hypotest_one(mu, lik: Likelihood, test_stat: str = "qtilde") -> HypotestDetails:
    """Asymptotic CLs for one hypothesis ``mu`` (scalar) on one likelihood.

    Two calls fit: the fit that builds the Asimov data, then, vectorised in one
    call, the free and fixed-``mu`` fits to the data and to the Asimov data.
    """
    stat = from_fits(test_stat)
    mu = jnp.asarray(mu, jnp.float64)
    lik_a = lik.asimov(_asimov_mu(test_stat))
    # free and fixed-mu fits to the data and to the Asimov data: one call
    zero = jnp.zeros_like(mu)
    pois, nlls, oks = profiles_of_two(
        lik, lik_a, [0, 0, 1, 1], jnp.stack([zero, mu, zero, mu]), [False, True] * 2
    )
    muhat, muhat_a = pois[0], pois[2]
    nll_hat, nll_mu, nll_hat_a, nll_mu_a = nlls
    ok, ok_a = oks[0] & oks[1], oks[2] & oks[3]
    q = stat(mu, muhat, nll_mu, nll_hat)
    q_a = stat(mu, muhat_a, nll_mu_a, nll_hat_a)
    lsb, lb, lsb_e, lb_e, t = log_pvalues(q, q_a, test_stat)
    cls = jnp.exp(_log_cls(lsb, lb, test_stat))
    cls_exp = jnp.exp(_log_cls(lsb_e, lb_e, test_stat))
    converged = ok & ok_a & jnp.isfinite(q) & jnp.isfinite(q_a)
    return HypotestDetails(
        cls=cls,
        cls_exp=cls_exp,
        clsb=jnp.exp(lsb),
        clb=jnp.exp(lb),
        clsb_exp=jnp.exp(lsb_e),
        clb_exp=jnp.exp(lb_e),
        teststat=t,
        q=q,
        q_asimov=q_a,
        muhat=muhat,
        converged=converged,
        nll_hat=nll_hat,
        nll_mu=nll_mu,
        nll_hat_asimov=nll_hat_a,
        nll_mu_asimov=nll_mu_a,
    )


class LimitResult(NamedTuple):
    """Upper limits on ``mu``: unpacks as ``(mu_up, mu_up_exp)``.

    Attributes:
        mu_up: observed limit, ``(*batch,)``.
        mu_up_exp: expected limits at ``n = 2, 1, 0, -1, -2`` (ascending),
            ``(*batch, 5)``.
    """

    mu_up: Float[Array, "*batch"]
    mu_up_exp: Float[Array, "*batch 5"]


class LimitDetails(NamedTuple):
    """Upper limits with diagnostics, ``(*batch, ...)``.

    Attributes:
        mu_up, mu_up_exp: the limits.
        converged: whether each of the six roots converged, ``(*batch, 6)``.
        widened: whether the search went beyond the POI's upper bound, ``(*batch,)``.
        upper: the upper end of the final bracket, ``(*batch,)``.
        nit: root-finding iterations, ``(*batch,)``.
    """

    mu_up: Array
    mu_up_exp: Array
    converged: Bool[Array, "*batch 6"]
    widened: Bool[Array, "*batch"]
    upper: Array
    nit: Int[Array, "*batch"]


def _prepare(lik: Likelihood, test_stat: str):
    """The mu-independent part of the limit curves: Asimov likelihood, free fits."""
    lik_a = lik.asimov(_asimov_mu(test_stat))
    # both free fits in one vectorised call
    muhats, nll_hats, _ = profiles_of_two(lik, lik_a, [0, 1], [0.0, 0.0], False)
    return lik_a, muhats, nll_hats


def _curves(mus, lik, prepared, test_stat, log_alpha):
    """``ln CLs - ln alpha`` of the observed curve at ``mus[0]`` and the expected
    curves at ``mus[1:]``, ``(6,)``; and, as auxiliary output, :math:`q_A` at
    ``mus[0]``. The seven fits it needs (data at ``mus[0]``, Asimov data at
    ``mus[0]`` and at ``mus[1:]``) are one vectorised call."""
    stat = from_fits(test_stat)
    lik_a, muhats, nll_hats = prepared
    which = np.asarray([0, 1, 1, 1, 1, 1, 1])
    at = jnp.concatenate([mus[:1], mus])
    _, nlls, _ = profiles_of_two(lik, lik_a, which, at, True)
    q = stat(at, muhats[which], nlls, nll_hats[which])
    lsb, lb, _, _, _ = log_pvalues(q[0], q[1], test_stat)
    lsb_e, lb_e = _expected_log_pvalues(_safe_sqrt(q[2:]))
    obs = _log_cls(lsb, lb, test_stat)
    exp = _log_cls(lsb_e, lb_e, test_stat)
    return jnp.concatenate([obs[None], exp]) - log_alpha, q[1]


class _Search(NamedTuple):
    mu: Array  # (6,) current points
    lo: Array  # (6,) bracket
    up: Array  # (6,)
    done: Array  # (6,)
    widening: Array  # still doubling the upper end
    hi: Array  # upper end of the search range
    h_hi: Array  # (6,) curves at hi
    nwiden: Array
    it: Array


def _solve_limits(lik, alpha, test_stat, rtol, max_iter):
    log_alpha = jnp.log(alpha)
    prepared = _prepare(lik, test_stat)
    lo_bound, hi_bound = lik.poi_bounds()
    hi0 = jnp.asarray(hi_bound, jnp.float64)
    n = jnp.asarray((0.0, *NSIGMA))

    def value_and_slope(mus):
        def h(m):
            return _curves(m, lik, prepared, test_stat, log_alpha)

        return jax.jvp(h, (mus,), (jnp.ones_like(mus),), has_aux=True)

    def cond(s: _Search):
        return s.widening | (~jnp.all(s.done) & (s.it < max_iter))

    def body(s: _Search) -> _Search:
        # one evaluation site (one compiled copy of the fits) for both phases
        val, slope, q_a = value_and_slope(s.mu)

        # phase 1: all six curves at hi; double hi while any is still above alpha
        wider = jnp.any(val > 0) & (s.nwiden < MAX_WIDEN)
        sigma = s.hi / jnp.sqrt(jnp.maximum(q_a, 1e-12))
        # first guess: sigma * (-Phi^-1(alpha Phi(-n)) - n), sigma = hi / sqrt(qA(hi))
        guess = sigma * (-ndtri(alpha * jnp.exp(log_ndtr(-n))) - n)
        lo_w = jnp.where(val > 0, s.hi, s.lo)
        span = s.hi - lo_w
        start = jnp.clip(guess, lo_w + 1e-3 * span, s.hi - 1e-3 * span)
        widen = _Search(
            mu=jnp.where(wider, 2.0 * s.hi, start),
            lo=lo_w,
            up=jnp.full(6, jnp.where(wider, 2.0 * s.hi, s.hi)),
            done=s.done,
            widening=wider,
            hi=jnp.where(wider, 2.0 * s.hi, s.hi),
            h_hi=val,
            nwiden=s.nwiden + wider,
            it=s.it,
        )

        # phase 2: Newton on each curve, safeguarded by bisection
        lo = jnp.where(val > 0, s.mu, s.lo)
        up = jnp.where(val > 0, s.up, s.mu)
        newton = s.mu - val / slope
        inside = jnp.isfinite(newton) & (newton > lo) & (newton < up) & (slope < 0)
        new = jnp.where(inside, newton, 0.5 * (lo + up))
        step_small = jnp.abs(new - s.mu) <= rtol * jnp.abs(s.mu) + 1e-12
        tight = (up - lo) <= rtol * jnp.abs(s.mu) + 1e-12
        solve = s._replace(
            mu=jnp.where(s.done, s.mu, new),
            lo=lo,
            up=up,
            done=s.done | step_small | tight | (val == 0),
            it=s.it + 1,
        )
        return jax.tree_util.tree_map(
            lambda a, b: jnp.where(s.widening, a, b), widen, solve
        )

    start = _Search(
        mu=jnp.full(6, hi0),
        lo=jnp.full(6, lo_bound, jnp.float64),
        up=jnp.full(6, hi0),
        done=jnp.zeros(6, bool),
        widening=jnp.asarray(True),
        hi=hi0,
        h_hi=jnp.zeros(6),
        nwiden=jnp.asarray(0),
        it=jnp.asarray(0),
    )
    s = lax.while_loop(cond, body, start)
    converged = s.done & (s.h_hi <= 0)
    return s.mu, converged, s.nwiden > 0, s.hi, s.it


def _zero_tangent(tangent):
    """A zero tangent with the structure (and float0 leaves) of ``tangent``."""
    return jax.tree_util.tree_map(
        lambda t: t if t.dtype == jax.dtypes.float0 else jnp.zeros_like(t), tangent
    )


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _limits(lik, alpha, test_stat, rtol, max_iter):
    return _solve_limits(lax.stop_gradient(lik), alpha, test_stat, rtol, max_iter)


@_limits.defjvp
def _limits_jvp(alpha, test_stat, rtol, max_iter, primals, tangents):
    (lik,), (t_lik,) = primals, tangents
    out = _limits(lik, alpha, test_stat, rtol, max_iter)
    mu = out[0]

    def h(mus, lik):
        prepared = _prepare(lik, test_stat)
        return _curves(mus, lik, prepared, test_stat, jnp.log(alpha))[0]

    # one evaluation of the curves (their fits) serves both derivatives
    _, linear = jax.linearize(h, mu, lik)
    slope = linear(jnp.ones_like(mu), _zero_tangent(t_lik))
    moved = linear(jnp.zeros_like(mu), t_lik)
    d_mu = -moved / slope
    zeros = [
        np.zeros(np.shape(x), jax.dtypes.float0)
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating)
        else jnp.zeros_like(x)
        for x in out[1:]
    ]
    return out, (d_mu, *zeros)


def upper_limit_one(
    lik: Likelihood,
    alpha: float = 0.05,
    test_stat: str = "qtilde",
    rtol: float = 1e-7,
    max_iter: int = 50,
) -> LimitDetails:
    """Observed and expected upper limits of one likelihood (see the module doc)."""
    mu, converged, widened, upper, nit = _limits(lik, alpha, test_stat, rtol, max_iter)
    return LimitDetails(
        mu_up=mu[0],
        mu_up_exp=mu[1:],
        converged=converged,
        widened=widened,
        upper=upper,
        nit=nit,
    )
