"""Inference on the Likelihood protocol: test statistics, asymptotic CLs, upper limits.

Also signal-yield likelihoods (:func:`delta`) and toy-based CLs
(:func:`hypotest_toys`). Written against :class:`Likelihood` (profiled NLL at fixed ``mu``, the global fit,
Asimov data, the POI's bounds), so compiled models and surrogates share one
implementation. Conventions follow pyhf 0.7's ``infer`` module.
"""

from difflike import _x64  # noqa: F401
from difflike.infer._api import asimov_data, hypotest, likelihood, upper_limit
from difflike.infer._asymptotic import (
    NSIGMA,
    HypotestDetails,
    HypotestResult,
    LimitDetails,
    LimitResult,
    hypotest_one,
    log_pvalues,
    upper_limit_one,
)
from difflike.infer._delta import EXPECTATIONS, DeltaResult, delta, expectation_data
from difflike.infer._likelihood import Likelihood, ModelLikelihood
from difflike.infer._teststat import (
    TEST_STATISTICS,
    q0,
    qmu,
    qmu_tilde,
    test_statistic,
    tmu,
)
from difflike.infer._toys import ToyResult, hypotest_toys, sample_data

__all__ = [
    "EXPECTATIONS",
    "NSIGMA",
    "TEST_STATISTICS",
    "DeltaResult",
    "HypotestDetails",
    "HypotestResult",
    "Likelihood",
    "LimitDetails",
    "LimitResult",
    "ModelLikelihood",
    "ToyResult",
    "asimov_data",
    "delta",
    "expectation_data",
    "hypotest",
    "hypotest_one",
    "hypotest_toys",
    "likelihood",
    "log_pvalues",
    "q0",
    "qmu",
    "qmu_tilde",
    "sample_data",
    "test_statistic",
    "tmu",
    "upper_limit",
    "upper_limit_one",
]


def __dir__() -> list[str]:
    return __all__
