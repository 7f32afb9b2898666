"""``staterror``: per-bin MC statistical uncertainty (Barlow–Beeston lite), Gaussian.

One parameter per bin of the bins where the modifier appears; all samples carrying
it share it. Its width is the relative uncertainty of the summed samples,
``sqrt(sum_s sigma_sb**2) / sum_s nominal_sb``. Bins with zero width get a fixed
parameter and a width of 1, as in pyhf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from difflike.histfactory.modifiers._base import Application, check_length

TYPE = "staterror"
SHARED = True


def check(app: Application) -> None:
    """The uncertainties have one entry per bin."""
    check_length(app, app.data, "its data (absolute uncertainties)")


def global_bins(app: Application) -> list[int]:
    """The model's main-bin indices this application covers."""
    return [app.channel_offset + j for j in range(app.nbins)]


def requirement_for(apps: Sequence[Application]) -> tuple[dict, list[int]]:
    """The parameter of one staterror name, from all of its applications.

    Returns:
        The requirement and the model bins the parameter's components cover, in order.
    """
    masks: dict[str, set[int]] = {}
    for app in apps:
        masks.setdefault(app.sample, set()).update(global_bins(app))
    first_sample = next(iter(masks))
    covered = sorted(masks[first_sample])
    for sample, bins in masks.items():
        if bins != set(covered):
            app = next(a for a in apps if a.sample == sample)
            raise app.fail(
                "a staterror must cover the same bins on every sample that carries it; "
                f"sample {first_sample!r} has it on other channels"
            )
    nominal_sum = {b: 0.0 for b in covered}
    variance = {b: 0.0 for b in covered}
    for app in apps:
        for b, nom in zip(global_bins(app), app.nominal):
            nominal_sum[b] += nom
    for app in apps:
        for b, unc in zip(global_bins(app), app.data):
            if nominal_sum[b] > 0:
                variance[b] += (unc / nominal_sum[b]) ** 2
    sigmas = [math.sqrt(variance[b]) for b in covered]
    fixed = tuple(s == 0 for s in sigmas)
    sigmas = tuple(1.0 if f else s for s, f in zip(sigmas, fixed))
    n = len(covered)
    requirement = {
        "constraint": "normal",
        "n": n,
        "is_scalar": False,
        "inits": (1.0,) * n,
        "bounds": ((1e-10, 10.0),) * n,
        "fixed": fixed,
        "auxdata": (1.0,) * n,
        "sigmas": sigmas,
    }
    return requirement, covered
