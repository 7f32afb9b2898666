"""Signal regions: channels of a background-only workspace whose signal is an input."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from difflike.errors import InvalidModelError, UnknownSignalRegionError

__all__ = ["SignalRegions", "add_signal_sample", "signal_yields"]


@dataclass(frozen=True)
class SignalRegions:
    """Where a signal-region model's signal yields go.

    Attributes:
        channels: the signal-region channel names, in the order of the signal vector.
        nbins: the number of bins of each of those channels.
        sample: the name of the signal sample added to those channels.
        poi: the name of the normfactor that scales the signal.
    """

    channels: tuple[str, ...]
    nbins: tuple[int, ...]
    sample: str
    poi: str

    @property
    def size(self) -> int:
        """Length of the signal vector: the total number of signal-region bins."""
        return sum(self.nbins)


def add_signal_sample(
    spec: dict,
    channels: Sequence[str],
    *,
    poi: str,
    sample: str = "signal",
    source: str | None = None,
) -> tuple[dict, SignalRegions]:
    """Add a signal sample, scaled by the normfactor ``poi``, to the named channels.

    The sample's nominal yields are placeholders (zeros); the compiled model takes the
    yields as an input. No other modifier is attached.

    Args:
        spec: a workspace document (not modified).
        channels: the signal-region channel names, in the order the signal vector
            will follow.
        poi: the name of the POI normfactor; it must not already be a modifier of
            another type in the workspace.
        sample: the signal sample's name; a numbered variant is used if taken.
        source: the workspace's file, for messages.

    Returns:
        The new spec and the :class:`SignalRegions` describing the signal vector.

    Raises:
        UnknownSignalRegionError: a name is not a channel of the workspace (close
            names are suggested).
        InvalidModelError: no region given, a region named twice, or ``poi`` is
            already a modifier of another type.
    """
    channels = list(channels)
    if not channels:
        raise InvalidModelError("no signal region was given", file=source)
    known = {c["name"]: c for c in spec["channels"]}
    for name in channels:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownSignalRegionError(
                f"signal region {name!r} is not a channel of the workspace{hint}",
                file=source,
                expected=f"one of {sorted(known)}" if len(known) <= 12 else None,
            )
    duplicates = sorted({c for c in channels if channels.count(c) > 1})
    if duplicates:
        raise InvalidModelError(
            f"signal regions named more than once: {duplicates}", file=source
        )
    existing_samples = {s["name"] for c in spec["channels"] for s in c["samples"]}
    name, n = sample, 1
    while name in existing_samples:
        n += 1
        name = f"{sample}_{n}"
    for c in spec["channels"]:
        for s in c["samples"]:
            for m in s["modifiers"]:
                if m["name"] == poi and m["type"] != "normfactor":
                    raise InvalidModelError(
                        f"the signal strength {poi!r} is already a {m['type']} "
                        f"modifier of sample {s['name']!r} in channel {c['name']!r}; "
                        "choose another poi_name",
                        file=source,
                    )
    out = copy.deepcopy(spec)
    nbins = []
    for channel in out["channels"]:
        if channel["name"] not in channels:
            continue
        width = len(channel["samples"][0]["data"])
        channel["samples"].append(
            {
                "name": name,
                "data": [0.0] * width,
                "modifiers": [{"name": poi, "type": "normfactor", "data": None}],
            }
        )
    nbins = [len(known[c]["samples"][0]["data"]) for c in channels]
    return out, SignalRegions(tuple(channels), tuple(nbins), name, poi)


def signal_yields(
    workspace: Any,
    patchset: Any,
    channels: Sequence[str],
    points: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray]:
    """The nominal signal yields each patchset point puts in the signal regions.

    A point's signal is every sample its patch adds to a channel (samples the
    background-only workspace does not have there); its yields in the named
    channels, bin by bin and in the order of ``channels``, are what a signal-region
    model of the same workspace takes as ``signal``. The patch's own systematic
    modifiers on the signal are not part of a signal-region model and are ignored.

    Args:
        workspace: the background-only workspace (path, document or Workspace).
        patchset: its patchset (path, document or PatchSet).
        channels: the signal-region channel names.
        points: point names (default: every point, in the patchset's order).

    Returns:
        ``(names, yields)``: the point names and their yields, ``(npoints, nbins)``.

    Raises:
        UnknownSignalRegionError: a channel is not in the workspace.
    """
    from difflike.workspace._patch import apply_patch, read_patchset
    from difflike.workspace._workspace import read_workspace

    ws = read_workspace(workspace)
    ps = read_patchset(patchset)
    add_signal_sample(ws.spec, channels, poi="mu", source=ws.source)  # checks names
    background = {
        c["name"]: {s["name"] for s in c["samples"]} for c in ws.spec["channels"]
    }
    names = list(points) if points is not None else ps.names
    rows = []
    for name in names:
        spec = apply_patch(ws.spec, ps[name].operations, file=ps.source)
        by_name = {c["name"]: c for c in spec["channels"]}
        row = []
        for channel in channels:
            c = by_name[channel]
            width = len(c["samples"][0]["data"])
            total = np.zeros(width)
            for s in c["samples"]:
                if s["name"] not in background[channel]:
                    total += np.asarray(s["data"], float)
            row.append(total)
        rows.append(np.concatenate(row))
    return names, np.array(rows)
