"""``shapefactor``: one free scale factor per bin (shared by name across samples)."""

from __future__ import annotations

from difflike.histfactory.modifiers._base import Application

TYPE = "shapefactor"
SHARED = True


def check(app: Application) -> None:
    """Nothing to check beyond the schema."""


def requirement(app: Application) -> dict:
    """One parameter per bin: init 1, bounds [0, 10], free (as pyhf)."""
    n = app.nbins
    return {
        "constraint": None,
        "n": n,
        "is_scalar": False,
        "inits": (1.0,) * n,
        "bounds": ((0.0, 10.0),) * n,
        "fixed": False,
    }


def bin_parameters(app: Application) -> list[int]:
    """Bin ``j`` of the sample is scaled by the parameter's component ``j``."""
    return list(range(app.nbins))
