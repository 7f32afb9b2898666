"""Parity with pyhf on generated workspaces: every modifier and interpolation code.

Hypothesis draws small workspaces — several channels and samples, modifiers of
every type shared across samples and channels, normsys and histosys sharing a name,
zero and tiny yields — and parameter points with |alpha| beyond 1. difflike and pyhf
(numpy backend) must agree:

* ``|logpdf - pyhf| <= 1e-8 * max(1, |pyhf|)``
* expected data to relative ``1e-10`` (absolute ``1e-12`` for zero yields)
* identical parameter names, inits, bounds, fixed flags and auxiliary data.
"""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import difflike as dl
from tests.conftest import pyhf_signal_region_model

LOGPDF_RTOL = 1e-8
EXPECTED_RTOL = 1e-10

yields = st.one_of(
    st.floats(0.5, 500.0), st.just(0.0), st.floats(1e-9, 1e-6), st.floats(0.01, 0.5)
)


@st.composite
def workspaces(draw):
    nchannels = draw(st.integers(1, 3))
    channels, observations = [], []
    sample_pool = ["bkg_a", "bkg_b", "sig"]
    shapefactor_bins: dict[str, int] = {}
    for c in range(nchannels):
        nbins = draw(st.integers(1, 3))
        names = draw(
            st.lists(st.sampled_from(sample_pool), min_size=1, max_size=3, unique=True)
        )
        samples = []
        for sname in names:
            nominal = [draw(yields) for _ in range(nbins)]
            mods = []
            if sname == "sig":
                mods.append({"name": "mu", "type": "normfactor", "data": None})
            if draw(st.booleans()):
                mods.append({"name": "lumi", "type": "lumi", "data": None})
            if draw(st.booleans()):
                mods.append(
                    {"name": f"norm_{sname}", "type": "normfactor", "data": None}
                )
            for name in draw(
                st.lists(
                    st.sampled_from(["sys1", "sys2", "sys3"]), max_size=2, unique=True
                )
            ):
                hi = draw(st.floats(0.5, 1.6))
                lo = draw(st.floats(0.5, 1.6))
                mods.append(
                    {"name": name, "type": "normsys", "data": {"hi": hi, "lo": lo}}
                )
            for name in draw(
                st.lists(
                    st.sampled_from(["sys1", "shape1", "shape2"]),
                    max_size=2,
                    unique=True,
                )
            ):
                hi = [
                    n * draw(st.floats(0.6, 1.5)) + draw(st.sampled_from([0.0, 0.3]))
                    for n in nominal
                ]
                lo = [n * draw(st.floats(0.6, 1.5)) for n in nominal]
                mods.append(
                    {
                        "name": name,
                        "type": "histosys",
                        "data": {"hi_data": hi, "lo_data": lo},
                    }
                )
            if draw(st.booleans()):
                unc = [
                    abs(n) * draw(st.sampled_from([0.0, 0.03, 0.1, 0.25, 0.4]))
                    for n in nominal
                ]
                mods.append({"name": f"stat_c{c}", "type": "staterror", "data": unc})
            if draw(st.integers(0, 3)) == 0:
                unc = [
                    abs(n) * draw(st.sampled_from([0.0, 0.05, 0.2, 0.5]))
                    for n in nominal
                ]
                mods.append(
                    {"name": f"shapesys_{sname}_c{c}", "type": "shapesys", "data": unc}
                )
            if (
                draw(st.integers(0, 3)) == 0
                and shapefactor_bins.get("sf", nbins) == nbins
            ):
                shapefactor_bins["sf"] = nbins
                mods.append({"name": "sf", "type": "shapefactor", "data": None})
            samples.append({"name": sname, "data": nominal, "modifiers": mods})
        channels.append({"name": f"ch{c}", "samples": samples})
        observations.append(
            {
                "name": f"ch{c}",
                "data": [float(draw(st.integers(0, 300))) for _ in range(nbins)],
            }
        )
    # staterror must cover the same bins on every sample that carries it
    for ch in channels:
        stat = [
            s
            for s in ch["samples"]
            if any(m["type"] == "staterror" for m in s["modifiers"])
        ]
        if not stat:
            continue
    parameters = [
        {
            "name": "lumi",
            "auxdata": [1.0],
            "sigmas": [0.02],
            "bounds": [[0.8, 1.2]],
            "inits": [1.0],
        }
    ]
    if draw(st.booleans()):
        parameters.append({"name": "sys1", "bounds": [[-4.0, 4.0]], "inits": [0.5]})
    return {
        "channels": channels,
        "observations": observations,
        "measurements": [
            {"name": "meas", "config": {"poi": "mu", "parameters": parameters}}
        ],
        "version": "1.0.0",
    }


codes = st.tuples(
    st.sampled_from(["code1", "code4"]), st.sampled_from(["code0", "code2", "code4p"])
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=workspaces(), code=codes, seed=st.integers(0, 2**32 - 1))
def test_matches_pyhf(spec, code, seed):
    normsys, histosys = code
    settings_ = {
        "normsys": {"interpcode": normsys},
        "histosys": {"interpcode": histosys},
    }
    ws = pyhf.Workspace(spec)
    has_mu = any(
        m["name"] == "mu"
        for c in spec["channels"]
        for s in c["samples"]
        for m in s["modifiers"]
    )
    try:
        ref = ws.model(modifier_settings=settings_, poi_name="mu" if has_mu else None)
    except pyhf.exceptions.InvalidModel:
        with pytest.raises(dl.errors.InvalidModelError):
            dl.load(spec, modifier_settings=settings_)
        return
    model, data = dl.load(spec, modifier_settings=settings_)
    ref_data = np.asarray(ws.data(ref))
    np.testing.assert_array_equal(np.asarray(data), ref_data)

    config = model.config
    assert list(config.par_names) == ref.config.par_names
    assert config.suggested_init() == pytest.approx(ref.config.suggested_init(), abs=0)
    np.testing.assert_array_equal(
        np.asarray(config.bounds),
        np.asarray(ref.config.suggested_bounds(), dtype=float),
    )
    assert config.suggested_fixed() == ref.config.suggested_fixed()
    assert config.poi_index == ref.config.poi_index
    np.testing.assert_allclose(
        np.asarray(config.auxdata), ref.config.auxdata, rtol=1e-15
    )

    lo, hi = np.asarray(ref.config.suggested_bounds()).T
    rng = np.random.default_rng(seed)
    points = rng.uniform(
        np.maximum(lo, -3.5), np.minimum(hi, 3.5), size=(20, config.npars)
    )
    points = np.concatenate([np.asarray(ref.config.suggested_init())[None], points])
    ours = np.asarray(model.logpdf(points, ref_data))
    expected = np.asarray(model.expected_data(points))
    for p, value, exp in zip(points, ours, expected):
        want = float(ref.logpdf(p, ref_data)[0])
        if not np.isfinite(want):  # pyhf's -inf / nan (a zero rate with counts): same
            np.testing.assert_equal(value, want)
        else:
            assert abs(value - want) <= LOGPDF_RTOL * max(1.0, abs(want)), (value, want)
        np.testing.assert_allclose(
            exp, ref.expected_data(p), rtol=EXPECTED_RTOL, atol=1e-12
        )


@pytest.mark.parametrize("normsys", ["code1", "code4"])
@pytest.mark.parametrize("histosys", ["code0", "code2", "code4p"])
def test_example_every_code(normsys, histosys):
    """The example (every modifier type) with each pair of codes, at large |alpha|."""
    spec = dl.workspace.read_json(dl.example_workspace())
    settings_ = {
        "normsys": {"interpcode": normsys},
        "histosys": {"interpcode": histosys},
    }
    model, data = dl.load(spec, modifier_settings=settings_)
    ref = pyhf.Workspace(spec).model(modifier_settings=settings_, poi_name=None)
    init = np.asarray(ref.config.suggested_init())
    for alpha in (-4.2, -1.0, -0.999, -0.3, 0.0, 1e-7, 0.5, 1.0, 1.001, 2.7):
        pars = init.copy()
        for name in ("jes", "wjets_scale", "ttbar_xsec", "wjets_xsec"):
            pars[model.config.par_index(name)] = alpha
        want = float(ref.logpdf(pars, np.asarray(data))[0])
        got = float(model.logpdf(pars, data))
        assert abs(got - want) <= LOGPDF_RTOL * max(1.0, abs(want))
        np.testing.assert_allclose(
            model.expected_data(pars), ref.expected_data(pars), rtol=EXPECTED_RTOL
        )


def test_pyhf_default_settings_are_code4_and_code4p():
    spec = dl.workspace.read_json(dl.example_workspace())
    model, data = dl.load(spec)
    assert dict(model.config.modifier_settings) == {
        "normsys": "code4",
        "histosys": "code4p",
    }
    ref = pyhf.Workspace(spec).model(poi_name=None)
    pars = np.asarray(ref.config.suggested_init()) + 1.7
    assert float(model.logpdf(pars, data)) == pytest.approx(
        float(ref.logpdf(pars, np.asarray(data))[0]), rel=1e-12
    )


def test_signal_region_model_equals_patched_pyhf():
    spec = dl.workspace.read_json(dl.example_workspace())
    model, data = dl.load(spec, signal_regions=["SR_high", "SR_low"])
    assert model.config.signal_regions == ("SR_high", "SR_low")
    assert model.config.nsignal == 4 and model.config.poi_name == "mu"
    signal = np.array([0.5, 1.5, 3.0, 0.0])  # SR_high bins, then SR_low bins
    ref = pyhf_signal_region_model(spec, {"SR_high": signal[:2], "SR_low": signal[2:]})
    assert list(model.config.par_names) == ref.config.par_names
    rng = np.random.default_rng(3)
    lo, hi = np.asarray(ref.config.suggested_bounds()).T
    for pars in rng.uniform(np.maximum(lo, -2), np.minimum(hi, 3), size=(10, len(lo))):
        want = float(ref.logpdf(pars, np.asarray(data))[0])
        assert float(model.logpdf(pars, data, signal)) == pytest.approx(want, rel=1e-12)
        assert float(model.with_signal(signal).logpdf(pars, data)) == pytest.approx(
            want, rel=1e-12
        )
