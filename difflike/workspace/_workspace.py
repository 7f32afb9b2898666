"""The validated workspace: a background-only (or patched) HistFactory document."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from difflike.errors import (
    InputError,
    InvalidDataError,
    InvalidModelError,
    UnknownMeasurementError,
)
from difflike.workspace._io import PathLike, source_of
from difflike.workspace._patch import (
    PatchSet,
    apply_patch,
    digest,
    read_patchset,
    touched_channels,
)
from difflike.workspace._prune import prune_spec
from difflike.workspace._regions import SignalRegions, add_signal_sample
from difflike.workspace._schema import validate

__all__ = ["ModelSpec", "Workspace", "read_workspace"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to compile a model: plain, validated data (no arrays).

    Attributes:
        channels: the HistFactory channels (``name``, ``samples``).
        parameters: the measurement's parameter configurations.
        observations: observed counts by channel name.
        poi: the parameter of interest's name, or ``None``.
        measurement: the measurement's name.
        source: a description of where the spec came from (file, patch, point).
        digest: SHA-256 of the workspace document the spec was built from (before any
            patch), as pyhf computes it.
        signal_regions: for a signal-region model, where the signal yields go.
        point: the patchset point applied, if any.
    """

    channels: list[dict]
    parameters: list[dict]
    observations: dict[str, list[float]]
    poi: str | None
    measurement: str
    source: str
    digest: str
    signal_regions: SignalRegions | None = None
    point: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Workspace:
    """A HistFactory workspace: channels, observations and measurements, validated.

    Construct with :func:`read_workspace`. A workspace is never modified: patching and
    pruning return new workspaces.

    Attributes:
        spec: the workspace document (treat as read-only).
        source: the file it was read from (or a description).
    """

    def __init__(
        self, spec: dict, *, source: str = "<workspace>", validated: bool = False
    ) -> None:
        if not validated:
            validate(spec, "workspace.json", file=source)
            _check_observations(spec, source)
        self.spec = spec
        self.source = source
        self._digests: dict[str, str] = {}

    # -- reading ------------------------------------------------------------------
    @property
    def channels(self) -> list[str]:
        """Channel names, sorted (pyhf's order of the data)."""
        return sorted(c["name"] for c in self.spec["channels"])

    @property
    def measurements(self) -> list[str]:
        """Measurement names, in the file's order."""
        return [m["name"] for m in self.spec.get("measurements", [])]

    @property
    def observations(self) -> dict[str, list[float]]:
        """Observed counts by channel name."""
        return {o["name"]: list(o["data"]) for o in self.spec["observations"]}

    def digest(self, algorithm: str = "sha256") -> str:
        """The digest pyhf computes for this workspace (``pyhf.utils.digest``)."""
        if algorithm not in self._digests:
            self._digests[algorithm] = digest(self.spec, algorithm)
        return self._digests[algorithm]

    def measurement(self, name: str | None = None) -> dict:
        """The named measurement, or the first one.

        Raises:
            UnknownMeasurementError: no measurement of that name (close names are
                suggested), or the workspace defines none.
        """
        measurements = self.spec.get("measurements", [])
        if not measurements:
            raise UnknownMeasurementError(
                "the workspace defines no measurement", file=self.source
            )
        if name is None:
            return measurements[0]
        for m in measurements:
            if m["name"] == name:
                return m
        close = difflib.get_close_matches(name, self.measurements, n=3)
        raise UnknownMeasurementError(
            f"no measurement named {name!r}"
            + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""),
            file=self.source,
            expected=f"one of {self.measurements}",
        )

    # -- new workspaces -------------------------------------------------------------
    def patched(
        self, operations: Sequence[dict], *, source: str = "<patch>"
    ) -> Workspace:
        """A new workspace with JSON-patch ``operations`` applied and validated."""
        spec = apply_patch(self.spec, operations, file=source)
        where = f"{self.source} patched with {source}"
        channels = touched_channels(operations)
        if channels is None or len(spec["channels"]) != len(self.spec["channels"]):
            validate(spec, "workspace.json", file=where)
        else:  # the rest of the document is the (validated) original
            for index in sorted(channels):
                _validate_patched_channel(
                    spec["channels"][index],
                    self.spec["channels"][index],
                    file=where,
                    prefix=f"/channels/{index}",
                )
        _check_observations(spec, where)
        return Workspace(spec, source=where, validated=True)

    def with_point(
        self, patchset: PathLike | dict | PatchSet, point: str, *, verify: bool = True
    ) -> Workspace:
        """A new workspace with one point of a patchset applied.

        Raises:
            UnknownPointError: the patchset has no such point (close names suggested).
            PatchSetVerificationError: with ``verify``, the patchset was made for a
                different workspace.
        """
        patchset = read_patchset(patchset)
        patch = patchset[point]
        if verify:
            patchset.verify(self, workspace_source=self.source)
        return self.patched(
            patch.operations, source=f"{patchset.source} point {patch.name!r}"
        )

    def prune(
        self,
        *,
        channels: Iterable[str] = (),
        samples: Iterable[str] = (),
        modifiers: Iterable[str] = (),
        modifier_types: Iterable[str] = (),
        measurements: Iterable[str] = (),
    ) -> Workspace:
        """A new workspace without the named channels, samples, modifiers, ...

        See :func:`difflike.workspace.prune_spec` for the arguments.
        """
        spec = prune_spec(
            self.spec,
            channels=channels,
            samples=samples,
            modifiers=modifiers,
            modifier_types=modifier_types,
            measurements=measurements,
            source=self.source,
        )
        return Workspace(spec, source=f"{self.source} (pruned)")

    # -- towards a model --------------------------------------------------------------
    def model_spec(
        self,
        *,
        measurement: str | None = None,
        signal_regions: Sequence[str] | None = None,
        poi_name: str | None = None,
        signal_sample: str = "signal",
        point: str | None = None,
        digest: str | None = None,
    ) -> ModelSpec:
        """The plain data from which :func:`difflike.histfactory.compile_model` builds.

        Args:
            measurement: the measurement to use (default: the first).
            signal_regions: channel names that receive a signal sample whose yields
                are an input of the model (a signal-region model).
            poi_name: the parameter of interest. Default: the measurement's POI. For a
                signal-region model the POI is the signal's normfactor; it takes the
                measurement's POI name unless that is already a modifier of the
                background, in which case ``"mu_signal"``.
            signal_sample: the name of the added signal sample.
            point: the patchset point this workspace carries, for the record.
            digest: the workspace digest to record (default: this workspace's own,
                a SHA-256 of the whole document; :func:`difflike.load_patchset`
                records the background-only workspace's and skips computing one
                per point).
        """
        meas = self.measurement(measurement)
        validate(meas, "measurement.json", file=self.source)
        channels = self.spec["channels"]
        regions = None
        poi = poi_name if poi_name is not None else meas["config"]["poi"]
        if signal_regions is not None:
            if poi_name is None:
                taken = {
                    m["name"]
                    for c in channels
                    for s in c["samples"]
                    for m in s["modifiers"]
                }
                if poi in taken:
                    poi = "mu_signal"
            spec, regions = add_signal_sample(
                self.spec,
                signal_regions,
                poi=poi,
                sample=signal_sample,
                source=self.source,
            )
            channels = spec["channels"]
        return ModelSpec(
            channels=channels,
            parameters=meas["config"]["parameters"],
            observations=self.observations,
            poi=poi,
            measurement=meas["name"],
            source=self.source,
            digest=self.digest() if digest is None else digest,
            signal_regions=regions,
            point=point,
        )

    def __repr__(self) -> str:
        return (
            f"Workspace({self.source!r}, {len(self.spec['channels'])} channels, "
            f"measurements={self.measurements})"
        )


def _check_observations(spec: dict, source: str) -> None:
    """Every channel has finite, non-negative observations of the right length."""
    observed = {}
    for index, obs in enumerate(spec["observations"]):
        observed[obs["name"]] = (index, obs["data"])
    for channel in spec["channels"]:
        name = channel["name"]
        width = len(channel["samples"][0]["data"]) if channel["samples"] else 0
        if name not in observed:
            raise InvalidModelError(
                f"channel {name!r} has no observations",
                file=source,
                path="/observations",
            )
        index, data = observed[name]
        path = f"/observations/{index}/data"
        if len(data) != width:
            raise InvalidDataError(
                f"observations of channel {name!r} have the wrong number of bins",
                file=source,
                path=path,
                got=len(data),
                expected=width,
            )
        for b, value in enumerate(data):
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InvalidDataError(
                    f"observed count in bin {b} of channel {name!r} is not finite",
                    file=source,
                    path=f"{path}/{b}",
                    got=value,
                )
            if value < 0:
                raise InvalidDataError(
                    f"observed count in bin {b} of channel {name!r} is negative",
                    file=source,
                    path=f"{path}/{b}",
                    got=value,
                    expected=">= 0",
                )


def read_workspace(workspace: PathLike | dict | Workspace) -> Workspace:
    """Read and validate a workspace.

    Args:
        workspace: a ``.json`` / ``.json.gz`` file, a decoded document, a
            ``pyhf.Workspace`` or a :class:`Workspace`.

    Raises:
        InvalidJSONError: the file is not valid JSON.
        SchemaValidationError, UnknownModifierError: the document violates the schema.
        InvalidDataError: observations are negative, not finite, or of the wrong length.
    """
    if isinstance(workspace, Workspace):
        return workspace
    spec, source = source_of(workspace, "<workspace>")
    return Workspace(spec, source=source)


def _validate_patched_channel(
    channel: Any, original: dict, *, file: str, prefix: str
) -> None:
    """Validate a channel a patch touched, given its validated original.

    Samples equal to one of the original's are valid already; only the others are
    checked (a patchset point typically adds one signal sample to a channel of
    dozens). Where that finds a problem, the whole channel is validated again so
    that the message gives the sample's real JSON path.
    """
    if not isinstance(channel, dict) or not isinstance(channel.get("samples"), list):
        validate(channel, "channel", file=file, prefix=prefix)
        return
    known = {s["name"]: s for s in original.get("samples", []) if isinstance(s, dict)}
    changed = [
        s
        for s in channel["samples"]
        if not (isinstance(s, dict) and known.get(s.get("name")) == s)
    ]
    if not changed and channel["samples"]:
        changed = channel["samples"][:1]  # the schema wants a non-empty list
    try:
        validate({**channel, "samples": changed}, "channel", file=file, prefix=prefix)
    except InputError:
        validate(channel, "channel", file=file, prefix=prefix)
        raise
