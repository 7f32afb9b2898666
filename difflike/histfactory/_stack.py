"""Stack the models of a signal grid into one batched :class:`Model`.

The points of a published patchset add a signal sample with its own systematics to
the same background model, and each point uses a slightly different set of
modifiers. :func:`stack_models` re-expresses every point's arrays in one common
layout and stacks them on a leading point axis, so that a single compiled (and
``vmap``-ped) computation serves the whole grid:

- parameters: the union of the points' parameter sets, in the first point's order
  with the others' new sets appended. A set that a point does not use is fixed at
  its initial value there and its constraint term is masked out (``aux_mask``), so
  every point's ``logpdf`` is exactly its own model's.
- samples: the samples common to all points keep their names; the others (the
  signal) go to slots named ``signal`` (``signal1``, ``signal2``, ... when a point
  adds several), in sorted-name order within each point.
- interpolation tables are rebuilt on the union of the normsys / histosys
  parameters, neutral (factor 1, delta 0) where a point has no such entry.

Channels, bins, interpolation codes and the POI must be the same for every point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jax import numpy as jnp

from difflike.errors import InvalidModelError
from difflike.histfactory import _interpolation as interp
from difflike.histfactory._model import Model, ModelConfig

__all__ = ["stack_models"]

_COMMON = (
    "channels",
    "channel_nbins",
    "poi_name",
    "signal_regions",
    "signal_nbins",
    "measurement",
    "modifier_settings",
)


def _sample_slots(models: Sequence[Model]) -> tuple[list[str], list[dict[str, str]]]:
    """The common sample names and, per point, a map of its samples to union rows."""
    sets = [set(m.config.samples) for m in models]
    common = sorted(set.intersection(*sets))
    extras = [sorted(s - set(common)) for s in sets]
    nslots = max((len(e) for e in extras), default=0)
    base = "signal"
    while base in common:
        base = f"_{base}"
    slots = [base] if nslots == 1 else [f"{base}{i + 1}" for i in range(nslots)]
    maps = [{**{s: s for s in common}, **dict(zip(extra, slots))} for extra in extras]
    return common + slots, maps


def _paramsets(models: Sequence[Model], names: Sequence[str]):
    """The union of the parameter sets, checked for consistency across points."""
    union: dict[str, dict] = {}
    for m, point in zip(models, names):
        c = m.config
        for name, (start, stop), constraint, types in zip(
            c.par_order, c.par_slices, c.par_constraints, c.par_types
        ):
            scalar = c.par_names[start] == name
            entry = union.setdefault(
                name,
                {
                    "n": stop - start,
                    "constraint": constraint,
                    "types": tuple(types),
                    "scalar": scalar,
                    "first": (m, start),
                },
            )
            if (entry["n"], entry["constraint"]) != (stop - start, constraint):
                raise InvalidModelError(
                    f"parameter {name!r} has {stop - start} components and "
                    f"constraint {constraint!r} at point {point!r}, but "
                    f"{entry['n']} and {entry['constraint']!r} at an earlier point: "
                    "the points cannot share one layout",
                    file=c.source,
                )
            entry["types"] = tuple(sorted(set(entry["types"]) | set(types)))
    starts, start = {}, 0
    for name, entry in union.items():
        starts[name] = start
        start += entry["n"]
    return union, starts, start


def stack_models(
    models: Sequence[Model],
    data: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    source: str,
    digest: str = "",
) -> tuple[Model, np.ndarray]:
    """One batched model for several points, and their data in its layout.

    Args:
        models: the compiled model of each point (unbatched, same channels).
        data: each point's observed data (main bins then its auxiliary data).
        names: the points' names, stored as ``config.points``.
        source: where the grid came from (for messages).
        digest: the background workspace's digest.

    Returns:
        ``(model, data)``: a :class:`Model` whose array leaves have a leading axis of
        length ``len(models)``, and the data in its layout, ``(npoints, ndata)``.

    Raises:
        InvalidModelError: the points differ in channels, bins, POI, interpolation
            codes, or in the shape or constraint of a shared parameter.
    """
    if not models:
        raise InvalidModelError("no points to stack", file=source)
    first = models[0]
    for m, point in zip(models, names):
        for key in _COMMON:
            if getattr(m.config, key) != getattr(first.config, key):
                raise InvalidModelError(
                    f"point {point!r} has different {key} than point {names[0]!r}: "
                    "the points cannot share one layout",
                    file=source,
                    got=getattr(m.config, key),
                    expected=getattr(first.config, key),
                )
        if (m.normsys_code, m.histosys_code, m.signal_sample, m.signal_bins) != (
            first.normsys_code,
            first.histosys_code,
            first.signal_sample,
            first.signal_bins,
        ):
            raise InvalidModelError(
                f"point {point!r} has different interpolation codes or signal "
                "regions than the first point",
                file=source,
            )

    samples, sample_maps = _sample_slots(models)
    union, starts, npars = _paramsets(models, names)
    row_of = {s: k for k, s in enumerate(samples)}
    nmain = first.config.nmaindata
    npoints, nsamples = len(models), len(samples)

    # -- parameter maps and suggested values ----------------------------------------
    par_names: list[str] = []
    init = np.zeros(npars)
    bounds = np.zeros((npars, 2))
    for name, entry in union.items():
        m, start = entry["first"]
        s0 = starts[name]
        par_names += (
            [name] if entry["scalar"] else [f"{name}[{i}]" for i in range(entry["n"])]
        )
        init[s0 : s0 + entry["n"]] = np.asarray(m.config.init)[
            start : start + entry["n"]
        ]
        bounds[s0 : s0 + entry["n"]] = np.asarray(m.config.bounds)[
            start : start + entry["n"]
        ]
    index_maps = []  # point component index -> union index (one past: the 1-factor)
    for m in models:
        c = m.config
        index = np.empty(c.npars + 1, dtype=np.int64)
        for name, (start, stop) in zip(c.par_order, c.par_slices):
            index[start:stop] = np.arange(starts[name], starts[name] + stop - start)
        index[c.npars] = npars
        index_maps.append(index)
    ns_union = list(
        dict.fromkeys(
            int(ix[p])
            for m, ix in zip(models, index_maps)
            for p in np.asarray(m.normsys_param)
        )
    )
    hs_union = list(
        dict.fromkeys(
            int(ix[p])
            for m, ix in zip(models, index_maps)
            for p in np.asarray(m.histosys_param)
        )
    )
    ns_row = {p: i for i, p in enumerate(ns_union)}
    hs_row = {p: i for i, p in enumerate(hs_union)}
    constrained = [n for n, e in union.items() if e["constraint"] is not None]
    aux_param = np.asarray(
        [starts[n] + i for n in constrained for i in range(union[n]["n"])],
        dtype=np.int64,
    )
    aux_of = {int(p): k for k, p in enumerate(aux_param)}
    poisson = np.asarray(
        [
            union[n]["constraint"] == "poisson"
            for n in constrained
            for _ in range(union[n]["n"])
        ],
        dtype=bool,
    )
    depth = max(int(m.mult_index.shape[0]) for m in models)

    # -- per point arrays in the union layout -----------------------------------------
    out = {
        "init": np.tile(init, (npoints, 1)),
        "bounds": np.tile(bounds, (npoints, 1, 1)),
        "fixed": np.ones((npoints, npars), dtype=bool),
        "nominal": np.zeros((npoints, nsamples, nmain)),
        "mult_index": np.full((npoints, depth, nsamples, nmain), npars, dtype=np.int64),
        "normsys_hi": np.ones((npoints, len(ns_union), nsamples, nmain)),
        "normsys_lo": np.ones((npoints, len(ns_union), nsamples, nmain)),
        "histosys_up": np.zeros((npoints, len(hs_union), nsamples, nmain)),
        "histosys_dn": np.zeros((npoints, len(hs_union), nsamples, nmain)),
        "aux_sigma": np.ones((npoints, len(aux_param))),
        "aux_factor": np.ones((npoints, len(aux_param))),
        "aux_mask": np.zeros((npoints, len(aux_param)), dtype=bool),
        "auxdata": np.tile(init[aux_param], (npoints, 1)),
        "data": np.zeros((npoints, nmain + len(aux_param))),
    }
    for p, (m, smap, ix, d) in enumerate(zip(models, sample_maps, index_maps, data)):
        c = m.config
        rows = np.asarray([row_of[smap[s]] for s in c.samples], dtype=np.int64)
        pars = ix[: c.npars]
        out["init"][p, pars] = np.asarray(c.init)
        out["bounds"][p, pars] = np.asarray(c.bounds)
        out["fixed"][p, pars] = np.asarray(c.fixed)
        out["nominal"][p, rows] = np.asarray(m.nominal)
        mult = np.asarray(m.mult_index)
        out["mult_index"][p][: mult.shape[0]][:, rows] = ix[mult]
        ns = [ns_row[int(ix[q])] for q in np.asarray(m.normsys_param)]
        for key, src in (("normsys_hi", m.normsys_hi), ("normsys_lo", m.normsys_lo)):
            out[key][p][np.ix_(ns, rows)] = np.asarray(src)
        hs = [hs_row[int(ix[q])] for q in np.asarray(m.histosys_param)]
        for key, src in (
            ("histosys_up", m.histosys_up),
            ("histosys_dn", m.histosys_dn),
        ):
            out[key][p][np.ix_(hs, rows)] = np.asarray(src)
        aux = np.asarray(
            [aux_of[int(ix[q])] for q in np.asarray(m.aux_param)], dtype=np.int64
        )
        if not np.array_equal(np.asarray(m.aux_poisson), poisson[aux]):
            raise InvalidModelError(
                f"point {names[p]!r} constrains a parameter differently", file=source
            )
        out["aux_sigma"][p, aux] = np.asarray(m.aux_sigma)
        out["aux_factor"][p, aux] = np.asarray(m.aux_factor)
        out["aux_mask"][p, aux] = np.asarray(m.aux_mask)
        out["auxdata"][p, aux] = np.asarray(c.auxdata)
        d = np.asarray(d, dtype=np.float64)
        out["data"][p, :nmain] = d[:nmain]
        out["data"][p, nmain:] = out["auxdata"][p]
        out["data"][p, nmain + aux] = d[nmain:]

    if first.normsys_code == "code4":
        coef = interp.code4_coefficients(out["normsys_hi"], out["normsys_lo"])
        coef = np.moveaxis(coef, 0, 1)  # the point axis leads every leaf
    else:
        coef = np.zeros((npoints, 6, *out["normsys_hi"].shape[1:]))

    fc = first.config
    modifiers = sorted({key for m in models for key in m.config.modifiers})
    config = ModelConfig(
        init=_f64(out["init"]),
        bounds=_f64(out["bounds"]),
        fixed=jnp.asarray(out["fixed"]),
        auxdata=_f64(out["auxdata"]),
        par_names=tuple(par_names),
        par_order=tuple(union),
        par_slices=tuple((starts[n], starts[n] + e["n"]) for n, e in union.items()),
        par_constraints=tuple(e["constraint"] for e in union.values()),
        par_types=tuple(e["types"] for e in union.values()),
        poi_name=fc.poi_name,
        poi_index=None if fc.poi_name is None else starts[fc.poi_name],
        channels=fc.channels,
        channel_nbins=fc.channel_nbins,
        samples=tuple(samples),
        modifiers=tuple(modifiers),
        auxdata_order=tuple(constrained),
        signal_regions=fc.signal_regions,
        signal_nbins=fc.signal_nbins,
        measurement=fc.measurement,
        modifier_settings=fc.modifier_settings,
        source=source,
        digest=digest,
        points=tuple(names),
    )
    model = Model(
        config=config,
        nominal=_f64(out["nominal"]),
        mult_index=_i32(out["mult_index"]),
        normsys_param=_i32(np.tile(np.asarray(ns_union, dtype=np.int64), (npoints, 1))),
        normsys_hi=_f64(out["normsys_hi"]),
        normsys_lo=_f64(out["normsys_lo"]),
        normsys_coef=_f64(coef),
        histosys_param=_i32(
            np.tile(np.asarray(hs_union, dtype=np.int64), (npoints, 1))
        ),
        histosys_up=_f64(out["histosys_up"]),
        histosys_dn=_f64(out["histosys_dn"]),
        aux_param=_i32(np.tile(aux_param, (npoints, 1))),
        aux_sigma=_f64(out["aux_sigma"]),
        aux_factor=_f64(out["aux_factor"]),
        aux_poisson=jnp.asarray(np.tile(poisson, (npoints, 1))),
        aux_mask=jnp.asarray(out["aux_mask"]),
        signal=_f64(np.zeros((npoints, fc.nsignal))),
        normsys_code=first.normsys_code,
        histosys_code=first.histosys_code,
        signal_sample=first.signal_sample,
        signal_bins=first.signal_bins,
    )
    return model, out["data"]


def _f64(values) -> jnp.ndarray:
    return jnp.asarray(np.asarray(values, dtype=np.float64))


def _i32(values) -> jnp.ndarray:
    return jnp.asarray(np.asarray(values, dtype=np.int32))
