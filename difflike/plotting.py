"""Plots a physicist expects: CLs scans with the Brazil band, exclusion contours.

Needs matplotlib (``pip install 'difflike[plot]'``). Functions draw on a given
:class:`matplotlib.axes.Axes` (a new figure's when ``ax`` is None) and return it;
they take arrays as :func:`difflike.hypotest` returns them, so the plotting never
fits anything itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from difflike.errors import InputError

__all__ = ["cls_scan", "exclusion_contour", "parse_masses"]

#: two numbers separated by an underscore, as in ``C1N2_Wh_hbb_300_50``
DEFAULT_MASS_PATTERN = r"(\d+(?:p\d+)?)_(\d+(?:p\d+)?)"

_GREEN, _YELLOW = "#00cc00", "#ffdd00"


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(6, 4.5)).add_subplot()


def cls_scan(
    mu: Sequence[float],
    cls_obs: Sequence[float],
    cls_exp: Sequence[Sequence[float]],
    *,
    cl: float = 0.95,
    mu_up: float | None = None,
    ax=None,
    label: str | None = None,
):
    """CLs against the signal strength with the expected Brazil band.

    Args:
        mu: tested values, ``(n,)``.
        cls_obs: observed CLs, ``(n,)``.
        cls_exp: expected CLs at ``n = 2, 1, 0, -1, -2`` sigma, ``(n, 5)`` (the order
            :func:`difflike.hypotest` returns).
        cl: confidence level; a line is drawn at ``1 - cl``.
        mu_up: an observed upper limit to mark, if given.
        ax: axes to draw on.
        label: legend title (an analysis or point name, say).

    Returns:
        The axes.
    """
    mu = np.asarray(mu, float)
    obs = np.asarray(cls_obs, float)
    exp = np.asarray(cls_exp, float)
    if mu.ndim != 1 or obs.shape != mu.shape or exp.shape != (*mu.shape, 5):
        raise InputError(
            "cls_scan wants mu (n,), cls_obs (n,) and cls_exp (n, 5)",
            got=f"{mu.shape}, {obs.shape}, {exp.shape}",
        )
    ax = _axes(ax)
    ax.fill_between(
        mu, exp[:, 0], exp[:, 4], color=_YELLOW, lw=0, label=r"expected $\pm 2\sigma$"
    )
    ax.fill_between(
        mu, exp[:, 1], exp[:, 3], color=_GREEN, lw=0, label=r"expected $\pm 1\sigma$"
    )
    ax.plot(mu, exp[:, 2], "k--", label="expected")
    ax.plot(mu, obs, "k-", marker=".", label="observed")
    ax.axhline(1.0 - cl, color="red", lw=1, label=f"{1 - cl:.2g}")
    if mu_up is not None:
        ax.axvline(float(mu_up), color="red", ls=":", lw=1)
    ax.set_xlabel(r"$\mu$")
    ax.set_ylabel(r"$\mathrm{CL}_s$")
    ax.set_xlim(mu.min(), mu.max())
    ax.set_ylim(0.0, 1.05)
    ax.legend(title=label, frameon=False)
    return ax


def parse_masses(
    names: Sequence[str], pattern: str = DEFAULT_MASS_PATTERN
) -> np.ndarray:
    """Two masses per patchset point name, ``(len(names), 2)``.

    ``pattern`` is a regular expression with two groups; its last match in a name
    is used. A ``p`` inside a number is a decimal point (``"150p5"`` is 150.5).

    Raises:
        InputError: a name the pattern does not match, named.
    """
    regex = re.compile(pattern)
    out = np.empty((len(names), 2))
    for i, name in enumerate(names):
        matches = list(regex.finditer(name))
        found = matches[-1] if matches else None
        if found is None or len(found.groups()) < 2:
            raise InputError(
                "cannot read two masses from a point name",
                got=name,
                expected=f"a match of {pattern!r} with two groups",
            )
        out[i] = [float(g.replace("p", ".")) for g in found.groups()[:2]]
    return out


def exclusion_contour(
    names: Sequence[str],
    cls_obs: Sequence[float],
    cls_exp: Sequence[Sequence[float]],
    *,
    pattern: str = DEFAULT_MASS_PATTERN,
    level: float = 0.05,
    xlabel: str = r"$m_1$ [GeV]",
    ylabel: str = r"$m_2$ [GeV]",
    ax=None,
    label: str | None = None,
):
    """The excluded region of a patchset's mass plane (CLs < ``level``).

    The points' masses are read from their names (:func:`parse_masses`); the
    contours are drawn on a triangulation of the points in ``log CLs``. Observed:
    solid red; expected: dashed black, its :math:`\\pm 1\\sigma` contours dotted.
    The points themselves are marked, filled where the observed CLs excludes them.

    Args:
        names: point names, ``(n,)`` (``model.config.points`` of a grid).
        cls_obs, cls_exp: ``(n,)`` and ``(n, 5)`` as from :func:`difflike.hypotest`.

    Returns:
        The axes.
    """
    import matplotlib.tri as mtri

    masses = parse_masses(names, pattern)
    obs = np.log(np.clip(np.asarray(cls_obs, float), 1e-300, None))
    exp = np.log(np.clip(np.asarray(cls_exp, float), 1e-300, None))
    if obs.shape != (len(masses),) or exp.shape != (len(masses), 5):
        raise InputError(
            "exclusion_contour wants one CLs (and five expected) per point",
            got=f"{obs.shape}, {exp.shape} for {len(masses)} points",
        )
    ax = _axes(ax)
    tri = mtri.Triangulation(masses[:, 0], masses[:, 1])
    at = [np.log(level)]
    for k in (1, 3):
        ax.tricontour(tri, exp[:, k], levels=at, colors="k", linestyles=":")
    ax.tricontour(tri, exp[:, 2], levels=at, colors="k", linestyles="--")
    ax.tricontour(tri, obs, levels=at, colors="red")
    excluded = obs < at[0]
    ax.scatter(*masses[excluded].T, s=12, c="red", label="excluded (observed)")
    ax.scatter(*masses[~excluded].T, s=12, facecolors="none", edgecolors="grey")
    ax.plot([], [], "k--", label="expected")
    ax.plot([], [], "red", label="observed")
    ax.plot([], [], "k:", label=r"expected $\pm 1\sigma$")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(title=label, frameon=False, loc="upper left")
    return ax
