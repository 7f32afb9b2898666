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
from difflike.infer._likelihood import Likelihood
from difflike.infer._teststat import test_statistic

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
    """Everything behind a hypothesis test, ``(*batch, ...)``."""

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


def _safe_sqrt(q):
    positive = q > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, q, 1.0)), 0.0)


def _check_statistic(test_stat: str) -> None:
    test_statistic(test_stat)  # raises on an unknown name
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
    """Asymptotic CLs for one hypothesis ``mu`` (scalar) on one likelihood."""
    stat = test_statistic(test_stat)
    free = lik.fit()
    q = stat(mu, lik, free)
    lik_a = lik.asimov(_asimov_mu(test_stat))
    q_a = stat(mu, lik_a, lik_a.fit())
    lsb, lb, lsb_e, lb_e, t = log_pvalues(q, q_a, test_stat)
    cls = jnp.exp(_log_cls(lsb, lb, test_stat))
    cls_exp = jnp.exp(_log_cls(lsb_e, lb_e, test_stat))
    finite = jnp.isfinite(q) & jnp.isfinite(q_a)
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
        muhat=free[0],
        converged=finite,
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


def _curves(mus, lik, lik_a, free, free_a, stat, test_stat, log_alpha):
    """``ln CLs - ln alpha`` of the observed curve at ``mus[0]`` and the expected
    curves at ``mus[1:]``, ``(6,)``; and, as auxiliary output, :math:`q_A` at
    ``mus[0]``."""
    q = stat(mus[0], lik, free)
    q_a_obs = stat(mus[0], lik_a, free_a)
    q_a_exp = jax.vmap(lambda m: stat(m, lik_a, free_a))(mus[1:])
    lsb, lb, _, _, _ = log_pvalues(q, q_a_obs, test_stat)
    lsb_e, lb_e = _expected_log_pvalues(_safe_sqrt(q_a_exp))
    obs = _log_cls(lsb, lb, test_stat)
    exp = _log_cls(lsb_e, lb_e, test_stat)
    return jnp.concatenate([obs[None], exp]) - log_alpha, q_a_obs


def _solve_limits(lik, alpha, test_stat, rtol, max_iter):
    stat = test_statistic(test_stat)
    log_alpha = jnp.log(alpha)
    free = lik.fit()
    lik_a = lik.asimov(_asimov_mu(test_stat))
    free_a = lik_a.fit()
    h = partial(
        _curves,
        lik=lik,
        lik_a=lik_a,
        free=free,
        free_a=free_a,
        stat=stat,
        test_stat=test_stat,
        log_alpha=log_alpha,
    )
    lo_bound, hi_bound = lik.poi_bounds()

    # bracket: double the upper end while any curve is still above alpha there
    def widen_cond(s):
        _, (h_hi, _), k = s
        return jnp.any(h_hi > 0) & (k < MAX_WIDEN)

    def widen_body(s):
        hi, _, k = s
        hi = 2.0 * hi
        return hi, h(jnp.full(6, hi)), k + 1

    hi0 = jnp.asarray(hi_bound, jnp.float64)
    hi, (h_hi, q_a_hi), nwiden = lax.while_loop(
        widen_cond, widen_body, (hi0, h(jnp.full(6, hi0)), 0)
    )
    lo = jnp.full(6, lo_bound, jnp.float64)
    upper = jnp.full(6, hi)

    # first guess: mu = sigma * (-Phi^-1(alpha Phi(-n)) - n) with sigma = hi / sqrt(qA(hi))
    sqa_hi = jnp.sqrt(jnp.maximum(q_a_hi, 1e-12))
    sigma = hi / sqa_hi
    n = jnp.asarray((0.0, *NSIGMA))
    guess = sigma * (-ndtri(alpha * jnp.exp(log_ndtr(-n))) - n)
    span = upper - lo
    mu0 = jnp.clip(guess, lo + 1e-3 * span, upper - 1e-3 * span)

    def value_and_slope(mus):
        val, slope, _ = jax.jvp(h, (mus,), (jnp.ones_like(mus),), has_aux=True)
        return val, slope

    def cond(s):
        *_, done, it = s
        return ~jnp.all(done) & (it < max_iter)

    def body(s):
        mu, lo, up, done, it = s
        val, slope = value_and_slope(mu)
        lo = jnp.where(val > 0, mu, lo)
        up = jnp.where(val > 0, up, mu)
        newton = mu - val / slope
        inside = jnp.isfinite(newton) & (newton > lo) & (newton < up) & (slope < 0)
        new = jnp.where(inside, newton, 0.5 * (lo + up))
        step_small = jnp.abs(new - mu) <= rtol * jnp.abs(mu) + 1e-12
        tight = (up - lo) <= rtol * jnp.abs(mu) + 1e-12
        new = jnp.where(done, mu, new)
        done = done | step_small | tight | (val == 0)
        return new, lo, up, done, it + 1

    mu, _, _, done, it = lax.while_loop(
        cond, body, (mu0, lo, upper, jnp.zeros(6, bool), 0)
    )
    solvable = h_hi <= 0
    converged = done & solvable
    return mu, converged, nwiden > 0, hi, it


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _limits(lik, alpha, test_stat, rtol, max_iter):
    return _solve_limits(lax.stop_gradient(lik), alpha, test_stat, rtol, max_iter)


@_limits.defjvp
def _limits_jvp(alpha, test_stat, rtol, max_iter, primals, tangents):
    (lik,), (t_lik,) = primals, tangents
    out = _limits(lik, alpha, test_stat, rtol, max_iter)
    mu = out[0]
    stat = test_statistic(test_stat)

    def h(mus, lik):
        lik_a = lik.asimov(_asimov_mu(test_stat))
        return _curves(
            mus, lik, lik_a, lik.fit(), lik_a.fit(), stat, test_stat, jnp.log(alpha)
        )[0]

    _, slope = jax.jvp(lambda m: h(m, lik), (mu,), (jnp.ones_like(mu),))
    _, moved = jax.jvp(lambda p: h(mu, p), (lik,), (t_lik,))
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
