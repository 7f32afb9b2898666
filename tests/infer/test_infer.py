"""Asymptotic CLs, test statistics and upper limits against pyhf on the example."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difflike as dl
from difflike._pytree import pytree_dataclass
from difflike.errors import InputError
from difflike.fit import profile
from difflike.infer import (
    asimov_data,
    hypotest,
    likelihood,
    qmu,
    qmu_tilde,
    tmu,
    upper_limit,
)
from difflike.infer._likelihood import ModelLikelihood, warm_starts
from difflike.infer._teststat import from_fits
from tests.conftest import FIXTURES, assert_close, pyhf_example_point, two_well_model

pytestmark = pytest.mark.xdist_group("infer-example")

POINT = "sig_500_100"


@pytest.fixture(scope="module")
def example():
    return dl.load(dl.example_workspace(), patchset=dl.example_patchset(), point=POINT)


@pytest.fixture(scope="module")
def pyhf_example():
    return pyhf_example_point(POINT)


@pytest.fixture(scope="module")
def details(example):
    """qtilde tests of three hypotheses, one compiled call shared by the tests."""
    model, data = example
    return hypotest(jnp.array([0.5, 1.0, 2.0]), model, data, return_details=True)


@pytest.mark.parametrize("test_stat", ["qtilde", "q0"])
def test_hypotest_matches_pyhf(example, pyhf_example, details, test_stat):
    model, data = example
    pyhf, pmodel, pdata = pyhf_example
    if test_stat == "q0":
        mu = 0.0
        cls, cls_exp = hypotest(mu, model, data, test_stat=test_stat)
    else:
        mu, cls, cls_exp = 1.0, details.cls[1], details.cls_exp[1]
    ref, ref_exp = pyhf.infer.hypotest(
        mu, pdata, pmodel, test_stat=test_stat, return_expected_set=True
    )
    assert_close(cls, ref)
    assert_close(cls_exp, ref_exp)
    assert np.all(np.diff(np.asarray(cls_exp)) > 0)


def test_hypotest_with_q_and_an_unbounded_poi(example, pyhf_example):
    model, data = example
    pyhf, pmodel, pdata = pyhf_example
    bounds = model.config.bounds.at[model.config.poi_index, 0].set(-5.0)
    model = model.with_config(bounds=bounds)
    pbounds = pmodel.config.suggested_bounds()
    pbounds[pmodel.config.poi_index] = (-5.0, pbounds[pmodel.config.poi_index][1])
    cls, cls_exp = hypotest(1.0, model, data, test_stat="q")
    ref, ref_exp = pyhf.infer.hypotest(
        1.0, pdata, pmodel, test_stat="q", par_bounds=pbounds, return_expected_set=True
    )
    assert_close(cls, ref)
    assert_close(cls_exp, ref_exp)


def test_details_and_batches(example, details):
    model, data = example
    out = details
    assert out.cls.shape == (3,) and out.cls_exp.shape == (3, 5)
    np.testing.assert_allclose(out.cls, out.clsb / out.clb, rtol=1e-12)
    assert out.converged.all()
    assert np.all(np.diff(np.asarray(out.cls)) < 0)  # CLs falls with mu
    # the fits behind the test: q is twice the difference of the two minima
    q = 2 * (out.nll_mu - out.nll_hat)
    np.testing.assert_allclose(
        out.q, np.where(out.muhat > jnp.array([0.5, 1.0, 2.0]), 0, q)
    )
    assert np.all(out.nll_mu_asimov >= out.nll_hat_asimov - 1e-9)


def test_test_statistics_conventions(example, details):
    model, data = example
    lik = likelihood(model, data)
    muhat = float(details.muhat[0])
    assert muhat > 0.05
    below, above = 0.5 * muhat, muhat + 1.0
    assert float(qmu_tilde(below, lik)) == 0.0  # muhat > mu
    assert float(qmu(above, lik)) > 0.0
    assert float(tmu(below, lik)) > 0.0
    # the statistics as arithmetic on the fits
    for name, mu, muhat_, want in (
        ("qtilde", 1.0, 1.5, 0.0),  # muhat above mu: no evidence against mu
        ("q", 1.0, 0.5, 2.0),
        ("tmu", 1.0, 1.5, 2.0),
        ("q0", 0.0, -0.5, 0.0),  # a deficit is no evidence for a signal
        ("q0", 0.0, 0.5, 2.0),
    ):
        assert float(from_fits(name)(mu, muhat_, 11.0, 10.0)) == want, name
    assert float(from_fits("tmu")(1.0, 1.0, 10.0, 10.0 + 1e-12)) == 0.0  # clipped
    with pytest.raises(InputError, match="test statistic"):
        hypotest(1.0, model, data, test_stat="banana")
    with pytest.raises(InputError, match="asymptotic"):
        hypotest(1.0, model, data, test_stat="tmu")


def test_asimov_data_as_pyhf_builds_them(example, pyhf_example):
    model, data = example
    pyhf, pmodel, pdata = pyhf_example
    ours = asimov_data(model, data, 0.0)
    ref = pyhf.infer.calculators.generate_asimov_data(
        0.0,
        pdata,
        pmodel,
        pmodel.config.suggested_init(),
        pmodel.config.suggested_bounds(),
        pmodel.config.suggested_fixed(),
    )
    nmain = model.config.nmaindata
    # pyhf's SLSQP stops earlier than our Newton fit: main bins agree to ~1e-5,
    # fitted nuisance parameters (the auxiliary data) to ~1e-4
    np.testing.assert_allclose(ours[:nmain], ref[:nmain], rtol=1e-4)
    np.testing.assert_allclose(ours[nmain:], ref[nmain:], rtol=1e-3, atol=1e-3)
    # and ours is exactly the expected data at our own conditional fit
    pars = profile(model, data, 0.0).pars
    np.testing.assert_allclose(ours, model.expected_data(pars), rtol=1e-12)


@pytest.fixture(scope="module")
def limit_point():
    # a point whose five expected limits all lie below the POI bound, where pyhf's
    # toms748 search works
    return dl.load(
        dl.example_workspace(), patchset=dl.example_patchset(), point="sig_300_0"
    )


def test_upper_limit_matches_pyhf(limit_point):
    # pyhf's values: tests/fixtures/make_example_refs.py
    refs = json.loads((FIXTURES / "example_pyhf_refs.json").read_text())
    ref = refs["upper_limit"]["sig_300_0"]
    model, data = limit_point
    out = upper_limit(model, data, return_details=True)
    assert out.converged.all() and not bool(out.widened)
    assert_close(out.mu_up, ref["mu_up"], rel=5e-3)
    assert_close(out.mu_up_exp, ref["mu_up_exp"], rel=5e-3)
    # the limit solves CLs(mu_up) = 0.05
    cls, _ = hypotest(out.mu_up, model, data)
    assert float(cls) == pytest.approx(0.05, rel=1e-5)


def test_limit_search_widens_beyond_the_poi_bound(limit_point):
    model, data = limit_point  # expected limits 0.56 ... 2.65 (pyhf)
    bounds = model.config.bounds.at[model.config.poi_index, 1].set(1.0)
    narrow = model.with_config(bounds=bounds)
    out = upper_limit(narrow, data, return_details=True)
    assert bool(out.widened) and out.converged.all()
    assert float(out.mu_up_exp[-1]) > 1.0


def test_limits_far_from_the_first_point():
    # mu only scales the signal, so the expected limits of c * s are those of s
    # over c, exactly: c = 0.01 puts them beyond the POI's bound of 10 (the
    # bracket is widened), c = 300 three orders of magnitude below the search's
    # first point (the observed ones too, except where muhat meets its bound)
    model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
    s = jnp.linspace(2.0, 5.0, model.config.nsignal)
    c = np.array([1.0, 0.01, 300.0])
    out = upper_limit(model, data, s * c[:, None], return_details=True)
    assert out.converged.all()
    assert np.asarray(out.widened).tolist() == [False, True, False]
    exp = np.asarray(out.mu_up_exp) * c[:, None]
    np.testing.assert_allclose(exp[1:], np.broadcast_to(exp[0], (2, 5)), rtol=1e-6)
    assert float(out.mu_up[2]) * 300 == pytest.approx(float(out.mu_up[0]), rel=1e-6)
    # each limit solves its own CLs = 0.05 (one call for the observed limits and
    # the first signal's expected ones)
    mu = jnp.concatenate([out.mu_up, out.mu_up_exp[0]])
    signal = jnp.concatenate([s * c[:, None], jnp.broadcast_to(s, (5, s.size))])
    cls, cls_exp = hypotest(mu, model, data, signal)
    np.testing.assert_allclose(cls[:3], 0.05, rtol=1e-6)
    np.testing.assert_allclose(np.diag(np.asarray(cls_exp[3:])), 0.05, rtol=1e-6)


@pytree_dataclass
class _NoWarmStarts:
    """A likelihood with the protocol's three methods only (no warm starts)."""

    inner: ModelLikelihood

    def poi_bounds(self):
        return self.inner.poi_bounds()

    def profile(self, mu, fixed):
        return self.inner.profile(mu, fixed)

    def asimov(self, mu):
        return _NoWarmStarts(self.inner.asimov(mu))


def test_limits_of_a_likelihood_without_warm_starts(limit_point):
    model, data = limit_point
    lik = likelihood(model, data)
    assert warm_starts(lik) and not warm_starts(_NoWarmStarts(lik))
    cold = upper_limit(_NoWarmStarts(lik), return_details=True)
    warm = upper_limit(model, data, return_details=True)
    assert cold.converged.all() and warm.converged.all()
    assert_close(cold.mu_up, warm.mu_up, rel=1e-6)
    assert_close(cold.mu_up_exp, warm.mu_up_exp, rel=1e-6)


def _directional_fd(f, x, v, eps):
    return (float(f(x + eps * v)) - float(f(x - eps * v))) / (2 * eps)


def test_limit_gradient_wrt_signal_by_implicit_function_theorem():
    model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
    s = jnp.linspace(2.0, 5.0, model.config.nsignal)

    def mu_up(s):
        return upper_limit(model, data, s).mu_up

    grad = np.asarray(jax.grad(mu_up)(s))
    assert np.abs(grad).max() > 1e-2  # not vacuous
    # along a direction mixing every component (each finite difference is two
    # limit searches)
    v = jnp.array([1.0, -0.5, 0.3, 2.0])
    fd = _directional_fd(mu_up, s, v, 1e-4)
    assert float(grad @ v) == pytest.approx(fd, rel=1e-3, abs=1e-6)


def test_cls_gradient_wrt_signal():
    model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
    s = jnp.linspace(1.0, 3.0, model.config.nsignal)

    def cls(s):
        return hypotest(1.0, model, data, s).cls

    grad = np.asarray(jax.grad(cls)(s))
    for v in (jnp.array([1.0, -0.5, 0.3, 2.0]), jnp.array([0.0, 1.0, 0.0, -1.0])):
        fd = _directional_fd(cls, s, v, 1e-5)
        assert float(grad @ v) == pytest.approx(fd, rel=1e-3, abs=1e-7)


def test_other_starts(example, details):
    """``starts``: every fit of a model also from other points, the deepest minimum
    kept. The example has one minimum: the same CLs and limits; a start that is not
    a parameter point is refused."""
    model, data = example
    free = ~np.asarray(model.config.fixed)
    lower, upper = np.asarray(model.config.bounds).T
    init = np.asarray(model.config.init)
    starts = np.stack(
        [np.clip(np.where(free, init + d, init), lower, upper) for d in (-0.5, 0.5)]
    )
    mu = jnp.array([0.5, 1.0, 2.0])  # the details' hypotheses
    got = dl.hypotest(mu, model, data, return_details=True, starts=starts)
    np.testing.assert_allclose(got.cls, details.cls, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got.muhat, details.muhat, rtol=0, atol=1e-6)
    plain = dl.upper_limit(model, data)
    other = dl.upper_limit(model, data, starts=starts)
    np.testing.assert_allclose(other.mu_up, plain.mu_up, rtol=1e-6)
    with pytest.raises(InputError, match="starts"):
        dl.hypotest(1.0, model, data, starts=init)
    # a likelihood that is not a compiled model has no fits to start
    for call, args in ((dl.hypotest, (1.0,)), (dl.upper_limit, ())):
        with pytest.raises(InputError, match="compiled model"):
            call(*args, likelihood(model, data), starts=starts)
    # two minima: from alpha = -3 the fit at mu = 1 ends in the shallow one, a
    # start at alpha = +1 reaches the deep one; the Asimov data stay pyhf's
    two, two_data = two_well_model(alpha_init=-3.0)
    deep = np.asarray(two.config.init, float).copy()
    deep[two.config.par_index("alpha")] = 1.0
    plain = dl.hypotest(1.0, two, two_data, return_details=True)
    other = dl.hypotest(1.0, two, two_data, return_details=True, starts=deep[None])
    assert float(plain.nll_mu) == pytest.approx(4.952, abs=1e-3)
    assert float(other.nll_mu) == pytest.approx(4.090, abs=1e-3)
    np.testing.assert_allclose(other.nll_mu_asimov, plain.nll_mu_asimov, atol=1e-9)
