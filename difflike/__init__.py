"""difflike: differentiable HistFactory likelihoods in JAX for LHC reinterpretation.

Importing difflike turns on JAX's 64-bit mode (``jax_enable_x64``): likelihood fits
need float64. See :mod:`difflike._x64`.

>>> import difflike as dl
>>> model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
"""

from difflike import (
    _x64,  # noqa: F401  (first: float64 before any array is made)
    errors,
    histfactory,
    workspace,
)
from difflike._example import example_patchset, example_workspace
from difflike._load import load, load_workspace
from difflike._version import __version__
from difflike.histfactory import Model, ModelConfig

__all__ = [
    "Model",
    "ModelConfig",
    "__version__",
    "errors",
    "example_patchset",
    "example_workspace",
    "histfactory",
    "load",
    "load_workspace",
    "workspace",
]


def __dir__() -> list[str]:
    return __all__
