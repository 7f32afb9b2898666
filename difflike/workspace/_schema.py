"""Validation against the HistFactory JSON schemas that pyhf ships.

The schemas are pyhf's own files (version 1.0.0), read from the installed pyhf
package, so difflike accepts exactly what pyhf accepts. Documents are checked with a
compiled validator (fastjsonschema: a published 4 MB workspace takes 0.2 s instead of
tens of seconds); only when that fails does :mod:`jsonschema` run to explain the
failure. Errors are :class:`~difflike.errors.SchemaValidationError` with the JSON
path of the offending element, and a bad modifier gets a message of its own (the
schema's ``anyOf`` over modifier types otherwise reports every alternative at once).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any
from urllib.parse import urljoin

import fastjsonschema
import jsonschema
import referencing
import referencing.jsonschema

from difflike.errors import SchemaValidationError, UnknownModifierError

__all__ = ["MODIFIER_TYPES", "SCHEMA_VERSION", "json_path", "validate"]

SCHEMA_VERSION = "1.0.0"

#: The HistFactory modifier types, in pyhf's order.
MODIFIER_TYPES = (
    "histosys",
    "lumi",
    "normfactor",
    "normsys",
    "shapefactor",
    "shapesys",
    "staterror",
)


@functools.cache
def _registry_and_schemas() -> tuple[referencing.Registry, dict[str, dict]]:
    root = resources.files("pyhf") / "schemas" / SCHEMA_VERSION
    schemas: dict[str, dict] = {}
    registry: referencing.Registry = referencing.Registry()
    for entry in root.iterdir():
        if not entry.name.endswith(".json"):
            continue
        contents = json.loads(entry.read_text())
        schemas[entry.name] = contents
        resource = referencing.Resource.from_contents(
            contents, default_specification=referencing.jsonschema.DRAFT6
        )
        registry = registry.with_resource(contents["$id"], resource)
    return registry.crawl(), schemas


@functools.cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    registry, schemas = _registry_and_schemas()
    if schema_name == "channel":
        target = schemas["defs.json"]["$id"] + "#/definitions/channel"
        return jsonschema.Draft6Validator({"$ref": target}, registry=registry)
    schema = schemas[schema_name]
    # In draft 6 a "$ref" hides its sibling "$id", so resolve it against the id here.
    target = (
        urljoin(schema["$id"], schema["$ref"]) if "$ref" in schema else schema["$id"]
    )
    return jsonschema.Draft6Validator({"$ref": target}, registry=registry)


@functools.cache
def _modifier_validator(mtype: str) -> jsonschema.protocols.Validator:
    registry, schemas = _registry_and_schemas()
    defs_id = schemas["defs.json"]["$id"]
    schema = {"$ref": f"{defs_id}#/definitions/modifier/{mtype}"}
    return jsonschema.Draft6Validator(schema, registry=registry)


def json_path(parts: Any) -> str:
    """Render a sequence of keys/indices as a JSON pointer (``/channels/0/name``)."""
    parts = list(parts)
    return "/" + "/".join(str(p) for p in parts) if parts else "/"


def _modifier_types(
    spec: Any, file: str | None, prefix: str, *, channel_only: bool = False
) -> None:
    """Every modifier's ``type`` is a HistFactory modifier type (cheap pre-pass).

    With ``channel_only``, ``spec`` wraps one channel (``{"channels": [channel]}``)
    whose own JSON path is ``prefix``."""
    for ci, si, mi, channel, sample, modifier in _modifiers(spec):
        mtype = modifier.get("type")
        if mtype not in MODIFIER_TYPES:
            where = prefix if channel_only else f"{prefix}/channels/{ci}"
            raise UnknownModifierError(
                f"{_where(channel, sample, modifier)} has an unknown modifier type",
                file=file,
                path=f"{where}/samples/{si}/modifiers/{mi}/type",
                got=mtype,
                expected=f"one of {', '.join(MODIFIER_TYPES)}",
            )


def _modifiers(spec: Any):
    channels = spec.get("channels") if isinstance(spec, dict) else None
    for ci, channel in enumerate(channels if isinstance(channels, list) else []):
        if not isinstance(channel, dict):
            continue
        samples = channel.get("samples")
        for si, sample in enumerate(samples if isinstance(samples, list) else []):
            if not isinstance(sample, dict):
                continue
            modifiers = sample.get("modifiers")
            for mi, modifier in enumerate(
                modifiers if isinstance(modifiers, list) else []
            ):
                if isinstance(modifier, dict):
                    yield ci, si, mi, channel, sample, modifier


def _where(channel: dict, sample: dict, modifier: dict) -> str:
    return (
        f"channel {channel.get('name')!r}, sample {sample.get('name')!r}, "
        f"modifier {modifier.get('name')!r}"
    )


@functools.cache
def _fast_validator(schema_name: str):
    _, schemas = _registry_and_schemas()
    by_id = {s["$id"]: s for s in schemas.values()}
    if schema_name == "channel":  # one channel of a workspace
        defs_id = schemas["defs.json"]["$id"]
        schema = {
            "$id": urljoin(defs_id, "channel.json"),
            "$ref": "defs.json#/definitions/channel",
        }
    else:
        schema = schemas[schema_name]
    return fastjsonschema.compile(
        {"$id": schema["$id"], "$ref": schema.get("$ref", schema["$id"])},
        handlers={"https": by_id.__getitem__},
    )


def _explain(spec: Any, schema_name: str, file: str | None, prefix: str, parts) -> None:
    """Raise a precise SchemaValidationError for a document known to be invalid."""
    parts = list(parts)
    if "modifiers" in parts and parts[0] in ("channels", "samples"):
        at = parts.index("modifiers")
        if parts[0] == "channels":  # a workspace
            channel, si = spec["channels"][int(parts[1])], int(parts[3])
        else:  # one channel
            channel, si = spec, int(parts[1])
        sample = channel["samples"][si]
        modifier = (
            sample["modifiers"][int(parts[at + 1])] if len(parts) > at + 1 else None
        )
        if isinstance(modifier, dict) and modifier.get("type") in MODIFIER_TYPES:
            error = jsonschema.exceptions.best_match(
                _modifier_validator(modifier["type"]).iter_errors(modifier)
            )
            if error is not None:
                raise SchemaValidationError(
                    f"{_where(channel, sample, modifier)} ({modifier['type']}) is "
                    f"invalid: {error.message}",
                    file=file,
                    path=prefix
                    + json_path(parts[: at + 2] + list(error.absolute_path)),
                )
    error = jsonschema.exceptions.best_match(_validator(schema_name).iter_errors(spec))
    path = prefix + json_path(error.absolute_path if error else parts)
    message = error.message if error else "invalid"
    raise SchemaValidationError(
        f"does not follow the HistFactory {schema_name} schema "
        f"(version {SCHEMA_VERSION}): {message}",
        file=file,
        path=path if path != "/" else None,
    )


def validate(
    spec: Any, schema_name: str, *, file: str | None = None, prefix: str = ""
) -> None:
    """Validate ``spec`` against one of pyhf's HistFactory schemas.

    Args:
        spec: the decoded JSON document.
        schema_name: ``"workspace.json"``, ``"patchset.json"``, ``"model.json"``,
            ``"measurement.json"``, ``"jsonpatch.json"``, or ``"channel"`` for one
            channel of a workspace.
        file: where the document came from, for messages.
        prefix: JSON path of ``spec`` inside its file, for messages.

    Raises:
        UnknownModifierError: a modifier has a type HistFactory does not know.
        SchemaValidationError: any other violation; the message gives the JSON path.
    """
    if schema_name in ("workspace.json", "model.json"):
        _modifier_types(spec, file, prefix)
    if schema_name == "channel":
        _modifier_types({"channels": [spec]}, file, prefix, channel_only=True)
    try:
        _fast_validator(schema_name)(spec)
    except fastjsonschema.JsonSchemaValueException as err:
        _explain(spec, schema_name, file, prefix, err.path[1:])
