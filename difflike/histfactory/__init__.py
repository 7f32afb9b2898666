"""HistFactory models in JAX: a validated spec compiled into an immutable pytree.

:func:`compile_model` turns a :class:`~difflike.workspace.ModelSpec` into a
:class:`Model` whose :meth:`~Model.logpdf` and :meth:`~Model.expected_data` equal
pyhf 0.7's to float64 round-off, for every modifier and interpolation code.
"""

from difflike import _x64  # noqa: F401  (float64 before any array is made)
from difflike.histfactory import _interpolation as interpolation
from difflike.histfactory._compile import (
    DEFAULT_MODIFIER_SETTINGS,
    compile_model,
    observed_data,
)
from difflike.histfactory._layout import ParamSet
from difflike.histfactory._model import Model, ModelConfig
from difflike.histfactory._stack import stack_models

__all__ = [
    "DEFAULT_MODIFIER_SETTINGS",
    "Model",
    "ModelConfig",
    "ParamSet",
    "compile_model",
    "interpolation",
    "observed_data",
    "stack_models",
]


def __dir__() -> list[str]:
    return __all__
