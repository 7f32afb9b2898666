"""The notebooks in ``notebooks/`` run top to bottom (executed with nbclient).

Each notebook asserts its own results (agreement with pyhf, shapes, finiteness), so
a cell that raises fails this test. They run with the published likelihoods where
those are present and skip their ATLAS sections otherwise, in their quick mode
(``DIFFLIKE_NOTEBOOK_QUICK=1``: small datasets and networks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LIKELIHOODS, ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("DIFFLIKE_LIKELIHOODS", str(LIKELIHOODS))
    monkeypatch.setenv("DIFFLIKE_NOTEBOOK_QUICK", "1")  # CI-sized settings
    # the kernel compiles with XLA's cheaper optimisation, as the tests on small
    # models do (conftest.py): the quick notebooks run on small models, and the
    # surrogate pipeline's takes 90 s instead of 101 s
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
