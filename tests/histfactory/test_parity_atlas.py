"""Parity with pyhf on the published ATLAS likelihoods.

Reference values were computed with pyhf 0.7.6 (numpy backend) by
``fixtures/make_histfactory_refs.py`` and are stored in
``fixtures/histfactory_pyhf_refs.json.gz``: every point of the ATLAS-SUSY-2018-04
(57) and ATLAS-SUSY-2019-08 (125) patchsets, and both ATLAS-SUSY-2018-16
background-only workspaces as signal-region models, at pyhf's initial point and
60 random points within bounds (at least 20 of them with a finite logpdf). Tolerances:

* ``|logpdf - pyhf| <= 1e-8 * max(1, |pyhf|)``
* expected data to relative ``1e-10``.

A few points are also compared with pyhf live, so stale fixtures cannot hide.
"""

from __future__ import annotations

import functools
import gzip
import json

import numpy as np
import pytest

import difflike as dl
from difflike.workspace import read_patchset, read_workspace

from ..conftest import LIKELIHOODS, histfactory_refs, likelihoods_available
from ..fixtures.make_histfactory_refs import (
    MIN_FINITE,
    parameter_points,
    signal_region_spec,
)

LOGPDF_RTOL = 1e-8
EXPECTED_RTOL = 1e-10
ANALYSES = ("ATLAS-SUSY-2018-04", "ATLAS-SUSY-2019-08")


def _points(analysis):
    """The patchset points compared one by one through ``dl.load(point=...)``: the
    first, and those whose parameters differ from the first's (the others are
    compared through the stacked grid, :func:`test_every_patchset_point`)."""
    if not likelihoods_available():
        return [
            pytest.param(
                analysis, "", marks=pytest.mark.skip(reason="no shared likelihoods")
            )
        ]
    with gzip.open(LIKELIHOODS / analysis / "patchset.json.gz", "rt") as f:
        names = [p["metadata"]["name"] for p in json.load(f)["patches"]]
    refs = histfactory_refs()
    first = refs[f"{analysis}/{names[0]}"]["par_names"]
    own = [n for n in names if refs[f"{analysis}/{n}"]["par_names"] != first]
    return [pytest.param(analysis, n, id=f"{analysis}-{n}") for n in names[:1] + own]


@functools.cache
def _sources(analysis):
    folder = LIKELIHOODS / analysis
    return read_workspace(folder / "BkgOnly.json"), read_patchset(
        folder / "patchset.json.gz"
    )


def _pars(ref):
    """The reference's parameter points, ``(n, npars)`` in its own layout."""
    return parameter_points(
        ref["init"], ref["bounds"], ref["seed"], ref["n"], ref["scale"]
    )


def assert_matches(model, data, ref, signal=None):
    config = model.config
    assert list(config.par_names) == ref["par_names"]
    assert config.suggested_init() == ref["init"]
    np.testing.assert_array_equal(
        np.asarray(config.bounds), np.asarray(ref["bounds"], dtype=float)
    )
    assert config.suggested_fixed() == ref["fixed"]
    assert config.poi_index == ref["poi_index"]
    np.testing.assert_array_equal(np.asarray(data), np.asarray(ref["data"]))
    pars = _pars(ref)
    got = np.asarray(model.logpdf(pars, data, signal))
    want = np.asarray(ref["logpdf"], dtype=float)
    finite = np.isfinite(want)
    assert finite[0] and finite.sum() >= 1 + MIN_FINITE
    # where a rate is negative pyhf's logpdf is NaN: difflike must say the same
    np.testing.assert_equal(got[~finite], want[~finite])
    error = np.abs(got[finite] - want[finite]) / np.maximum(1.0, np.abs(want[finite]))
    assert np.all(error <= LOGPDF_RTOL), error.max()
    expected = np.asarray(model.expected_data(pars, signal))
    np.testing.assert_allclose(
        expected[:, : config.nmaindata], ref["expected_main"], rtol=EXPECTED_RTOL
    )
    np.testing.assert_allclose(
        expected[[0, -1], config.nmaindata :], ref["expected_aux"], rtol=EXPECTED_RTOL
    )


@pytest.mark.shared
@pytest.mark.parametrize(
    ("analysis", "point"), [p for a in ANALYSES for p in _points(a)]
)
def test_patchset_point(likelihoods, analysis, point):
    ws, ps = _sources(analysis)
    model, data = dl.load(ws, patchset=ps, point=point)
    assert_matches(model, data, histfactory_refs()[f"{analysis}/{point}"])


@pytest.mark.shared
@pytest.mark.parametrize("analysis", ANALYSES)
def test_every_patchset_point(likelihoods, analysis):
    """Every point of the patchset against pyhf, through the patchset's stacked grid
    (one compilation for all; a grid point equals the point's own model,
    tests/histfactory/test_stack.py): the logpdf and expected main data at each
    point's reference parameters, and the expected auxiliary data where the point's
    parameters are the grid's (the others: :func:`test_patchset_point`)."""
    grid, data = dl.load_patchset(*_sources(analysis), progress=False)
    config = grid.config
    refs = [histfactory_refs()[f"{analysis}/{p}"] for p in config.points]
    pars = np.repeat(np.asarray(config.init)[None], len(_pars(refs[0])), axis=0)
    for i, ref in enumerate(refs):
        index = [config.par_names.index(n) for n in ref["par_names"]]
        pars[:, i, index] = _pars(ref)  # unused parameters stay at their init
        main = np.asarray(data[i, : config.nmaindata])
        np.testing.assert_array_equal(main, ref["data"][: config.nmaindata])
    got = np.asarray(grid.logpdf(pars, data))  # (n, points)
    expected = np.asarray(grid.expected_data(pars))  # (n, points, ndata)
    same = [i for i, r in enumerate(refs) if tuple(r["par_names"]) == config.par_names]
    # each point whose auxiliary data are laid out otherwise is compared on its own
    alone = {param.values[1] for param in _points(analysis)}
    assert {p for i, p in enumerate(config.points) if i not in same} <= alone
    for i, (point, ref) in enumerate(zip(config.points, refs)):
        want = np.asarray(ref["logpdf"], dtype=float)
        finite = np.isfinite(want)
        assert finite[0] and finite.sum() >= 1 + MIN_FINITE, point
        np.testing.assert_equal(got[~finite, i], want[~finite], err_msg=point)
        error = np.abs(got[finite, i] - want[finite]) / np.maximum(
            1.0, np.abs(want[finite])
        )
        assert np.all(error <= LOGPDF_RTOL), (point, error.max())
        np.testing.assert_allclose(
            expected[:, i, : config.nmaindata],
            ref["expected_main"],
            rtol=EXPECTED_RTOL,
            err_msg=point,
        )
        if i in same:  # the grid's layout is the point's: all of its config too
            for name, want, ndim in (
                ("init", ref["init"], 1),
                ("fixed", ref["fixed"], 1),
                ("bounds", ref["bounds"], 2),
            ):  # per point where the grid's differ
                have = np.asarray(getattr(config, name))
                have = have[i] if have.ndim > ndim else have
                np.testing.assert_array_equal(have, np.asarray(want), (point, name))
            assert config.poi_index == ref["poi_index"], point
            np.testing.assert_array_equal(np.asarray(data[i]), ref["data"], point)
            np.testing.assert_allclose(
                expected[[0, -1], i, config.nmaindata :],
                ref["expected_aux"],
                rtol=EXPECTED_RTOL,
                err_msg=point,
            )


@pytest.mark.shared
@pytest.mark.parametrize("name", ["EWKinos_bkgonly.json", "Sleptons_bkgonly.json"])
def test_signal_region_model(likelihoods, name):
    ref = histfactory_refs()[f"ATLAS-SUSY-2018-16/{name}"]
    model, data = dl.load(
        likelihoods / "ATLAS-SUSY-2018-16" / name, signal_regions=ref["signal_regions"]
    )
    assert model.config.signal_regions == tuple(ref["signal_regions"])
    assert_matches(model, data, ref, signal=np.asarray(ref["signal"]))


@pytest.mark.shared
@pytest.mark.parametrize(
    ("analysis", "point"),
    [
        ("ATLAS-SUSY-2018-04", "DS_400_40_Staus"),
        ("ATLAS-SUSY-2019-08", "C1N2_Wh_hbb_500_100"),
    ],
)
def test_live_pyhf(likelihoods, analysis, point):
    """Against pyhf itself, computed now (guards the stored fixtures)."""
    import pyhf

    folder = likelihoods / analysis
    spec = json.loads((folder / "BkgOnly.json").read_text())
    ps = pyhf.PatchSet(json.load(gzip.open(folder / "patchset.json.gz")))
    ws = pyhf.Workspace(spec)
    ref_model = ws.model(patches=[ps[point]])
    ref_data = np.asarray(ws.data(ref_model))
    model, data = dl.load(
        folder / "BkgOnly.json", patchset=folder / "patchset.json.gz", point=point
    )
    pars = parameter_points(
        ref_model.config.suggested_init(),
        ref_model.config.suggested_bounds(),
        seed=5,
        n=4,
    )
    for p, got in zip(pars, np.asarray(model.logpdf(pars, data))):
        want = float(ref_model.logpdf(p, ref_data)[0])
        if np.isfinite(want):
            assert abs(got - want) <= LOGPDF_RTOL * max(1.0, abs(want))
        else:
            np.testing.assert_equal(got, want)


@pytest.mark.shared
def test_signal_region_model_live_pyhf(likelihoods):
    import pyhf

    path = likelihoods / "ATLAS-SUSY-2018-04" / "BkgOnly.json"
    spec = json.loads(path.read_text())
    regions = ["SR2cut_cuts", "SR1cut_cuts"]
    signal = np.array([3.5, 0.7])
    model, data = dl.load(path, signal_regions=regions)
    ref_model = pyhf.Workspace(
        signal_region_spec(spec, regions, signal, model.config.poi_name)
    ).model()
    assert list(model.config.par_names) == ref_model.config.par_names
    pars = parameter_points(
        ref_model.config.suggested_init(),
        ref_model.config.suggested_bounds(),
        seed=9,
        n=5,
    )
    want = np.array([float(ref_model.logpdf(p, np.asarray(data))[0]) for p in pars])
    np.testing.assert_allclose(
        np.asarray(model.logpdf(pars, data, signal)), want, rtol=1e-10
    )
