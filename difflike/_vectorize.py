"""``jnp.vectorize`` for functions whose first argument is a (possibly batched) pytree.

A grid of signal points is one :class:`~difflike.histfactory.Model` whose array
leaves carry leading batch axes (the point axis); a single model has none. Kernels
are written for one example — one model, one data vector, one ``mu`` — and
:func:`vectorize` broadcasts the model's batch axes together with those of the
other arguments, numpy-style, as :func:`jax.numpy.vectorize` does for arrays. A
leaf without batch axes is not mapped over, so a single model is shared by the
whole batch exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["vectorize"]


def vectorize(
    fn: Callable[..., Any], signature: str, *, batch_ndim: Callable[[Any], int]
) -> Callable[..., Any]:
    """Vectorise ``fn(tree, *args)`` over the batch axes of ``tree`` and of ``args``.

    Args:
        fn: the single-example kernel.
        signature: the generalised-ufunc signature of ``args`` (not of ``tree``),
            as for :func:`jax.numpy.vectorize`, e.g. ``"(n),()->()"``.
        batch_ndim: how many leading axes of every leaf of ``tree`` are batch axes.

    Returns:
        ``run(tree, *args)`` with the broadcast batch shape of all inputs in front of
        each output's core shape.
    """
    inputs, outputs = signature.split("->")

    def run(tree: Any, *args: Any) -> Any:
        nb = batch_ndim(tree)
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        cores = ",".join(
            "(" + ",".join(f"t{i}_{j}" for j in range(leaf.ndim - nb)) + ")"
            for i, leaf in enumerate(leaves)
        )
        full = f"{cores},{inputs}->{outputs}" if cores else signature

        def one(*xs: Any) -> Any:
            single = jax.tree_util.tree_unflatten(treedef, xs[: len(leaves)])
            return fn(single, *xs[len(leaves) :])

        return jnp.vectorize(one, signature=full)(*leaves, *args)

    return run
