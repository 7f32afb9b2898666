"""``normfactor``: a free scale factor of a sample (shared by name)."""

from __future__ import annotations

from difflike.histfactory.modifiers._base import Application

TYPE = "normfactor"
SHARED = True


def check(app: Application) -> None:
    """Nothing to check beyond the schema."""


def requirement(app: Application) -> dict:
    """The parameter a normfactor needs (as pyhf: init 1, bounds [0, 10], free)."""
    return {
        "constraint": None,
        "n": 1,
        "is_scalar": True,
        "inits": (1.0,),
        "bounds": ((0.0, 10.0),),
        "fixed": False,
    }


def bin_parameters(app: Application) -> list[int]:
    """Offset of the parameter scaling each bin of the sample (the one scalar)."""
    return [0] * app.nbins
