"""A signal grid stacked into one batched model equals its points' own models."""

from __future__ import annotations

import copy
import gzip
import json

import jax
import numpy as np
import pytest

import difflike as dl
from difflike.errors import InvalidModelError, ShapeError
from difflike.histfactory import stack_models


def _patchset_with_varied_structure() -> dict:
    """The example grid, with points that differ in samples, modifiers and parameters.

    - point 0: its signal sample is renamed and gains a shapesys and a histosys that
      no other point has (new parameters, one Poisson-constrained);
    - point 1: its signal loses the normsys and the staterror;
    - the others are unchanged.
    """
    with gzip.open(dl.example_patchset(), "rt") as f:
        spec = json.load(f)
    spec = copy.deepcopy(spec)
    patches = spec["patches"]
    for k, op in enumerate(patches[0]["patch"]):
        sample = op["value"]
        sample["name"] = "sig_a"
        n = len(sample["data"])
        sample["modifiers"].append(
            {"name": f"sig_shape_{k}", "type": "shapesys", "data": [0.3] * n}
        )
        sample["modifiers"].append(
            {
                "name": "sig_hs",
                "type": "histosys",
                "data": {
                    "hi_data": [1.2 * v for v in sample["data"]],
                    "lo_data": [0.7 * v for v in sample["data"]],
                },
            }
        )
    for op in patches[1]["patch"]:
        op["value"]["modifiers"] = [
            m
            for m in op["value"]["modifiers"]
            if m["type"] not in ("normsys", "staterror")
        ]
    return spec


@pytest.fixture(scope="module")
def varied():
    ps = _patchset_with_varied_structure()
    grid, data = dl.load_patchset(dl.example_workspace(), ps, progress=False)
    return ps, grid, data


def _point(grid, i):
    return jax.tree_util.tree_map(lambda x: x[i], grid)


def _to_grid(grid, i, model, pars):
    """A point's parameter vector in the grid's layout (unused ones at their init)."""
    out = np.asarray(grid.config.init[i]).copy()
    index = [grid.config.par_names.index(n) for n in model.config.par_names]
    out[index] = pars
    return out


def test_layout_is_the_union(varied):
    ps, grid, data = varied
    names = [p["metadata"]["name"] for p in ps["patches"]]
    assert grid.config.points == tuple(names)
    assert grid.config.batch_shape == (len(names),)
    assert data.shape == (len(names), grid.config.ndata)
    assert "signal" in grid.config.samples and "sig_a" not in grid.config.samples
    assert {"sig_shape_0", "sig_hs"} <= set(grid.config.par_order)
    # unused parameters are fixed where a point does not use them
    shape = grid.config.par_slice("sig_shape_0")
    assert np.asarray(grid.config.fixed[1:, shape]).all()
    assert not np.asarray(grid.config.fixed[0, shape]).any()


def test_each_point_equals_its_own_model(varied):
    ps, grid, data = varied
    rng = np.random.default_rng(3)
    for i, name in enumerate(grid.config.points):
        model, d = dl.load(dl.example_workspace(), patchset=ps, point=name)
        lo, hi = np.asarray(model.config.bounds).T
        pars = np.asarray(model.config.init) + rng.uniform(
            -0.2, 0.2, model.config.npars
        )
        pars = np.clip(pars, lo, hi)
        gpars = _to_grid(grid, i, model, pars)
        point = _point(grid, i)
        assert float(point.logpdf(gpars, data[i])) == pytest.approx(
            float(model.logpdf(pars, d)), rel=1e-13, abs=1e-12
        ), name
        np.testing.assert_allclose(
            point.expected_actualdata(gpars),
            model.expected_actualdata(pars),
            rtol=1e-13,
            err_msg=name,
        )
        # the batched evaluation picks the same point
        batched = grid.logpdf(np.broadcast_to(gpars, grid.config.init.shape), data)
        assert float(batched[i]) == pytest.approx(float(point.logpdf(gpars, data[i])))


def test_grid_fit_equals_single_fits(varied):
    ps, grid, data = varied
    res = dl.fit(grid, data)
    assert res.nll.shape == grid.config.batch_shape
    assert res.converged.all()
    model, d = dl.load(dl.example_workspace(), patchset=ps, point=grid.config.points[0])
    single = dl.fit(model, d)
    assert float(res.nll[0]) == pytest.approx(float(single.nll), abs=1e-9)
    index = [grid.config.par_names.index(n) for n in model.config.par_names]
    np.testing.assert_allclose(res.pars[0, np.asarray(index)], single.pars, atol=2e-5)


def test_grid_broadcasts_with_mu(varied):
    _, grid, data = varied
    mu = np.array([0.5, 1.0, 2.0])
    res = dl.profile(grid, data, mu[:, None])
    assert res.nll.shape == (3, *grid.config.batch_shape)
    assert res.converged.all()
    # a conditional minimum lies above the global one of its point
    best = dl.fit(grid, data)
    assert (np.asarray(res.nll) >= np.asarray(best.nll) - 1e-9).all()
    np.testing.assert_array_equal(
        res.pars[..., grid.config.poi_index],
        np.broadcast_to(mu[:, None], res.nll.shape),
    )
    with pytest.raises(ShapeError, match="model points"):
        dl.profile(grid, data[:3], 1.0)


def test_points_that_cannot_share_a_layout():
    ws = dl.example_workspace()
    ps = dl.example_patchset()
    names = dl.workspace.read_patchset(ps).names[:2]
    a = dl.load(ws, patchset=ps, point=names[0])
    pruned = dl.load_workspace(ws, patchset=ps, point=names[1]).prune(channels=["CR"])
    b = dl.load(pruned)
    with pytest.raises(InvalidModelError, match="channels"):
        stack_models([a[0], b[0]], [a[1], b[1]], list(names), source="test")


def test_a_subset_of_points_in_order():
    ps = dl.example_patchset()
    names = list(reversed(dl.workspace.read_patchset(ps).names[:3]))
    grid, data = dl.load_patchset(
        dl.example_workspace(), ps, points=names, progress=False
    )
    assert grid.config.points == tuple(names)
    model, d = dl.load(dl.example_workspace(), patchset=ps, point=names[0])
    np.testing.assert_array_equal(np.asarray(data[0]), np.asarray(d))


def test_a_point_that_changes_the_background_is_checked():
    """The points share the background-only workspace's modifiers, each checked
    once (load_patchset); a point whose patch changes one gets its own check, which
    names that point."""
    ws = dl.workspace.read_workspace(dl.example_workspace())
    where = next(
        (c, s, m)
        for c, channel in enumerate(ws.spec["channels"])
        for s, sample in enumerate(channel["samples"])
        for m, modifier in enumerate(sample["modifiers"])
        if modifier["type"] == "histosys"
    )
    with gzip.open(dl.example_patchset(), "rt") as f:
        spec = json.load(f)
    bad = spec["patches"][2]
    bad["patch"].insert(  # first: the signal's operations move samples about
        0,
        {
            "op": "replace",
            "path": "/channels/{}/samples/{}/modifiers/{}/data/hi_data".format(*where),
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        },
    )
    name = bad["metadata"]["name"]
    with pytest.raises(InvalidModelError, match="hi_data") as err:
        dl.load_patchset(dl.example_workspace(), spec, progress=False)
    assert name in str(err.value)
    # the grid records the background-only workspace's digest (pyhf's)
    grid, _ = dl.load_patchset(
        dl.example_workspace(), dl.example_patchset(), progress=False
    )
    assert grid.config.digest == ws.digest()
