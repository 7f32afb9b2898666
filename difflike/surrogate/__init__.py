"""Surrogate likelihoods: networks that learn the profiled Δ(s) of a signal-region model.

``train`` turns a labelled dataset (:func:`difflike.sample.sample`) into a
:class:`Surrogate` (Flax MLP ensembles, Optax, Orbax checkpoints); a surrogate is a
:class:`~difflike.infer.Likelihood` through :meth:`Surrogate.likelihood`, so
``dl.hypotest`` and ``dl.upper_limit`` run on it; :mod:`difflike.surrogate.onnx`
exports it to ONNX and reads it back.
"""

from difflike.surrogate._likelihood import (
    SurrogateLikelihood,
    asimov_expectations,
    hypotest,
    upper_limit,
)
from difflike.surrogate._metrics import inference_metrics, test_metrics
from difflike.surrogate._network import MLP, Architecture
from difflike.surrogate._surrogate import Surrogate, SurrogateNets, load_folder
from difflike.surrogate._train import TrainSettings, split_indices, train

__all__ = [
    "MLP",
    "Architecture",
    "Surrogate",
    "SurrogateLikelihood",
    "SurrogateNets",
    "TrainSettings",
    "asimov_expectations",
    "hypotest",
    "inference_metrics",
    "load",
    "load_folder",
    "split_indices",
    "test_metrics",
    "train",
    "upper_limit",
]


def load(path):
    """A surrogate from a folder (:meth:`Surrogate.save`) or an ``.onnx`` file
    (:func:`difflike.surrogate.onnx.load`)."""
    from pathlib import Path

    if Path(path).suffix == ".onnx":
        from difflike.surrogate.onnx import load as load_onnx

        return load_onnx(path)
    return load_folder(path)
