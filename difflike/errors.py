"""The exceptions difflike raises.

Every error a user's input can cause is a subclass of :class:`ValueError` (through
:class:`InputError`), and its message names the place at fault — the file, the JSON
path, the channel, sample, modifier or parameter — and says what was found against
what was expected. The same facts are kept as attributes so that programs can act
on them.

Inside ``jit``-compiled code nothing is raised; fits and other iterative routines
return status codes instead (see :mod:`difflike.fit`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "DifflikeError",
    "InputError",
    "InvalidDataError",
    "InvalidJSONError",
    "InvalidModelError",
    "InvalidPatchSetError",
    "PatchError",
    "PatchSetVerificationError",
    "SchemaValidationError",
    "ShapeError",
    "UnknownChannelError",
    "UnknownMeasurementError",
    "UnknownModifierError",
    "UnknownParameterError",
    "UnknownPointError",
    "UnknownSignalRegionError",
]


def __dir__() -> list[str]:
    return __all__


class DifflikeError(Exception):
    """Base class of every exception difflike raises on purpose."""


class InputError(DifflikeError, ValueError):
    """An input (file, spec, array) is at fault.

    Args:
        message: what is wrong, in words.
        file: the file the input came from, when it came from one.
        path: the JSON path inside that file (``/channels/0/samples/1``), if known.
        got: what was found (used in the message as ``got ...``).
        expected: what was expected (used in the message as ``expected ...``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        path: str | None = None,
        got: object = None,
        expected: object = None,
    ) -> None:
        self.reason = message
        self.file = file
        self.path = path
        self.got = got
        self.expected = expected
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}")
        if self.path:
            where.append(f"at {self.path}")
        text = (": ".join([" ".join(where), self.reason])) if where else self.reason
        if self.expected is not None or self.got is not None:
            parts = []
            if self.expected is not None:
                parts.append(f"expected {_short(self.expected)}")
            if self.got is not None:
                parts.append(f"got {_short(self.got)}")
            text += f" ({', '.join(parts)})"
        return text


def _short(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InvalidJSONError(InputError):
    """A file is not valid JSON (or not valid gzip-compressed JSON)."""


class SchemaValidationError(InputError):
    """A workspace, patchset, patch or measurement violates the HistFactory schema."""


class UnknownModifierError(InputError):
    """A modifier's ``type`` is not one of the HistFactory modifier types."""


class InvalidModelError(InputError):
    """The spec is schema-valid but cannot be built into a model.

    Examples: a modifier whose data length differs from its sample's, two modifiers of
    incompatible types sharing a name, a ``lumi`` modifier without a measurement
    configuration for its parameter.
    """


class PatchError(InputError):
    """A JSON patch cannot be applied to the workspace."""


class InvalidPatchSetError(InputError):
    """A patchset is malformed (duplicate names, wrong number of values, ...)."""


class PatchSetVerificationError(InputError):
    """A patchset was made for another background-only workspace (digest mismatch)."""


class UnknownPointError(InputError, KeyError):
    """A patchset has no point of the requested name; the message suggests close names."""

    def __init__(
        self, message: str, *, suggestions: Sequence[str] = (), **kwargs: object
    ) -> None:
        self.suggestions = list(suggestions)
        if self.suggestions:
            message += f"; did you mean {_or_list(self.suggestions)}?"
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class UnknownMeasurementError(InputError, KeyError):
    """The requested measurement is not in the workspace."""

    def __str__(self) -> str:
        return self.args[0]


class UnknownChannelError(InputError, KeyError):
    """A channel named by the user is not in the workspace."""

    def __str__(self) -> str:
        return self.args[0]


class UnknownSignalRegionError(UnknownChannelError):
    """A declared signal region is not a channel of the workspace."""


class UnknownParameterError(InputError, KeyError):
    """A parameter named by the user is not in the model."""

    def __str__(self) -> str:
        return self.args[0]


class ShapeError(InputError):
    """An array has the wrong length or shape (data, parameters, signal yields)."""


class InvalidDataError(InputError):
    """Observed counts are negative or not finite."""


def _or_list(names: Iterable[str]) -> str:
    names = [repr(n) for n in names]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]
