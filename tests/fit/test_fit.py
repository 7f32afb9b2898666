"""Fits: agreement with pyhf's minima, batching, derivatives, failure reporting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difflike as dl
from difflike.errors import InputError, InvalidModelError, ShapeError
from difflike.fit import STATUS_MESSAGES, fit, minimize, profile
from tests.conftest import pyhf_example_point, two_well_model

POINT = "sig_400_100"


# one worker: the tests reuse each other's compiled fits
pytestmark = pytest.mark.xdist_group("fit-example")


@pytest.fixture(scope="module")
def example():
    return dl.load(dl.example_workspace(), patchset=dl.example_patchset(), point=POINT)


@pytest.fixture(scope="module")
def sr_example():
    return dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])


@pytest.fixture(scope="module")
def pyhf_example():
    return pyhf_example_point(POINT)


def test_minima_never_worse_than_pyhf(example, pyhf_example):
    model, data = example
    pyhf, pmodel, pdata = pyhf_example
    free = fit(model, data)
    _, twice_nll = pyhf.infer.mle.fit(pdata, pmodel, return_fitted_val=True)
    assert bool(free.converged) and int(free.status) == 0
    assert float(free.nll) <= float(twice_nll) / 2 + 1e-6
    assert float(free.nll) == pytest.approx(float(twice_nll) / 2, abs=1e-4)
    for mu in (0.0, 1.0, 2.5):
        res = profile(model, data, mu)
        _, twice_nll = pyhf.infer.mle.fixed_poi_fit(
            mu, pdata, pmodel, return_fitted_val=True
        )
        assert bool(res.converged)
        assert float(res.nll) <= float(twice_nll) / 2 + 1e-6
        assert float(res.pars[model.config.poi_index]) == mu
    # the reported nll is the model's own -logpdf at the reported parameters
    assert float(res.nll) == pytest.approx(
        -float(model.logpdf(res.pars, data)), abs=1e-12
    )


def test_gradient_vanishes_on_free_parameters_at_the_optimum(example):
    model, data = example
    res = fit(model, data)
    grad = jax.grad(lambda p: -model.logpdf(p, data))(res.pars)
    lo, hi = np.asarray(model.config.bounds).T
    pars = np.asarray(res.pars)
    interior = ~np.asarray(model.config.fixed) & (pars > lo) & (pars < hi)
    assert interior.sum() > 5
    assert np.max(np.abs(np.asarray(grad)[interior])) < 1e-4


def test_batches_broadcast_and_match_single_fits(example):
    model, data = example
    mus = jnp.array([0.0, 0.5, 1.0, 3.0])
    batch = profile(model, data, mus)
    assert batch.nll.shape == (4,) and batch.pars.shape == (4, model.config.npars)
    assert batch.converged.all()
    for i, mu in enumerate(mus):
        one = profile(model, data, float(mu))
        np.testing.assert_allclose(batch.nll[i], one.nll, rtol=0, atol=1e-9)
    datas = jnp.stack([data, data.at[0].add(3.0)])
    grid = profile(model, datas[:, None, :], mus[None, :])
    assert grid.nll.shape == (2, 4)
    np.testing.assert_allclose(grid.nll[0], batch.nll, atol=1e-9)
    assert "converged=8/8" in repr(grid)


def test_jit_and_vmap_by_the_user(example):
    model, data = example
    f = jax.jit(lambda m, mu: profile(m, data, mu).nll)
    a = f(model, 1.0)
    b = jax.vmap(lambda mu: profile(model, data, mu).nll)(jnp.array([1.0, 2.0]))
    assert float(a) == pytest.approx(float(b[0]), abs=1e-10)


def _fd(f, x, eps):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def test_nll_gradient_by_envelope_theorem(example):
    model, data = example

    def nll_mu(mu):
        return profile(model, data, mu, tol=1e-15).nll

    for mu in (0.5, 1.7):
        grad = float(jax.grad(nll_mu)(mu))
        fd = float(_fd(nll_mu, mu, 1e-4))
        assert grad == pytest.approx(fd, rel=1e-5, abs=1e-7)

    # data: d nll / d n_b
    def nll_n(x):
        return profile(model, data.at[1].set(x), 1.0, tol=1e-15).nll

    n1 = float(data[1])
    assert float(jax.grad(nll_n)(n1)) == pytest.approx(
        float(_fd(nll_n, n1, 1e-4)), rel=1e-5
    )


def test_signal_yield_gradient(sr_example):
    model, data = sr_example
    s = jnp.array([3.0, 1.0, 2.0, 0.5])[: model.config.nsignal]

    def nll_s(s):
        return profile(model, data, 1.0, signal=s, tol=1e-15).nll

    grad = np.asarray(jax.grad(nll_s)(s))
    eps = 1e-4
    fd = [
        float(_fd(lambda x: nll_s(s.at[i].set(x)), float(s[i]), eps))
        for i in range(s.size)
    ]
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_fitted_parameters_by_implicit_differentiation(example):
    model, data = example

    def pars(mu):
        return profile(model, data, mu, tol=1e-15).pars

    fwd = np.asarray(jax.jacfwd(pars)(1.2))
    rev = np.asarray(jax.jacrev(pars)(1.2))
    fd = np.asarray(_fd(pars, 1.2, 1e-4))
    np.testing.assert_allclose(fwd, rev, atol=1e-12)
    np.testing.assert_allclose(fwd, fd, atol=2e-5 * (1 + np.abs(fd).max()))
    assert np.abs(fwd).max() > 1e-2  # the test is not vacuous


def test_failures_are_reported_not_silent():
    def f(x):
        return jnp.sum(x**2)

    lower, upper, free = -jnp.ones(2), jnp.ones(2), jnp.ones(2, bool)
    res = minimize(f, jnp.array([0.3, -0.2]), lower, upper, free)
    assert int(res.status) == 0 and np.allclose(res.x, 0.0)
    # not finite at the start
    res = minimize(
        lambda x: jnp.log(-x[0]) + x[1] ** 2, jnp.array([0.5, 0.5]), lower, upper, free
    )
    assert int(res.status) == 4
    # the iteration cap
    res = minimize(
        lambda x: jnp.sum(jnp.cosh(5 * x)),
        jnp.array([0.9, 0.9]),
        lower,
        upper,
        free,
        max_iter=1,
    )
    assert int(res.status) == 2
    assert set(STATUS_MESSAGES) == {0, 1, 2, 3, 4}


def test_bounds_are_respected_and_pinned_coordinates_reported():
    def f(x):
        return jnp.sum((x - jnp.array([2.0, -0.5])) ** 2)

    res = minimize(f, jnp.zeros(2), -jnp.ones(2), jnp.ones(2), jnp.ones(2, bool))
    np.testing.assert_allclose(res.x, [1.0, -0.5], atol=1e-8)
    assert res.free.tolist() == [False, True]
    assert int(res.status) == 0


def test_fit_result_message(example):
    model, data = example
    res = profile(model, data, jnp.array([1.0, 2.0]))
    assert res.message.tolist() == ["converged", "converged"]


def test_bad_inputs(example, sr_example):
    model, data = example
    with pytest.raises(ShapeError, match="wrong length"):
        fit(model, data[:-1])
    with pytest.raises(ShapeError, match="do not broadcast"):
        profile(model, jnp.stack([data] * 3), jnp.zeros(2))
    sr_model, sr_data = sr_example
    with pytest.raises(ShapeError, match="signal"):
        profile(sr_model, sr_data, 1.0, signal=jnp.ones(sr_model.config.nsignal + 1))


def test_profile_needs_a_poi():
    model, data = dl.load(dl.example_workspace())  # background only: no POI
    assert model.config.poi_index is None
    with pytest.raises(InvalidModelError, match="parameter of interest"):
        profile(model, data, 1.0)
    assert bool(fit(model, data).converged)


def test_lowrank_solver_reaches_the_dense_solvers_minima(example, sr_example):
    """The factored Gauss-Newton steps (O(P B^2)) find the same optima, batched."""
    model, data = example
    mu = jnp.linspace(0.0, 3.0, 7)
    dense = profile(model, data, mu)
    low = profile(model, data, mu, solver="lowrank")
    assert np.all(np.asarray(low.converged))
    np.testing.assert_allclose(low.nll, dense.nll, rtol=0, atol=1e-9)
    np.testing.assert_allclose(low.pars, dense.pars, rtol=0, atol=1e-4)
    free = fit(model, data, solver="lowrank")
    np.testing.assert_allclose(free.nll, fit(model, data).nll, rtol=0, atol=1e-9)

    sr, sr_data = sr_example
    signal = jnp.stack([jnp.zeros(sr.config.nsignal), jnp.full(sr.config.nsignal, 3.0)])
    dense = profile(sr, sr_data, 1.0, signal)
    low = profile(sr, sr_data, 1.0, signal, solver="lowrank")
    np.testing.assert_allclose(low.nll, dense.nll, rtol=0, atol=1e-9)
    # its gradient by the envelope theorem is the dense solver's
    g = jax.grad(lambda s: profile(sr, sr_data, 1.0, s, solver="lowrank").nll)
    gd = jax.grad(lambda s: profile(sr, sr_data, 1.0, s).nll)
    np.testing.assert_allclose(g(signal[1]), gd(signal[1]), rtol=1e-6, atol=1e-8)
    with pytest.raises(InputError, match="unknown solver"):
        profile(model, data, 1.0, solver="cholesky")


def test_probe_starts_find_the_other_well():
    """A double well in x0 (minima near -1.04 and +0.96, the left one deeper by
    ~0.6) with a bystander coordinate: from the right minimum the best single move
    is x0 by -2, into the left well; a fixed coordinate is never moved."""
    from difflike.fit._restarts import probe_starts

    def f(x, shift):
        return (x[0] ** 2 - 1.0) ** 2 + shift * x[0] + (x[1] - 0.5) ** 2 + x[2] ** 2

    x = jnp.array([0.96, 0.5, 0.0])
    lower, upper = jnp.full(3, -5.0), jnp.full(3, 5.0)
    free = jnp.array([True, True, False])
    starts = probe_starts(f, x, lower, upper, free, (0.3,), 2)
    assert starts.shape == (2, 3)
    np.testing.assert_allclose(starts[0], [0.96 - 2.0, 0.5, 0.0])
    assert np.all(np.asarray(starts[:, 2]) == 0.0)  # the fixed coordinate stays
    res = minimize(f, starts[0], lower, upper, free, (0.3,), tol=1e-14)
    assert res.status <= 1 and float(res.x[0]) < -1.0
    assert float(res.fun) < float(f(x, 0.3)) - 0.5
    # bounds clip the moves
    tight = probe_starts(f, x, jnp.full(3, 0.5), upper, free, (0.3,), 1)
    assert float(tight[0, 0]) >= 0.5


def test_restarts_keep_the_deepest_minimum(example, sr_example):
    """On a unimodal likelihood restarts change nothing but the cost; the result is
    the same batched and differentiable (envelope theorem); bad counts raise."""
    model, data = example
    mu = jnp.array([0.5, 2.0])
    plain = profile(model, data, mu)
    again = profile(model, data, mu, restarts=2)
    assert np.all(np.asarray(again.converged))
    np.testing.assert_allclose(again.nll, plain.nll, rtol=0, atol=1e-9)
    assert np.all(np.asarray(again.nit) > np.asarray(plain.nit))  # three starts
    free = fit(model, data, restarts=1)
    np.testing.assert_allclose(free.nll, fit(model, data).nll, rtol=0, atol=1e-9)
    # each start is fitted once: the probes' fits, given as explicit starts, cost
    # what the restarts cost
    from difflike.fit._api import _fit_kernel, nll
    from difflike.fit._restarts import probe_starts

    cfg = model.config
    init, signal = cfg.init, model._signal(None)
    args = (~cfg.fixed, init, model, data, signal)
    probes = probe_starts(nll, init, *cfg.bounds.T, ~cfg.fixed, args, 2)
    kw = dict(fix_poi=False, tol=1e-10, max_iter=100)
    r = _fit_kernel(model, data, signal, 0.0, init, restarts=2, **kw)
    s = _fit_kernel(model, data, signal, 0.0, init, starts=probes, **kw)
    assert int(r.nit) == int(s.nit) > int(fit(model, data).nit)
    sr, sr_data = sr_example
    s = jnp.full(sr.config.nsignal, 2.0)
    g = jax.grad(lambda s: profile(sr, sr_data, 1.0, s, restarts=1).nll)(s)
    g0 = jax.grad(lambda s: profile(sr, sr_data, 1.0, s).nll)(s)
    np.testing.assert_allclose(g, g0, rtol=1e-6, atol=1e-8)
    with pytest.raises(InputError, match="non-negative"):
        profile(model, data, 1.0, restarts=-1)
    with pytest.raises(InputError, match="exceeds"):
        profile(model, data, 1.0, restarts=10_000)


def test_mirror_start_reaches_the_deeper_well():
    """From alpha = -3 a fit ends in the shallow well (alpha = -1.151); with
    ``mirror`` it is also made from alpha = +1.151 (reflected through the
    constraint's centre) and ends in the deeper well. In the deeper well mirror changes nothing; the mirrored
    start reflects through the auxiliary datum (the centre), not through zero."""
    from difflike.fit._restarts import mirrored

    model, data = two_well_model()
    alpha = model.config.par_index("alpha")
    shallow = np.asarray(model.config.init, float).copy()
    shallow[alpha] = -3.0
    stay = profile(model, data, 1.0, init=shallow)
    deep = profile(model, data, 1.0, init=shallow, mirror=True)
    assert bool(stay.converged) and bool(deep.converged)
    assert float(stay.pars[alpha]) < -1.0 and float(deep.pars[alpha]) > 1.0
    assert float(deep.nll) < float(stay.nll) - 0.8
    assert int(deep.nit) > int(stay.nit)  # both starts counted
    direct = profile(model, data, 1.0)  # from alpha = 0 Newton finds the deep one
    np.testing.assert_allclose(
        profile(model, data, 1.0, mirror=True).nll, direct.nll, rtol=0, atol=1e-12
    )
    # batched, and for global fits too
    both = profile(model, data, jnp.array([1.0, 1.0]), init=shallow, mirror=True)
    np.testing.assert_allclose(both.nll, [deep.nll] * 2, rtol=0, atol=1e-10)
    assert float(fit(model, data, init=shallow, mirror=True).nll) <= float(deep.nll)
    # the reflection's centre is the auxiliary datum
    config = model.config
    moved = np.asarray(data, float).copy()
    moved[config.nmaindata] = 0.5
    lower, upper = config.bounds[:, 0], config.bounds[:, 1]
    free = ~config.fixed
    x = jnp.asarray(shallow)
    m = mirrored(model, jnp.asarray(moved), x, lower, upper, free)
    assert float(m[alpha]) == pytest.approx(4.0)
    poi = config.poi_index
    assert float(m[poi]) == float(x[poi])  # an unconstrained parameter stays


def test_scattered_starts():
    """``scattered``: seeded random starts about a point, each constrained parameter
    moved in units of its constraint width (Gaussian sigma, or 1/sqrt(tau) of a
    Poisson term), unconstrained and fixed ones left alone, clipped to the bounds;
    with an objective, a start where it is not finite is moved back towards the
    centre until it is."""
    from difflike.fit._restarts import constraint_widths, scattered

    spec = {
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {
                        "name": "b",
                        "data": [10.0, 4.0],
                        "modifiers": [
                            {"name": "mu", "type": "normfactor", "data": None},
                            {
                                "name": "a",
                                "type": "normsys",
                                "data": {"hi": 1.2, "lo": 0.8},
                            },
                            {"name": "st", "type": "staterror", "data": [1.0, 0.5]},
                            {"name": "sh", "type": "shapesys", "data": [2.0, 1.0]},
                            {
                                "name": "h",
                                "type": "histosys",
                                "data": {"hi_data": [14.0, 6.0], "lo_data": [6.0, 2.0]},
                            },
                        ],
                    }
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [11.0, 5.0]}],
        "measurements": [
            {
                "name": "m",
                "config": {"poi": "mu", "parameters": [{"name": "a", "fixed": True}]},
            }
        ],
        "version": "1.0.0",
    }
    model, data = dl.load(spec)
    cfg = model.config
    width = np.asarray(constraint_widths(model))
    idx = {n: cfg.par_slice(n) for n in ("mu", "a", "st", "sh", "h")}
    np.testing.assert_allclose(width[idx["mu"]], 0.0)
    np.testing.assert_allclose(width[idx["a"]], 1.0)
    np.testing.assert_allclose(width[idx["h"]], 1.0)
    # staterror: the relative uncertainty of each bin's total
    np.testing.assert_allclose(width[idx["st"]], [0.1, 0.125])
    # shapesys: tau = (nominal / uncertainty)^2, relative width 1/sqrt(tau)
    np.testing.assert_allclose(width[idx["sh"]], [0.2, 0.25])

    x = jnp.asarray(cfg.init, float)
    free = ~cfg.fixed
    key = jax.random.key(3)
    starts = np.asarray(scattered(model, x, key, 200, 1.5, free))
    assert starts.shape == (200, cfg.npars)
    np.testing.assert_array_equal(starts, scattered(model, x, key, 200, 1.5, free))
    lower, upper = np.asarray(cfg.bounds).T
    assert np.all(starts >= lower) and np.all(starts <= upper)
    moved = starts - np.asarray(x)
    # unconstrained (mu) and fixed (a) parameters stay
    np.testing.assert_array_equal(moved[:, idx["mu"]], 0.0)
    np.testing.assert_array_equal(moved[:, idx["a"]], 0.0)
    # the others spread by 1.5 widths (the histosys is not clipped at +-5 here)
    spread = moved.std(axis=0)
    np.testing.assert_allclose(spread[idx["h"]], 1.5, rtol=0.2)
    np.testing.assert_allclose(spread[idx["sh"]], 1.5 * width[idx["sh"]], rtol=0.2)

    # a spread that drives counts negative: the objective's non-finite starts
    # are moved back until it is finite
    def nll(p):
        return -model.logpdf(p, data)

    wide = np.asarray(scattered(model, x, key, 200, 6.0, free))
    bad = ~np.isfinite(np.asarray(jax.vmap(nll)(jnp.asarray(wide))))
    assert bad.any()
    kept = np.asarray(scattered(model, x, key, 200, 6.0, free, nll))
    assert np.isfinite(np.asarray(jax.vmap(nll)(jnp.asarray(kept)))).all()
    np.testing.assert_array_equal(kept[~bad], wide[~bad])
