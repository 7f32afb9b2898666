"""Immutable pytrees: frozen dataclasses registered with ``jax.tree_util``.

Fields are pytree leaves (arrays, possibly batched, traced or differentiated) unless
declared with :func:`static`, which marks hashable structure (names, codes, index
tuples) that is part of the tree's definition and so of jit's cache key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

__all__ = ["pytree_dataclass", "replace", "static"]

T = TypeVar("T")


def static(**kwargs: Any) -> Any:
    """A dataclass field that is static (hashable metadata, never an array)."""
    metadata = dict(kwargs.pop("metadata", {}), static=True)
    return dataclasses.field(metadata=metadata, **kwargs)


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass and register it as a pytree node."""
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    fields = dataclasses.fields(cls)
    data = [f.name for f in fields if not f.metadata.get("static")]
    meta = [f.name for f in fields if f.metadata.get("static")]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


def replace(obj: T, **changes: Any) -> T:
    """A copy of a pytree dataclass with some fields replaced."""
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
