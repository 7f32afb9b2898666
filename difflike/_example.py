"""The built-in example: a small workspace with every modifier type, and a patchset."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["example_patchset", "example_workspace"]

#: the example's signal regions, in signal-vector order
EXAMPLE_SIGNAL_REGIONS = ("SR_low", "SR_high")


def example_workspace() -> Path:
    """Path of the example workspace shipped with difflike.

    Two signal regions (``SR_low``, ``SR_high``, 2 bins each) and a control region
    (``CR``, 3 bins); samples ttbar, wjets and fakes; modifiers of every type.
    """
    return Path(str(resources.files("difflike") / "data" / "example_workspace.json"))


def example_patchset() -> Path:
    """Path of the example patchset: signal points ``sig_<m1>_<m2>`` for the example."""
    return Path(str(resources.files("difflike") / "data" / "example_patchset.json.gz"))
