"""The parameter layout: names, order, slices, inits, bounds, constraints.

The order reproduces pyhf 0.7 exactly: parameters are grouped by the modifier type
that first declares them (histosys, lumi, normfactor, normsys, shapefactor,
shapesys, staterror) and, within a type, ordered by first appearance when walking
channels, samples and modifiers in sorted order — staterror parameters in sorted
name order. Requirements of modifiers sharing a name are merged as pyhf merges
them, and the measurement's parameter configurations override them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from difflike.errors import InvalidModelError

__all__ = ["ParamSet", "build_paramsets"]

_KEYS = (
    "constraint",
    "n",
    "is_scalar",
    "inits",
    "bounds",
    "auxdata",
    "factors",
    "sigmas",
    "fixed",
)
_UNDEFINED = "undefined"


@dataclass(frozen=True)
class ParamSet:
    """One named parameter (scalar or one component per bin).

    Attributes:
        name: the modifier name the parameter belongs to.
        types: the modifier types using it.
        start: index of its first component in the parameter vector.
        n: its number of components.
        is_scalar: whether it is a single number (named without ``[i]``).
        constraint: ``None``, ``"normal"`` or ``"poisson"``.
        inits, bounds, fixed: suggested values per component.
        auxdata: auxiliary data per component (constrained parameters).
        sigmas: Gaussian widths per component (``"normal"``).
        factors: Poisson rate factors per component (``"poisson"``).
    """

    name: str
    types: tuple[str, ...]
    start: int
    n: int
    is_scalar: bool
    constraint: str | None
    inits: tuple[float, ...]
    bounds: tuple[tuple[float, float], ...]
    fixed: tuple[bool, ...]
    auxdata: tuple[float, ...] = ()
    sigmas: tuple[float, ...] = ()
    factors: tuple[float, ...] = ()

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.n)

    @property
    def names(self) -> list[str]:
        if self.is_scalar:
            return [self.name]
        return [f"{self.name}[{i}]" for i in range(self.n)]


def _merge(
    name: str, requirements: Sequence[tuple[str, dict]], user: Mapping, where: str
) -> dict:
    """Merge the requirements of one parameter and apply the user's configuration."""
    merged: dict = {}
    for key in _KEYS:
        values = {req.get(key, _UNDEFINED) for _, req in requirements}
        if len(values) != 1:
            types = sorted({t for t, _ in requirements})
            raise InvalidModelError(
                f"parameter {name!r} is declared by modifiers ({', '.join(types)}) "
                f"that disagree on its {key!r}; use distinct modifier names",
                file=where,
                got=sorted(map(repr, values)),
            )
        default = values.pop()
        value = user.get(key, default)
        if isinstance(value, str) and value == _UNDEFINED:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif (
            isinstance(value, list)
            and default not in (None, _UNDEFINED)
            and len(value) != len(default)
        ):
            raise InvalidModelError(
                f"the measurement configures {len(value)} {key} for parameter "
                f"{name!r}, which has {len(default)} components",
                file=where,
                got=len(value),
                expected=len(default),
            )
        elif value and isinstance(default, str) and default == _UNDEFINED:
            raise InvalidModelError(
                f"the measurement configures {key!r} for parameter {name!r}, whose "
                f"modifier type ({requirements[0][0]}) has no such setting",
                file=where,
            )
        merged[key] = value
    return merged


def build_paramsets(
    required: Mapping[str, Sequence[tuple[str, dict]]],
    user_parameters: Sequence[Mapping],
    *,
    where: str | None = None,
) -> list[ParamSet]:
    """Build the model's parameters from modifier requirements and measurement config.

    Args:
        required: parameter name -> ``[(modifier type, requirement), ...]``, in
            pyhf's order (see the module docstring).
        user_parameters: the measurement's ``config.parameters`` list.
        where: the workspace, for messages.

    Returns:
        The parameter sets, in order, with their positions in the parameter vector.

    Raises:
        InvalidModelError: two configurations for one parameter, incompatible
            modifiers sharing a name, wrong number of configured values, or a
            ``lumi`` without its measurement configuration.
    """
    user: dict[str, Mapping] = {}
    for config in user_parameters:
        if config["name"] in user:
            raise InvalidModelError(
                f"the measurement configures parameter {config['name']!r} twice",
                file=where,
            )
        user[config["name"]] = config
    if not required:
        raise InvalidModelError("the model has no parameters", file=where)
    paramsets = []
    start = 0
    for name, requirements in required.items():
        merged = _merge(name, requirements, user.get(name, {}), where or "")
        types = tuple(dict.fromkeys(t for t, _ in requirements))
        for key in ("inits", "bounds", "auxdata", "sigmas"):
            if key in merged and merged[key] is None:
                raise InvalidModelError(
                    f"parameter {name!r} ({', '.join(types)}) needs {key!r} from the "
                    "measurement's parameter configuration, which does not give it",
                    file=where,
                    expected=f'{{"name": "{name}", "{key}": [...]}} in '
                    "measurements[].config.parameters",
                )
        n = merged["n"]
        for key in ("inits", "bounds"):
            if len(merged[key]) != n:
                raise InvalidModelError(
                    f"parameter {name!r} has {len(merged[key])} {key} for {n} components",
                    file=where,
                    got=len(merged[key]),
                    expected=n,
                )
        fixed = merged["fixed"]
        fixed = (
            (bool(fixed),) * n if isinstance(fixed, bool) else tuple(map(bool, fixed))
        )
        constraint = merged["constraint"]
        sigmas: tuple[float, ...] = ()
        factors: tuple[float, ...] = ()
        auxdata: tuple[float, ...] = ()
        if constraint is not None:
            auxdata = tuple(float(a) for a in merged["auxdata"])
        if constraint == "normal":
            sigmas = tuple(float(s) for s in (merged.get("sigmas") or [1.0] * n))
        if constraint == "poisson":
            factors = tuple(float(f) for f in merged["factors"])
        paramsets.append(
            ParamSet(
                name=name,
                types=types,
                start=start,
                n=n,
                is_scalar=bool(merged["is_scalar"]),
                constraint=constraint,
                inits=tuple(float(v) for v in merged["inits"]),
                bounds=tuple((float(lo), float(hi)) for lo, hi in merged["bounds"]),
                fixed=fixed,
                auxdata=auxdata,
                sigmas=sigmas,
                factors=factors,
            )
        )
        start += n
    return paramsets
