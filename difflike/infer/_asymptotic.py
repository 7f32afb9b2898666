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

Upper limits solve :math:`\mathrm{CL}_s(\mu) = \alpha` for the observed and the
five expected curves at once, each written as :math:`\sigma(u^* - u)` (see
:func:`_curves`): nearly linear in :math:`\mu` in the asymptotic regime, so that
Newton's steps on the exact derivative (envelope theorem) converge in three or
four evaluations from a first one at :math:`\mu = 1`. Once a curve is bracketed,
a Newton step that would leave the bracket is replaced by false position between
its ends (the Illinois variant; bisection where that fails too); a curve still
above :math:`\alpha` at the POI's upper bound has that end doubled, up to
:data:`MAX_WIDEN` times, which the result reports. Each fit of a step starts where
the previous step's fit of its curve ended (warm starts, for likelihoods that offer
them) once the point moves little. The μ-independent fits (free fits, Asimov data)
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
from difflike.infer._likelihood import (
    Likelihood,
    profiles_of_two,
    profiles_of_two_from,
    warm_starts,
)
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


#: which likelihood each of a limit step's seven fits profiles: the data's at the
#: observed curve's point, then the Asimov data's there and at the five expected
#: curves' points
_WHICH = np.asarray([0, 1, 1, 1, 1, 1, 1])


def _initial_starts(lik, lik_a):
    """Where a limit search's seven fits (:data:`_WHICH`) start at first: the
    likelihoods' own starting points (warm starts), or a placeholder."""
    if not warm_starts(lik):
        return jnp.zeros((_WHICH.size, 0))
    return jax.tree_util.tree_map(
        lambda a, b: jnp.stack([jnp.asarray(a), jnp.asarray(b)])[_WHICH],
        lik.start,
        lik_a.start,
    )


def _curves(mus, lik, prepared, test_stat, log_alpha, starts):
    r"""The six limit curves at ``mus`` (the observed one at ``mus[0]``, the
    expected ones at ``mus[1:]``), ``(6,)``, each positive where CLs is above
    ``alpha`` and zero at the limit; and, as auxiliary output, whether each of the
    seven fits converged and where they ended, ``(7,)`` and ``starts``' shape. The
    seven fits (data at ``mus[0]``, Asimov data at ``mus[0]`` and at ``mus[1:]``,
    :data:`_WHICH`) are one vectorised call, each started from ``starts``.

    A curve is :math:`\sigma\,(u^* - u)`, with :math:`u = t + \sqrt{q_A}` the
    argument of :math:`\mathrm{CL}_{s+b} = \Phi(-u)`, :math:`u^* =
    -\Phi^{-1}(\alpha\,\mathrm{CL}_b)` its value at the limit, and :math:`\sigma =
    \mu/\sqrt{q_A}`. In the asymptotic (Wald) regime :math:`u = (\mu -
    \hat\mu)/\sigma` and :math:`\mathrm{CL}_b` does not depend on :math:`\mu`, so
    the curve is :math:`u^*\sigma - (\mu - \hat\mu)`: linear in :math:`\mu` where
    :math:`\sigma` is constant or grows linearly with :math:`\mu` (the signal's own
    statistical uncertainty), and Newton's method lands on the root in one step
    there. Where :math:`\alpha\,\mathrm{CL}_b` is too small to invert, the curve
    is :math:`\sigma\,(\ln \mathrm{CL}_s - \ln\alpha)` instead (same sign and
    root)."""
    stat = from_fits(test_stat)
    lik_a, muhats, nll_hats = prepared
    at = jnp.concatenate([mus[:1], mus])
    _, nlls, ok, ends = profiles_of_two_from(lik, lik_a, _WHICH, at, True, starts)
    q = stat(at, muhats[_WHICH], nlls, nll_hats[_WHICH])
    lsb, lb, _, _, t = log_pvalues(q[0], q[1], test_stat)
    sqa = _safe_sqrt(q[1:])  # at mus[0], then at mus[1:]
    lsb_e, lb_e = _expected_log_pvalues(sqa[1:])
    t = jnp.concatenate([t[None], jnp.asarray(NSIGMA)])
    log_cls = jnp.concatenate(
        [_log_cls(lsb, lb, test_stat)[None], _log_cls(lsb_e, lb_e, test_stat)]
    )
    # at the limit CLs+b = alpha CLb (CLs), or alpha (the p-value of q0)
    log_target = log_alpha + (0.0 if test_stat == "q0" else log_ndtr(-t))
    u_star = -ndtri(jnp.exp(log_target))
    u = t + sqa
    usable = jnp.isfinite(u_star)
    curves = jnp.where(usable, jnp.where(usable, u_star, 0.0) - u, log_cls - log_alpha)
    # times sigma = mu / sqrt(q_A): then linear in mu also where sigma grows
    # linearly with mu, as it does with the signal's own statistical uncertainty
    scale = jnp.where(sqa > 0, mus / jnp.where(sqa > 0, sqa, 1.0), 1.0)
    return curves * scale, (ok, ends)


#: the limit curve each of a step's seven fits belongs to (:data:`_WHICH`)
_CURVE = np.asarray([0, 0, 1, 2, 3, 4, 5])
#: a fit starts where the previous step's fit of its curve ended when the curve's
#: point moved by at most this fraction (else from the likelihood's own start)
_WARM_MOVE = 0.2


class _Search(NamedTuple):
    mu: Array  # (6,) current points
    lo: Array  # (6,) bracket: each curve is above alpha at lo
    up: Array  # (6,) ... and below alpha at up, once up_ok
    up_ok: Array  # (6,) whether up was evaluated (below alpha there)
    f_lo: Array  # (6,) the curve's value at lo (> 0 once lo was evaluated),
    #   Illinois-weighted
    f_up: Array  # (6,) ... and at up (< 0)
    side: Array  # (6,) the side the last point fell on: +1 above alpha, -1 below
    done: Array  # (6,)
    failed: Array  # (6,) still above alpha at the widest upper end
    nwiden: Array  # (6,) how often up was doubled
    it: Array
    starts: Array  # where the next step's seven fits start (warm starts)


def _solve_limits(lik, alpha, test_stat, rtol, max_iter):
    log_alpha = jnp.log(alpha)
    prepared = _prepare(lik, test_stat)
    lo_bound, hi_bound = lik.poi_bounds()
    lo0 = jnp.asarray(lo_bound, jnp.float64)
    hi0 = jnp.asarray(hi_bound, jnp.float64)
    first = _initial_starts(lik, prepared[0])

    def value_and_slope(mus, starts):
        def h(m):
            return _curves(m, lik, prepared, test_stat, log_alpha, starts)

        return jax.jvp(h, (mus,), (jnp.ones_like(mus),), has_aux=True)

    def cond(s: _Search):
        return ~jnp.all(s.done) & (s.it < max_iter)

    def body(s: _Search) -> _Search:
        val, slope, (ok, ends) = value_and_slope(s.mu, s.starts)
        above = val > 0
        lo = jnp.where(above, s.mu, s.lo)
        up = jnp.where(above, s.up, s.mu)
        up_ok = s.up_ok | ~above
        # the curve's values at the bracket's ends, for false position; an end
        # kept twice in a row has its value halved (the Illinois rule), so that
        # the other end moves too
        side = jnp.where(above, 1, -1)
        again = side == s.side
        f_lo = jnp.where(above, val, jnp.where(again, 0.5 * s.f_lo, s.f_lo))
        f_up = jnp.where(above, jnp.where(again, 0.5 * s.f_up, s.f_up), val)
        # still above alpha at an upper end not known to be below: double that end
        at_top = above & ~up_ok & (s.mu >= s.up)
        failed = s.failed | (at_top & (s.nwiden >= MAX_WIDEN))
        widen = at_top & ~failed
        up = jnp.where(widen, 2.0 * up, up)
        # Newton on each curve; where it leaves a known bracket, false position
        # between its ends (bisection if that fails too); where the upper end is
        # not known yet, a try of it, or, on a curve without a usable slope
        # (flat: no sensitivity there yet), of twice the point
        newton = s.mu - val / slope
        usable = jnp.isfinite(newton) & (slope < 0)
        inside = usable & (newton > lo) & (newton < up)
        span = f_lo - f_up
        falsi = up + f_up * (up - lo) / jnp.where(span > 0, span, 1.0)
        falsi_ok = (f_lo > 0) & (falsi > lo) & (falsi < up)
        bracketed = jnp.where(falsi_ok, falsi, 0.5 * (lo + up))
        probe = jnp.where(usable, up, jnp.minimum(2.0 * s.mu, up))
        new = jnp.where(inside, newton, jnp.where(up_ok, bracketed, probe))
        step_small = jnp.abs(new - s.mu) <= rtol * jnp.abs(s.mu) + 1e-12
        tight = up_ok & ((up - lo) <= rtol * jnp.abs(s.mu) + 1e-12)
        done = s.done | step_small | tight | (val == 0) | failed
        mu = jnp.where(s.done, s.mu, new)
        # a fit starts where its curve's last one ended if that converged and the
        # point moved little (a far start can end in another minimum)
        near = jnp.abs(mu - s.mu) <= _WARM_MOVE * jnp.abs(s.mu)
        warm = ok & near[_CURVE]
        starts = jax.tree_util.tree_map(
            lambda e, b: jnp.where(
                warm.reshape(warm.shape + (1,) * (e.ndim - 1)), e, b
            ),
            ends,
            first,
        )
        return _Search(
            mu=mu,
            lo=lo,
            up=up,
            up_ok=up_ok,
            f_lo=f_lo,
            f_up=f_up,
            side=jnp.where(s.done, s.side, side),
            done=done,
            failed=failed,
            nwiden=s.nwiden + widen,
            it=s.it + 1,
            starts=starts,
        )

    # the first step evaluates every curve at mu = 1 (the signal's own strength),
    # within the POI's bounds; Newton's steps go on from there
    pilot = jnp.clip(1.0, lo0 + 1e-3 * (hi0 - lo0), hi0)
    start = _Search(
        mu=jnp.full(6, pilot),
        lo=jnp.full(6, lo0),
        up=jnp.full(6, hi0),
        up_ok=jnp.zeros(6, bool),
        f_lo=jnp.zeros(6),
        f_up=jnp.zeros(6),
        side=jnp.zeros(6, int),
        done=jnp.zeros(6, bool),
        failed=jnp.zeros(6, bool),
        nwiden=jnp.zeros(6, int),
        it=jnp.asarray(0),
        starts=first,
    )
    s = lax.while_loop(cond, body, start)
    converged = s.done & ~s.failed
    return s.mu, converged, jnp.any(s.nwiden > 0), jnp.max(s.up), s.it, s.starts


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
        # the fits start where the search's last ones did, so that the derivative
        # is taken at the minima the limits were found at
        starts = lax.stop_gradient(out[-1])
        return _curves(mus, lik, prepared, test_stat, jnp.log(alpha), starts)[0]

    # one evaluation of the curves (their fits) serves both derivatives
    _, linear = jax.linearize(h, mu, lik)
    slope = linear(jnp.ones_like(mu), _zero_tangent(t_lik))
    moved = linear(jnp.zeros_like(mu), t_lik)
    d_mu = -moved / slope
    zeros = jax.tree_util.tree_map(
        lambda x: (
            np.zeros(np.shape(x), jax.dtypes.float0)
            if not jnp.issubdtype(jnp.result_type(x), jnp.floating)
            else jnp.zeros_like(x)
        ),
        out[1:],
    )
    return out, (d_mu, *zeros)


def upper_limit_one(
    lik: Likelihood,
    alpha: float = 0.05,
    test_stat: str = "qtilde",
    rtol: float = 1e-7,
    max_iter: int = 50,
) -> LimitDetails:
    """Observed and expected upper limits of one likelihood (see the module doc)."""
    mu, converged, widened, upper, nit, _ = _limits(
        lik, alpha, test_stat, rtol, max_iter
    )
    return LimitDetails(
        mu_up=mu[0],
        mu_up_exp=mu[1:],
        converged=converged,
        widened=widened,
        upper=upper,
        nit=nit,
    )
