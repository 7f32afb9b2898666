"""difflike: differentiable HistFactory likelihoods in JAX for LHC reinterpretation.

Importing difflike turns on JAX's 64-bit mode (``jax_enable_x64``): likelihood fits
need float64. See :mod:`difflike._x64`.

>>> import difflike as dl
>>> model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
>>> cls, cls_exp = dl.hypotest(1.0, model, data, signal=[3.0, 1.0, 2.0, 0.5])

``dl.fit`` is the global-fit function; the subpackage behind it is imported as
``from difflike.fit import minimize, ...``.
"""

from difflike import (
    _x64,  # noqa: F401  (first: float64 before any array is made)
    errors,
    histfactory,
    infer,
    workspace,
)
from difflike._example import example_patchset, example_workspace
from difflike._load import load, load_patchset, load_workspace
from difflike._version import __version__
from difflike.fit import FitResult, fit, profile
from difflike.histfactory import Model, ModelConfig
from difflike.infer import Likelihood, asimov_data, delta, hypotest, upper_limit

__all__ = [
    "FitResult",
    "Likelihood",
    "Model",
    "ModelConfig",
    "__version__",
    "asimov_data",
    "delta",
    "errors",
    "example_patchset",
    "example_workspace",
    "fit",
    "histfactory",
    "hypotest",
    "infer",
    "load",
    "load_patchset",
    "load_workspace",
    "profile",
    "upper_limit",
    "workspace",
]


def __dir__() -> list[str]:
    return __all__
