"""``normsys``: a constrained normalisation uncertainty, interpolated (code1 or code4)."""

from __future__ import annotations

import math

from difflike.histfactory.modifiers._base import Application

TYPE = "normsys"
SHARED = True


def check(app: Application, code: str = "code4") -> None:
    """``hi`` and ``lo`` are finite; positive for code4, non-negative for code1."""
    for key in ("hi", "lo"):
        value = app.data[key]
        if not math.isfinite(value):
            raise app.fail(f"{key} is not finite", got=value)
        if code == "code4" and value <= 0:
            raise app.fail(
                f"{key} must be positive for normsys interpolation code4 "
                "(its polynomial uses log(hi) and log(lo))",
                got=value,
                expected="> 0",
            )
        if value < 0:
            raise app.fail(f"{key} is negative", got=value, expected=">= 0")


def requirement(app: Application) -> dict:
    """A unit-Gaussian-constrained parameter, init 0, bounds [-5, 5] (as pyhf)."""
    return {
        "constraint": "normal",
        "n": 1,
        "is_scalar": True,
        "inits": (0.0,),
        "bounds": ((-5.0, 5.0),),
        "fixed": False,
        "auxdata": (0.0,),
    }
