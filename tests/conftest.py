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
import pytest

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LIKELIHOODS = Path(
    os.environ.get("DIFFLIKE_LIKELIHOODS", ROOT.parent / "shared" / "likelihoods")
)


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
