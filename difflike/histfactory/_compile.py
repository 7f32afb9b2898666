"""Compile a validated :class:`~difflike.workspace.ModelSpec` into a :class:`Model`.

Everything here runs once, in numpy, on plain data; the result is a pytree of
float64 (and index) arrays that the JAX code evaluates.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
from jax import numpy as jnp

from difflike.errors import InputError, InvalidModelError, UnknownParameterError
from difflike.histfactory import _interpolation as interp
from difflike.histfactory._layout import ParamSet, build_paramsets
from difflike.histfactory._model import Model, ModelConfig
from difflike.histfactory.modifiers import BY_TYPE, Application
from difflike.histfactory.modifiers import staterror as staterror_rules
from difflike.workspace import ModelSpec

__all__ = ["DEFAULT_MODIFIER_SETTINGS", "compile_model", "observed_data"]

log = logging.getLogger(__name__)

#: pyhf 0.7's defaults
DEFAULT_MODIFIER_SETTINGS = {
    "normsys": {"interpcode": "code4"},
    "histosys": {"interpcode": "code4p"},
}

_FACTOR_TYPES = ("normfactor", "lumi", "shapefactor", "shapesys", "staterror")


def _settings(modifier_settings: Mapping | None) -> tuple[str, str]:
    """Interpolation codes (normsys, histosys); unspecified types keep pyhf's defaults.

    Note:
        pyhf replaces its whole default when ``modifier_settings`` is given, so a
        type left out falls back to code1 / code0 there. difflike keeps the
        documented defaults (code4 / code4p) for a type left out.
    """
    settings = {k: dict(v) for k, v in DEFAULT_MODIFIER_SETTINGS.items()}
    for mtype, options in (modifier_settings or {}).items():
        if mtype not in settings:
            raise InputError(
                f"modifier_settings: {mtype!r} has no settings",
                got=mtype,
                expected="'normsys' or 'histosys'",
            )
        unknown = set(options) - {"interpcode"}
        if unknown:
            raise InputError(
                f"modifier_settings[{mtype!r}]: unknown options {sorted(unknown)}",
                expected="'interpcode'",
            )
        settings[mtype].update(options)
    normsys = settings["normsys"]["interpcode"]
    histosys = settings["histosys"]["interpcode"]
    if normsys not in interp.NORMSYS_CODES:
        raise InputError(
            "unsupported normsys interpolation code",
            got=normsys,
            expected=f"one of {interp.NORMSYS_CODES}",
        )
    if histosys not in interp.HISTOSYS_CODES:
        raise InputError(
            "unsupported histosys interpolation code",
            got=histosys,
            expected=f"one of {interp.HISTOSYS_CODES}",
        )
    return normsys, histosys


def _walk(spec: ModelSpec, normsys_code: str, checked: dict | None = None):
    """Check the channels and list every modifier application in pyhf's walk order.

    ``checked``: modifiers already checked on the same sample data, by the
    identity of both (see :func:`compile_model`)."""
    source = spec.source
    channels: dict[str, dict] = {}
    for index, channel in enumerate(spec.channels):
        if channel["name"] in channels:
            raise InvalidModelError(
                f"channel {channel['name']!r} is defined twice",
                file=source,
                path=f"/channels/{index}",
            )
        channels[channel["name"]] = channel
    channel_names = sorted(channels)
    nbins = {c: len(channels[c]["samples"][0]["data"]) for c in channel_names}
    offsets, start = {}, 0
    for c in channel_names:
        offsets[c] = start
        start += nbins[c]
    sample_names = sorted({s["name"] for c in spec.channels for s in c["samples"]})
    modifier_keys = sorted(
        {
            (m["name"], m["type"])
            for c in spec.channels
            for s in c["samples"]
            for m in s["modifiers"]
        }
    )
    samples: dict[tuple[str, str], dict] = {}
    for c in channel_names:
        for s in channels[c]["samples"]:
            if (c, s["name"]) in samples:
                raise InvalidModelError(
                    f"sample {s['name']!r} appears twice in channel {c!r}", file=source
                )
            if len(s["data"]) != nbins[c]:
                raise InvalidModelError(
                    f"sample {s['name']!r} in channel {c!r} has {len(s['data'])} bins "
                    f"but the channel's first sample has {nbins[c]}",
                    file=source,
                    got=len(s["data"]),
                    expected=nbins[c],
                )
            samples[c, s["name"]] = s

    seen_unshared: set[tuple[str, str]] = set()
    applications: list[Application] = []
    for c in channel_names:
        for sname in sample_names:
            sample = samples.get((c, sname))
            if sample is None:
                continue
            mods: dict[tuple[str, str], dict] = {}
            for m in sample["modifiers"]:
                key = (m["name"], m["type"])
                if not BY_TYPE[m["type"]].SHARED and (
                    key in seen_unshared or key in mods
                ):
                    raise InvalidModelError(
                        f"{m['type']} modifier {m['name']!r} on sample {sname!r} in "
                        f"channel {c!r}: a {m['type']} cannot be shared, but another "
                        "one has this name",
                        file=source,
                    )
                if key in mods:
                    log.warning(
                        "%s: sample %r in channel %r lists %s modifier %r twice; the "
                        "last one is used (as pyhf does)",
                        source,
                        sname,
                        c,
                        m["type"],
                        m["name"],
                    )
                mods[key] = m
            seen_unshared.update(mods)
            nominal = tuple(map(float, sample["data"]))
            for key in sorted(mods):  # modifier_keys' order
                app = Application(
                    name=key[0],
                    type=key[1],
                    channel=c,
                    sample=sname,
                    data=mods[key]["data"],
                    nominal=nominal,
                    channel_offset=offsets[c],
                    source=source,
                )
                # a modifier checked before on the same sample data passed then
                memo = (id(mods[key]), id(sample["data"]), normsys_code)
                if checked is None or memo not in checked:
                    if app.type == "normsys":
                        BY_TYPE["normsys"].check(app, normsys_code)
                    else:
                        BY_TYPE[app.type].check(app)
                    if checked is not None:  # keeping both alive keeps the ids theirs
                        checked[memo] = (mods[key], sample["data"])
                applications.append(app)
    return (
        channel_names,
        nbins,
        offsets,
        sample_names,
        modifier_keys,
        samples,
        applications,
    )


def compile_model(
    spec: ModelSpec,
    *,
    modifier_settings: Mapping | None = None,
    require_poi: bool = False,
    checked: dict | None = None,
) -> Model:
    """Compile a model spec into a :class:`Model`.

    Args:
        spec: validated plain data, from :meth:`difflike.workspace.Workspace.model_spec`.
        modifier_settings: interpolation codes, as pyhf's
            ``{"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}``;
            a type left out keeps pyhf's default (normsys code4, histosys code4p).
        require_poi: raise if ``spec.poi`` is not a parameter of the model (otherwise
            the model simply has no POI, as a background-only workspace).
        checked: a dictionary shared by compilations of specs that share parts,
            as the points of a patchset share the background-only workspace's
            samples (:func:`difflike.load_patchset`): a modifier checked once on
            the same sample data (the same objects) is not checked again. The
            documents must not change between the compilations.

    Returns:
        The compiled model.

    Raises:
        InvalidModelError: the spec cannot be built (see the message).
        UnknownParameterError: with ``require_poi``, the POI is not in the model.
    """
    normsys_code, histosys_code = _settings(modifier_settings)
    (
        channel_names,
        nbins,
        offsets,
        sample_names,
        modifier_keys,
        samples,
        applications,
    ) = _walk(spec, normsys_code, checked)

    # -- parameters, in pyhf's order ----------------------------------------------------
    first_req: dict[str, dict[str, dict]] = {t: {} for t in BY_TYPE}
    staterror_apps: dict[str, list[Application]] = defaultdict(list)
    for app in applications:
        if app.type == "staterror":
            staterror_apps[app.name].append(app)
        elif app.name not in first_req[app.type]:
            first_req[app.type][app.name] = BY_TYPE[app.type].requirement(app)
    staterror_bins: dict[str, list[int]] = {}
    for name in sorted(staterror_apps):
        req, covered = staterror_rules.requirement_for(staterror_apps[name])
        first_req["staterror"][name] = req
        staterror_bins[name] = covered
    required: dict[str, list[tuple[str, dict]]] = {}
    for mtype in BY_TYPE:
        for name, req in first_req[mtype].items():
            required.setdefault(name, []).append((mtype, req))
    paramsets = build_paramsets(required, spec.parameters, where=spec.source)
    by_name: dict[str, ParamSet] = {p.name: p for p in paramsets}
    npars = sum(p.n for p in paramsets)

    poi_index = None
    poi_name = spec.poi
    if poi_name is not None and poi_name in by_name:
        if not by_name[poi_name].is_scalar:
            raise InvalidModelError(
                f"the parameter of interest {poi_name!r} has {by_name[poi_name].n} "
                "components; a POI must be a scalar",
                file=spec.source,
            )
        poi_index = by_name[poi_name].start
    elif poi_name is not None:
        if require_poi:
            raise UnknownParameterError(
                f"the parameter of interest {poi_name!r} is not a parameter of the "
                "model (is this a background-only workspace? apply a patch, or "
                "declare signal_regions)",
                file=spec.source,
            )
        log.info("%s: POI %r is not in the model; no POI set", spec.source, poi_name)
        poi_name = None

    # -- rates tables ---------------------------------------------------------------
    nsamples = len(sample_names)
    nmain = sum(nbins.values())
    sample_index = {s: k for k, s in enumerate(sample_names)}
    nominal = np.zeros((nsamples, nmain))
    for (c, sname), sample in samples.items():
        k = sample_index[sname]
        nominal[k, offsets[c] : offsets[c] + nbins[c]] = sample["data"]

    # Parameter-valued factors (normfactor, lumi, shapefactor, staterror, shapesys):
    # a short padded list of parameter indices per entry. Interpolated modifiers
    # (normsys, histosys): dense (parameter, sample, bin) tables, neutral (factor 1,
    # delta 0) where a parameter does not touch an entry, so evaluating them is
    # gather-free: matrix products and elementwise arithmetic (Model._rates).
    mult: dict[tuple[int, int], list[int]] = defaultdict(list)
    ns_params = list(
        dict.fromkeys(
            by_name[a.name].start for a in applications if a.type == "normsys"
        )
    )
    hs_params = list(
        dict.fromkeys(
            by_name[a.name].start for a in applications if a.type == "histosys"
        )
    )
    ns_row = {p: i for i, p in enumerate(ns_params)}
    hs_row = {p: i for i, p in enumerate(hs_params)}
    ns_hi = np.ones((len(ns_params), nsamples, nmain))
    ns_lo = np.ones((len(ns_params), nsamples, nmain))
    hs_up = np.zeros((len(hs_params), nsamples, nmain))
    hs_dn = np.zeros((len(hs_params), nsamples, nmain))
    for app in applications:
        k = sample_index[app.sample]
        bins = range(app.channel_offset, app.channel_offset + app.nbins)
        pset = by_name[app.name]
        if app.type in _FACTOR_TYPES:
            if app.type == "staterror":
                covered = staterror_bins[app.name]
                offsets_in_set = [covered.index(b) for b in bins]
            else:
                offsets_in_set = BY_TYPE[app.type].bin_parameters(app)
            if max(offsets_in_set, default=0) >= pset.n:
                raise app.fail(
                    f"it has {app.nbins} bins but parameter {app.name!r} has "
                    f"{pset.n} components (shared per-bin modifiers need equal bins)"
                )
            for b, off in zip(bins, offsets_in_set):
                mult[k, b].append(pset.start + off)
        elif app.type == "normsys":
            row = ns_row[pset.start]
            ns_hi[row, k, bins.start : bins.stop] = float(app.data["hi"])
            ns_lo[row, k, bins.start : bins.stop] = float(app.data["lo"])
        elif app.type == "histosys":
            row = hs_row[pset.start]
            nominal_bins = np.asarray(app.nominal)
            hs_up[row, k, bins.start : bins.stop] = (
                np.asarray(app.data["hi_data"], dtype=float) - nominal_bins
            )
            hs_dn[row, k, bins.start : bins.stop] = nominal_bins - np.asarray(
                app.data["lo_data"], dtype=float
            )

    mult_index = _padded(mult, (nsamples, nmain), pad=npars)
    if normsys_code == "code4":
        ns_coef = interp.code4_coefficients(ns_hi, ns_lo)
    else:
        ns_coef = np.zeros((6, *ns_hi.shape))

    # -- constraints ----------------------------------------------------------------
    aux_param, aux_value, aux_sigma, aux_factor, aux_poisson = [], [], [], [], []
    auxdata_order = []
    for p in paramsets:
        if p.constraint is None:
            continue
        auxdata_order.append(p.name)
        for i in range(p.n):
            aux_param.append(p.start + i)
            aux_value.append(p.auxdata[i])
            poisson = p.constraint == "poisson"
            aux_poisson.append(poisson)
            aux_sigma.append(1.0 if poisson else p.sigmas[i])
            aux_factor.append(p.factors[i] if poisson else 1.0)

    # -- signal regions ---------------------------------------------------------------
    regions = spec.signal_regions
    if regions is not None:
        signal_sample = sample_index[regions.sample]
        signal_bins = tuple(
            offsets[c] + j
            for c, n in zip(regions.channels, regions.nbins)
            for j in range(n)
        )
        signal_regions, signal_nbins = regions.channels, regions.nbins
    else:
        signal_sample, signal_bins, signal_regions, signal_nbins = -1, (), (), ()

    par_names = tuple(n for p in paramsets for n in p.names)
    config = ModelConfig(
        init=jnp.asarray([v for p in paramsets for v in p.inits], dtype=jnp.float64),
        bounds=jnp.asarray(
            [b for p in paramsets for b in p.bounds], dtype=jnp.float64
        ).reshape(npars, 2),
        fixed=jnp.asarray([f for p in paramsets for f in p.fixed], dtype=bool),
        auxdata=jnp.asarray(aux_value, dtype=jnp.float64),
        par_names=par_names,
        par_order=tuple(p.name for p in paramsets),
        par_slices=tuple((p.start, p.start + p.n) for p in paramsets),
        par_constraints=tuple(p.constraint for p in paramsets),
        par_types=tuple(p.types for p in paramsets),
        poi_name=poi_name,
        poi_index=poi_index,
        channels=tuple(channel_names),
        channel_nbins=tuple(nbins[c] for c in channel_names),
        samples=tuple(sample_names),
        modifiers=tuple(modifier_keys),
        auxdata_order=tuple(auxdata_order),
        signal_regions=tuple(signal_regions),
        signal_nbins=tuple(signal_nbins),
        measurement=spec.measurement,
        modifier_settings=(("histosys", histosys_code), ("normsys", normsys_code)),
        source=spec.source,
        digest=spec.digest,
    )

    def f64(values):
        return jnp.asarray(np.asarray(values, dtype=np.float64))

    def i32(values):
        return jnp.asarray(np.asarray(values, dtype=np.int32))

    return Model(
        config=config,
        nominal=f64(nominal),
        mult_index=i32(mult_index),
        normsys_param=i32(ns_params),
        normsys_hi=f64(ns_hi),
        normsys_lo=f64(ns_lo),
        normsys_coef=f64(ns_coef),
        histosys_param=i32(hs_params),
        histosys_up=f64(hs_up),
        histosys_dn=f64(hs_dn),
        aux_param=i32(aux_param),
        aux_sigma=f64(aux_sigma),
        aux_factor=f64(aux_factor),
        aux_poisson=jnp.asarray(np.asarray(aux_poisson, dtype=bool)),
        aux_mask=jnp.ones(len(aux_param), dtype=bool),
        signal=f64(np.zeros(sum(signal_nbins))),
        normsys_code=normsys_code,
        histosys_code=histosys_code,
        signal_sample=signal_sample,
        signal_bins=signal_bins,
    )


def _padded(
    lists: Mapping[tuple[int, int], list[int]], shape: tuple[int, int], pad: int
) -> np.ndarray:
    """Pack per-entry index lists into a ``(L, *shape)`` array padded with ``pad``."""
    depth = max((len(v) for v in lists.values()), default=0)
    out = np.full((depth, *shape), pad, dtype=np.int32)
    for (k, b), indices in lists.items():
        out[: len(indices), k, b] = indices
    return out


def observed_data(spec: ModelSpec, model: Model) -> np.ndarray:
    """The observed main data (channels in the model's order) then the auxiliary data.

    Returns:
        ``(ndata,)`` float64 numpy array.
    """
    main = [float(v) for c in model.config.channels for v in spec.observations[c]]
    return np.concatenate([np.asarray(main), np.asarray(model.config.auxdata)])
