"""The public API is pinned: adding or removing a name is a deliberate change."""

import difflike as dl


def test_top_level_names():
    assert sorted(dl.__all__) == sorted(
        [
            "FitResult",
            "Likelihood",
            "Model",
            "ModelConfig",
            "__version__",
            "asimov_data",
            "delta",
            "errors",
            "example_patchset",
            "example_workspace",
            "fit",
            "histfactory",
            "hypotest",
            "infer",
            "load",
            "load_patchset",
            "load_workspace",
            "profile",
            "upper_limit",
            "workspace",
        ]
    )
    assert sorted(dir(dl)) == sorted(dl.__all__)


def test_sample_names():
    import difflike.sample as sample

    assert sorted(sample.__all__) == sorted(
        [
            "LABEL_EXPECTATIONS",
            "SamplerSettings",
            "Summary",
            "Target",
            "YieldDataset",
            "YieldSpace",
            "background_targets",
            "label",
            "load_dataset",
            "relabel",
            "sample",
            "summarize",
            "yield_space",
        ]
    )
    assert sorted(dir(sample)) == sorted(sample.__all__)


def test_error_hierarchy():
    for name in dl.errors.__all__:
        cls = getattr(dl.errors, name)
        assert issubclass(cls, dl.errors.DifflikeError)
        if name not in ("DifflikeError",):
            assert issubclass(cls, ValueError), name


def test_x64_is_on():
    import jax.numpy as jnp

    assert jnp.zeros(1).dtype == jnp.float64


def test_workspace_layer_imports_no_jax():
    import subprocess
    import sys

    code = (
        "import sys, importlib.util, types\n"
        "pkg = types.ModuleType('difflike'); pkg.__path__ = [importlib.util.find_spec('difflike').submodule_search_locations[0]]\n"
        "sys.modules['difflike'] = pkg\n"
        "import difflike.workspace\n"
        "print('jax' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
