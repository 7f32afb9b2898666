"""CLs, fits and upper limits on the published ATLAS likelihoods against pyhf 0.7.6.

Reference values come from ``tests/fixtures/make_inference_refs.py`` (pyhf, numpy
backend, default settings). Each patchset point compiles its own model, so CI checks
a spread of points per analysis; ``DIFFLIKE_ALL_POINTS=1`` checks every point stored.
"""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

import difflike as dl
from difflike.fit import fit, profile
from difflike.infer import hypotest, upper_limit
from tests.conftest import FIXTURES, assert_close

REFS_PATH = FIXTURES / "inference_pyhf_refs.json.gz"
ANALYSES = ("ATLAS-SUSY-2018-04", "ATLAS-SUSY-2019-08")
PER_ANALYSIS = 2


def _refs() -> dict:
    if not REFS_PATH.is_file():
        return {"hypotest": {}, "upper_limit": {}}
    with gzip.open(REFS_PATH, "rt") as f:
        return json.load(f)


REFS = _refs()


def _points(kind: str) -> list[str]:
    keys = sorted(REFS[kind])
    if os.environ.get("DIFFLIKE_ALL_POINTS") or kind == "upper_limit":
        return keys
    chosen = []
    for analysis in ANALYSES:
        mine = [k for k in keys if k.startswith(analysis)]
        idx = (
            np.linspace(0, len(mine) - 1, PER_ANALYSIS).round().astype(int)
            if mine
            else []
        )
        chosen += [mine[i] for i in sorted(set(idx))]
    return chosen


def _load(likelihoods, key):
    analysis, point = key.split("/")
    folder = likelihoods / analysis
    return dl.load(
        folder / "BkgOnly.json", patchset=folder / "patchset.json.gz", point=point
    )


def test_fixture_covers_both_analyses():
    for analysis in ANALYSES:
        assert any(k.startswith(analysis) for k in REFS["hypotest"]), analysis


@pytest.mark.parametrize("key", _points("hypotest"))
def test_cls_and_minima_match_pyhf(likelihoods, key):
    ref = REFS["hypotest"][key]
    model, data = _load(likelihoods, key)
    out = hypotest(1.0, model, data, return_details=True)
    assert bool(out.converged)
    assert_close(out.cls, ref["cls_obs"])
    assert_close(out.cls_exp, ref["cls_exp"])
    free = fit(model, data)
    fixed = profile(model, data, np.array([1.0, 0.0]))
    assert bool(free.converged) and fixed.converged.all()
    assert float(free.nll) <= ref["nll_free"] + 1e-6
    assert float(fixed.nll[0]) <= ref["nll_mu1"] + 1e-6
    assert float(fixed.nll[1]) <= ref["nll_mu0"] + 1e-6


@pytest.mark.parametrize("key", _points("upper_limit"))
def test_upper_limits_match_pyhf(likelihoods, key):
    ref = REFS["upper_limit"][key]
    model, data = _load(likelihoods, key)
    out = upper_limit(model, data, return_details=True)
    assert out.converged.all()
    assert_close(out.mu_up, ref["mu_up"], rel=5e-3)
    assert_close(out.mu_up_exp, ref["mu_up_exp"], rel=5e-3)
