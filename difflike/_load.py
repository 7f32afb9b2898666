"""``difflike.load``: from files to a compiled model and its observed data."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from jax import numpy as jnp
from jaxtyping import Array, Float

from difflike.errors import InputError
from difflike.histfactory import Model, compile_model, observed_data
from difflike.workspace import PatchSet, Workspace, read_patchset, read_workspace
from difflike.workspace._io import source_of

__all__ = ["load", "load_patchset", "load_workspace"]

PathOrSpec = str | os.PathLike | Mapping


def load_workspace(
    workspace: PathOrSpec | Workspace,
    *,
    patch: PathOrSpec | Sequence[dict] | None = None,
    patchset: PathOrSpec | PatchSet | None = None,
    point: str | Sequence[float] | None = None,
    verify: bool = True,
) -> Workspace:
    """Read a workspace and apply a patch file or one point of a patchset.

    See :func:`load` for the arguments.
    """
    ws = read_workspace(workspace)
    if patch is not None and patchset is not None:
        raise InputError("give either patch= or patchset=/point=, not both")
    if patch is not None:
        if isinstance(patch, Sequence) and not isinstance(patch, (str, bytes)):
            operations, source = list(patch), "<patch>"
        else:
            operations, source = source_of(patch, "<patch>")
        if isinstance(operations, Mapping) and "patches" in operations:
            raise InputError(
                "this is a patchset, not a patch: use patchset= with point=",
                file=source,
            )
        ws = ws.patched(operations, source=source)
    elif patchset is not None:
        ps = read_patchset(patchset)
        if point is None:
            preview = ", ".join(ps.names[:5])
            raise InputError(
                f"a patchset needs point=: one of its {len(ps)} point names "
                f"({preview}, ...); difflike.load_patchset loads the whole grid "
                "as one batched model",
                file=ps.source,
            )
        ws = ws.with_point(ps, point, verify=verify)
    elif point is not None:
        raise InputError("point= needs patchset=")
    return ws


def load(
    workspace: PathOrSpec | Workspace,
    *,
    patch: PathOrSpec | Sequence[dict] | None = None,
    patchset: PathOrSpec | PatchSet | None = None,
    point: str | Sequence[float] | None = None,
    signal_regions: Sequence[str] | None = None,
    measurement: str | None = None,
    poi_name: str | None = None,
    modifier_settings: Mapping | None = None,
    verify: bool = True,
) -> tuple[Model, Float[Array, " ndata"]]:
    """Load a workspace into a compiled model and its observed data.

    Args:
        workspace: a ``.json`` / ``.json.gz`` file, a decoded document, a
            ``pyhf.Workspace`` or a :class:`~difflike.workspace.Workspace`.
        patch: a JSON patch (file, document or list of operations) to apply.
        patchset: a patchset (file or document); with ``point``, the signal point to
            apply, by name (``"DS_400_40_Staus"``) or by values (``(400, 40)``).
        point: see ``patchset``.
        signal_regions: channel names of a background-only workspace that receive a
            signal sample whose per-bin yields are an input of the model (the
            ``signal`` argument of its methods), scaled by the POI normfactor.
        measurement: the measurement to use (default: the first).
        poi_name: override the measurement's parameter of interest.
        modifier_settings: interpolation codes, as pyhf's
            ``{"normsys": {"interpcode": "code1"}, "histosys": {"interpcode": "code0"}}``.
        verify: check a patchset's digest against the workspace.

    Returns:
        ``(model, data)``: the :class:`~difflike.histfactory.Model` and the observed
        data, main bins then auxiliary data, ``(ndata,)`` float64.

    Raises:
        difflike.errors.InputError: any fault of the input; the subclass and message
            say which file, JSON path, channel, sample, modifier or parameter.

    Example:
        >>> import difflike as dl
        >>> model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
        >>> model.config.signal_regions
        ('SR_low', 'SR_high')
    """
    ws = load_workspace(
        workspace, patch=patch, patchset=patchset, point=point, verify=verify
    )
    model, data = _compile(
        ws,
        measurement=measurement,
        signal_regions=signal_regions,
        poi_name=poi_name,
        point=point if isinstance(point, str) else None,
        modifier_settings=modifier_settings,
        require_poi=poi_name is not None or patch is not None or patchset is not None,
    )
    return model, jnp.asarray(data)


def _compile(
    ws: Workspace,
    *,
    measurement: str | None,
    modifier_settings: Mapping | None,
    require_poi: bool,
    signal_regions: Sequence[str] | None = None,
    poi_name: str | None = None,
    point: str | None = None,
    digest: str | None = None,
    checked: dict | None = None,
) -> tuple[Model, np.ndarray]:
    """A read (and patched) workspace to its model and observed data, ``(ndata,)``
    (``digest`` and ``checked``: see :meth:`Workspace.model_spec` and
    :func:`compile_model`)."""
    spec = ws.model_spec(
        measurement=measurement,
        signal_regions=signal_regions,
        poi_name=poi_name,
        point=point,
        digest=digest,
    )
    model = compile_model(
        spec,
        modifier_settings=modifier_settings,
        require_poi=require_poi,
        checked=checked,
    )
    return model, observed_data(spec, model)


def load_patchset(
    workspace: PathOrSpec | Workspace,
    patchset: PathOrSpec | PatchSet,
    *,
    points: Sequence[str] | None = None,
    measurement: str | None = None,
    modifier_settings: Mapping | None = None,
    verify: bool = True,
    progress: bool = True,
) -> tuple[Model, Float[Array, "npoints ndata"]]:
    """Load a whole signal grid as one batched model and its observed data.

    Every point is compiled as :func:`load` would, then all are re-expressed in
    one common parameter and sample layout and stacked on a leading point axis
    (:func:`difflike.histfactory.stack_models` explains the layout). Every
    function of difflike broadcasts that axis with the other inputs' batch axes:
    ``dl.hypotest(1.0, model, data)`` tests all points in one compiled call and
    returns ``(npoints,)`` values; ``mu[:, None]`` scans ``mu`` on every point.

    Args:
        workspace: the background-only workspace (as for :func:`load`).
        patchset: the patchset (file or document).
        points: names of the points to load, in this order (default: all).
        measurement, modifier_settings, verify: as for :func:`load`.
        progress: show a progress bar on stderr while the points compile.

    Returns:
        ``(model, data)``: ``model.config.points`` names the points;
        ``data`` is ``(npoints, ndata)``.

    Raises:
        difflike.errors.InputError: as :func:`load`, or when the points cannot
            share one layout (different channels or POI).
    """
    from tqdm.auto import tqdm

    from difflike.histfactory import stack_models

    ws = read_workspace(workspace)
    ps = read_patchset(patchset)
    if verify:
        ps.verify(ws, workspace_source=ws.source)
    names = list(ps.names if points is None else points)
    if not names:
        raise InputError("no points to load", file=ps.source)
    models, data = [], []
    # What load() does per point, less two costs that a grid repeats: the points
    # share the background-only workspace's samples (patching copies only what it
    # changes), so a modifier checked on one point's sample is not checked again;
    # and the grid records the background-only digest, not one per point.
    checked: dict = {}
    digest = ws.digest()
    for name in tqdm(
        names, desc="compiling points", unit="point", disable=not progress
    ):
        model, d = _compile(
            ws.with_point(ps, name, verify=False),
            measurement=measurement,
            modifier_settings=modifier_settings,
            require_poi=True,
            point=name,
            digest=digest,
            checked=checked,
        )
        models.append(model)
        data.append(d)
    grid, grid_data = stack_models(
        models,
        data,
        names,
        source=f"{ws.source} with {ps.source} ({len(names)} points)",
        digest=digest,
    )
    return grid, jnp.asarray(grid_data)
