r"""A surrogate seen as a :class:`~difflike.infer.Likelihood` of the signal strength.

For fixed signal yields :math:`s` and one expectation :math:`e`, the surrogate's
profiled negative log-likelihood of the signal strength is

.. math::

    \mathrm{nll}(\mu) = -\Delta_e(\mu s),

(up to a constant that cancels in every test statistic), so ``dl.hypotest`` and
``dl.upper_limit`` run on it unchanged. The global fit :math:`\hat\mu` within the
POI's bounds is found from the network's derivatives: a scan of 17 points over the
bounds and a second one of 9 points over the first one's best two steps bracket
the minimum, then 10 Newton steps on :math:`d\,\mathrm{nll}/d\mu`
(both derivatives in forward mode), each kept inside a bracket that the sign of
the slope shrinks (a step that would leave it, or a curvature that is not
positive, bisects instead); the bracket's ends stay candidates, so a minimum on a
bound is found exactly. A LeakyReLU network is piecewise linear: its curvature is
zero almost everywhere and Newton's method has nothing to work with, so for those
12 bisection steps close the bracket instead (:data:`_BISECTIONS`: the second
scan's bracket of at most 1/32 of the POI's range, halved 12 times, is below
7.7e-6 of it). Measured on LeakyReLU surrogates of ATLAS-SUSY-2018-04 and 2019-08
with one scan, limits on their patchset points and on 1,000 random non-negative
yields: bisecting the scan's bracket (1/8 of the range) 14 instead of 20 times
moved every limit by less than 1e-6 relative (the search's own tolerance is 1e-5)
and gave 1.06-1.09 times more limits per second; 10 times moved some by 1.1e-5; 32
times moved them by less than 8e-7 and were 1.1-1.2 times slower. A first scan of
9 points picked another local minimum on one random 2019-08 vector (a limit moved
4.9e-4): it keeps 17. The second scan is for profiles with two minima within one
step of the first: on ATLAS-SUSY-2018-04 observed, labelled from the deepest
minimum (docs/sampling.md), the profile of a stau point with most of its yield in
SR1 has a local minimum at mu = 0 (the background-only minimum pulls a systematic
up to fill SR1's excess) and the global one at 0.25 (the other minimum, where
signal fills it); one scan bracketed [0, 0.625] and the slope at 0 sent the
bisection to 0, and 8 of 57 limits were 2-5% off. With the second scan all 57 are
within 0.03% of the exact profiler's (started from both minima); 17 points in it
instead of 9 changed no limit, and the search costs about 1.05 times the one-scan
search's time in a limit. Gradients
of :math:`\mathrm{nll}(\hat\mu)` flow by the envelope theorem; :math:`\hat\mu`
itself is not differentiated.

Every expectation but ``observed`` has data that are the model's expected data at
:math:`\mu = 0` (the background-only fit's, or the pre-fit ones): their likelihood
is saturated there, the exact profiler's global fit ends at :math:`\hat\mu = 0`
(to its tolerance), and the surrogate takes :math:`\hat\mu = 0` without a search
(where 0 lies within the POI's bounds). So of a limit's two free fits, to the data
and to the Asimov data, only the observed one searches.

Inference profiles a surrogate likelihood in groups (``profile_in_one_call =
False``): a fixed-``mu`` profile is one evaluation of one network, and only the free
fits ask for :math:`\hat\mu` (of which only the observed one searches). Limits
stop at a relative tolerance of 1e-5, just above the float32 networks' noise. With
an earlier root finding (bisection where Newton left the bracket) that tolerance
stopped some observed limits 0.8% (one 50%) short where the observed curve has a
kink; with false position inside the bracket it does not: on 1,000 non-negative
yield vectors each of LeakyReLU surrogates of ATLAS-SUSY-2018-04 and
ATLAS-SUSY-2019-08, every limit agrees with 1e-7's within 3e-6 relative, in 4.1-4.4
instead of 7.0-8.2 steps on average.

The Asimov likelihood that the :math:`\tilde q_\mu` and :math:`q_\mu` asymptotics
need (data at :math:`\mu = 0`) is the same surrogate's network for the matching
Asimov expectation: ``observed`` → ``observed_asimov`` (which are the
``aposteriori`` data, so that network serves too), ``aposteriori`` →
``aposteriori_asimov``, and so on.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from difflike._pytree import pytree_dataclass, replace, static
from difflike.errors import InputError
from difflike.infer._asymptotic import (
    HypotestDetails,
    LimitDetails,
    _check_statistic,
    hypotest_one,
    upper_limit_one,
)
from difflike.surrogate._surrogate import Surrogate, SurrogateNets

__all__ = ["SurrogateLikelihood", "asimov_expectations"]

#: points of the scan that brackets muhat
_SCAN_POINTS = 17
#: points of the second scan, over the first one's bracket
_REFINE_POINTS = 9
#: safeguarded Newton steps after the scan (smooth activations)
_NEWTON_STEPS = 10
#: bisection steps after the scan (LeakyReLU: no curvature; module doc)
_BISECTIONS = 12


def asimov_expectations(expectation: str) -> tuple[str, ...]:
    """Expectations whose data are the Asimov data (at ``mu = 0``) of ``expectation``,
    in order of preference."""
    if expectation == "observed":
        return ("observed_asimov", "aposteriori")
    if expectation.endswith("_asimov"):  # the Asimov data of Asimov data: itself
        return (expectation,)
    return (f"{expectation}_asimov",)


@pytree_dataclass
class SurrogateLikelihood:
    r"""The :class:`~difflike.infer.Likelihood` of a surrogate at yields ``signal``.

    Each likelihood evaluates only the network of its own expectation, and it is
    profiled in groups (``profile_in_one_call = False``, see
    :mod:`difflike.infer._likelihood`): a fixed-``mu`` profile is one evaluation,
    only a free one searches for :math:`\hat\mu`.

    Attributes:
        nets: the network of this expectation only, its one output
            (:meth:`~difflike.surrogate.SurrogateNets.select`).
        offset: its raw output at zero yields, ``(1,)`` (computed once).
        asimov_nets, asimov_offset: the same for its Asimov version (those of
            ``nets`` where the surrogate has no network for it).
        signal: signal yields at ``mu = 1``, ``(nsignal,)``.
        lo, hi: the POI's bounds, ``()`` each.
        expectation: the expectation this likelihood reads (static).
        asimov_expectation: the one its Asimov version reads, ``None`` where the
            surrogate has no network for it (static).
    """

    nets: SurrogateNets
    offset: Float[Array, " 1"]
    asimov_nets: SurrogateNets
    asimov_offset: Float[Array, " 1"]
    signal: Float[Array, " nsignal"]
    lo: Float[Array, ""]
    hi: Float[Array, ""]
    expectation: str = static()
    asimov_expectation: str | None = static(default=None)
    zero_in_bounds: bool = static(default=True)

    #: profiled in groups, by likelihood and fixed flag (module doc of
    #: :mod:`difflike.infer._likelihood`)
    profile_in_one_call = False

    @classmethod
    def create(
        cls, surrogate: Surrogate, signal, expectation: str = "observed"
    ) -> SurrogateLikelihood:
        head = surrogate.index(expectation)
        asimov = [
            e for e in asimov_expectations(expectation) if e in surrogate.expectations
        ]
        signal = surrogate._signal(jnp.asarray(signal, jnp.float64))
        if signal.ndim != 1:
            raise InputError(
                "a likelihood takes one yield vector; use jax.vmap (or "
                "Surrogate.hypotest / upper_limit) for a batch",
                got=tuple(signal.shape),
            )
        lo, hi = surrogate.poi_bounds
        zero = jnp.zeros(surrogate.nsignal)
        nets = surrogate.nets.select((head,))
        asimov_nets = (
            surrogate.nets.select((surrogate.index(asimov[0]),)) if asimov else nets
        )
        return cls(
            nets=nets,
            offset=nets.raw(zero),
            asimov_nets=asimov_nets,
            asimov_offset=asimov_nets.raw(zero),
            signal=signal,
            lo=jnp.asarray(lo, jnp.float64),
            hi=jnp.asarray(hi, jnp.float64),
            expectation=expectation,
            asimov_expectation=asimov[0] if asimov else None,
            zero_in_bounds=bool(lo <= 0.0 <= hi),
        )

    def nll(self, mu: Float[Array, ""]) -> Array:
        r""":math:`-\Delta_e(\mu s)`, ``()``."""
        s = mu * self.signal
        raw = (self.nets.raw(s) - self.offset) * self.nets.y_scale
        value = (raw + self.nets.baseline(s))[0]
        return -value.astype(jnp.float64)

    def fit(self) -> tuple[Array, Array]:
        """``(muhat, nll)``: the global fit within the POI's bounds (module doc)."""
        if self.expectation != "observed" and self.zero_in_bounds:
            # every other expectation's data are expected data at mu = 0: their
            # likelihood is saturated there, so muhat = 0 exactly (module doc)
            zero = jnp.zeros((), jnp.float64)
            return zero, self.nll(zero)
        grid = jnp.linspace(self.lo, self.hi, _SCAN_POINTS)
        values = jax.vmap(self.nll)(grid)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        k = jnp.argmin(values)
        # a second scan over the first one's bracket: the profile can have two
        # minima within one step of the first scan (module doc)
        grid = jnp.linspace(
            grid[jnp.maximum(k - 1, 0)],
            grid[jnp.minimum(k + 1, _SCAN_POINTS - 1)],
            _REFINE_POINTS,
        )
        values = jax.vmap(self.nll)(grid)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        k = jnp.argmin(values)
        a = grid[jnp.maximum(k - 1, 0)]
        b = grid[jnp.minimum(k + 1, _REFINE_POINTS - 1)]

        def slope(x):  # forward mode throughout: one input, one output
            return jax.jvp(self.nll, (x,), (jnp.ones_like(x),))[1]

        def shrink(a, b, x, g):
            # the minimum lies below x where the slope is positive, above it where
            # it is negative
            return jnp.where(g > 0, a, x), jnp.where(g > 0, x, b)

        def newton(_, abx):
            a, b, x = abx
            g, h = jax.jvp(slope, (x,), (jnp.ones_like(x),))
            a, b = shrink(a, b, x, g)
            step = x - g / jnp.where(h > 0, h, 1.0)
            inside = (h > 0) & (step > a) & (step < b)
            return a, b, jnp.where(inside, step, 0.5 * (a + b))

        def bisect(_, abx):
            a, b, x = abx
            a, b = shrink(a, b, x, slope(x))
            return a, b, 0.5 * (a + b)

        smooth = not self.nets.piecewise_linear
        steps, body = (_NEWTON_STEPS, newton) if smooth else (_BISECTIONS, bisect)
        a, b, x = lax.fori_loop(0, steps, body, (a, b, grid[k]))
        # the bracket's ends are candidates too (a minimum on a bound), and the
        # scan's best point guards against a bracket around a local maximum
        cands = lax.stop_gradient(jnp.stack([x, a, b, grid[k]]))
        vals = jax.vmap(self.nll)(cands)
        vals = jnp.where(jnp.isfinite(vals), vals, jnp.inf)
        j = jnp.argmin(vals)
        return cands[j], vals[j]  # gradients by the envelope theorem

    # ---- the Likelihood protocol -------------------------------------------

    def poi_bounds(self) -> tuple[Array, Array]:
        return self.lo, self.hi

    def profile(self, mu: Array, fixed: Array) -> tuple[Array, Array, Array]:
        """``(poi, nll, ok)``: ``nll(mu)`` where ``fixed``, else the global fit."""
        mu = jnp.asarray(mu, jnp.float64)
        if not isinstance(fixed, jax.core.Tracer) and bool(np.all(fixed)):
            # a fixed-mu fit is one evaluation: skip the global fit's scan
            value = self.nll(mu)
            return mu, value, jnp.isfinite(value)
        muhat, nll_hat = self.fit()
        fixed = jnp.asarray(fixed, bool)
        poi = jnp.where(fixed, mu, muhat)
        value = jnp.where(fixed, self.nll(mu), nll_hat)
        return poi, value, jnp.isfinite(value)

    def asimov(self, mu: float | Array) -> SurrogateLikelihood:
        """The likelihood of the Asimov data at ``mu = 0`` (the only ``mu`` a
        surrogate has networks for; ``q0``'s Asimov data at ``mu = 1`` are not)."""
        if not isinstance(mu, jax.core.Tracer) and np.any(np.asarray(mu) != 0.0):
            raise InputError(
                "a surrogate has Asimov likelihoods only at mu = 0 (test statistics "
                "qtilde and q; not q0)",
                got=mu,
            )
        if self.asimov_expectation is None:
            raise InputError(
                "this surrogate has no network for the Asimov data of this expectation",
                got=self.expectation,
                expected=" or ".join(asimov_expectations(self.expectation)),
            )
        return replace(
            self,
            nets=self.asimov_nets,
            offset=self.asimov_offset,
            expectation=self.asimov_expectation,
        )


# ---- batched inference on a surrogate ---------------------------------------


def _prepare(surrogate: Surrogate, signal, expectation: str):
    """``(lik, flat, batch)``: a likelihood to vary the signal of, the yields as
    ``(n, nsignal)``, and their batch shape."""
    signal = surrogate._signal(jnp.asarray(signal, jnp.float64))
    flat = signal.reshape(-1, signal.shape[-1])
    return (
        SurrogateLikelihood.create(surrogate, flat[0], expectation),
        flat,
        signal.shape[:-1],
    )


def _with_batch(out, batch):
    return jax.tree.map(lambda x: x.reshape(*batch, *x.shape[1:]), out)


@partial(jax.jit, static_argnames=("test_stat",))
def _hypotest_batch(lik: SurrogateLikelihood, flat, mu, *, test_stat):
    def one(s):
        return tuple(hypotest_one(mu, replace(lik, signal=s), test_stat))

    return jax.vmap(one)(flat)


@partial(jax.jit, static_argnames=("alpha", "test_stat", "rtol"))
def _limit_batch(lik: SurrogateLikelihood, flat, *, alpha, test_stat, rtol):
    def one(s):
        return tuple(upper_limit_one(replace(lik, signal=s), alpha, test_stat, rtol))

    return jax.vmap(one)(flat)


def hypotest(
    surrogate: Surrogate,
    signal,
    mu: float = 1.0,
    *,
    expectation: str = "observed",
    test_stat: str = "qtilde",
) -> HypotestDetails:
    """``dl.hypotest(mu, ...)`` on the surrogate at every yield vector of ``signal``
    (``(*b, nsignal)``), one compiled, vectorised call:
    :class:`~difflike.infer.HypotestDetails` with ``(*b,)`` leading axes."""
    _check_statistic(test_stat)
    lik, flat, batch = _prepare(surrogate, signal, expectation)
    mu = jnp.asarray(mu, jnp.float64)
    out = _hypotest_batch(lik, flat, mu, test_stat=test_stat)
    return HypotestDetails(*_with_batch(out, batch))


def upper_limit(
    surrogate: Surrogate,
    signal,
    *,
    cl: float = 0.95,
    expectation: str = "observed",
    test_stat: str = "qtilde",
    rtol: float = 1e-5,
) -> LimitDetails:
    """``dl.upper_limit`` on the surrogate at every yield vector of ``signal``
    (``(*b, nsignal)``), one compiled, vectorised call:
    :class:`~difflike.infer.LimitDetails` with ``(*b,)`` leading axes.

    ``rtol`` is the roots' relative tolerance. The default, 1e-5, lies just above
    the float32 network's own noise: a tighter one costs root-finding steps that
    only chase round-off."""
    _check_statistic(test_stat)
    if not 0.0 < cl < 1.0:
        raise InputError("cl must lie strictly between 0 and 1", got=cl)
    lik, flat, batch = _prepare(surrogate, signal, expectation)
    out = _limit_batch(
        lik, flat, alpha=float(1.0 - cl), test_stat=test_stat, rtol=float(rtol)
    )
    return LimitDetails(*_with_batch(out, batch))
