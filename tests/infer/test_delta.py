"""Signal-yield likelihoods Δ(s) for every expectation, against pyhf's fits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difflike as dl
from difflike.errors import InputError
from difflike.infer import delta, expectation_data
from tests.conftest import pyhf_delta

REGIONS = ["SR_low", "SR_high"]
SIGNALS = np.array([[3.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0], [8.0, 0.5, 6.0, 1.0]])


# one worker: the tests reuse each other's compiled fits
pytestmark = pytest.mark.xdist_group("delta-example")


@pytest.fixture(scope="module")
def sr():
    return dl.load(dl.example_workspace(), signal_regions=REGIONS)


def _pyhf_delta(model, data, signal, expectation):
    spec = dl.workspace.read_json(dl.example_workspace())
    return pyhf_delta(spec, model.config, data, signal, expectation)


# each expectation compiles its own kernel: these two cover every branch (the
# aposteriori data are built by the same fit as every Asimov data set)
@pytest.mark.parametrize("expectation", ["observed", "apriori_asimov"])
def test_delta_matches_pyhf_fits(sr, expectation):
    model, data = sr
    out = delta(model, data, SIGNALS, expectation=expectation, return_details=True)
    assert out.delta.shape == (3,) and bool(np.all(out.converged))
    for signal, ours in zip(SIGNALS, np.asarray(out.delta)):
        ref = _pyhf_delta(model, data, signal, expectation)
        # pyhf's fits (and its Asimov data) are good to ~1e-6 in -ln L
        assert ours == pytest.approx(ref, abs=1e-5)
    # no signal, no difference: the two fits are the same fit
    assert float(out.delta[1]) == pytest.approx(0.0, abs=1e-10)
    assert np.allclose(out.nll - out.nll_background, -out.delta)


def test_expectation_data(sr):
    model, data = sr
    observed = expectation_data(model, data, "observed")
    post = expectation_data(model, data, "aposteriori")
    prior = expectation_data(model, data, "apriori")
    np.testing.assert_array_equal(observed, data)
    # pyhf's Asimov data at mu = 0 are the background-only post-fit expectation
    np.testing.assert_allclose(
        expectation_data(model, data, "observed_asimov"), post, rtol=1e-12
    )
    # apriori: nominal background, nominal auxiliary data
    nmain = model.config.nmaindata
    np.testing.assert_allclose(prior[nmain:], model.config.auxdata)
    pars = model.config.init.at[model.config.poi_index].set(0.0)
    np.testing.assert_allclose(prior[:nmain], model.expected_actualdata(pars))
    assert not np.allclose(post[:nmain], prior[:nmain])


def test_delta_batches_and_gradient(sr):
    model, data = sr
    signal = jnp.asarray(SIGNALS[0])
    datas = jnp.stack([data, data.at[0].add(3.0)])
    both = delta(model, datas[:, None], SIGNALS[None])  # (2 data) x (3 signals)
    assert both.shape == (2, 3)
    np.testing.assert_allclose(
        both[0], delta(model, data, SIGNALS), rtol=1e-10, atol=1e-10
    )
    # the derivative through both profiled fits, against central differences
    grad = jax.grad(lambda s: delta(model, data, s))(signal)
    eps = 1e-5
    steps = eps * np.eye(len(signal))
    fd = (delta(model, data, signal + steps) - delta(model, data, signal - steps)) / (
        2 * eps
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_delta_on_a_grid_model():
    model, data = dl.load_patchset(dl.example_workspace(), dl.example_patchset())
    grid = delta(model, data)
    assert grid.shape == model.config.batch_shape
    for i, point in enumerate(model.config.points[:2]):
        one, one_data = dl.load(
            dl.example_workspace(), patchset=dl.example_patchset(), point=point
        )
        assert float(grid[i]) == pytest.approx(float(delta(one, one_data)), abs=1e-8)


def test_bad_expectation(sr):
    model, data = sr
    with pytest.raises(InputError, match="expectation"):
        delta(model, data, SIGNALS[0], expectation="expected")
    with pytest.raises(InputError, match="expectation"):
        expectation_data(model, data, "posterior")


def test_yields_below_the_nominal_background(sr):
    """A negative yield beyond a bin's nominal background makes its rate negative at
    the initial values: that fit starts from the background-only fit instead, and
    agrees with the labeller's (which always starts there)."""
    from difflike.sample import background_targets, label

    model, data = sr
    # nominal signal-region backgrounds 20, 10.7, 5, 1.8; post-fit 21.5 ... 1.97
    signal = np.array([[-3.0, 0.5, -1.0, -1.9], [1.0, -11.0, 0.5, 0.2]])
    out = delta(model, data, signal, return_details=True)
    assert bool(np.all(out.converged)) and np.all(np.isfinite(out.delta))
    targets, column, ok = background_targets(model, data, ("observed",))
    labels, _, converged = label(model, targets, column, signal, ok, restart_above=None)
    assert converged.all()
    np.testing.assert_allclose(out.delta, labels[:, 0], rtol=0, atol=1e-6)
