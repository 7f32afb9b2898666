r"""Labels: :math:`\Delta_e(s)` for every sample and expectation, in batches.

For each expectation the data set and its background-only fit are computed once
(:func:`background_targets`); each label is then one fit at :math:`\mu = 1` with the
sample's yields, started from that background-only fit. Expectations whose data
are identical (pyhf's Asimov data at :math:`\mu = 0` *are* the a-posteriori
expectation, so ``"observed_asimov"`` equals ``"aposteriori"``) share their fits.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from difflike._vectorize import default_chunk, vectorize
from difflike.fit._api import MAX_ITER, TOL, _fit_kernel, check_solver
from difflike.histfactory import Model
from difflike.infer._delta import _check_expectation, _expectation_data_kernel
from difflike.sample._target import Target, delta_at, nuisance_of

__all__ = [
    "LABEL_SOLVER",
    "LABEL_TOL",
    "background_targets",
    "counting_summary",
    "label",
]

#: convergence tolerance of the label fits. Δ is needed to 1e-4 (the acceptance
#: against pyhf); half a Newton decrement of 1e-9 leaves Δ within ~1e-9 of the
#: 1e-12 fit (max 4e-10 on 3,072 ATLAS-SUSY-2018-04 labels) in ~2 fewer iterations.
LABEL_TOL = 1e-9
#: the label fits' Newton solver (see :func:`difflike.fit`). The factored step
#: ("lowrank") labels ATLAS-SUSY-2018-04 12% faster, but on ATLAS-SUSY-2019-08 it
#: is 28% slower (59 against 29 iterations on average), fails to converge on 7 of
#: 1,536 fits where the dense step converges on all, and at large -2 Delta lands in
#: other local minima than the dense step about as often as not: dense it is.
LABEL_SOLVER = "dense"


def background_targets(
    model: Model,
    data: Float[Array, " ndata"],
    expectations: tuple[str, ...],
    *,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
) -> tuple[Target, np.ndarray, Bool[Array, " nexpect"]]:
    """The data and background-only fit of each expectation.

    Returns:
        ``(targets, column, ok)``: one :class:`Target` per *distinct* data set
        (leaves with a leading axis, ``beta`` = 1); for each expectation the index
        of its data set, ``(nexpect,)``; and whether the fits behind each data set
        converged, ``(ntargets,)``.
    """
    sets: list[Array] = []
    oks: list[Array] = []
    column = []
    for e in expectations:
        _check_expectation(e)
        if e == "observed":
            d, ok = data, jnp.asarray(True)
        else:
            d, ok = _expectation_data_kernel(model, data, e, tol, max_iter)
        for i, prev in enumerate(sets):
            if np.array_equal(np.asarray(prev), np.asarray(d)):
                column.append(i)
                break
        else:
            column.append(len(sets))
            sets.append(d)
            oks.append(ok)
    stacked = jnp.stack(sets)
    zero = jnp.zeros((len(sets), model.config.nsignal))
    fits = _fit_kernel(
        model,
        stacked,
        zero,
        jnp.zeros(len(sets)),
        model.config.init,
        fix_poi=True,
        tol=tol,
        max_iter=max_iter,
    )
    targets = Target(
        data=stacked, init=fits.pars, nll0=fits.nll, beta=jnp.ones(len(sets))
    )
    return targets, np.asarray(column), jnp.stack(oks) & fits.converged


def counting_summary(
    model: Model,
    targets: Target,
    column: np.ndarray,
    expectations: tuple[str, ...],
) -> dict[str, dict[str, list[float]]]:
    """Per expectation, the signal bins as independent counting experiments:
    ``{"data", "background", "variance"}``, one value per signal bin (JSON-ready).

    ``data`` are the expectation's counts, ``background`` the background-only fit's
    expected counts, ``variance`` that background's variance from the fit's
    covariance (the pseudo-inverse Hessian of :math:`-\\ln L` over the free
    parameters, propagated linearly). Surrogates learn their departure from this
    (:mod:`difflike.surrogate._counting`); datasets record it as
    ``meta["counting"]``. ``targets`` and ``column`` are
    :func:`background_targets`'s for ``expectations``.
    """
    bins = jnp.asarray(model.signal_bins)
    zero = jnp.zeros(model.config.nsignal)
    index = nuisance_of(model).index

    def one(d, pars):
        def nll(x):
            return -model.logpdf(pars.at[index].set(x), d, zero)

        def rates(x):
            return model.expected_actualdata(pars.at[index].set(x), zero)[bins]

        x = pars[index]
        cov = jnp.linalg.pinv(jax.hessian(nll)(x), hermitian=True)
        j = jax.jacobian(rates)(x)
        var = jnp.maximum(jnp.einsum("ip,pq,iq->i", j, cov, j), 0.0)
        return d[bins], rates(x), var

    n, b, v = (
        np.asarray(a) for a in jax.jit(jax.vmap(one))(targets.data, targets.init)
    )
    return {
        e: {
            "data": n[k].tolist(),
            "background": b[k].tolist(),
            "variance": v[k].tolist(),
        }
        for e, k in zip(expectations, column)
    }


@partial(jax.jit, static_argnames=("tol", "solver"))
def _label_kernel(model, targets: Target, signal, *, tol, solver):
    def one(model, data, init, nll0, s):
        target = Target(data=data, init=init, nll0=nll0, beta=jnp.ones(()))
        delta, nll, status = delta_at(model, target, s, tol=tol, solver=solver)
        return delta, nll, status <= 1

    run = vectorize(
        one, "(n),(p),(),(s)->(),(),()", batch_ndim=lambda _: 0, chunk=default_chunk()
    )
    # (n, 1, nsignal) against (ntargets, ...): every sample with every data set
    return run(model, targets.data, targets.init, targets.nll0, signal[:, None, :])


def label(
    model: Model,
    targets: Target,
    column: np.ndarray,
    signal: Float[Array, "n nsignal"],
    base_ok: Bool[Array, " ntargets"] | None = None,
    *,
    batch_size: int = 1024,
    tol: float = LABEL_TOL,
    solver: str = LABEL_SOLVER,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(delta, nll, converged)``, each ``(n, nexpect)``, of a batch of yields.

    Args:
        model: the signal-region model.
        targets, column: from :func:`background_targets`.
        signal: yields, ``(n, nsignal)``.
        base_ok: whether the fits behind each target's data converged (from
            :func:`background_targets`); a label is converged only where they did.
        batch_size: yields per compiled call (each call is padded to a multiple
            of 64 rows, so a few compilations serve every ``n``).
        tol, solver: of the label fits (:data:`LABEL_TOL`, :data:`LABEL_SOLVER`;
            see :func:`difflike.fit`).
    """
    check_solver(solver)
    signal = np.asarray(signal, np.float64)
    n = len(signal)
    outs = []
    for start in range(0, n, batch_size):
        part = signal[start : start + batch_size]
        # pad to a multiple of 64 rows: few distinct shapes, so few compilations
        pad = -len(part) % 64
        padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
        d, v, ok = (
            np.asarray(x)
            for x in _label_kernel(model, targets, padded, tol=tol, solver=solver)
        )
        outs.append((d[: len(part)], v[: len(part)], ok[: len(part)]))
    delta, nll, ok = (np.concatenate(x) for x in zip(*outs))
    if base_ok is not None:
        ok = ok & np.asarray(base_ok)[None, :]
    return delta[:, column], nll[:, column], ok[:, column]
