"""CLs, fits and upper limits on the published ATLAS likelihoods against pyhf 0.7.6.

Reference values come from ``tests/fixtures/make_inference_refs.py`` (pyhf, numpy
backend, default settings). Each analysis's whole patchset is one batched model
(:func:`difflike.load_patchset`), so every stored point is checked in one compiled
call per quantity.
"""

from __future__ import annotations

import gzip
import json
from typing import NamedTuple

import numpy as np
import pytest

import difflike as dl
from difflike.fit import profile
from difflike.infer import HypotestDetails, hypotest, log_pvalues, upper_limit
from tests.conftest import FIXTURES, assert_close

pytestmark = pytest.mark.xdist_group("atlas-inference")

REFS_PATH = FIXTURES / "inference_pyhf_refs.json.gz"
ANALYSES = ("ATLAS-SUSY-2018-04", "ATLAS-SUSY-2019-08")

#: The grids are tested with ``mirror=True``: the fixed-mu = 1 likelihoods of some
#: 2019-08 points have several minima that differ in the signs of several jet
#: energy scale pulls at once. From the suggested initial values difflike's Newton
#: path ends in a shallower one at C1N2_Wh_hbb_325_50 (122.36400 against pyhf's
#: 121.98990); the mirrored start reaches pyhf's minimum there and deeper ones than
#: pyhf's at three other points (README, "Several minima").

#: Points where pyhf's fit at mu = 1 ends in a local minimum above difflike's, so
#: the observed CLs differ by the minimum, not by the method (checked: pyhf's stored
#: minima through difflike's formulae give pyhf's CLs). -ln L at mu = 1 lower in
#: difflike by 3.9e-3 at C1N2_Wh_hbb_600_100 (CLs 0.009621 against pyhf's
#: 0.009583), by 6.3e-3 at C1N2_Wh_hbb_650_0 (CLs 0.017250 against 0.017137) and
#: by 0.146 at C1N2_Wh_hbb_375_50 (CLs 7.22e-5 against 6.18e-5, partly through the
#: Asimov fit below).
PYHF_LOCAL_MINIMA = {"C1N2_Wh_hbb_375_50", "C1N2_Wh_hbb_600_100", "C1N2_Wh_hbb_650_0"}
#: Likewise for the fit at mu = 1 to the Asimov data, so the expected band differs:
#: C1N2_Wh_hbb_375_50, -ln L 117.13604 against pyhf's 117.31718 (expected CLs up to
#: 21% higher, 4.93e-6 against 4.08e-6 at the median).
PYHF_ASIMOV_LOCAL_MINIMA = {"C1N2_Wh_hbb_375_50"}


def _refs() -> dict:
    if not REFS_PATH.is_file():
        return {"hypotest": {}, "upper_limit": {}}
    with gzip.open(REFS_PATH, "rt") as f:
        return json.load(f)


REFS = _refs()


def _stored(kind: str, analysis: str) -> dict[str, dict]:
    prefix = f"{analysis}/"
    return {
        k.removeprefix(prefix): v for k, v in REFS[kind].items() if k.startswith(prefix)
    }


class Grid(NamedTuple):
    analysis: str
    model: dl.Model
    data: np.ndarray
    details: HypotestDetails  # hypotest at mu = 1: its fits' minima included
    mu0: dl.FitResult  # the fit at mu = 0 (behind the Asimov data)


#: grids checked on every second stored point (and on every point where pyhf's
#: minima are local, above), to keep the suite's time: the 2019-08 grid's 125
#: points took 100 s of it, 2018-04's 57 points 60 s. Their models are compared
#: with pyhf on every point (tests/histfactory/test_parity_atlas.py) and their
#: limits on four each.
EVERY_OTHER = {"ATLAS-SUSY-2018-04", "ATLAS-SUSY-2019-08"}


@pytest.fixture(scope="module", params=ANALYSES)
def grid(request, likelihoods) -> Grid:
    """The stored points of one analysis's grid (:data:`EVERY_OTHER`), tested at
    mu = 1 in one call.

    Both tests below read this one computation (the module runs on one xdist
    worker: ``xdist_group``)."""
    analysis = request.param
    names = sorted(_stored("hypotest", analysis))
    if not names:  # a fixture without this analysis also fails the count test above
        pytest.skip(f"no reference values stored for {analysis}")
    if analysis in EVERY_OTHER:
        special = PYHF_LOCAL_MINIMA | PYHF_ASIMOV_LOCAL_MINIMA
        names = sorted(set(names[::2]) | (special & set(names)))
    folder = likelihoods / analysis
    model, data = dl.load_patchset(
        folder / "BkgOnly.json",
        folder / "patchset.json.gz",
        points=names,
        progress=False,
    )
    details = hypotest(1.0, model, data, return_details=True, mirror=True)
    return Grid(analysis, model, data, details, profile(model, data, 0.0, mirror=True))


def test_fixture_covers_both_grids():
    for analysis, npoints in zip(ANALYSES, (57, 125)):
        assert len(_stored("hypotest", analysis)) == npoints, analysis


def test_cls_matches_pyhf_on_the_stored_points(grid):
    refs = _stored("hypotest", grid.analysis)
    out = grid.details
    assert set(grid.model.config.points) <= set(refs)
    assert out.cls.shape == (len(grid.model.config.points),)
    deeper, deeper_asimov = set(), set()
    for i, name in enumerate(grid.model.config.points):
        ref = refs[name]
        assert bool(out.converged[i]), name
        # pyhf's own minima, through difflike's asymptotic formulae, give its CLs
        q = 0.0 if ref["muhat"] > 1.0 else 2.0 * (ref["nll_mu1"] - ref["nll_free"])
        q_a = 2.0 * (ref["nll_mu1_asimov"] - ref["nll_free_asimov"])
        lsb, lb, *_ = log_pvalues(max(q, 0.0), max(q_a, 0.0), "qtilde")
        assert_close(np.exp(lsb - lb), ref["cls_obs"], rel=1e-5, abs_=1e-8)
        exp_tol = np.maximum(1e-3 * np.abs(ref["cls_exp"]), 1e-5)
        if np.any(np.abs(np.asarray(out.cls_exp[i]) - ref["cls_exp"]) > exp_tol):
            # allowed only where difflike's Asimov mu = 1 minimum is the deeper one
            # (beyond the 1e-5 by which the two fitters' Asimov data differ)
            assert float(out.nll_mu_asimov[i]) < ref["nll_mu1_asimov"] - 1e-3, name
            deeper_asimov.add(name)
        theirs = ref["cls_obs"]
        if abs(float(out.cls[i]) - theirs) > max(1e-3 * abs(theirs), 1e-5):
            # allowed only where difflike's mu = 1 minimum is the deeper one
            assert float(out.q[i]) < q - 2e-6, name
            deeper.add(name)
    points = set(grid.model.config.points)
    assert deeper == PYHF_LOCAL_MINIMA & points
    assert deeper_asimov == PYHF_ASIMOV_LOCAL_MINIMA & points


def test_minima_are_not_worse_than_pyhf(grid):
    refs = _stored("hypotest", grid.analysis)
    names = grid.model.config.points
    out, mu0 = grid.details, grid.mu0

    def ref(key):
        return np.asarray([refs[n][key] for n in names])

    # every fit converged: hypotest's flag covers its four fits to data and Asimov
    for flags in (out.converged, mu0.converged):
        failed = ~np.asarray(flags)
        assert not failed.any(), np.asarray(names)[failed]
    worse = set()
    for ours, key in (
        (out.nll_hat, "nll_free"),
        (out.nll_mu, "nll_mu1"),
        (mu0.nll, "nll_mu0"),
    ):
        excess = np.asarray(ours) - ref(key)
        worse |= {(names[i], key) for i in np.flatnonzero(excess > 1e-6)}
    assert not worse, sorted(worse)

    # Asimov data are built from each fitter's own mu = 0 fit, so their minima
    # differ from pyhf's with the data (by ~1e-5 here), not with the minimiser.
    # Ours must reach the generating point, whose -ln L is known exactly.
    asimov = grid.model.expected_data(mu0.pars)
    at_truth = -np.asarray(grid.model.logpdf(mu0.pars, asimov))
    free_a = np.asarray(out.nll_hat_asimov)
    assert (free_a <= at_truth + 1e-9).all()
    assert free_a == pytest.approx(at_truth, abs=1e-6)
    np.testing.assert_allclose(free_a, ref("nll_free_asimov"), rtol=0, atol=1e-3)


@pytest.mark.parametrize("analysis", ANALYSES)
def test_upper_limits_match_pyhf(likelihoods, analysis):
    refs = _stored("upper_limit", analysis)
    # the issue asks for at least 8 points over both grids: 4 per analysis, spread
    # over each grid (make_inference_refs.py, LIMIT_POINTS)
    assert len(refs) >= 4, sorted(refs)
    folder = likelihoods / analysis
    names = sorted(refs)
    model, data = dl.load_patchset(
        folder / "BkgOnly.json",
        folder / "patchset.json.gz",
        points=names,
        progress=False,
    )
    out = upper_limit(model, data, return_details=True)
    for i, name in enumerate(names):
        assert out.converged[i].all(), name
        assert_close(out.mu_up[i], refs[name]["mu_up"], rel=5e-3)
        assert_close(out.mu_up_exp[i], refs[name]["mu_up_exp"], rel=5e-3)
