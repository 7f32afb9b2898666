"""``difflike.sample.sample``: NUTS over signal yields, labelled, written to disk.

The run, chunk by chunk (each chunk committed atomically, see
:mod:`difflike.sample._dataset`):

1. the expectations' data sets and background-only fits (:mod:`._label`), the
   yield space (bounds and scales from the post-fit background);
2. one group of chains per sampled expectation and temperature
   (:mod:`._target`, :mod:`._nuts`), all in one vectorised NUTS program, warmed up
   and their state saved;
3. per chunk: ``steps_per_chunk`` transitions of every chain, plus exploratory
   draws from the prior, all labelled with :math:`\\Delta_e` for every expectation;
4. a summary: counts, failures, NUTS diagnostics and the coverage of
   :math:`-2\\Delta` per expectation (:func:`summarize`).

A run started again on the same folder with the same settings resumes after the
last committed chunk, from the saved state of the chains, and produces the same
samples an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from difflike._pytree import replace
from difflike._version import __version__
from difflike.errors import InputError
from difflike.fit._api import check_solver
from difflike.histfactory import Model
from difflike.sample import _dataset
from difflike.sample._label import (
    BASIN_CANDIDATES,
    BASIN_DRAWS,
    BASIN_MIN_DRAWS,
    BASIN_PROBE_STARTS,
    BASIN_SAME,
    BASIN_SCATTER_YIELDS,
    BASIN_SEED,
    BASIN_SPREAD,
    BASIN_STARTS,
    BASIN_TRIALS,
    BASIN_YIELDS,
    LABEL_SOLVER,
    LABEL_TOL,
    RESTART_ABOVE,
    RESTART_PROBES,
    _keep_deeper,
    _label_rows,
    _start_kernel,
    background_targets,
    counting_summary,
    find_basins,
    label,
)
from difflike.sample._nuts import (
    init_chains,
    run_chains,
    state_from_arrays,
    state_to_arrays,
)
from difflike.sample._target import (
    PRIOR_DF,
    Target,
    YieldSpace,
    from_unconstrained,
    joint_yields,
    nuisance_of,
    to_unconstrained,
)

__all__ = ["SamplerSettings", "sample", "summarize", "yield_space"]

#: the expectations labelled by default: the data, the background-only expectation,
#: and the Asimov data the asymptotic formulas build from each
LABEL_EXPECTATIONS = (
    "observed",
    "aposteriori",
    "observed_asimov",
    "aposteriori_asimov",
)


#: what NUTS samples (see :class:`SamplerSettings`)
DENSITIES = ("joint", "profiled")


@dataclass(frozen=True)
class SamplerSettings:
    """How :func:`sample` draws and labels (stored in the dataset's sidecar).

    Attributes:
        expectations: the expectations every sample is labelled with.
        sampled: the expectations whose tempered likelihoods NUTS samples.
        temperatures: the ladder of :math:`\\beta` (one chain group each, per
            sampled expectation).
        chains_per_target: chains per (expectation, temperature).
        num_warmup: adaptation transitions per chain (rounded up to whole chunks).
        steps_per_chunk: transitions per chain between two commits.
        explore_fraction: share of exploratory prior draws among all samples.
        near_fraction: share of the exploratory draws taken near zero yields
            instead of from the broad prior: the best fit of the a-posteriori
            expectations is ``s = 0`` exactly (of the observed one, within a yield
            scale of it), which tempered chains in many dimensions rarely visit
            (on ATLAS-SUSY-2019-08, 9 bins, no aposteriori sample had -2Δ < 1.1).
        near_width: their largest width in units of each bin's yield scale (the
            widths spread log-uniformly down to ``NEAR_RANGE`` times this).
        prior_width: the prior's width in units of each bin's yield scale.
        lower_margin: negative yields reach ``-(1 - lower_margin)`` times the
            post-fit background of their bin.
        max_tree_depth: NUTS's tree-depth cap.
        target_accept: NUTS's target acceptance probability.
        label_batch: yields per labelling call.
        label_tol, label_solver: convergence tolerance and Newton solver of the
            label fits (:data:`~difflike.sample._label.LABEL_TOL`,
            :data:`~difflike.sample._label.LABEL_SOLVER`; see :func:`difflike.fit`).
        label_restart_above: :math:`-2\\Delta` beyond which (and for negative
            yields) a label's fit is repeated from other starts and the deepest
            minimum kept (:data:`~difflike.sample._label.RESTART_ABOVE`; ``inf``:
            negative yields only; ``None``: never, nor from the other minima of
            :func:`~difflike.sample._label.find_basins`).
        density: ``"joint"``: NUTS samples yields and nuisance parameters
            together (one log-likelihood gradient per leapfrog step,
            :func:`~difflike.sample._target.joint_potential`); ``"profiled"``:
            NUTS samples the yields alone under the exact profiled likelihood (a
            fit per leapfrog step, :func:`~difflike.sample._target.potential`:
            practical for small models only). The labels are exact either way.
    """

    expectations: tuple[str, ...] = LABEL_EXPECTATIONS
    sampled: tuple[str, ...] = ("observed", "aposteriori")
    temperatures: tuple[float, ...] = (1.0, 0.25, 1 / 16, 1 / 64)
    chains_per_target: int = 4
    num_warmup: int = 200
    steps_per_chunk: int = 50
    explore_fraction: float = 0.2
    near_fraction: float = 0.25
    near_width: float = 0.5
    prior_width: float = 10.0
    lower_margin: float = 0.05
    max_tree_depth: int = 6
    target_accept: float = 0.8
    label_batch: int = 1024
    label_tol: float = LABEL_TOL
    label_solver: str = LABEL_SOLVER
    label_restart_above: float | None = RESTART_ABOVE
    density: str = "joint"

    def __post_init__(self) -> None:
        if self.density not in DENSITIES:
            raise InputError(
                "unknown density",
                got=self.density,
                expected=" or ".join(map(repr, DENSITIES)),
            )
        check_solver(self.label_solver)
        if not self.label_tol > 0:
            raise InputError("label_tol must be positive", got=self.label_tol)
        for name in ("chains_per_target", "num_warmup", "steps_per_chunk"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1", got=getattr(self, name))
        if not 0.0 <= self.near_fraction <= 1.0 or not self.near_width > 0:
            raise InputError(
                "near_fraction must lie in [0, 1] and near_width be positive",
                got=(self.near_fraction, self.near_width),
            )
        if not 0.0 <= self.explore_fraction < 1.0:
            raise InputError(
                "explore_fraction must lie in [0, 1)", got=self.explore_fraction
            )
        if not self.temperatures or min(self.temperatures) <= 0:
            raise InputError(
                "temperatures must be positive", got=list(self.temperatures)
            )
        for e in self.sampled:
            if e not in self.expectations:
                raise InputError(
                    "a sampled expectation must also be labelled",
                    got=e,
                    expected=", ".join(self.expectations),
                )

    def to_json(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
        }

    @property
    def restarts(self) -> bool:
        """Whether labels look beyond the background-only fit's minimum."""
        return self.label_restart_above is not None

    @property
    def nchains(self) -> int:
        return len(self.sampled) * len(self.temperatures) * self.chains_per_target

    @property
    def warmup_chunks(self) -> int:
        return -(-self.num_warmup // self.steps_per_chunk)

    @property
    def explore_per_chunk(self) -> int:
        nuts = self.nchains * self.steps_per_chunk
        return round(nuts * self.explore_fraction / (1.0 - self.explore_fraction))

    @property
    def chunk_size(self) -> int:
        return self.nchains * self.steps_per_chunk + self.explore_per_chunk


def yield_space(model: Model, targets: Target, settings: SamplerSettings) -> YieldSpace:
    """Bounds and scales of the yields from the observed background-only fit."""
    main = model.expected_actualdata(targets.init[0], jnp.zeros(model.config.nsignal))
    b = jnp.maximum(main[jnp.asarray(model.signal_bins)], 0.0)
    return YieldSpace(
        lower=-(1.0 - settings.lower_margin) * b,
        scale=jnp.sqrt(jnp.maximum(b, 1.0)),
        prior_width=jnp.asarray(settings.prior_width, jnp.float64),
    )


@jax.jit
def _yields(model, chains: Target, space, nuisance, z):
    """The yields of NUTS states ``z``, ``(nchains, nsteps, nsignal)``."""
    if nuisance is None:
        return from_unconstrained(z, space)

    def chain(target, z):
        return jax.vmap(lambda x: joint_yields(x, model, target, space, nuisance))(z)

    return jax.vmap(chain)(chains, z)


#: the near-zero draws' widths span this factor below ``near_width`` (log-uniform):
#: a point's distance from the best fit in yield scales shrinks with the signal,
#: and in 9 bins a single width of 0.5 came no closer than -2 Delta = 0.17
NEAR_RANGE = 0.02


def _prior_draws(
    space: YieldSpace,
    n: int,
    rng: np.random.Generator,
    near_fraction: float = 0.0,
    near_width: float = 0.5,
) -> np.ndarray:
    """``n`` independent exploratory draws (truncated at the lower bounds): the
    first ``round(n * near_fraction)`` around zero yields, each with a width drawn
    log-uniformly between ``NEAR_RANGE * near_width`` and ``near_width`` (in units
    of each bin's yield scale), the rest from the prior."""
    scale = np.asarray(space.scale)
    near = round(n * near_fraction)
    shrink = np.exp(rng.uniform(np.log(NEAR_RANGE), 0.0, size=(n, 1)))
    width = np.where(
        np.arange(n)[:, None] < near,
        near_width * shrink * scale,
        np.asarray(space.prior_width) * scale,
    )
    lower = np.asarray(space.lower)
    out = np.empty((n, len(scale)))
    todo = np.ones(out.shape, bool)
    while todo.any():
        draw = width * rng.standard_t(PRIOR_DF, size=out.shape)
        out = np.where(todo, draw, out)
        todo = out <= lower
    return out


def _header(model, settings, seed, space, target_list, requested) -> dict[str, Any]:
    config = model.config
    columns = [
        f"{name}[{b}]"
        for name, n in zip(config.signal_regions, config.signal_nbins)
        for b in range(n)
    ]
    return {
        "format": _dataset.FORMAT,
        "version": _dataset.VERSION,
        "difflike": __version__,
        "workspace": {"source": str(config.source), "sha256": str(config.digest)},
        "signal_regions": list(config.signal_regions),
        "signal_nbins": list(config.signal_nbins),
        "poi": {
            "name": config.par_names[config.poi_index],
            "bounds": np.asarray(config.bounds[config.poi_index], float).tolist(),
        },
        "columns": columns,
        "expectations": list(settings.expectations),
        "targets": target_list,
        "space": None
        if space is None
        else {
            "lower": np.asarray(space.lower).tolist(),
            "scale": np.asarray(space.scale).tolist(),
            "prior_width": float(space.prior_width),
            "prior_df": PRIOR_DF,
        },
        "settings": settings.to_json(),
        "label_restarts": LABEL_RESTARTS,
        "seed": int(seed),
        "requested": int(requested),
        "chunks": [],
        "warmup": False,
        "complete": False,
    }


#: how a restarted label's other starts are made (a dataset's ``label_restarts``):
#: labels of other versions of the labeller are not mixed into one dataset
LABEL_RESTARTS = {
    "probes": RESTART_PROBES,
    "mirror": True,
    "basins": {
        "yields": list(BASIN_YIELDS),
        "scatter_yields": list(BASIN_SCATTER_YIELDS),
        "draws": BASIN_DRAWS,
        "min_draws": BASIN_MIN_DRAWS,
        "spread": BASIN_SPREAD,
        "seed": BASIN_SEED,
        "candidates": BASIN_CANDIDATES,
        "starts": BASIN_STARTS,
        "probe_starts": BASIN_PROBE_STARTS,
        "trials": list(BASIN_TRIALS),
        "same": BASIN_SAME,
    },
}


def _basins_record(targets: Target, column, expectations) -> dict[str, Any]:
    """Per expectation, what :func:`~difflike.sample._label.find_basins` found: the
    number of other starts, the reference ``-ln L`` and, where there are other
    starts, every point the labels were fitted from (``points``, ``(k, npars)``:
    the reference minimum, then the others; a dataset's ``basins``,
    :meth:`YieldDataset.starts`)."""
    init = np.asarray(targets.init)
    starts = (
        np.zeros((len(init), 0, init.shape[1]))
        if targets.starts is None
        else np.asarray(targets.starts)
    )
    points = []
    for st, i in zip(starts, init):
        other = [x for x in dict.fromkeys(map(tuple, st)) if x != tuple(i)]
        points.append([list(i), *map(list, other)] if other else [])
    return {
        e: {"starts": max(len(points[k]) - 1, 0), "nll0": float(targets.nll0[k])}
        | ({"points": points[k]} if points[k] else {})
        for e, k in zip(expectations, column)
    }


_FIXED_KEYS = (
    "format",
    "version",
    "workspace",
    "signal_regions",
    "signal_nbins",
    "expectations",
    "targets",
    "settings",
    "label_restarts",
    "seed",
)


def _check_resumable(old: dict[str, Any], new: dict[str, Any], folder: Path) -> None:
    for key in _FIXED_KEYS:
        if old.get(key) != new.get(key):
            hint = (
                " ('difflike relabel' gives it this version's labels)"
                if key == "label_restarts"
                else ""
            )
            raise InputError(
                f"{folder} holds a dataset made with another {key!r}; use a new "
                f"folder, or the same settings to resume it{hint}",
                file=str(folder / _dataset.SIDECAR),
                got=old.get(key),
                expected=new.get(key),
            )


def sample(
    model: Model,
    data,
    n: int,
    out: str | os.PathLike,
    *,
    settings: SamplerSettings | None = None,
    seed: int = 0,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> _dataset.YieldDataset:
    """Sample signal yields with NUTS, label them, and write them to ``out``.

    Args:
        model: a signal-region model (``difflike.load(..., signal_regions=...)``).
        data: its observed data, ``(ndata,)``.
        n: samples to produce (NUTS and exploratory draws together).
        out: the dataset folder; created if missing, resumed if it holds a run with
            the same settings (and extended when ``n`` grew).
        settings: :class:`SamplerSettings` (defaults as documented there).
        seed: the run's seed; the same seed gives the same samples.
        progress: show a progress bar on standard error.
        callback: called as ``callback(chunk_index, rows_done)`` after each chunk
            is committed.

    Returns:
        The dataset (:class:`~difflike.sample.YieldDataset`).

    Raises:
        InputError: the model has no signal regions, ``n`` is not positive, or
            ``out`` holds a dataset made with other settings.
    """
    settings = settings or SamplerSettings()
    config = model.config
    if not config.nsignal or config.poi_index is None:
        raise InputError(
            "sampling needs a signal-region model: load the workspace with "
            "signal_regions=[...]",
            file=str(config.source),
        )
    if config.batch_shape:
        raise InputError(
            "sampling takes one model, not a grid of points", got=config.batch_shape
        )
    if n < 1:
        raise InputError("the number of samples must be positive", got=n)
    data = model._data(data, config.ndata, "data")
    if data.ndim != 1:
        raise InputError("sampling takes one data set", got=tuple(data.shape))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)

    # the sampled densities: one per (expectation, temperature), chains per target
    target_list = [
        {"expectation": e, "beta": float(beta)}
        for e in settings.sampled
        for beta in settings.temperatures
    ]
    meta = _dataset.read_sidecar(folder)
    if meta is not None:
        _check_resumable(
            meta, _header(model, settings, seed, None, target_list, n), folder
        )
        if meta["complete"] and int(meta["requested"]) >= n:
            return _dataset.load_dataset(folder)  # nothing to add: no fits needed
    labels, column, base_ok = background_targets(
        model, data, settings.expectations, basins=settings.restarts
    )
    if meta is not None and meta.get("space") is not None:
        # an extension samples where the dataset began, though the reference fits
        # may have moved since (a relabelling, or a labeller with other basins)
        space = YieldSpace(
            **{
                k: jnp.asarray(meta["space"][k], jnp.float64)
                for k in ("lower", "scale", "prior_width")
            }
        )
    else:
        space = yield_space(model, labels, settings)
    index = [
        int(column[settings.expectations.index(t["expectation"])]) for t in target_list
    ]
    per_chain = np.repeat(np.asarray(index), settings.chains_per_target)
    betas = np.repeat([t["beta"] for t in target_list], settings.chains_per_target)
    chains = Target(
        data=labels.data[per_chain],
        init=labels.init[per_chain],
        nll0=labels.nll0[per_chain],
        beta=jnp.asarray(betas),
    )
    if meta is None:
        meta = _header(model, settings, seed, space, target_list, n)
        meta["counting"] = counting_summary(
            model, labels, column, settings.expectations
        )
        meta["basins"] = _basins_record(labels, column, settings.expectations)
    else:
        meta["requested"] = max(int(n), int(meta["requested"]))
        meta["complete"] = False

    kw = dict(
        num_warmup=settings.warmup_chunks * settings.steps_per_chunk,
        max_tree_depth=settings.max_tree_depth,
        target_accept=settings.target_accept,
    )
    key = jax.random.key(seed)
    nc = settings.nchains
    # chains start near zero signal, spread over a fraction of a yield scale
    start_key, chain_key = jax.random.split(key)
    s0 = jnp.maximum(
        0.3 * space.scale * jax.random.normal(start_key, (nc, config.nsignal)),
        0.5 * space.lower,
    )
    z0 = to_unconstrained(s0, space)
    nuisance = None
    if settings.density == "joint":
        nuisance = nuisance_of(model)
        u0 = nuisance.to_unconstrained(chains.init[:, nuisance.index])
        z0 = jnp.concatenate([z0, u0], axis=1)
    state = init_chains(
        model, space, chains, z0, jax.random.split(chain_key, nc), nuisance, **kw
    )
    # one chunk of transitions of every chain (warm-up and sampling alike)
    advance = partial(
        run_chains,
        model,
        space,
        chains,
        nuisance=nuisance,
        nsteps=settings.steps_per_chunk,
        **kw,
    )
    done = sum(c["n"] for c in meta["chunks"])
    bar = _progress(progress, meta["requested"], done, nc)
    try:
        if not meta["warmup"]:
            bar.set_description("warm-up")
            for _ in range(settings.warmup_chunks):
                state, _ = advance(state)
            _dataset.write_npz(folder / "warmup.npz", state_to_arrays(state))
            meta["warmup"] = True
            _dataset.write_sidecar(folder, meta)
        if meta["chunks"]:
            last = _dataset.read_chunk(folder, meta["chunks"][-1])
        else:
            with np.load(folder / "warmup.npz") as f:
                last = {k: f[k] for k in f.files}
        state = state_from_arrays(state, last)
        bar.set_description("sampling")
        while done < meta["requested"]:
            k = len(meta["chunks"])
            t0 = time.perf_counter()
            state, stats = advance(state)
            s_nuts = np.asarray(_yields(model, chains, space, nuisance, stats.z))
            t1 = time.perf_counter()
            steps = settings.steps_per_chunk
            rng = np.random.default_rng([seed, k])
            s_explore = _prior_draws(
                space,
                settings.explore_per_chunk,
                rng,
                settings.near_fraction,
                settings.near_width,
            )
            signal = np.concatenate([s_nuts.reshape(-1, config.nsignal), s_explore])
            ne = len(s_explore)
            chain_ids = np.repeat(np.arange(nc), steps)
            rows = {
                "signal": signal,
                "target": np.concatenate(
                    [
                        np.repeat(np.arange(nc) // settings.chains_per_target, steps),
                        -np.ones(ne, np.int64),
                    ]
                ),
                "chain": np.concatenate([chain_ids, -np.ones(ne, np.int64)]),
                "step": np.concatenate(
                    [np.tile(k * steps + np.arange(steps), nc), np.full(ne, k * steps)]
                ),
                "diverging": np.concatenate(
                    [np.asarray(stats.diverging).reshape(-1), np.zeros(ne, bool)]
                ),
                "accept_prob": np.concatenate(
                    [np.asarray(stats.accept_prob).reshape(-1), np.ones(ne)]
                ),
            }
            # the last chunk keeps only what completes the request: label no more
            keep = min(len(signal), meta["requested"] - done)
            rows = {name: v[:keep] for name, v in rows.items()}
            rows["delta"], rows["nll"], rows["converged"], grad = label(
                model,
                labels,
                column,
                rows["signal"],
                base_ok,
                batch_size=settings.label_batch,
                tol=settings.label_tol,
                solver=settings.label_solver,
                restart_above=settings.label_restart_above,
                return_gradient=True,
            )
            rows["gradient"] = grad.astype(np.float32)
            t2 = time.perf_counter()
            name = f"chunk-{k:05d}.npz"
            digest = _dataset.write_npz(
                folder / name, {**rows, **state_to_arrays(state)}
            )
            meta["chunks"].append(
                {
                    "file": name,
                    "n": keep,
                    "sha256": digest,
                    "seconds": time.perf_counter() - t0,
                    "nuts_seconds": t1 - t0,
                    "label_seconds": t2 - t1,
                    "leapfrog_steps": int(np.asarray(stats.num_steps).sum()),
                }
            )
            done += keep
            _dataset.write_sidecar(folder, meta)
            bar.update(keep)
            if callback is not None:
                callback(k, done)
        meta["complete"] = True
        _dataset.write_sidecar(folder, meta)
    finally:
        bar.close()
    return _dataset.load_dataset(folder)


def relabel(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workspace: str | os.PathLike | None = None,
    progress: bool = True,
) -> _dataset.YieldDataset:
    r"""A dataset's labels made again for the other minima of the profile that it
    was labelled without (:func:`~difflike.sample._label.find_basins`), written to
    ``out`` with the same samples, chains and states.

    Each row keeps the minimum it has and is fitted again from every start the
    current labeller has and the old one did not (the new reference minimum where
    it moved, and the other minima): the deepest is its label, and every
    :math:`\Delta` is taken against the reference. The result is what
    :func:`sample` extends (its ``label_restarts`` are the current labeller's).
    Chunks are written atomically as in :func:`sample`, and a relabelling that was
    stopped resumes where it stopped.

    Args:
        source: a dataset folder (its committed chunks are read).
        out: the new dataset folder.
        workspace: the workspace where it is not at the path ``source`` records (a
            dataset made on another machine); its SHA-256 must match.
        progress: show a progress bar (stderr).

    Raises:
        InputError: ``source`` is not a dataset, was labelled without restarts,
            already has the current labeller's labels, or ``out`` holds something
            else than its relabelling.
    """
    source, folder = Path(source), Path(out)
    old = _dataset.read_sidecar(source)
    if old is None:
        raise InputError("no dataset here (no dataset.json)", file=str(source))
    settings = SamplerSettings(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in old["settings"].items()
        }
    )
    if not settings.restarts:
        raise InputError(
            "this dataset was labelled without restarts; relabelling adds the other "
            "minima that restarts look for",
            file=str(source / _dataset.SIDECAR),
        )
    if old.get("label_restarts") == LABEL_RESTARTS:
        raise InputError(
            "this dataset already has the current labeller's labels",
            file=str(source / _dataset.SIDECAR),
        )
    if folder.resolve() == source.resolve():
        raise InputError("relabel into another folder", file=str(folder))
    model, data = _dataset.recorded_workspace(
        old["workspace"], old["signal_regions"], workspace
    )
    expectations = settings.expectations
    before, column, base_ok = background_targets(
        model, data, expectations, basins=False
    )
    after = find_basins(model, before)
    # the starts the old labeller lacked: the new reference where it moved, and
    # the other minima, but never the old reference (every row has that fit)
    init0 = np.asarray(before.init)
    points = [
        [x for x in [np.asarray(i), *np.asarray(st)] if not np.array_equal(x, i0)]
        for i, st, i0 in zip(
            after.init,
            after.starts if after.starts is not None else [[]] * len(init0),
            init0,
        )
    ]
    todo = np.asarray([len(p) > 0 for p in points])
    most = max(map(len, points))
    subset = None
    if todo.any():
        sub = np.flatnonzero(todo)
        starts = np.stack(
            [
                np.stack(points[t] + [points[t][0]] * (most - len(points[t])))
                for t in sub
            ]
        )
        subset = replace(jax.tree.map(lambda a: a[sub], after), starts=starts)

    first_col = [int(np.flatnonzero(column == t)[0]) for t in range(len(init0))]
    header = {
        k: v
        for k, v in old.items()
        if k not in ("chunks", "complete", "counting", "basins", "relabelled")
    }
    header["label_restarts"] = LABEL_RESTARTS
    header["difflike"] = __version__
    header["relabelled"] = {
        "source": str(source),
        "label_restarts": old.get("label_restarts"),
        "chunks": [c["sha256"] for c in old["chunks"]],
    }
    meta = _dataset.read_sidecar(folder)
    if meta is None:
        meta = {**header, "chunks": [], "complete": False}
        meta["counting"] = counting_summary(model, after, column, expectations)
        meta["basins"] = _basins_record(after, column, expectations)
    else:
        had = meta.get("relabelled", {}).get("chunks")
        n = len(meta["chunks"])
        if had is None or had[:n] != header["relabelled"]["chunks"][:n]:
            raise InputError(
                f"{folder} holds another dataset than the relabelling of {source}",
                file=str(folder / _dataset.SIDECAR),
            )
        if meta.get("label_restarts") != LABEL_RESTARTS:
            raise InputError(
                f"{folder} was relabelled by another labeller "
                f"({meta.get('label_restarts')!r}, now {LABEL_RESTARTS!r}): "
                "relabel into a new folder",
                file=str(folder / _dataset.SIDECAR),
            )
        if n > len(old["chunks"]):
            raise InputError(
                f"{folder} is the relabelling of {source} extended since by "
                "sampling: it is complete (extend it with difflike sample)",
                file=str(folder / _dataset.SIDECAR),
            )
        meta["relabelled"] = header["relabelled"]
    folder.mkdir(parents=True, exist_ok=True)
    if (source / "warmup.npz").is_file() and not (folder / "warmup.npz").is_file():
        with np.load(source / "warmup.npz") as f:
            _dataset.write_npz(folder / "warmup.npz", {k: f[k] for k in f.files})
    total = sum(c["n"] for c in old["chunks"])
    done_rows = sum(c["n"] for c in meta["chunks"])
    bar = _progress(progress, total, done_rows, settings.nchains)
    bar.set_description("relabelling")
    nll0 = np.asarray(after.nll0)
    try:
        for entry in old["chunks"][len(meta["chunks"]) :]:
            t0 = time.perf_counter()
            rows = _dataset.read_chunk(source, entry)
            signal = rows["signal"]
            # every label in target space (expectations sharing data share fits)
            best = (
                nll0[None, :] - rows["nll"][:, first_col],
                rows["nll"][:, first_col].copy(),
                rows["converged"][:, first_col].copy(),
                (
                    rows["gradient"][:, first_col].astype(np.float64)
                    if "gradient" in rows
                    else np.zeros((len(signal), len(init0), signal.shape[1]))
                ),
            )
            if subset is not None:
                kernel = partial(
                    _start_kernel,
                    model,
                    subset,
                    tol=settings.label_tol,
                    solver=settings.label_solver,
                )
                found = _label_rows(kernel, settings.label_batch, signal)[:4]
                _keep_deeper(best, found, np.arange(len(signal)), np.flatnonzero(todo))
            rows["delta"], rows["nll"] = best[0][:, column], best[1][:, column]
            rows["converged"] = best[2][:, column] & np.asarray(base_ok)[column]
            if "gradient" in rows:
                rows["gradient"] = best[3][:, column].astype(np.float32)
            digest = _dataset.write_npz(folder / entry["file"], rows)
            meta["chunks"].append(
                {
                    **entry,
                    "sha256": digest,
                    "relabel_seconds": time.perf_counter() - t0,
                }
            )
            _dataset.write_sidecar(folder, meta)
            bar.update(entry["n"])
        meta["requested"] = old["requested"]
        meta["complete"] = bool(old["complete"])
        _dataset.write_sidecar(folder, meta)
    finally:
        bar.close()
    return _dataset.load_dataset(folder)


def _progress(enabled: bool, total: int, initial: int, nchains: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="samples",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        postfix={"chains": nchains},
    )


@dataclass
class Summary:
    """What :func:`summarize` reports of a dataset."""

    n: int
    failed: dict[str, int]
    seconds: float
    divergences: dict[str, int] = field(default_factory=dict)
    rhat: dict[str, float] = field(default_factory=dict)
    accept: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: edges of the -2 Delta histogram in the summary
EDGES = (-np.inf, 0.0, 1.0, 4.0, 10.0, 30.0, 100.0, 1000.0, np.inf)


def summarize(dataset: _dataset.YieldDataset) -> Summary:
    """Counts, failures, NUTS diagnostics and coverage of a dataset.

    * ``failed``: labels whose fit did not converge, per expectation (kept out of
      training by :meth:`~difflike.sample.YieldDataset.labels`);
    * ``divergences``, ``accept`` and ``rhat`` per sampled density: divergent
      transitions, mean acceptance, and the largest split-:math:`\\hat R` over the
      yield components across that density's chains;
    * ``coverage`` per expectation: the histogram of :math:`-2\\Delta` over
      :data:`EDGES`, its minimum and maximum, and how many samples lie inside the
      68% and 95% CL regions around the best sample (:math:`-2\\Delta` within the
      :math:`\\chi^2_N` quantile of the minimum): the best-fit-like points.
    """
    from numpyro.diagnostics import split_gelman_rubin
    from scipy.stats import chi2

    meta = dataset.meta
    failed = {
        e: int((~dataset.converged[:, i]).sum())
        for i, e in enumerate(dataset.expectations)
    }
    seconds = float(sum(c.get("seconds", 0.0) for c in meta["chunks"]))
    out = Summary(n=len(dataset), failed=failed, seconds=seconds)
    for t, target in enumerate(meta["targets"]):
        name = f"{target['expectation']}@beta={target['beta']:.4g}"
        mask = dataset.target == t
        out.divergences[name] = int(dataset.diverging[mask].sum())
        out.accept[name] = (
            float(dataset.accept_prob[mask].mean()) if mask.any() else 0.0
        )
        chains = np.unique(dataset.chain[mask])
        draws = [dataset.signal[mask & (dataset.chain == c)] for c in chains]
        length = min((len(d) for d in draws), default=0)
        if len(draws) > 1 and length >= 4:
            x = np.stack([d[:length] for d in draws])
            out.rhat[name] = float(np.max(split_gelman_rubin(x)))
    nsig = dataset.signal.shape[1]
    for i, e in enumerate(dataset.expectations):
        ok = dataset.converged[:, i]
        q = -2.0 * dataset.delta[ok, i]
        counts, _ = np.histogram(q, bins=np.asarray(EDGES))
        # relative to the best sample: inside the 68% and 95% CL regions of N yields
        rel = q - q.min() if len(q) else q
        out.coverage[e] = {
            "edges": [float(x) for x in EDGES],
            "counts": counts.tolist(),
            "min": float(q.min()) if len(q) else float("nan"),
            "max": float(q.max()) if len(q) else float("nan"),
            "inside_68": int((rel <= chi2.ppf(0.68, nsig)).sum()),
            "inside_95": int((rel <= chi2.ppf(0.95, nsig)).sum()),
        }
    return out
