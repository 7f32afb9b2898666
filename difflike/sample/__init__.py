"""Training data for surrogate likelihoods: NUTS over signal yields, labelled exactly.

:func:`sample` draws signal-yield vectors of a signal-region model from a ladder of
tempered profile likelihoods (:mod:`difflike.sample._target` explains the choice)
with NumPyro's NUTS, mixes in exploratory draws, labels every sample with
:math:`\\Delta_e(s)` for each expectation by the batched profiler, and writes the
result in atomic, resumable chunks (format: :mod:`difflike.sample._dataset`).

>>> import difflike as dl
>>> from difflike.sample import sample, summarize
>>> model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
>>> ds = sample(model, data, 2000, "example-samples")  # doctest: +SKIP
>>> summarize(ds).coverage["observed"]  # doctest: +SKIP
"""

from difflike import _x64  # noqa: F401

try:
    import numpyro  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError(
        "difflike.sample needs NumPyro: pip install 'difflike[sample]'"
    ) from err

from difflike.sample._dataset import YieldDataset, load_dataset
from difflike.sample._label import background_targets, label
from difflike.sample._run import (
    LABEL_EXPECTATIONS,
    SamplerSettings,
    Summary,
    relabel,
    sample,
    summarize,
    yield_space,
)
from difflike.sample._target import Target, YieldSpace

__all__ = [
    "LABEL_EXPECTATIONS",
    "SamplerSettings",
    "Summary",
    "Target",
    "YieldDataset",
    "YieldSpace",
    "background_targets",
    "label",
    "load_dataset",
    "relabel",
    "sample",
    "summarize",
    "yield_space",
]


def __dir__() -> list[str]:
    return __all__
