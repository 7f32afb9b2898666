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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float

__all__ = ["PROBE_STEPS", "deeper", "mirrored", "probe_starts"]

#: the moves of one parameter a probe tries (in the parameter's units: one
#: standard deviation of a Gaussian-constrained nuisance parameter)
PROBE_STEPS = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0, 3.0)


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


def deeper(status, fun, than_status, than_fun):
    """Whether a minimum ``(status, fun)`` replaces ``(than_status, than_fun)``:
    it converged (status 0 or 1) and the other did not, or it lies lower.

    Elementwise over any common shape; pure :mod:`jax.numpy`, so traced or not.
    """
    return (status <= 1) & ((than_status > 1) | (fun < than_fun))
