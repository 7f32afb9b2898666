r"""The networks surrogates are made of: Flax (nnx) multilayer perceptrons.

A network maps standardised signal yields to standardised :math:`\Delta` values of
one or more expectations (one output per expectation it learns). Hidden layers use
a nonlinearity from :data:`ACTIVATIONS` (SiLU by default in training; LeakyReLU,
the common choice for likelihood surrogates, is offered); the output layer is
linear. Parameters live apart from the network's
structure as a pure dictionary of float32 arrays (``{"dense0": {"kernel": ...,
"bias": ...}, ...}``), so that they can be stacked, saved with Orbax, written into
ONNX and differentiated like any pytree; :func:`apply` rebuilds the module from an
:class:`Architecture` (static, hashable) and a parameter dictionary.

A LeakyReLU network is piecewise linear in its input: its gradient exists almost
everywhere but its curvature is zero. Everything that solves for :math:`\hat\mu`
or a limit on a surrogate therefore uses gradients and brackets, never the
network's Hessian, and works for every activation.
"""

from __future__ import annotations

import dataclasses
import itertools
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

__all__ = [
    "MLP",
    "Architecture",
    "apply",
    "flatten_params",
    "init_params",
    "param_count",
    "unflatten_params",
]

Params = dict[str, Any]

#: hidden-layer nonlinearities by name
ACTIVATIONS = {
    "leaky_relu": jax.nn.leaky_relu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The shape of a network (static, hashable).

    Attributes:
        nin: inputs (signal bins).
        widths: hidden layer widths, e.g. ``(128, 128, 128)``.
        nout: outputs (expectations learned by this network).
        negative_slope: LeakyReLU's slope for negative pre-activations.
        activation: the hidden layers' nonlinearity, a name in :data:`ACTIVATIONS`.
    """

    nin: int
    widths: tuple[int, ...]
    nout: int = 1
    negative_slope: float = 0.01
    activation: str = "leaky_relu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.nin < 1 or self.nout < 1 or not self.widths:
            raise ValueError(f"an MLP needs inputs, outputs and hidden layers: {self}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; one of {sorted(ACTIVATIONS)}"
            )
        if any(w < 1 for w in self.widths):
            raise ValueError(f"hidden widths must be positive: {self.widths}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"widths": list(self.widths)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Architecture:
        return cls(
            nin=int(d["nin"]),
            widths=tuple(d["widths"]),
            nout=int(d.get("nout", 1)),
            negative_slope=float(d.get("negative_slope", 0.01)),
            activation=str(d.get("activation", "leaky_relu")),
        )


class MLP(nnx.Module):
    """LeakyReLU perceptron: ``x (*b, nin) -> y (*b, nout)``; layers ``dense0 ...``
    (hidden) and ``dense{depth}`` (the linear output layer)."""

    def __init__(self, arch: Architecture, *, rngs: nnx.Rngs):
        sizes = (arch.nin, *arch.widths, arch.nout)
        self.depth = len(arch.widths)
        self.negative_slope = arch.negative_slope
        self.activation = arch.activation
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layer = nnx.Linear(a, b, rngs=rngs, param_dtype=jnp.float32)
            setattr(self, f"dense{i}", layer)

    def __call__(self, x: Float[Array, "*b nin"]) -> Float[Array, "*b nout"]:
        for i in range(self.depth):
            x = getattr(self, f"dense{i}")(x)
            if self.activation == "leaky_relu":
                x = jax.nn.leaky_relu(x, self.negative_slope)
            else:
                x = ACTIVATIONS[self.activation](x)
        return getattr(self, f"dense{self.depth}")(x)


@lru_cache(maxsize=64)
def _graphdef(arch: Architecture):
    abstract = nnx.eval_shape(lambda: MLP(arch, rngs=nnx.Rngs(0)))
    return nnx.split(abstract)[0]


def init_params(arch: Architecture, seed: int) -> Params:
    """Freshly initialised parameters (LeCun-normal kernels, zero biases)."""
    return nnx.to_pure_dict(nnx.state(MLP(arch, rngs=nnx.Rngs(seed))))


def apply(arch: Architecture, params: Params, x: Float[Array, "*b nin"]) -> Array:
    """The network ``arch`` with ``params`` on ``x`` (float32), ``(*b, nout)``."""
    net = nnx.merge(_graphdef(arch), params)
    return net(jnp.asarray(x, jnp.float32))


def param_count(params: Params) -> int:
    """Number of trainable numbers in ``params``."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def flatten_params(params: Params, prefix: str = "") -> dict[str, np.ndarray]:
    """``params`` by flat names ``{prefix}dense0/kernel`` ... (for ``.npz`` and ONNX)."""
    return {
        f"{prefix}{layer}/{leaf}": np.asarray(value)
        for layer, leaves in params.items()
        for leaf, value in leaves.items()
    }


def unflatten_params(arrays, arch: Architecture, prefix: str = "") -> Params:
    """The inverse of :func:`flatten_params` for a network ``arch`` (float32)."""
    return {
        f"dense{k}": {
            leaf: jnp.asarray(arrays[f"{prefix}dense{k}/{leaf}"], jnp.float32)
            for leaf in ("kernel", "bias")
        }
        for k in range(len(arch.widths) + 1)
    }
