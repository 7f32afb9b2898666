"""Grouped vectorisation (difflike._vectorize): same results in groups, group sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflike._vectorize import (
    ACCELERATOR_SHARE,
    FIT_BYTES_PER_PAR2,
    default_chunk,
    memory_chunk,
    vectorize,
)


def _kernel(tree, x, m):
    """A per-example kernel with a data-dependent loop, like a fit."""
    scale = tree["scale"]

    def body(state):
        k, v = state
        return k + 1, v * 0.5 + x.sum() * scale + m

    return jax.lax.while_loop(lambda s: s[0] < 3 + m.astype(int), body, (0, 0.0))[1]


@pytest.mark.parametrize("size", [1, 3, 4, 5, 9, 10, 11])
@pytest.mark.parametrize("chunk", [2, 4])
def test_groups_give_the_results_of_one_batch(size, chunk):
    rng = np.random.default_rng(size)
    tree = {"scale": jnp.asarray(rng.uniform(1, 2, (size, 1)))}  # batched leaf
    x = rng.normal(size=(size, 3))
    m = jnp.asarray(rng.integers(0, 4, (1, 1)), float)  # broadcast over the batch
    one = vectorize(_kernel, "(n),()->()", batch_ndim=lambda t: 2)
    grouped = vectorize(_kernel, "(n),()->()", batch_ndim=lambda t: 2, chunk=chunk)
    # a (size, 1) model batch broadcast against a (size, 1) + (1, 1) argument batch
    want = one(tree, x[:, None, :], m)
    got = grouped(tree, x[:, None, :], m)
    assert got.shape == want.shape == (size, 1)
    np.testing.assert_array_equal(got, want)


def test_memory_chunk():
    npars = 218
    per_fit = FIT_BYTES_PER_PAR2 * npars**2
    limit = 140 * 2**30
    chunk = memory_chunk(npars, 1, limit)
    assert chunk == int(limit * ACCELERATOR_SHARE) // per_fit
    # a group stays within its share of the memory, and one fit more would not
    assert chunk * per_fit <= limit * ACCELERATOR_SHARE < (chunk + 1) * per_fit
    # restarts fit several starts at once: fewer examples per group
    assert memory_chunk(npars, 4, limit) == int(limit * ACCELERATOR_SHARE) // (
        4 * per_fit
    )
    assert memory_chunk(npars, 1, 1000) == 1  # never zero
    assert memory_chunk(npars, 1, None) is None  # no figure: one batch


def test_cpu_groups_do_not_depend_on_the_model():
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU's fixed group sizes")
    assert default_chunk("fit", npars=218) == default_chunk("fit") == 4
    assert default_chunk("limit") == 1
