"""Many NUTS chains over signal yields, vectorised, in one compiled program.

Every chain has its own :class:`~difflike.sample._target.Target` (expectation data,
warm start, temperature), passed to NumPyro's functional NUTS kernel as model
arguments, so chains of every target are one :func:`jax.vmap` and one compilation.
Step size and a diagonal mass matrix adapt per chain during warm-up (NumPyro's
windowed adaptation, the first ``num_warmup`` transitions of each chain).

The chains' state is an ordinary pytree: :func:`state_to_arrays` and
:func:`state_from_arrays` turn it into named numpy arrays and back, so a run can be
written to disk after every chunk and resumed bit for bit.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int
from numpyro.infer.hmc import hmc

from difflike._vectorize import default_chunk
from difflike.sample._target import (
    Nuisance,
    Target,
    YieldSpace,
    joint_potential,
    potential,
)

__all__ = [
    "ChainStats",
    "init_chains",
    "run_chains",
    "state_from_arrays",
    "state_to_arrays",
]


class ChainStats(NamedTuple):
    """What each transition of each chain produced, ``(nchains, nsteps, ...)``."""

    z: Float[Array, "nchains nsteps nz"]
    potential_energy: Float[Array, "nchains nsteps"]
    accept_prob: Float[Array, "nchains nsteps"]
    diverging: Bool[Array, "nchains nsteps"]
    num_steps: Int[Array, "nchains nsteps"]


def _kernels(model, space: YieldSpace, nuisance: Nuisance | None):
    def potential_fn_gen(target: Target):
        if nuisance is None:
            return partial(potential, model=model, target=target, space=space)
        return partial(
            joint_potential, model=model, target=target, space=space, nuisance=nuisance
        )

    return hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")


@partial(jax.jit, static_argnames=("num_warmup", "max_tree_depth", "target_accept"))
def init_chains(
    model,
    space: YieldSpace,
    targets: Target,
    z0: Float[Array, "nchains nz"],
    keys,
    nuisance: Nuisance | None = None,
    *,
    num_warmup: int,
    max_tree_depth: int,
    target_accept: float,
):
    """The initial NUTS state of every chain (leading axis ``nchains``).

    Args:
        model: the signal-region model.
        space: the yield space (bounds and scales).
        targets: one :class:`Target` per chain (leaves with a leading ``nchains``).
        z0: starting points in unconstrained coordinates, ``(nchains, nz)``:
            the yields (``nz = nsignal``), followed by the nuisance parameters
            for a joint density (``nz = nsignal + nfree``).
        keys: one PRNG key per chain, ``(nchains,)``.
        nuisance: the nuisance parameters sampled jointly with the yields
            (:func:`~difflike.sample._target.joint_potential`); ``None``: the
            density is the profiled one (:func:`~difflike.sample._target.potential`).
        num_warmup: transitions of step-size and mass-matrix adaptation.
        max_tree_depth: NUTS's tree-depth cap (at most ``2**depth`` leapfrog steps).
        target_accept: the acceptance probability the step size adapts to.
    """
    init_kernel, _ = _kernels(model, space, nuisance)

    def one(z, key, target):
        return init_kernel(
            z,
            num_warmup,
            max_tree_depth=max_tree_depth,
            target_accept_prob=target_accept,
            model_args=(target,),
            rng_key=key,
        )

    return jax.vmap(one)(z0, keys, targets)


@partial(
    jax.jit,
    static_argnames=("nsteps", "num_warmup", "max_tree_depth", "target_accept"),
)
def run_chains(
    model,
    space: YieldSpace,
    targets: Target,
    state,
    nuisance: Nuisance | None = None,
    *,
    nsteps: int,
    num_warmup: int,
    max_tree_depth: int,
    target_accept: float,
):
    """``nsteps`` NUTS transitions of every chain: ``(new_state, ChainStats)``.

    The settings must be those :func:`init_chains` was called with (NumPyro's
    kernel keeps them beside the state), and so must ``nuisance``.
    """
    init_kernel, sample_kernel = _kernels(model, space, nuisance)
    # sample_kernel reads settings that init_kernel records; trace one init to set them
    jax.eval_shape(
        lambda z, t: init_kernel(
            z,
            num_warmup,
            max_tree_depth=max_tree_depth,
            target_accept_prob=target_accept,
            model_args=(t,),
            rng_key=jax.random.key(0),
        ),
        state.z[0],
        jax.tree.map(lambda x: x[0], targets),
    )

    def chain(state, target):
        def step(state, _):
            new = sample_kernel(state, model_args=(target,))
            stats = (
                new.z,
                new.potential_energy,
                new.accept_prob,
                new.diverging,
                new.num_steps,
            )
            return new, stats

        return lax.scan(step, state, None, length=nsteps)

    # groups of chains run their transitions one group after another: a vectorised
    # NUTS tree (and the fits in it) waits for its slowest member (_vectorize)
    state, stats = lax.map(
        lambda x: chain(*x), (state, targets), batch_size=_group(targets)
    )
    return state, ChainStats(*stats)


def _group(targets: Target) -> int:
    nchains = targets.beta.shape[0]
    chunk = default_chunk() or nchains
    return chunk if nchains % chunk == 0 else nchains


def state_to_arrays(state) -> dict[str, np.ndarray]:
    """The chains' state as named numpy arrays (PRNG keys as their raw data)."""
    leaves = jax.tree_util.tree_leaves(state)
    out = {}
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out[f"state_{i:03d}"] = np.asarray(leaf)
    return out


def state_from_arrays(template, arrays: dict[str, np.ndarray]):
    """Rebuild a state with ``template``'s structure from :func:`state_to_arrays`."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    new = []
    for i, leaf in enumerate(leaves):
        value = jnp.asarray(arrays[f"state_{i:03d}"])
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
        new.append(value)
    return jax.tree_util.tree_unflatten(treedef, new)
