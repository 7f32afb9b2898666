"""Immutable pytrees: frozen dataclasses registered with ``jax.tree_util``.

Fields are pytree leaves (arrays, possibly batched, traced or differentiated) unless
declared with :func:`static`, which marks hashable structure (names, codes, index
tuples) that is part of the tree's definition and so of jit's cache key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

__all__ = ["Label", "pytree_dataclass", "replace", "static"]

T = TypeVar("T")


class Label(str):
    """A string of static metadata that does not enter jit's cache key.

    Where a model came from (its file, its digest) does not change what it
    computes, so two models of the same structure from different files must share
    compiled code. A :class:`Label` equals every other :class:`Label` and they all
    hash alike; as a ``str`` it is an ordinary string everywhere else. The price:
    a pytree *returned* by a jitted function carries the labels of the call that
    compiled it.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Label) or str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(Label)

    def __repr__(self) -> str:
        return str.__repr__(self)


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
