"""The HistFactory modifier types: each module gives its parameter's requirements.

A requirement is a dict with ``constraint`` (``None``, ``"normal"``, ``"poisson"``),
``n``, ``is_scalar``, ``inits``, ``bounds``, ``fixed`` and, for constrained
parameters, ``auxdata`` and ``sigmas`` or ``factors`` — the same facts pyhf's
paramset requirements carry, so that parameters are built identically.
"""

from difflike.histfactory.modifiers import (
    histosys,
    lumi,
    normfactor,
    normsys,
    shapefactor,
    shapesys,
    staterror,
)
from difflike.histfactory.modifiers._base import Application

#: modifier modules in pyhf's order, which fixes the order of the parameters
BY_TYPE = {
    "histosys": histosys,
    "lumi": lumi,
    "normfactor": normfactor,
    "normsys": normsys,
    "shapefactor": shapefactor,
    "shapesys": shapesys,
    "staterror": staterror,
}

__all__ = ["BY_TYPE", "Application"]
