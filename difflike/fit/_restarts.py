r"""Other starts for a fit whose likelihood may have several minima.

Published likelihoods are not always unimodal in their nuisance parameters. On
ATLAS-SUSY-2018-04 a signal yield below the background can be made up either by the
tau energy scale or by ``TopSystHardCodeSR1``, a normsys whose up variation is 40
times a 0.04-event sample: Newton from the background-only fit raises the first and
stops in that (shallower) minimum, since near zero the second one barely moves the
rates. A *probe* finds such directions cheaply: each free parameter in turn is moved
from the start by each of :data:`PROBE_STEPS` (clipped to its bounds) and
:math:`-\ln L` evaluated, without derivatives; the parameters whose best move lowers
it most give one start each (the start with that move). A fit from each, and the
deepest converged minimum, is what :func:`difflike.fit` and :func:`difflike.profile`
return with ``restarts``, and what the sampler's labels use far from the best fit.

Probes move one parameter at a time. On ATLAS-SUSY-2019-08 some fits at fixed
:math:`\mu = 1` have minima that differ in the signs of several jet energy scale
parameters at once (up to 0.37 in :math:`-\ln L` apart): no single move reaches
the deeper one, but the *mirror* of the first minimum does, every Gaussian-
constrained parameter reflected through its constraint's centre (the auxiliary
datum), :math:`\theta \to 2 a - \theta`, which leaves every constraint term as it
was and flips the direction of each pull (:func:`mirrored`; ``mirror=True`` of
:func:`difflike.fit` and of inference).

Neither reaches every minimum. On ATLAS-SUSY-2018-04 at large signal yields in one
region, a minimum with four jet-energy-resolution pulls flipped together (and not
the others) lies up to 14 deeper in :math:`-\ln L`; random starts, every
constrained parameter drawn about the first start with a spread of a few
constraint widths (:func:`scattered`), find it. The sampler's labeller uses them
where it searches for other minima (:func:`difflike.sample._label.find_basins`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

__all__ = [
    "PROBE_STEPS",
    "SCATTER_SHRINK",
    "constraint_widths",
    "deeper",
    "mirrored",
    "probe_starts",
    "scattered",
]

#: the moves of one parameter a probe tries (in the parameter's units: one
#: standard deviation of a Gaussian-constrained nuisance parameter)
PROBE_STEPS = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0)
#: how often :func:`scattered` halves a start's move where the objective is not
#: finite there
SCATTER_SHRINK = 6


def probe_starts(
    fun,
    x: Float[Array, " n"],
    lower: Float[Array, " n"],
    upper: Float[Array, " n"],
    free: Bool[Array, " n"],
    args: tuple,
    probes: int,
) -> Float[Array, "probes n"]:
    """``probes`` starts, each ``x`` with one free coordinate moved (module doc).

    Args:
        fun: the objective, ``fun(x, *args) -> ()`` (may be infinite or NaN where
            undefined: such moves are not taken).
        x: the first start, ``(n,)``.
        lower, upper: bounds, ``(n,)``.
        free: which coordinates may move, ``(n,)``.
        args: ``fun``'s other arguments.
        probes: how many starts (at most the number of coordinates).

    Returns:
        the starts, ``(probes, n)``, best probe first. Where fewer coordinates than
        ``probes`` are free, or no move of a coordinate is finite, a start is ``x``
        itself or a move that does not lower ``fun`` (a redundant start, harmless).
    """
    steps = jnp.asarray(PROBE_STEPS)
    n = x.shape[0]

    def best_move(j):
        value = jnp.clip(x[j] + steps, lower[j], upper[j])
        moved = jnp.broadcast_to(x, (len(PROBE_STEPS), n)).at[:, j].set(value)
        v = jax.vmap(lambda xi: fun(xi, *args))(moved)
        v = jnp.where(jnp.isfinite(v) & free[j], v, jnp.inf)
        k = jnp.argmin(v)
        return v[k], jnp.where(free[j], value[k], x[j])

    value, where = lax.map(best_move, jnp.arange(n))
    _, top = lax.top_k(-value, probes)
    starts = jnp.broadcast_to(x, (probes, n))
    return starts.at[jnp.arange(probes), top].set(where[top])


def mirrored(
    model,
    data: Float[Array, " ndata"],
    x: Float[Array, " n"],
    lower: Float[Array, " n"],
    upper: Float[Array, " n"],
    free: Bool[Array, " n"],
) -> Float[Array, " n"]:
    """``x`` with every free Gaussian-constrained parameter reflected through its
    constraint's centre (module doc), clipped to the bounds, ``(n,)``.

    Args:
        model: the (single-example) model whose constraint terms say which
            parameters are Gaussian-constrained and where their auxiliary data are.
        data: main bins then auxiliary data, ``(ndata,)``: the centres are the
            auxiliary data (0 for observed data; the fitted values for Asimov data).
        x: a minimum, ``(n,)``.
        lower, upper: bounds, ``(n,)``.
        free: which coordinates may move, ``(n,)``.
    """
    centre = data[model.config.nmaindata :]
    which = model.aux_param
    gauss = ~model.aux_poisson & model.aux_mask & free[which]
    reflected = jnp.where(gauss, 2.0 * centre - x[which], x[which])
    return jnp.clip(x.at[which].set(reflected), lower, upper)


def constraint_widths(model) -> Float[Array, " npars"]:
    r"""Each parameter's constraint width, ``(npars,)``: the Gaussian's standard
    deviation, or the relative width :math:`1/\sqrt{\tau}` of a Poisson term of
    rate factor :math:`\tau` (shapesys); 0 for an unconstrained parameter."""
    width = jnp.where(model.aux_poisson, lax.rsqrt(model.aux_factor), model.aux_sigma)
    width = jnp.where(model.aux_mask, width, 0.0)
    return jnp.zeros(model.config.npars).at[model.aux_param].max(width)


def scattered(
    model,
    x: Float[Array, " n"],
    key: Array,
    starts: int,
    spread: float,
    free: Bool[Array, " n"],
    fun=None,
) -> Float[Array, "starts n"]:
    """``starts`` random starts about ``x`` (module doc): each free constrained
    parameter moved by a normal draw of ``spread`` times its constraint width
    (:func:`constraint_widths`), unconstrained and fixed ones left where they are,
    clipped to the bounds; ``(starts, n)``.

    Args:
        model: the model whose constraints give the widths.
        x: the centre, ``(n,)``.
        key: a :func:`jax.random.key`; the same key gives the same starts.
        starts: how many.
        spread: the draws' standard deviation in constraint widths.
        free: which parameters may move, ``(n,)``.
        fun: the objective, ``fun(x) -> ()``, if given: a start where it is not
            finite (an expected count below zero) is moved halfway back to ``x``,
            up to :data:`SCATTER_SHRINK` times. On ATLAS-SUSY-2018-04 a third of
            the draws at a spread of 1.5 start where it is not.
    """
    lower, upper = model.config.bounds[..., 0], model.config.bounds[..., 1]
    step = spread * jnp.where(free, constraint_widths(model), 0.0)
    z = jax.random.normal(key, (starts, x.shape[0]), dtype=x.dtype)
    out = jnp.clip(x + z * step, lower, upper)
    if fun is None:
        return out

    def back(y):
        def halve(_, y):
            return jnp.where(jnp.isfinite(fun(y)), y, 0.5 * (y + x))

        return lax.fori_loop(0, SCATTER_SHRINK, halve, y)

    return jax.vmap(back)(out)


def deeper(status, fun, than_status, than_fun):
    """Whether a minimum ``(status, fun)`` replaces ``(than_status, than_fun)``:
    it converged (status 0 or 1) and the other did not, or it lies lower.

    Elementwise over any common shape; pure :mod:`jax.numpy`, so traced or not.
    """
    return (status <= 1) & ((than_status > 1) | (fun < than_fun))
