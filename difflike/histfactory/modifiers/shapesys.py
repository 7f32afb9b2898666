"""``shapesys``: per-bin uncorrelated uncertainty with Poisson (Barlow–Beeston) constraints.

The constraint of bin ``j`` is ``Poisson(tau_j | gamma_j * tau_j)`` with
``tau_j = (nominal_j / sigma_j)**2``. Bins where the nominal or the uncertainty is
not positive get ``tau = 1`` and a fixed parameter, as in pyhf.
"""

from __future__ import annotations

from difflike.histfactory.modifiers._base import Application, check_length

TYPE = "shapesys"
SHARED = False


def check(app: Application) -> None:
    """The uncertainties have one entry per bin."""
    check_length(app, app.data, "its data (absolute uncertainties)")


def requirement(app: Application) -> dict:
    """One Poisson-constrained parameter per bin."""
    # (pyhf divides by unc**2 even where it underflows to 0; such bins are fixed here)
    valid = [nom > 0 and unc * unc > 0 for nom, unc in zip(app.nominal, app.data)]
    factors = tuple(
        (nom**2 / unc**2) if ok else 1.0
        for ok, nom, unc in zip(valid, app.nominal, app.data)
    )
    n = len(factors)
    return {
        "constraint": "poisson",
        "n": n,
        "is_scalar": False,
        "inits": (1.0,) * n,
        "bounds": ((1e-10, 10.0),) * n,
        "fixed": tuple(not ok for ok in valid),
        "auxdata": factors,
        "factors": factors,
    }


def bin_parameters(app: Application) -> list[int]:
    """Bin ``j`` is scaled by the parameter's component ``j``."""
    return list(range(app.nbins))
