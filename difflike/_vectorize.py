"""``jnp.vectorize`` for functions whose first argument is a (possibly batched) pytree.

A grid of signal points is one :class:`~difflike.histfactory.Model` whose array
leaves carry leading batch axes (the point axis); a single model has none. Kernels
are written for one example — one model, one data vector, one ``mu`` — and
:func:`vectorize` broadcasts the model's batch axes together with those of the
other arguments, numpy-style, as :func:`jax.numpy.vectorize` does for arrays. A
leaf without batch axes is not mapped over, so a single model is shared by the
whole batch exactly as before.

Kernels that iterate (fits, root finding) run a vectorised ``while_loop`` until
its *slowest* member has stopped, so in one big ``vmap`` every example pays for
the hardest one. With ``chunk`` the batch is cut into groups of that size, run one
after another (:func:`jax.lax.map`), each group stopping when its own members have:
on the CPU, where vectorising buys little, this is several times faster for
batches whose iteration counts vary; on a GPU a full batch keeps the device busy,
and fits are grouped only as far as its memory requires (:func:`default_chunk`).
Model evaluations (logpdf, expected data) do not iterate, but a large vmapped batch
of them is bound by memory traffic on the CPU, and groups help there too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["default_chunk", "memory_chunk", "vectorize"]

#: examples per group, by platform and kernel (absent: one vmap). Measured on 2
#: CPU cores: fits and hypothesis tests of the published grids run as fast or
#: faster in groups of 4 as one by one; upper limits (seven fits per root-finding
#: step, already vectorised) 2.4x faster one by one than in groups of 4
#: (ATLAS-SUSY-2019-08, 4 points). Model evaluations ("evaluate": logpdf,
#: expected data) are not iterative, but a large vmapped batch is bound by memory
#: traffic on the CPU: 10,000 ATLAS-SUSY-2019-08 logpdfs run 3.5x faster in groups
#: of 64 (32-128 within 20%) than as one batch.
CHUNKS = {("cpu", "fit"): 4, ("cpu", "limit"): 1, ("cpu", "evaluate"): 64}


#: bytes a fit holds at once per squared parameter count (its Hessian, factor and
#: their batched temporaries, float64), with a margin: 65,536 fits of a
#: 218-parameter model asked an H200 for 140 GiB, 48 bytes per npars².
FIT_BYTES_PER_PAR2 = 64
#: the share of an accelerator's memory one vectorised group of fits may take.
ACCELERATOR_SHARE = 0.25


def memory_chunk(npars: int, starts: int, bytes_limit: int | None) -> int | None:
    """Fits per group such that a group takes at most :data:`ACCELERATOR_SHARE` of
    ``bytes_limit`` (None: no limit known, one batch); ``starts`` fits per example
    run at once (probe restarts)."""
    if not bytes_limit:
        return None
    per_fit = FIT_BYTES_PER_PAR2 * npars**2 * max(1, starts)
    return max(1, int(bytes_limit * ACCELERATOR_SHARE) // per_fit)


def default_chunk(
    kernel: str = "fit", *, npars: int | None = None, starts: int = 1
) -> int | None:
    """The group size :func:`vectorize` uses for a ``kernel`` (``"fit"``,
    ``"limit"`` or ``"evaluate"``) by default: :data:`CHUNKS` for the default
    backend. On accelerators a batch runs as one, except that fits of a model of
    ``npars`` parameters run in groups sized to the device's memory
    (:func:`memory_chunk`; without it 65,536 fits of 218 parameters ask an H200 for
    more than it has)."""
    backend = jax.default_backend()
    chunk = CHUNKS.get((backend, kernel))
    if chunk is None and kernel == "fit" and npars:
        stats = jax.devices()[0].memory_stats() or {}
        chunk = memory_chunk(npars, starts, stats.get("bytes_limit"))
    return chunk


def _core_ndims(inputs: str) -> list[int]:
    return [
        len([d for d in g.split(",") if d]) for g in re.findall(r"\(([^)]*)\)", inputs)
    ]


def vectorize(
    fn: Callable[..., Any],
    signature: str,
    *,
    batch_ndim: Callable[[Any], int],
    chunk: int | None = None,
) -> Callable[..., Any]:
    """Vectorise ``fn(tree, *args)`` over the batch axes of ``tree`` and of ``args``.

    Args:
        fn: the single-example kernel.
        signature: the generalised-ufunc signature of ``args`` (not of ``tree``),
            as for :func:`jax.numpy.vectorize`, e.g. ``"(n),()->()"``.
        batch_ndim: how many leading axes of every leaf of ``tree`` are batch axes.
        chunk: run the broadcast batch in groups of this many examples, one group
            after another (module doc); ``None``: one vectorised call.

    Returns:
        ``run(tree, *args)`` with the broadcast batch shape of all inputs in front of
        each output's core shape.
    """
    inputs, outputs = signature.split("->")
    cores = _core_ndims(inputs)

    def run(tree: Any, *args: Any) -> Any:
        nb = batch_ndim(tree)
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        args = [jnp.asarray(a) for a in args]
        if chunk is not None:
            shapes = [leaf.shape[:nb] for leaf in leaves] + [
                a.shape[: a.ndim - c] for a, c in zip(args, cores)
            ]
            shape = np.broadcast_shapes(*shapes)
            size = math.prod(shape)
            if size > chunk:
                # as many groups as ``chunk`` needs, evened out: the least padding
                even = -(-size // -(-size // chunk))
                return _chunked(fn, treedef, leaves, nb, args, cores, shape, even)
        tree_cores = ",".join(
            "(" + ",".join(f"t{i}_{j}" for j in range(leaf.ndim - nb)) + ")"
            for i, leaf in enumerate(leaves)
        )
        full = f"{tree_cores},{inputs}->{outputs}" if tree_cores else signature

        def one(*xs: Any) -> Any:
            single = jax.tree_util.tree_unflatten(treedef, xs[: len(leaves)])
            return fn(single, *xs[len(leaves) :])

        return jnp.vectorize(one, signature=full)(*leaves, *args)

    return run


def _chunked(fn, treedef, leaves, nb, args, cores, shape, chunk):
    """``fn`` over the flattened broadcast batch, in groups of ``chunk`` (padded to
    whole groups by repeating the last example)."""
    size = math.prod(shape)
    padded = -(-size // chunk) * chunk
    values = list(leaves) + list(args)
    ncore = [leaf.ndim - nb for leaf in leaves] + list(cores)
    mapped, flat = [], []
    for x, c in zip(values, ncore):
        if x.ndim == c:  # no batch axes: shared by every example
            mapped.append(False)
            flat.append(x)
            continue
        x = jnp.broadcast_to(x, shape + x.shape[x.ndim - c :])
        x = x.reshape((size, *x.shape[len(shape) :]))
        x = jnp.concatenate([x, jnp.repeat(x[-1:], padded - size, axis=0)])
        mapped.append(True)
        flat.append(x)

    def one(xs):
        it = iter(xs)
        full = [next(it) if m else v for m, v in zip(mapped, flat)]
        single = jax.tree_util.tree_unflatten(treedef, full[: len(leaves)])
        return fn(single, *full[len(leaves) :])

    out = lax.map(one, [x for m, x in zip(mapped, flat) if m], batch_size=chunk)
    return jax.tree.map(lambda y: y[:size].reshape(shape + y.shape[1:]), out)
