"""The compiled model as a JAX citizen: jit, vmap, no recompiles, gradients, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax import numpy as jnp

import difflike as dl
from difflike import errors
from difflike.histfactory import interpolation as interp


@pytest.fixture(scope="module")
def sr():
    return dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])


def random_pars(model, n, seed=0):
    lo, hi = np.asarray(model.config.bounds).T
    rng = np.random.default_rng(seed)
    return rng.uniform(
        np.maximum(lo, -2), np.minimum(hi, 2), size=(n, model.config.npars)
    )


def test_model_is_a_pytree_of_float64_arrays(sr):
    model, data = sr
    leaves = jax.tree_util.tree_leaves(model)
    assert all(isinstance(x, jax.Array) for x in leaves)
    floats = [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float64 for x in floats)
    assert data.dtype == jnp.float64
    flat, treedef = jax.tree_util.tree_flatten(model)
    assert (
        jax.tree_util.tree_unflatten(treedef, flat).config.par_names
        == model.config.par_names
    )
    with pytest.raises(AttributeError):
        model.nominal = None  # immutable


def test_jit_does_not_recompile_for_new_values(sr):
    model, data = sr
    traces = []

    def f(m, pars, data, signal):
        traces.append(1)
        return m.logpdf(pars, data, signal)

    jitted = jax.jit(f)
    p = random_pars(model, 2)
    first = jitted(model, p[0], data, jnp.ones(4))
    second = jitted(model, p[1], data + 1.0, jnp.asarray(np.full(4, 3.0)))
    bounds = model.config.bounds.at[0, 0].set(-4.0)
    third = jitted(model.with_config(bounds=bounds), p[1], data, jnp.zeros(4))
    assert len(traces) == 1
    assert float(first) != float(second)
    assert float(second) == pytest.approx(
        float(model.logpdf(p[1], data + 1.0, jnp.full(4, 3.0))), rel=1e-14
    )
    assert np.isfinite(float(third))
    bound = jax.jit(model.logpdf)
    bound(p[0], data, jnp.ones(4))
    bound(p[1], data, jnp.ones(4) * 2)
    assert bound._cache_size() == 1


def test_batches_broadcast_and_match_single_calls(sr):
    model, data = sr
    pars = random_pars(model, 6).reshape(2, 3, -1)
    signals = np.random.default_rng(1).uniform(0, 5, size=(3, 4))
    datas = np.stack([np.asarray(data), np.asarray(data) * 1.1])[:, None, :]
    values = model.logpdf(pars, datas, signals)
    assert values.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            single = model.logpdf(pars[i, j], datas[i, 0], signals[j])
            assert float(values[i, j]) == pytest.approx(float(single), rel=1e-13)
    assert model.expected_data(pars, signals).shape == (2, 3, model.config.ndata)
    assert model.expected_actualdata(pars[0], signals).shape == (
        3,
        model.config.nmaindata,
    )
    assert model.expected_by_sample(pars[0, 0]).shape == (len(model.config.samples), 7)
    vmapped = jax.vmap(model.logpdf, in_axes=(0, None, 0))(pars[0], data, signals)
    np.testing.assert_allclose(vmapped, values[0], rtol=1e-13)


def test_vmap_over_models(sr):
    model, data = sr
    bounds_b = model.config.bounds
    models = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), model)
    pars = random_pars(model, 2)
    values = jax.vmap(lambda m, p: m.logpdf(p, data))(models, pars)
    np.testing.assert_allclose(values, model.logpdf(pars, data), rtol=1e-14)
    assert bounds_b.shape == (model.config.npars, 2)


def test_gradients_match_finite_differences(sr):
    model, data = sr
    pars = jnp.asarray(random_pars(model, 1, seed=4)[0])
    signal = jnp.array([2.0, 1.0, 0.5, 0.2])
    f = jax.jit(lambda p, s: model.logpdf(p, data, s))
    grad_p, grad_s = jax.jit(jax.grad(f, argnums=(0, 1)))(pars, signal)
    eps = 1e-6
    for i in range(model.config.npars):
        step = jnp.zeros_like(pars).at[i].set(eps)
        fd = (f(pars + step, signal) - f(pars - step, signal)) / (2 * eps)
        assert float(grad_p[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-6)
    for i in range(4):
        step = jnp.zeros(4).at[i].set(eps)
        fd = (f(pars, signal + step) - f(pars, signal - step)) / (2 * eps)
        assert float(grad_s[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-6)
    assert np.all(np.isfinite(jax.hessian(f)(pars, signal)))


def test_gradients_finite_at_kinks_and_zero_counts(sr):
    model, data = sr
    init = model.config.init
    zero_data = (
        jnp.zeros_like(data)
        .at[model.config.nmaindata :]
        .set(data[model.config.nmaindata :])
    )
    g = jax.grad(lambda p: model.logpdf(p, zero_data, jnp.zeros(4)))(init)
    assert np.all(np.isfinite(g))
    for fn, extra in (
        (interp.code1, ()),
        (interp.code0, ()),
        (interp.code2, ()),
        (interp.code4p, ()),
    ):
        for alpha in (-1.0, 0.0, 1.0):
            d = jax.grad(lambda a: fn(a, 1.1, 0.9, *extra))(alpha)
            assert np.isfinite(float(d))
    coef = interp.code4_coefficients(np.array([1.1]), np.array([0.9]))[:, 0]
    for alpha in (-1.0, 0.0, 1.0):
        assert np.isfinite(
            float(jax.grad(lambda a: interp.code4(a, 1.1, 0.9, coef))(alpha))
        )
    # code1 with a zero factor: value and gradient stay finite
    assert float(interp.code1(-0.5, 1.2, 0.0)) == 0.0
    assert float(interp.code1(0.0, 1.2, 0.0)) == 1.0
    assert np.isfinite(float(jax.grad(lambda a: interp.code1(a, 1.2, 0.0))(0.0)))


def test_one_sided_derivatives_at_the_kinks_are_pyhfs():
    """At a kink the derivative is the branch pyhf's formula takes there."""
    up, dn = 1.7, -0.4
    # code0: alpha * (up if alpha > 0 else dn), so dn at alpha = 0
    assert float(jax.grad(lambda a: interp.code0(a, up, dn))(0.0)) == dn
    # code2 and code4p switch branches at |alpha| > 1: the inside formula at +-1
    for fn, inside in (
        (interp.code2, lambda a: 0.5 * (up - dn) * a * a + 0.5 * (up + dn) * a),
        (
            interp.code4p,
            lambda a: (
                a * a * (a * a * (3 * a * a - 10) + 15) * (up - dn) / 16
                + a * (up + dn) / 2
            ),
        ),
    ):
        for a0 in (-1.0, 1.0):
            assert float(jax.grad(lambda a: fn(a, up, dn))(a0)) == pytest.approx(
                float(jax.grad(inside)(a0)), rel=1e-14
            )


def test_large_batches_run_in_groups_and_match_single_calls(sr):
    """Batches above the CPU group size (64) give what one example at a time gives,
    values and gradients."""
    model, data = sr
    pars = random_pars(model, 150, seed=7)
    signals = np.random.default_rng(8).uniform(0, 5, size=(150, 4))
    values = np.asarray(model.logpdf(pars, data, signals))
    expected = np.asarray(model.expected_data(pars, signals))
    assert values.shape == (150,) and expected.shape == (150, model.config.ndata)
    for i in (0, 63, 64, 100, 149):
        assert values[i] == pytest.approx(
            float(model.logpdf(pars[i], data, signals[i])), rel=1e-13
        )
        np.testing.assert_allclose(
            expected[i], model.expected_data(pars[i], signals[i]), rtol=1e-13
        )
    total = jax.grad(lambda p: jnp.sum(model.logpdf(p, data, signals)))(
        jnp.asarray(pars)
    )
    single = jax.grad(lambda p: model.logpdf(p, data, signals[100]))(
        jnp.asarray(pars[100])
    )
    np.testing.assert_allclose(total[100], single, rtol=1e-12, atol=1e-12)


def test_code4_is_smooth_at_the_boundaries():
    hi, lo = np.array([1.3]), np.array([0.8])
    coef = interp.code4_coefficients(hi, lo)[:, 0]
    f = lambda a: interp.code4(a, hi[0], lo[0], coef)
    for a0 in (-1.0, 1.0):
        for deriv in (f, jax.grad(f), jax.grad(jax.grad(f))):
            assert float(deriv(a0 - 1e-7)) == pytest.approx(
                float(deriv(a0 + 1e-7)), rel=1e-4, abs=1e-5
            )
    assert float(f(1.0)) == pytest.approx(1.3) and float(f(-1.0)) == pytest.approx(0.8)


def test_wrong_lengths_raise_shape_errors(sr):
    model, data = sr
    init = model.config.init
    with pytest.raises(
        errors.ShapeError, match=r"parameter vector.*expected \(\.\.\., 20\)"
    ):
        model.logpdf(init[:-1], data)
    with pytest.raises(errors.ShapeError, match="data has the wrong length") as info:
        model.logpdf(init, data[:-2])
    assert "7 main bins" in str(info.value) and "SR_low" in str(info.value)
    with pytest.raises(errors.ShapeError, match="signal has the wrong length"):
        model.logpdf(init, data, jnp.ones(3))
    with pytest.raises(errors.ShapeError, match="signal"):
        model.expected_data(init, jnp.ones(5))
    assert isinstance(errors.ShapeError("x"), ValueError)


def test_signal_on_a_patched_model_is_an_error():
    model, data = dl.load(
        dl.example_workspace(), patchset=dl.example_patchset(), point="sig_300_0"
    )
    with pytest.raises(errors.ShapeError, match="no signal regions"):
        model.logpdf(model.config.init, data, jnp.ones(4))


@pytest.mark.parametrize("value", [-1.0, np.nan, np.inf])
def test_bad_counts_in_concrete_data(sr, value):
    model, data = sr
    bad = np.asarray(data).copy()
    bad[4] = value
    with pytest.raises(errors.InvalidDataError, match=r"bin 1 of channel 'SR_high'"):
        model.logpdf(model.config.init, bad)
    # auxiliary data may be negative (Gaussian constraints)
    aux = np.asarray(data).copy()
    aux[model.config.nmaindata] = -0.3
    assert np.isfinite(float(model.logpdf(model.config.init, aux)))


def test_config_accessors(sr):
    model, _ = sr
    c = model.config
    assert c.par_slice("staterror_CR") == slice(13, 16)
    assert c.par_names[c.poi_index] == "mu" == c.poi_name
    assert c.signal_slices == {"SR_low": slice(0, 2), "SR_high": slice(2, 4)}
    assert c.channel_slices["SR_high"] == slice(3, 5)
    assert len(c.suggested_bounds()) == c.npars
    with pytest.raises(errors.UnknownParameterError, match="'nope'"):
        c.par_slice("nope")
    with pytest.raises(errors.UnknownParameterError):
        c.par_index("mu[0]")
    fixed = c.fixed.at[c.par_index("lumi")].set(True)
    assert bool(model.with_config(fixed=fixed).config.fixed[c.par_index("lumi")])
    with pytest.raises(errors.ShapeError):
        model.with_config(init=c.init[:-1])


def test_modifier_settings_validation():
    with pytest.raises(errors.InputError, match="histosys interpolation code"):
        dl.load(
            dl.example_workspace(),
            modifier_settings={"histosys": {"interpcode": "code1"}},
        )
    with pytest.raises(errors.InputError, match="normsys interpolation code"):
        dl.load(
            dl.example_workspace(),
            modifier_settings={"normsys": {"interpcode": "code4p"}},
        )
    model, _ = dl.load(
        dl.example_workspace(), modifier_settings={"normsys": {"interpcode": "code1"}}
    )
    assert dict(model.config.modifier_settings) == {
        "normsys": "code1",
        "histosys": "code4p",
    }


def test_inconsistent_specs_are_named():
    spec = dl.workspace.read_json(dl.example_workspace())
    spec["channels"][1]["samples"][1]["modifiers"][3]["data"]["hi_data"].append(1.0)
    with pytest.raises(errors.InvalidModelError) as info:
        dl.load(spec)
    text = str(info.value)
    assert (
        "histosys modifier 'wjets_scale' of sample 'wjets' in channel 'SR_high'" in text
    )
    assert "expected 2, got 3" in text

    spec = dl.workspace.read_json(dl.example_workspace())
    spec["channels"][0]["samples"][0]["modifiers"][2]["type"] = "lumi"
    spec["channels"][0]["samples"][0]["modifiers"][2]["name"] = "lumi"
    spec["channels"][0]["samples"][0]["modifiers"][2]["data"] = None
    spec["channels"][0]["samples"][1]["modifiers"].append(
        {"name": "lumi", "type": "normfactor", "data": None}
    )
    with pytest.raises(
        errors.InvalidModelError, match="parameter 'lumi' is declared by modifiers"
    ):
        dl.load(spec)

    spec = dl.workspace.read_json(dl.example_workspace())
    spec["measurements"][0]["config"]["parameters"] = []
    with pytest.raises(errors.InvalidModelError, match="'lumi'.*needs 'inits'"):
        dl.load(spec)

    spec = dl.workspace.read_json(dl.example_workspace())
    spec["channels"][0]["samples"][0]["modifiers"][2]["data"]["lo"] = 0.0
    with pytest.raises(
        errors.InvalidModelError,
        match="'ttbar_xsec'.*positive for normsys interpolation code4",
    ):
        dl.load(spec)
    model, _ = dl.load(spec, modifier_settings={"normsys": {"interpcode": "code1"}})
    assert model.normsys_code == "code1"

    spec = dl.workspace.read_json(dl.example_workspace())
    spec["measurements"][0]["config"]["parameters"].append(
        {"name": "mu_ttbar", "inits": [1.0, 2.0]}
    )
    with pytest.raises(
        errors.InvalidModelError, match="configures parameter 'mu_ttbar' twice"
    ):
        dl.load(spec)


def test_poi_handling():
    model, _ = dl.load(dl.example_workspace())
    assert model.config.poi_name is None and model.config.poi_index is None
    with pytest.raises(errors.UnknownParameterError, match="'mu'"):
        dl.load(dl.example_workspace(), poi_name="mu")
    model, _ = dl.load(dl.example_workspace(), poi_name="mu_ttbar")
    assert model.config.poi_name == "mu_ttbar"
    with pytest.raises(errors.InvalidModelError, match="scalar"):
        dl.load(dl.example_workspace(), poi_name="fakes_shape")


@pytest.mark.parametrize(
    "settings",
    [
        None,
        {"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code2"}},
        {"histosys": {"interpcode": "code0"}},
    ],
)
def test_structural_jacobian_equals_reverse_mode(settings):
    """The fits' Jacobian of the expected main data, built from the model's
    structure, equals jax.jacrev; a parameter at 0 (the POI) included."""
    ws = dl.example_workspace()
    for model, _ in (
        dl.load(
            ws,
            patchset=dl.example_patchset(),
            point="sig_300_0",
            modifier_settings=settings,
        ),
        dl.load(ws, signal_regions=["SR_low", "SR_high"], modifier_settings=settings),
    ):
        signal = jnp.linspace(0.5, 3.0, model.config.nsignal)
        for pars in random_pars(model, 3, seed=7):
            pars = jnp.asarray(pars).at[model.config.poi_index].set(0.0)
            main, jac = jax.jit(model._main_and_jacobian)(pars, signal)
            expected = jax.jacrev(model._main)(pars, signal)
            np.testing.assert_allclose(main, model._main(pars, signal), rtol=1e-14)
            np.testing.assert_allclose(jac, expected, rtol=1e-12, atol=1e-12)
            assert np.abs(np.asarray(jac)).max() > 0


def test_models_from_different_files_share_compiled_code():
    a, _ = dl.load(
        dl.example_workspace(), patchset=dl.example_patchset(), point="sig_300_0"
    )
    b, _ = dl.load(
        dl.example_workspace(), patchset=dl.example_patchset(), point="sig_500_100"
    )
    assert a.config.source != b.config.source.upper()  # still ordinary strings
    assert str(a.config.source) != str(b.config.source)

    @jax.jit
    def f(model):
        return model.expected_data(model.config.init)

    f(a)
    assert not np.allclose(f(a), f(b))
    assert f._cache_size() == 1
