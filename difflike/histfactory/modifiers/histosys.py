"""``histosys``: a constrained shape uncertainty, interpolated (code0, code2, code4p)."""

from __future__ import annotations

import math

from difflike.histfactory.modifiers._base import Application, check_length

TYPE = "histosys"
SHARED = True


def check(app: Application) -> None:
    """``hi_data`` and ``lo_data`` have one finite entry per bin."""
    for key in ("hi_data", "lo_data"):
        values = app.data[key]
        check_length(app, values, key)
        if all(map(math.isfinite, values)):  # the common case, at C speed
            continue
        for j, value in enumerate(values):
            if not math.isfinite(value):
                raise app.fail(f"{key}[{j}] is not finite", got=value)


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
