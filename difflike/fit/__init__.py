"""Maximum-likelihood fits in JAX: batched, bounded, differentiable through the optimum.

:func:`fit` (global) and :func:`profile` (fixed POI) run a bounded Newton minimiser
(:func:`minimize`) compiled with :func:`jax.jit` and vectorised over any leading batch
axes of ``data``, ``signal``, ``mu`` and ``init``. Results carry convergence flags and
a status code; derivatives come from the envelope theorem (``nll``) and the implicit
function theorem (``pars``), see :func:`optimal_value` and :func:`optimal_point`.
"""

from difflike import _x64  # noqa: F401
from difflike.fit._api import MAX_ITER, SOLVERS, TOL, FitResult, fit, nll, profile
from difflike.fit._implicit import optimal_point, optimal_value
from difflike.fit._minimize import (
    STATUS_MESSAGES,
    LowRankHessian,
    MinimizeResult,
    minimize,
)

__all__ = [
    "MAX_ITER",
    "SOLVERS",
    "STATUS_MESSAGES",
    "TOL",
    "FitResult",
    "LowRankHessian",
    "MinimizeResult",
    "fit",
    "minimize",
    "nll",
    "optimal_point",
    "optimal_value",
    "profile",
]


def __dir__() -> list[str]:
    return __all__
