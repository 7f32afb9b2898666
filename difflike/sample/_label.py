r"""Labels: :math:`\Delta_e(s)` for every sample and expectation, in batches.

For each expectation the data set and its background-only fit are computed once
(:func:`background_targets`); each label is then one fit at :math:`\mu = 1` with the
sample's yields, started from that background-only fit. Where that label lies
beyond :data:`RESTART_ABOVE`, or a yield is negative, the fit is repeated from
other starts (:mod:`difflike.fit._restarts`: probes, and the mirror of the first
minimum) and the deepest minimum kept: there the profile can be multimodal.

Some minima are not reached that way near zero signal. :func:`find_basins` looks
for them once per data set, at yields far below the background where the probes do
reach them; every label is then also fitted from each minimum it found, and the
deepest background-only minimum, not necessarily the one Newton reaches from the
model's initial parameters, is the reference of :math:`\Delta` (so
:math:`\Delta(0) = 0` and labels are continuous where two minima cross; a label
that took the other minimum only where the probes find it jumped by up to 0.4 in
:math:`-2\Delta` on ATLAS-SUSY-2018-04, docs/sampling.md). Expectations whose data
are identical (pyhf's Asimov data at :math:`\mu = 0` *are* the a-posteriori
expectation, so ``"observed_asimov"`` equals ``"aposteriori"``) share their fits.

Each label comes with its gradient :math:`\partial\Delta_e/\partial s` at the same
minimum, which costs one reverse pass of :math:`\ln L` at fixed parameters
(envelope theorem) against the fit's dozens of Hessians: surrogates can learn
from both (``gradient_weight``, :mod:`difflike.surrogate._train`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float

from difflike._pytree import replace
from difflike._vectorize import default_chunk, vectorize
from difflike.fit._api import MAX_ITER, TOL, _fit_kernel, check_solver
from difflike.fit._restarts import deeper, mirrored
from difflike.histfactory import Model
from difflike.infer._delta import _check_expectation, _expectation_data_kernel
from difflike.sample._target import Target, delta_at, nuisance_of

__all__ = [
    "LABEL_SOLVER",
    "LABEL_TOL",
    "RESTART_ABOVE",
    "RESTART_PROBES",
    "background_targets",
    "counting_summary",
    "find_basins",
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
#: -2 Delta beyond which a label's fit is repeated from probe starts
#: (:mod:`difflike.fit._restarts`) and the deepest converged minimum kept; rows with
#: a negative yield are repeated whatever their -2 Delta. The profile is multimodal
#: there. On the reference vectors of ATLAS-SUSY-2018-04 (yields down to -0.8 times
#: the background) Newton from the background-only fit ended 1.1-1.7 above pyhf's
#: minimum in -ln L on 6 of 20, at pyhf's -2 Delta of 0.7-0.8 (inside the band),
#: and 0.1-0.9 below it on 11 others (pyhf's is the shallower minimum there); on
#: 256 sampled rows with a negative yield the probes found a deeper minimum for 36%
#: of the observed labels (up to 1.9 in -ln L; 33% in the band), and on 256 rows
#: with non-negative yields beyond -2 Delta = 10, none. On ATLAS-SUSY-2019-08
#: strongly excluded non-negative vectors (-2 Delta of 60-120) ended 0.7-1.7 above
#: pyhf's on 2 of 20; the restart pass's starts are the probes and the mirror of
#: the first minimum (:func:`~difflike.fit._restarts.mirrored`; docs/sampling.md).
#: A restarted row costs about four times a plain label.
#: ``None`` or ``inf`` turns restarts off.
RESTART_ABOVE = 20.0
#: how many probe starts a restart tries besides the first
RESTART_PROBES = 2
#: iteration cap of a restarted fit (from the background-only fit ~10 suffice)
RESTART_MAX_ITER = 100
#: where :func:`find_basins` looks for other minima: each signal bin alone at
#: these multiples of its post-fit background. On ATLAS-SUSY-2018-04 the observed
#: profile has a second minimum (``TopSystHardCodeSR1`` pulled by +1.3 instead of
#: the tau energy scale) from the background-only fit itself, 0.043 deeper in
#: -ln L, to yields well above zero; the probes reach it only from yields below
#: about -0.5, and labels that took it there and not beside it jumped by up to
#: 0.4 in -2 Delta along that line (docs/sampling.md).
BASIN_YIELDS = (-0.8,)
#: the most other starts a data set keeps
BASIN_STARTS = 2
#: how much deeper in -ln L a minimum must be to count as another one
BASIN_MIN_GAIN = 1e-4


def background_targets(
    model: Model,
    data: Float[Array, " ndata"],
    expectations: tuple[str, ...],
    *,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    basins: bool = True,
) -> tuple[Target, np.ndarray, Bool[Array, " nexpect"]]:
    """The data and background-only fit of each expectation; with ``basins``, the
    other minima of the profile that :func:`find_basins` finds, and the deepest
    background-only minimum as the reference.

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
    if basins:
        targets = find_basins(model, targets, tol=tol, max_iter=max_iter)
    return targets, np.asarray(column), jnp.stack(oks) & fits.converged


def _search_yields(model: Model, targets: Target) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`find_basins` looks: for each data set of ``targets``, each
    signal bin alone at :data:`BASIN_YIELDS` times that data set's post-fit
    background; ``(yields, owner)``, ``(nrows, nsignal)`` and the data set of each
    row, ``(nrows,)``."""
    zero = jnp.zeros(model.config.nsignal)
    bins = jnp.asarray(model.signal_bins)
    background = np.asarray(
        jax.vmap(lambda p: model.expected_actualdata(p, zero)[bins])(targets.init)
    )  # (ntargets, nsignal)
    yields = np.concatenate([f * np.diag(b) for b in background for f in BASIN_YIELDS])
    owner = np.repeat(np.arange(len(background)), len(BASIN_YIELDS) * bins.size)
    return yields, owner


def find_basins(
    model: Model, targets: Target, *, tol: float = TOL, max_iter: int = MAX_ITER
) -> Target:
    """``targets`` with the other minima of each data set's profile as ``starts``,
    and the deepest background-only minimum as ``init`` and ``nll0`` (module doc).

    The search: for each data set, each signal bin alone at :data:`BASIN_YIELDS`
    times that data set's own post-fit background (a pre-fit expectation's can lie
    far below the observed one's, and yields scaled by the observed one would leave
    its expected counts negative and its fits failed), labelled with restarts
    (probes and the mirror, :mod:`difflike.fit._restarts`); every data set's rows
    share one batch, and each data set reads only its own (:func:`_search_yields`).
    Where a restart ends at least :data:`BASIN_MIN_GAIN` deeper than the fit from
    ``init``, its minimum is another start (at most :data:`BASIN_STARTS` per data
    set, the largest gains first), and the background-only fit is made again from
    it: a deeper minimum there becomes the reference, and the old one a start.
    """
    config = model.config
    zero = jnp.zeros(config.nsignal)
    yields, owner = _search_yields(model, targets)
    kw = dict(tol=LABEL_TOL, solver=LABEL_SOLVER)
    first = _label_rows(partial(_label_kernel, model, targets, **kw), 64, yields)
    kernel = partial(_restart_kernel, model, targets, probes=RESTART_PROBES, **kw)
    again = _label_rows(kernel, 64, yields, first[4])
    gain = np.where(
        again[2], np.where(first[2], first[1] - again[1], np.inf), -np.inf
    )  # (nyields, ntargets)
    gain = np.where(owner[:, None] == np.arange(gain.shape[1]), gain, -np.inf)
    minima = np.asarray(again[4])
    init, nll0 = np.array(targets.init), np.array(targets.nll0)
    lists = []
    for t in range(len(nll0)):
        rows = [r for r in np.argsort(-gain[:, t]) if gain[r, t] >= BASIN_MIN_GAIN]
        starts = [minima[r, t] for r in rows[:BASIN_STARTS]]
        if starts:
            fit = _fit_kernel(
                model,
                targets.data[t],
                zero,
                jnp.zeros(()),
                jnp.asarray(np.stack(starts)),
                fix_poi=True,
                tol=tol,
                max_iter=max_iter,
            )
            value = np.where(np.asarray(fit.converged), np.asarray(fit.nll), np.inf)
            k = int(np.argmin(value))
            if value[k] < nll0[t] - BASIN_MIN_GAIN:
                # the background-only fit had stopped in a shallower minimum
                starts[k] = init[t].copy()
                init[t], nll0[t] = np.asarray(fit.pars[k]), value[k]
        lists.append(starts)
    most = max(map(len, lists))
    if most == 0:
        return targets
    padded = np.stack(
        [np.stack([*st, *[init[t]] * (most - len(st))]) for t, st in enumerate(lists)]
    )
    return replace(
        targets,
        init=jnp.asarray(init),
        nll0=jnp.asarray(nll0),
        starts=jnp.asarray(padded),
    )


def signal_bin_covariance(
    model: Model, targets: Target
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per data set of ``targets``: the signal bins' counts and post-fit backgrounds
    ``(ntargets, nsignal)`` each, and those backgrounds' covariance ``(ntargets,
    nsignal, nsignal)``: the pseudo-inverse Hessian of :math:`-\\ln L` over the
    free parameters at the fit ``targets.init``, propagated linearly."""
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
        return d[bins], rates(x), j @ cov @ j.T

    return tuple(
        np.asarray(a) for a in jax.jit(jax.vmap(one))(targets.data, targets.init)
    )


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
    n, b, cov = signal_bin_covariance(model, targets)
    v = np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 0.0)
    return {
        e: {
            "data": n[k].tolist(),
            "background": b[k].tolist(),
            "variance": v[k].tolist(),
        }
        for e, k in zip(expectations, column)
    }


def _gradient(model, data, pars, s):
    r""":math:`\partial\Delta/\partial s` at a minimum ``pars`` of the fit at ``s``,
    ``(nsignal,)``: by the envelope theorem the derivative of :math:`\ln L` at fixed
    parameters (:math:`\Delta` = :math:`\ln L(s) - \ln L(0)`, the latter constant)."""
    pars = lax.stop_gradient(pars)
    return jax.grad(lambda x: model.logpdf(pars, data, x))(s)


@partial(jax.jit, static_argnames=("tol", "solver"))
def _label_kernel(model, targets: Target, signal, *, tol, solver):
    """``(delta, nll, converged, gradient, pars)``, each ``(n, ntargets[, nsignal or
    npars])``: every sample ``(n, nsignal)`` against every target's data, the fits
    started from ``targets.init``; ``gradient`` is :math:`\\partial\\Delta/\\partial s`
    (:func:`_gradient`). ``pars`` (the minima) are what a restart pass mirrors."""

    def one(model, data, init, nll0, s):
        target = Target(data=data, init=init, nll0=nll0, beta=jnp.ones(()))
        delta, nll, status, pars = delta_at(
            model,
            target,
            s,
            tol=tol,
            solver=solver,
            max_iter=MAX_ITER,
            return_pars=True,
        )
        return delta, nll, status, _gradient(model, data, pars, s), pars

    run = vectorize(
        one,
        "(n),(p),(),(s)->(),(),(),(s),(p)",
        batch_ndim=lambda _: 0,
        chunk=default_chunk(),
    )
    # (n, 1, nsignal) against (ntargets, ...): every sample with every data set
    delta, nll, status, grad, pars = run(
        model, targets.data, targets.init, targets.nll0, signal[:, None, :]
    )
    return delta, nll, status <= 1, grad, pars


@partial(jax.jit, static_argnames=("tol", "solver", "probes"))
def _restart_kernel(model, targets: Target, signal, first, *, tol, solver, probes):
    """``(delta, nll, converged, gradient)``, each ``(n, ntargets[, nsignal])``: the
    fits of :func:`_label_kernel` made again from ``probes`` probe starts
    (:mod:`difflike.fit._restarts`) and from the mirror of ``first``, the first
    pass's minima ``(n, ntargets, npars)`` (:func:`~difflike.fit._restarts.mirrored`),
    the deepest converged minimum kept."""
    lower, upper = model.config.bounds[..., 0], model.config.bounds[..., 1]

    def one(model, data, init, nll0, s, first):
        target = Target(data=data, init=init, nll0=nll0, beta=jnp.ones(()))
        kw = dict(tol=tol, solver=solver, max_iter=RESTART_MAX_ITER)
        # the fit from targets.init is the first pass: the probe starts alone
        out = delta_at(
            model, target, s, restarts=probes, probes_only=True, return_pars=True, **kw
        )
        start = mirrored(model, data, first, lower, upper, ~model.config.fixed)
        other = delta_at(model, replace(target, init=start), s, return_pars=True, **kw)
        keep = deeper(other[2], other[1], out[2], out[1])
        delta, nll, status, pars = jax.tree.map(partial(jnp.where, keep), other, out)
        return delta, nll, status, _gradient(model, data, pars, s), pars

    run = vectorize(
        one,
        "(n),(p),(),(s),(p)->(),(),(),(s),(p)",
        batch_ndim=lambda _: 0,
        chunk=default_chunk(),
    )
    delta, nll, status, grad, pars = run(
        model, targets.data, targets.init, targets.nll0, signal[:, None, :], first
    )
    return delta, nll, status <= 1, grad, pars


@partial(jax.jit, static_argnames=("tol", "solver"))
def _start_kernel(model, targets: Target, signal, *, tol, solver):
    """``(delta, nll, converged, gradient)``, each ``(n, ntargets[, nsignal])``: the
    fits of :func:`_label_kernel` made from each of ``targets.starts`` (``(ntargets,
    nstarts, npars)``) instead of ``targets.init``, the deepest converged kept."""
    ntargets, nstarts, npars = targets.starts.shape
    # every (target, start) pair as a target of its own
    pairs = Target(
        data=jnp.repeat(targets.data, nstarts, axis=0),
        init=targets.starts.reshape(ntargets * nstarts, npars),
        nll0=jnp.repeat(targets.nll0, nstarts),
        beta=jnp.ones(()),
    )
    delta, nll, ok, grad, _ = _label_kernel(
        model, pairs, signal, tol=tol, solver=solver
    )
    n = signal.shape[0]
    delta, nll, ok = (a.reshape(n, ntargets, nstarts) for a in (delta, nll, ok))
    grad = grad.reshape(n, ntargets, nstarts, -1)
    k = jnp.argmin(jnp.where(ok, nll, jnp.inf), axis=-1)[..., None]
    delta, nll, ok = (
        jnp.take_along_axis(a, k, axis=-1)[..., 0] for a in (delta, nll, ok)
    )
    grad = jnp.take_along_axis(grad, k[..., None], axis=2)[:, :, 0]
    return delta, nll, ok, grad


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
    restart_above: float | None = RESTART_ABOVE,
    return_gradient: bool = False,
) -> tuple[np.ndarray, ...]:
    """``(delta, nll, converged)``, each ``(n, nexpect)``, of a batch of yields, and
    with ``return_gradient`` :math:`\\partial\\Delta/\\partial s` at the same minima,
    ``(n, nexpect, nsignal)``, after them.

    Args:
        model: the signal-region model.
        targets, column: from :func:`background_targets`.
        signal: yields, ``(n, nsignal)``.
        base_ok: whether the fits behind each target's data converged (from
            :func:`background_targets`); a label is converged only where they did.
        batch_size: yields per compiled call (each call is padded to a power of
            two, at least 64 rows, so a few compilations serve every ``n``).
        tol, solver: of the label fits (:data:`LABEL_TOL`, :data:`LABEL_SOLVER`;
            see :func:`difflike.fit`).
        restart_above: rows with :math:`-2\\Delta` above this for some data set,
            or with a negative yield, are fitted again from
            :mod:`difflike.fit._restarts`, keeping the deepest converged minimum
            (:data:`RESTART_ABOVE`; ``inf``: rows with a negative yield only;
            ``None``: never).
    """
    check_solver(solver)
    signal = np.asarray(signal, np.float64)
    delta, nll, ok, grad, pars = _label_rows(
        partial(_label_kernel, model, targets, tol=tol, solver=solver),
        batch_size,
        signal,
    )
    best = (delta, nll, ok, grad)
    every = np.arange(len(signal))
    has = _has_starts(targets)
    if has.any():
        sub = np.flatnonzero(has)
        subset = jax.tree.map(lambda a: a[sub], targets)
        kernel = partial(_start_kernel, model, subset, tol=tol, solver=solver)
        _keep_deeper(best, _label_rows(kernel, batch_size, signal)[:4], every, sub)
    if restart_above is not None:
        far = np.flatnonzero(
            (-2.0 * delta > restart_above).any(axis=1) | (signal < 0).any(axis=1)
        )
        if len(far):
            kernel = partial(
                _restart_kernel,
                model,
                targets,
                tol=tol,
                solver=solver,
                probes=RESTART_PROBES,
            )
            again = _label_rows(kernel, batch_size, signal[far], pars[far])[:4]
            _keep_deeper(best, again, far, np.arange(delta.shape[1]))
    if base_ok is not None:
        ok = ok & np.asarray(base_ok)[None, :]
    out = (delta[:, column], nll[:, column], ok[:, column])
    return (*out, grad[:, column]) if return_gradient else out


def _has_starts(targets: Target) -> np.ndarray:
    """Which targets have other starts than their ``init``, ``(ntargets,)`` bool."""
    if targets.starts is None:
        return np.zeros(len(targets.nll0), bool)
    starts, init = np.asarray(targets.starts), np.asarray(targets.init)
    return np.any(starts != init[:, None], axis=(1, 2))


def _keep_deeper(best, other, rows, cols) -> None:
    """Where a fit of ``other`` converged and the one in ``best`` did not, or lies
    deeper, take it: ``best`` and ``other`` are ``(delta, nll, converged,
    gradient)``, ``best``'s of every row and target (updated in place), ``other``'s
    of the rows ``rows`` and targets ``cols`` (index arrays)."""
    delta, nll, ok, grad = best
    d2, v2, ok2, g2 = other
    at = np.ix_(rows, cols)
    better = ok2 & (~ok[at] | (v2 < nll[at]))
    delta[at] = np.where(better, d2, delta[at])
    nll[at] = np.where(better, v2, nll[at])
    grad[at] = np.where(better[..., None], g2, grad[at])
    ok[at] |= better


def _label_rows(kernel, batch_size, *rows):
    """``kernel(*batch)`` over ``rows`` (arrays of ``n`` rows each) in padded
    batches of ``batch_size``: its ``(delta, nll, converged, gradient)`` as numpy
    arrays, each ``(n, ntargets[, nsignal])``, and any further outputs (the first
    pass's minima) as device arrays, unpadded and concatenated.

    Only the rows a restart pass takes of the minima ever leave the device."""
    n = len(rows[0])
    outs = []
    for start in range(0, n, batch_size):
        part = [r[start : start + batch_size] for r in rows]
        # pad to a power of two (at least 64 rows): the restarts' share of a
        # chunk varies, and every new shape would compile the kernel again
        m = len(part[0])
        pad = max(64, 1 << (m - 1).bit_length()) - m
        padded = [jnp.concatenate([r, jnp.repeat(r[-1:], pad, axis=0)]) for r in part]
        outs.append([x[:m] for x in kernel(*padded)])
    host = tuple(np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(4))
    device = tuple(
        jnp.concatenate([o[k] for o in outs]) for k in range(4, len(outs[0]))
    )
    return host + device
