"""Reading JSON documents (plain or gzip-compressed) into plain Python data."""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from difflike.errors import InvalidJSONError

__all__ = ["PathLike", "read_json", "source_of"]

PathLike = str | os.PathLike

_GZIP_MAGIC = b"\x1f\x8b"


def read_json(path: PathLike) -> Any:
    """Read a JSON file, gzip-compressed or not (decided by content, not suffix).

    Args:
        path: a ``.json`` or ``.json.gz`` file.

    Returns:
        The decoded JSON document (dicts, lists, numbers, strings).

    Raises:
        FileNotFoundError: the file does not exist.
        InvalidJSONError: the file is not valid (gzip-compressed) JSON; the message
            gives the line and column.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise InvalidJSONError(
                f"not a valid gzip file ({err})", file=str(path)
            ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidJSONError(f"not UTF-8 text ({err})", file=str(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidJSONError(
            f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}",
            file=str(path),
        ) from None


def source_of(obj: Any, default: str) -> tuple[Any, str]:
    """Load ``obj`` if it is a path; return ``(document, source name)``.

    Dicts (and pyhf objects, which are dicts) are deep-copied so that nothing the
    caller holds is ever modified.
    """
    if isinstance(obj, (str, os.PathLike)):
        return read_json(obj), str(obj)
    if isinstance(obj, Mapping):
        return copy.deepcopy(dict(obj)), default
    raise TypeError(
        f"expected a path or a JSON mapping for the {default}, got {type(obj).__name__}"
    )
