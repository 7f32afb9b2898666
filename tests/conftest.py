"""Shared test configuration: float64, the published likelihoods, reference fixtures.

Warnings are errors (see ``filterwarnings`` in pyproject.toml). Tests that need the
published ATLAS likelihoods take the ``likelihoods`` fixture, which skips them when
``../shared/likelihoods`` (or ``$DIFFLIKE_LIKELIHOODS``) is absent, as in a fresh
clone.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[1]
# Compiled programs are cached on disk (keyed by program, jax version and
# platform): the test workers share what one of them compiled, and a second run
# of the suite reuses the first's.
jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIKELIHOODS = Path(
    os.environ.get("DIFFLIKE_LIKELIHOODS", ROOT.parent / "shared" / "likelihoods")
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Compile with XLA's cheaper backend optimisation for tests on small models.

    Their time is almost all XLA compiling fits, hypothesis tests and limits
    (measured: 15 s compiling the example's hypotest, 0.1 s running it); the cheap
    setting compiles them 30-40% faster and changes how fast programs run, not what
    they compute. Tests on the published likelihoods run large batches, where
    optimised code pays (they were up to 3x slower without it), so they keep it.
    """
    cheap = "likelihoods" not in getattr(item, "fixturenames", ())
    jax.config.update("jax_disable_most_optimizations", cheap)


def _mapped_regions() -> int:
    """Memory mappings of this process (0 where ``/proc`` is not there)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _map_limit() -> int:
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return 65530


# Every program XLA compiles for the CPU keeps a few memory mappings (about six)
# for as long as jax caches it. A test worker that runs a few hundred tests over
# differently shaped models compiles thousands of programs; past the kernel's
# vm.max_map_count (65,530 by default) the next mmap fails and the compiler
# crashes with a segmentation fault (seen in CI after ~255 tests in one worker).
# Dropping jax's in-memory caches releases them; the programs a later test needs
# again come back from the on-disk cache.
_MAX_MAPPED = _map_limit() // 2


@pytest.fixture(autouse=True)
def _bounded_compiled_programs():
    yield
    if _mapped_regions() > _MAX_MAPPED:
        jax.clear_caches()


def likelihoods_available() -> bool:
    return (LIKELIHOODS / "ATLAS-SUSY-2018-04" / "BkgOnly.json").is_file()


@pytest.fixture(scope="session")
def likelihoods() -> Path:
    """The folder of published likelihoods; skips the test when it is absent."""
    if not likelihoods_available():
        pytest.skip(f"published likelihoods not found at {LIKELIHOODS}")
    return LIKELIHOODS


_REFS = None


def histfactory_refs() -> dict:
    """pyhf reference values (see fixtures/make_histfactory_refs.py)."""
    global _REFS
    if _REFS is None:
        with gzip.open(FIXTURES / "histfactory_pyhf_refs.json.gz", "rt") as f:
            _REFS = json.load(f)
    return _REFS


def pyhf_example_point(point: str):
    """``(pyhf, model, data)``: pyhf (numpy backend) on the built-in example at ``point``."""
    import difflike as dl

    pyhf = pytest.importorskip("pyhf")
    pyhf.set_backend("numpy")
    ws = pyhf.Workspace(json.loads(dl.example_workspace().read_text()))
    with gzip.open(dl.example_patchset()) as f:
        patch = pyhf.PatchSet(json.load(f))[point]
    model = ws.model(patches=[patch])
    return pyhf, model, ws.data(model)


def pyhf_signal_region_model(spec: dict, signal: dict[str, np.ndarray]):
    """pyhf's model of ``spec`` with a sample ``signal`` (yields per channel, scaled
    by the measurement's POI as a normfactor) added: the equivalent of a difflike signal-region model."""
    import copy

    pyhf = pytest.importorskip("pyhf")
    spec = copy.deepcopy(spec)
    poi = spec["measurements"][0]["config"].get("poi", "mu")
    for channel in spec["channels"]:
        part = signal.get(channel["name"])
        if part is not None:
            channel["samples"].append(
                {
                    "name": "signal",
                    "data": np.asarray(part, float).tolist(),
                    "modifiers": [{"name": poi, "type": "normfactor", "data": None}],
                }
            )
    return pyhf.Workspace(spec).model()


def pyhf_delta(spec: dict, config, data, signal, expectation: str) -> float:
    """Δ(s) from pyhf's fixed-POI fits (numpy backend) on the pyhf model equivalent
    to a difflike signal-region model of ``spec`` (``config`` its ModelConfig)."""
    pyhf = pytest.importorskip("pyhf")
    pyhf.set_backend("numpy")
    split = np.cumsum(config.signal_nbins)[:-1]
    parts = dict(zip(config.signal_regions, np.split(np.asarray(signal), split)))
    pmodel = pyhf_signal_region_model(spec, parts)
    init = pmodel.config.suggested_init()
    bounds = pmodel.config.suggested_bounds()
    fixed = pmodel.config.suggested_fixed()
    data = np.asarray(data, float)
    base = expectation.removesuffix("_asimov")
    if base == "aposteriori":
        data = pyhf.infer.calculators.generate_asimov_data(
            0.0, data, pmodel, init, bounds, fixed
        )
    elif base == "apriori":
        pars = np.asarray(init, float)
        pars[pmodel.config.poi_index] = 0.0
        data = np.concatenate([pmodel.expected_actualdata(pars), pmodel.config.auxdata])
    if expectation.endswith("_asimov"):
        data = pyhf.infer.calculators.generate_asimov_data(
            0.0, data, pmodel, init, bounds, fixed
        )

    def nll(mu):
        _, twice = pyhf.infer.mle.fixed_poi_fit(
            mu, data, pmodel, init, bounds, fixed, return_fitted_val=True
        )
        return float(twice) / 2.0

    return nll(0.0) - nll(1.0)


def assert_close(ours, theirs, rel: float = 1e-3, abs_: float = 1e-5) -> None:
    """``|ours - theirs| <= max(rel * |theirs|, abs_)`` elementwise."""
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    tol = np.maximum(rel * np.abs(theirs), abs_)
    assert np.all(np.abs(ours - theirs) <= tol), (ours, theirs)


def two_well_model(alpha_init: float = 0.0):
    """One bin: a signal (mu) of 1 event over a background of 10 whose histosys
    raises it in both directions (+6 up, +3 down), observed 20: at mu = 1 the data
    ask for more events, and the constraint pulls back, on either side: minima at
    alpha = +1.017 (-ln L 4.090) and alpha = -1.151 (4.952); ``alpha_init`` is
    where fits start."""
    import difflike as dl

    spec = {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "signal",
                        "data": [1.0],
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None}
                        ],
                    },
                    {
                        "name": "background",
                        "data": [10.0],
                        "modifiers": [
                            {
                                "name": "alpha",
                                "type": "histosys",
                                "data": {"hi_data": [16.0], "lo_data": [13.0]},
                            }
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [20.0]}],
        "measurements": [
            {
                "name": "m",
                "config": {
                    "poi": "mu",
                    "parameters": [{"name": "alpha", "inits": [alpha_init]}],
                },
            }
        ],
        "version": "1.0.0",
    }
    return dl.load(spec)
