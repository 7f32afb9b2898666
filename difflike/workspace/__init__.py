"""Workspaces: HistFactory JSON documents read, validated, patched and pruned.

This layer is plain Python (no JAX): it turns files into validated data that
:mod:`difflike.histfactory` compiles.
"""

from difflike.workspace._io import read_json
from difflike.workspace._patch import (
    Patch,
    PatchSet,
    apply_patch,
    digest,
    read_patchset,
)
from difflike.workspace._prune import prune_spec
from difflike.workspace._regions import (
    SignalRegions,
    add_signal_sample,
    signal_yields,
)
from difflike.workspace._schema import MODIFIER_TYPES, validate
from difflike.workspace._workspace import ModelSpec, Workspace, read_workspace

__all__ = [
    "MODIFIER_TYPES",
    "ModelSpec",
    "Patch",
    "PatchSet",
    "SignalRegions",
    "Workspace",
    "add_signal_sample",
    "apply_patch",
    "digest",
    "prune_spec",
    "read_json",
    "read_patchset",
    "read_workspace",
    "signal_yields",
    "validate",
]


def __dir__() -> list[str]:
    return __all__
