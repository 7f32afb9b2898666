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
from difflike.fit._restarts import constraint_widths, deeper, mirrored, scattered
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
#: where :func:`find_basins` looks for other minima with probes and the mirror
#: (:mod:`difflike.fit._restarts`): each signal bin alone at these multiples of its
#: post-fit background. On ATLAS-SUSY-2018-04 the observed profile has a second
#: minimum (``TopSystHardCodeSR1`` pulled by +1.3 instead of the tau energy scale)
#: from the background-only fit itself, 0.043 deeper in -ln L, to yields well above
#: zero; the probes reach it only from yields below about -0.5, and labels that
#: took it there and not beside it jumped by up to 0.4 in -2 Delta along that line
#: (docs/sampling.md).
BASIN_YIELDS = (-0.8,)
#: where :func:`find_basins` also looks from random starts: each signal bin alone at
#: these multiples of its post-fit background, and every bin together at each. On
#: ATLAS-SUSY-2018-04 a minimum with four jet-energy-resolution pulls flipped together lies up to 14 deeper in -ln L at large yields in the
#: second region than where Newton, the probes or the mirror end (they move one
#: pull, or all); labels that missed it were up to 11 too low in Delta on 14% of
#: sampled rows (docs/sampling.md).
BASIN_SCATTER_YIELDS = (2.0, 4.0)
#: random starts per data set (:func:`difflike.fit._restarts.scattered`),
#: shared evenly among its search points: 32 at each of ATLAS-SUSY-2018-04's 8.
#: With 12 per point, which minima a seed found varied: labels of the same 200
#: rows of ATLAS-SUSY-2018-04 differed between two seeds by up to 10 in -ln L
BASIN_DRAWS = 256
#: the fewest random starts at a search point
BASIN_MIN_DRAWS = 8
#: their spread, in constraint widths, about the first minimum at each search point
#: (drawing again about the deepest one found there, basin hopping, reached deeper
#: minima at the search points but served labels elsewhere worse: docs/benchmarks.md)
BASIN_SPREAD = 1.5
#: the seed of the random starts (a dataset records it)
BASIN_SEED = 0
#: the most other starts a data set keeps (each costs every label one more fit)
BASIN_STARTS = 6
#: how many of them are the minima the probes and the mirror found, whatever
#: the random starts find: the deepest at their points first
BASIN_PROBE_STARTS = 2
#: the most minima per data set tried as starts at every search point before
#: the starts are chosen (:func:`_choose_starts`)
BASIN_CANDIDATES = 16
#: the multiples of each bin's post-fit background at whose combinations
#: :func:`_choose_starts` tries the candidates (:func:`_trial_yields`)
BASIN_TRIALS = (-0.5, 0.0, 1.0, 2.0, 4.0)
#: the most combinations; with more signal bins, each bin alone and all together
BASIN_MAX_TRIALS = 64
#: how much deeper in -ln L a minimum must be to count as another one
BASIN_MIN_GAIN = 1e-4
#: two minima closer than this in every free parameter (in constraint widths, or
#: the parameter's own units where it is unconstrained) are one start
BASIN_SAME = 0.2


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


def _background(model: Model, targets: Target) -> np.ndarray:
    """Each data set's post-fit background in the signal bins, ``(ntargets,
    nsignal)``."""
    zero = jnp.zeros(model.config.nsignal)
    bins = jnp.asarray(model.signal_bins)
    return np.asarray(
        jax.vmap(lambda p: model.expected_actualdata(p, zero)[bins])(targets.init)
    )


def _trial_yields(b: np.ndarray) -> np.ndarray:
    """Where :func:`_choose_starts` tries the candidates for a data set of post-fit
    background ``b`` ``(nsignal,)``, besides the search points: every combination
    of :data:`BASIN_TRIALS` times each bin's background where there are at most
    :data:`BASIN_MAX_TRIALS`, else each bin alone and all bins together at each of
    them; ``(ntrials, nsignal)``."""
    f = np.asarray(BASIN_TRIALS)
    if len(f) ** b.size <= BASIN_MAX_TRIALS:
        grid = np.stack(np.meshgrid(*[f] * b.size, indexing="ij"), -1)
        return grid.reshape(-1, b.size) * b
    axes = [x * np.diag(b) for x in f]
    return np.concatenate([*axes, f[:, None] * b[None, :]])


def _unique_rows(a: np.ndarray) -> np.ndarray:
    """``a`` ``(n, k)`` without repeated rows, in the order they first appear."""
    _, first = np.unique(a, axis=0, return_index=True)
    return a[np.sort(first)]


def _search_yields(
    model: Model, targets: Target
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where :func:`find_basins` looks: for each data set of ``targets``, each
    signal bin alone at :data:`BASIN_YIELDS` times that data set's post-fit
    background (``probed`` rows), then alone and all together at
    :data:`BASIN_SCATTER_YIELDS` times it; ``(yields, owner, probed)``,
    ``(nrows, nsignal)``, the data set of each row ``(nrows,)``, and whether the
    probes and the mirror search that row ``(nrows,)``."""
    background = _background(model, targets)
    rows, owner, probed = [], [], []
    for t, b in enumerate(background):
        probe = [f * np.diag(b) for f in BASIN_YIELDS]
        scatter = [f * np.diag(b) for f in BASIN_SCATTER_YIELDS]
        if BASIN_SCATTER_YIELDS and b.size > 1:
            scatter += [f * b[None, :] for f in BASIN_SCATTER_YIELDS]
        for block, flag in ((probe, True), (scatter, False)):
            for y in block:
                rows.append(y)
                owner += [t] * len(y)
                probed += [flag] * len(y)
    return np.concatenate(rows), np.asarray(owner), np.asarray(probed)


def find_basins(
    model: Model, targets: Target, *, tol: float = TOL, max_iter: int = MAX_ITER
) -> Target:
    """``targets`` with the other minima of each data set's profile as ``starts``,
    and the deepest background-only minimum as ``init`` and ``nll0`` (module doc).

    The search (:func:`_search_yields`): for each data set, fits at yields that are
    multiples of its own post-fit background (a pre-fit expectation's can lie far
    below the observed one's, and yields scaled by the observed one would leave its
    expected counts negative and its fits failed), from the background-only fit and
    from :data:`BASIN_DRAWS` random starts shared among the points
    (:func:`~difflike.fit._restarts.scattered`, seed :data:`BASIN_SEED`, about the
    first minimum at each point); at the negative yields also from the probes and
    the mirror (:mod:`difflike.fit._restarts`). The probes' minima are starts
    (:data:`BASIN_PROBE_STARTS`), and :func:`_choose_starts` chooses others among
    every minimum found. The background-only fit is then made again from each
    start: a deeper minimum there becomes the reference, and the old one a start.
    """
    config = model.config
    zero = jnp.zeros(config.nsignal)
    yields, owner, probed = _search_yields(model, targets)
    nrows = len(yields)
    kw = dict(tol=LABEL_TOL, solver=LABEL_SOLVER)
    paired = partial(_paired_kernel, model, **kw)
    first = _label_rows(partial(_label_kernel, model, targets, **kw), 64, yields)
    mine = (np.arange(nrows), owner)  # each point against its own data set
    base = np.where(first[2][mine], first[1][mine], np.inf)  # (nrows,)
    centre = np.array(first[4])[mine]  # where the random starts are drawn about
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def seen(rows, nll, ok, pars):
        """Record the minima deeper than the first fit's at their points."""
        deeper = ok & (nll < base[rows] - BASIN_MIN_GAIN)
        found.append((rows[deeper], base[rows[deeper]] - nll[deeper], pars[deeper]))
        return deeper

    # the probes' minima are starts whatever the random starts find (at most
    # BASIN_PROBE_STARTS per data set, the largest gains first)
    kept = [[] for _ in range(len(targets.nll0))]
    if probed.any():
        rows = np.flatnonzero(probed)
        kernel = partial(_restart_kernel, model, targets, probes=RESTART_PROBES, **kw)
        again = _label_rows(kernel, 64, yields[rows], first[4][rows])
        at = (np.arange(len(rows)), owner[rows])
        pars = np.asarray(again[4])[at]
        deeper = seen(rows, again[1][at], again[2][at], pars)
        centre[rows[deeper]] = pars[deeper]
        rows, gains, pars = found[0]
        for i in np.argsort(-gains, kind="stable"):
            if len(kept[owner[rows[i]]]) < BASIN_PROBE_STARTS:
                kept[owner[rows[i]]].append(pars[i])
    if BASIN_DRAWS:
        # the draws of a data set shared among its points
        per_point = max(BASIN_DRAWS // int(np.bincount(owner).max()), BASIN_MIN_DRAWS)
        draws = _scatter_kernel(
            model,
            targets.data[owner],
            jnp.asarray(centre),
            jnp.asarray(yields),
            jax.random.fold_in(jax.random.key(BASIN_SEED), 0),
            starts=per_point,
            spread=BASIN_SPREAD,
        )  # (nrows, per_point, npars)
        rows = np.repeat(np.arange(nrows), per_point)
        t = owner[rows]
        out = _label_rows(
            paired,
            64,
            targets.data[t],
            draws.reshape(len(rows), -1),
            targets.nll0[t],
            jnp.asarray(yields[rows]),
        )
        seen(rows, out[1], out[2], np.asarray(out[4]))
    lists = _choose_starts(model, targets, yields, owner, base, found, kept, paired)
    init, nll0 = np.array(targets.init), np.array(targets.nll0)
    for t, starts in enumerate(lists):
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


def _choose_starts(model, targets, yields, owner, base, found, kept, paired):
    """Which of the minima :func:`find_basins` found become starts, per data set: a
    list of ``(npars,)`` arrays each.

    The candidates (``found``: the search point, gain and minimum of every fit that
    ended deeper than the first fit at its point) are thinned to
    :data:`BASIN_CANDIDATES` per data set: each point's deepest, then each one's
    second deepest, and so on, one of any that lie within :data:`BASIN_SAME` of each
    other. ``kept`` (per data set, the probes' minima) are starts whatever the
    others do. Each is then a start at every trial point of its data set (the
    search points and :func:`_trial_yields`), and the other starts are chosen
    greedily as labels use them, given ``kept``: the one that lowers the deepest
    minimum over all those points the most,
    then the next given it, while a choice lowers one by :data:`BASIN_MIN_GAIN` or
    more, at most :data:`BASIN_STARTS`. A minimum that is the deepest at its own
    point need not be where a fit from it ends at another: on ATLAS-SUSY-2018-04
    keeping each point's deepest minimum missed starts that lower labels by up to
    10 in -ln L (docs/sampling.md)."""
    fixed = np.asarray(model.config.fixed)
    scale = np.asarray(constraint_widths(model))
    scale = np.where(scale > 0, scale, 1.0)[~fixed]
    rows = np.concatenate([f[0] for f in found]) if found else np.zeros(0, int)
    gains = np.concatenate([f[1] for f in found]) if found else np.zeros(0)
    pars = np.concatenate([f[2] for f in found]) if found else np.zeros((0, 1))
    picked = []
    for t in range(len(targets.nll0)):
        mine = np.flatnonzero(owner[rows] == t)
        # round robin over the search points: each point's deepest minimum, then
        # each one's second, ...: a point with small gains still contributes
        by_gain = mine[np.argsort(-gains[mine], kind="stable")]
        rank = np.zeros(len(by_gain), int)
        for p in np.unique(rows[by_gain]):
            at = rows[by_gain] == p
            rank[at] = np.arange(at.sum())
        cands: list[np.ndarray] = list(kept[t])
        for i in by_gain[np.argsort(rank, kind="stable")]:
            if len(cands) == len(kept[t]) + BASIN_CANDIDATES:
                break
            near = (np.max(np.abs(pars[i] - c)[~fixed] / scale) for c in cands)
            if min(near, default=np.inf) > BASIN_SAME:
                cands.append(pars[i])
        picked.append(cands)
    # the fit from init and from every candidate at every trial point of its data
    # set, in one batch
    trials = [
        _unique_rows(np.concatenate([_trial_yields(b), yields[owner == t]]))
        for t, b in enumerate(_background(model, targets))
    ]
    init = np.asarray(targets.init)
    pairs = [
        (t, c, r)
        for t, cands in enumerate(picked)
        if cands
        for c in range(len(cands) + 1)
        for r in range(len(trials[t]))
    ]
    if not pairs:
        return [[] for _ in picked]
    t, c, r = (np.asarray(a) for a in zip(*pairs))
    out = _label_rows(
        paired,
        64,
        targets.data[t],
        jnp.asarray(
            np.stack(
                [init[ti] if ci == 0 else picked[ti][ci - 1] for ti, ci in zip(t, c)]
            )
        ),
        targets.nll0[t],
        jnp.asarray(np.stack([trials[ti][ri] for ti, ri in zip(t, r)])),
    )
    value = np.where(out[2], out[1], np.inf)
    lists = []
    for k, cands in enumerate(picked):
        if not cands:
            lists.append([])
            continue
        # (1 + ncandidates, ntrials): -ln L from init, then each candidate
        v = value[t == k].reshape(len(cands) + 1, len(trials[k]))
        deepest, v = v[0], v[1:]
        chosen: list[np.ndarray] = list(kept[k])
        for j in range(len(chosen)):
            deepest = np.minimum(deepest, v[j])
            v[j] = np.inf
        while len(chosen) < BASIN_STARTS:
            lower = np.where(
                np.isfinite(v),
                np.minimum(np.where(np.isfinite(deepest), deepest - v, 1e6), 1e6),
                0.0,
            )
            j = int(np.argmax(np.maximum(lower, 0.0).sum(axis=1)))
            if lower[j].max() < BASIN_MIN_GAIN:
                break
            chosen.append(cands[j])
            deepest = np.minimum(deepest, v[j])
            v[j] = np.inf
        lists.append(chosen)
    return lists


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


def _fits(model, data, init, nll0, signal, *, tol, solver):
    """``(delta, nll, converged, gradient, pars)`` of the fits at ``signal`` on
    ``data`` started from ``init``, ``delta`` against ``nll0``: the arguments
    broadcast against each other (leading axes), each output has their common shape
    (then ``nsignal`` or ``npars``)."""

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
    delta, nll, status, grad, pars = run(model, data, init, nll0, signal)
    return delta, nll, status <= 1, grad, pars


@partial(jax.jit, static_argnames=("tol", "solver"))
def _label_kernel(model, targets: Target, signal, *, tol, solver):
    """``(delta, nll, converged, gradient, pars)``, each ``(n, ntargets[, nsignal or
    npars])``: every sample ``(n, nsignal)`` against every target's data, the fits
    started from ``targets.init``; ``gradient`` is :math:`\\partial\\Delta/\\partial s`
    (:func:`_gradient`). ``pars`` (the minima) are what a restart pass mirrors."""
    # (n, 1, nsignal) against (ntargets, ...): every sample with every data set
    return _fits(
        model,
        targets.data,
        targets.init,
        targets.nll0,
        signal[:, None, :],
        tol=tol,
        solver=solver,
    )


@partial(jax.jit, static_argnames=("starts", "spread"))
def _scatter_kernel(model, data, centre, signal, key, *, starts, spread):
    """:func:`~difflike.fit._restarts.scattered` starts for each search point,
    ``(nrows, starts, npars)``: about ``centre`` ``(nrows, npars)``, each kept where
    :math:`-\\ln L` at its ``data`` ``(nrows, ndata)`` and ``signal`` ``(nrows,
    nsignal)`` is finite (module doc of :mod:`difflike.fit._restarts`)."""
    free = ~model.config.fixed

    def one(d, x, s, k):
        def nll(y):
            return -model.logpdf(y, d, s)

        return scattered(model, x, k, starts, spread, free, nll)

    keys = jax.random.split(key, centre.shape[0])
    return jax.vmap(one)(data, centre, signal, keys)


#: :func:`_fits` row by row: ``data (n, ndata), init (n, npars), nll0 (n,), signal
#: (n, nsignal)``, one fit each (find_basins' random starts)
_paired_kernel = jax.jit(_fits, static_argnames=("tol", "solver"))


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
