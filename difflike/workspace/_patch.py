"""JSON patches (RFC 6902) and pyhf patchsets."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from difflike.errors import (
    InvalidPatchSetError,
    PatchError,
    PatchSetVerificationError,
    UnknownPointError,
)
from difflike.workspace._io import PathLike, source_of
from difflike.workspace._schema import validate

__all__ = [
    "Patch",
    "PatchSet",
    "apply_patch",
    "digest",
    "read_patchset",
    "touched_channels",
]


def digest(obj: Any, algorithm: str = "sha256") -> str:
    """Digest of a JSON document, computed as pyhf computes it (sorted keys, UTF-8).

    Args:
        obj: a JSON-serialisable document.
        algorithm: a :mod:`hashlib` algorithm name.

    Returns:
        The hexadecimal digest; equal to ``pyhf.utils.digest(obj, algorithm)``.
    """
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf8")
    return hashlib.new(algorithm, text).hexdigest()


def _copy_along(root: Any, pointer: str, copied: set[int]) -> None:
    """Shallow-copy every container on ``pointer``'s way (not the target itself)."""
    container = root
    for token in jsonpointer.JsonPointer(pointer).parts[:-1]:
        key: Any = token
        if isinstance(container, list):
            if not token.isdigit() or int(token) >= len(container):
                return  # the operation itself will report the bad path
            key = int(token)
        elif not isinstance(container, dict) or token not in container:
            return
        child = container[key]
        if isinstance(child, (dict, list)) and id(child) not in copied:
            child = copy.copy(child)
            copied.add(id(child))
            container[key] = child
        container = child


def apply_patch(
    spec: dict, operations: Sequence[dict], *, file: str | None = None
) -> dict:
    """Apply JSON-patch operations to ``spec`` without modifying it.

    The result shares every part of ``spec`` that the operations do not touch
    (copy-on-write along each operation's path), so patching a large workspace costs
    little. Treat both documents as read-only.

    Args:
        spec: the document to patch (not modified).
        operations: a list of RFC 6902 operations.
        file: where the patch came from, for messages.

    Returns:
        The patched document.

    Raises:
        SchemaValidationError: the operations are not a valid JSON patch.
        PatchError: an operation does not apply (its index, ``op`` and ``path`` are
            named).
    """
    validate(list(operations), "jsonpatch.json", file=file)
    patched = copy.copy(spec)
    copied = {id(patched)}
    for index, operation in enumerate(operations):
        for key in ("path", "from"):
            if key in operation:
                _copy_along(patched, operation[key], copied)
        if operation["op"] in ("add", "replace"):
            operation = {**operation, "value": copy.deepcopy(operation["value"])}
        try:
            patched = jsonpatch.JsonPatch([operation]).apply(patched, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as err:
            raise PatchError(
                f"operation {index} ({operation.get('op')} {operation.get('path')}) "
                f"does not apply to the workspace: {err}",
                file=file,
                path=f"/{index}",
            ) from None
    return patched


def touched_channels(operations: Sequence[dict]) -> set[int] | None:
    """Indices of the channels a patch changes, or ``None`` if it changes more."""
    indices = set()
    for operation in operations:
        for key in ("path", "from"):
            if key not in operation:
                continue
            parts = jsonpointer.JsonPointer(operation[key]).parts
            if len(parts) < 3 or parts[0] != "channels" or not parts[1].isdigit():
                return None
            indices.add(int(parts[1]))
    return indices


@dataclass(frozen=True)
class Patch:
    """One point of a patchset: a name, its coordinates and the JSON-patch operations."""

    name: str
    values: tuple[float, ...]
    operations: tuple[dict, ...]


class PatchSet:
    """A collection of signal points, each a JSON patch for one background-only workspace.

    Build one with :func:`read_patchset`. Points are looked up by name
    (``patchset["DS_400_40_Staus"]``) or by their values (``patchset[400, 40]``).

    Attributes:
        source: where the patchset was read from.
        metadata: the patchset's metadata (``labels``, ``digests``, ...).
        labels: the names of the coordinates of each point (``["mst", "mn2"]``).
        patches: the points, in the file's order.
    """

    def __init__(self, spec: dict, *, source: str = "<patchset>") -> None:
        validate(spec, "patchset.json", file=source)
        self.source = source
        self.metadata: dict = spec["metadata"]
        self.version: str = spec["version"]
        self.labels: tuple[str, ...] = tuple(self.metadata["labels"])
        self.patches: tuple[Patch, ...] = ()
        by_name: dict[str, Patch] = {}
        by_values: dict[tuple, Patch] = {}
        patches = []
        for index, entry in enumerate(spec["patches"]):
            patch = Patch(
                name=entry["metadata"]["name"],
                values=tuple(entry["metadata"]["values"]),
                operations=tuple(entry["patch"]),
            )
            path = f"/patches/{index}/metadata"
            if patch.name in by_name:
                raise InvalidPatchSetError(
                    f"two points are named {patch.name!r}", file=source, path=path
                )
            if len(patch.values) != len(self.labels):
                raise InvalidPatchSetError(
                    f"point {patch.name!r} has {len(patch.values)} values for "
                    f"{len(self.labels)} labels {list(self.labels)}",
                    file=source,
                    path=path + "/values",
                    got=len(patch.values),
                    expected=len(self.labels),
                )
            if patch.values in by_values:
                raise InvalidPatchSetError(
                    f"points {by_values[patch.values].name!r} and {patch.name!r} have "
                    f"the same values {list(patch.values)}",
                    file=source,
                    path=path + "/values",
                )
            by_name[patch.name] = by_values[patch.values] = patch
            patches.append(patch)
        self.patches = tuple(patches)
        self._by_name = by_name
        self._by_values = by_values

    @property
    def digests(self) -> dict[str, str]:
        """The digests of the background-only workspace this patchset was made for."""
        return dict(self.metadata.get("digests", {}))

    @property
    def names(self) -> list[str]:
        """The point names, in the file's order."""
        return [p.name for p in self.patches]

    def __len__(self) -> int:
        return len(self.patches)

    def __iter__(self) -> Iterator[Patch]:
        return iter(self.patches)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except UnknownPointError:
            return False
        return True

    def __getitem__(self, key: str | Sequence[float]) -> Patch:
        if isinstance(key, str):
            if key in self._by_name:
                return self._by_name[key]
            close = difflib.get_close_matches(key, list(self._by_name), n=3, cutoff=0.6)
            raise UnknownPointError(
                f"no point named {key!r} among the {len(self)} points",
                suggestions=close,
                file=self.source,
            )
        values = tuple(key)
        if values in self._by_values:
            return self._by_values[values]
        raise UnknownPointError(
            f"no point with values {list(values)} for labels {list(self.labels)}",
            file=self.source,
        )

    def verify(self, workspace: Any, *, workspace_source: str = "") -> None:
        """Check that ``workspace`` is the workspace this patchset was made for.

        Args:
            workspace: a workspace document, or an object with a ``digest(algorithm)``
                method (a :class:`~difflike.workspace.Workspace`, which caches it).

        Raises:
            PatchSetVerificationError: a digest in the patchset's metadata differs from
                the workspace's.
        """
        for algorithm, expected in self.digests.items():
            if hasattr(workspace, "digest"):
                got = workspace.digest(algorithm)
            else:
                got = digest(workspace, algorithm)
            if got != expected:
                raise PatchSetVerificationError(
                    f"was made for another background-only workspace than "
                    f"{workspace_source or 'the one given'} ({algorithm} digest "
                    "mismatch; pass verify=False to apply it anyway)",
                    file=self.source,
                    path="/metadata/digests",
                    got=got,
                    expected=expected,
                )

    def __repr__(self) -> str:
        return (
            f"PatchSet({self.source!r}, {len(self)} points, labels={list(self.labels)})"
        )


def read_patchset(patchset: PathLike | dict | PatchSet) -> PatchSet:
    """Read a patchset from a ``.json`` / ``.json.gz`` file or a decoded document."""
    if isinstance(patchset, PatchSet):
        return patchset
    if hasattr(patchset, "patches") and hasattr(patchset, "metadata"):  # pyhf.PatchSet
        patchset = {
            "metadata": patchset.metadata,
            "version": patchset.version,
            "patches": [
                {"metadata": p.metadata, "patch": list(p.patch)}
                for p in patchset.patches
            ],
        }
    spec, source = source_of(patchset, "<patchset>")
    return PatchSet(spec, source=source)
