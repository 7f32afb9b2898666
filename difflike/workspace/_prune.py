"""Removing channels, samples, modifiers and measurements from a workspace spec."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable

from difflike.errors import UnknownChannelError, UnknownMeasurementError

__all__ = ["prune_spec"]


def prune_spec(
    spec: dict,
    *,
    channels: Iterable[str] = (),
    samples: Iterable[str] = (),
    modifiers: Iterable[str] = (),
    modifier_types: Iterable[str] = (),
    measurements: Iterable[str] = (),
    source: str | None = None,
) -> dict:
    """Return a copy of a workspace spec without the named parts (as ``pyhf prune``).

    Args:
        spec: a workspace document (not modified).
        channels: channel names to remove, with their observations.
        samples: sample names to remove from every channel.
        modifiers: modifier names to remove from every sample, with their
            parameter configurations in every measurement.
        modifier_types: modifier types to remove (``"shapesys"``, ...).
        measurements: measurement names to remove.
        source: the workspace's file, for messages.

    Raises:
        UnknownChannelError: a named channel is not in the workspace.
        UnknownMeasurementError: a named measurement is not in the workspace.
    """
    channels, samples = set(channels), set(samples)
    modifiers, modifier_types = set(modifiers), set(modifier_types)
    measurements = set(measurements)
    known = [c["name"] for c in spec["channels"]]
    for name in sorted(channels - set(known)):
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownChannelError(
            f"cannot prune channel {name!r}: not in the workspace{hint}", file=source
        )
    known_meas = [m["name"] for m in spec.get("measurements", [])]
    for name in sorted(measurements - set(known_meas)):
        raise UnknownMeasurementError(
            f"cannot prune measurement {name!r}: not in the workspace "
            f"(measurements: {known_meas})",
            file=source,
        )
    out = copy.deepcopy(spec)
    out["channels"] = [
        {
            **channel,
            "samples": [
                {
                    **sample,
                    "modifiers": [
                        m
                        for m in sample["modifiers"]
                        if m["name"] not in modifiers
                        and m["type"] not in modifier_types
                    ],
                }
                for sample in channel["samples"]
                if sample["name"] not in samples
            ],
        }
        for channel in out["channels"]
        if channel["name"] not in channels
    ]
    out["observations"] = [o for o in out["observations"] if o["name"] not in channels]
    out["measurements"] = [
        {
            **m,
            "config": {
                **m["config"],
                "parameters": [
                    p for p in m["config"]["parameters"] if p["name"] not in modifiers
                ],
            },
        }
        for m in out.get("measurements", [])
        if m["name"] not in measurements
    ]
    return out
