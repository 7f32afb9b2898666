"""What every modifier type shares: one application of a modifier, and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from difflike.errors import InvalidModelError

__all__ = ["Application", "check_length"]


@dataclass(frozen=True)
class Application:
    """One modifier on one sample of one channel.

    Attributes:
        name: the modifier's (and so its parameter's) name.
        type: the modifier type (``"normsys"``, ...).
        channel: the channel's name.
        sample: the sample's name.
        data: the modifier's ``data`` entry from the spec.
        nominal: the sample's nominal yields in this channel.
        channel_offset: index of the channel's first bin in the model's main bins.
        where: a readable location for messages.
    """

    name: str
    type: str
    channel: str
    sample: str
    data: Any
    nominal: tuple[float, ...]
    channel_offset: int
    source: str | None = None

    @property
    def nbins(self) -> int:
        return len(self.nominal)

    @property
    def where(self) -> str:
        return (
            f"{self.type} modifier {self.name!r} of sample {self.sample!r} "
            f"in channel {self.channel!r}"
        )

    def fail(self, reason: str, **kwargs: Any) -> InvalidModelError:
        return InvalidModelError(f"{self.where}: {reason}", file=self.source, **kwargs)


def check_length(app: Application, values: Any, what: str) -> None:
    """Raise if a per-bin array of ``app`` does not have one entry per bin."""
    if len(values) != app.nbins:
        raise app.fail(
            f"{what} has the wrong number of bins", got=len(values), expected=app.nbins
        )
