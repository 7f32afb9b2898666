"""``lumi``: the luminosity scale, Gaussian-constrained; configured by the measurement."""

from __future__ import annotations

from difflike.histfactory.modifiers._base import Application

TYPE = "lumi"
SHARED = True

#: keys the measurement's parameter configuration must give for ``lumi``
REQUIRED_CONFIG = ("inits", "bounds", "auxdata", "sigmas")


def check(app: Application) -> None:
    """Nothing to check beyond the schema."""


def requirement(app: Application) -> dict:
    """The lumi parameter: everything comes from the measurement configuration."""
    return {
        "constraint": "normal",
        "n": 1,
        "is_scalar": True,
        "inits": None,
        "bounds": None,
        "fixed": False,
        "auxdata": None,
        "sigmas": None,
    }


def bin_parameters(app: Application) -> list[int]:
    """Offset of the parameter scaling each bin of the sample (the one scalar)."""
    return [0] * app.nbins
