r"""Interpolation codes of HistFactory systematics, as pyhf 0.7 computes them.

Each function takes the nuisance parameter values ``alpha`` and per-application
constants, all broadcast together, and returns a multiplicative factor (``normsys``
codes) or an additive delta (``histosys`` codes). They are pure, elementwise and
safe to differentiate: where a branch holds a logarithm or a power, the unused branch
is fed harmless values (the double-``where`` idiom) so it cannot poison gradients.

References:
    K. Cranmer et al., *HistFactory: A tool for creating statistical models for use
    with RooFit and RooStats*, CERN-OPEN-2012-016, section on interpolation.
    pyhf 0.7, ``pyhf.interpolators``.
"""

from __future__ import annotations

import numpy as np
from jax import numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "HISTOSYS_CODES",
    "NORMSYS_CODES",
    "code0",
    "code1",
    "code2",
    "code4",
    "code4_coefficients",
    "code4p",
]

#: interpolation codes for multiplicative (normsys) modifiers
NORMSYS_CODES = ("code1", "code4")
#: interpolation codes for additive (histosys) modifiers
HISTOSYS_CODES = ("code0", "code2", "code4p")


def _safe_pow(
    base: Float[Array, "*n"], exponent: Float[Array, "*n"]
) -> Float[Array, "*n"]:
    """``base ** exponent`` for ``base >= 0``, ``exponent >= 0``, with finite gradients."""
    positive = base > 0
    safe_base = jnp.where(positive, base, 1.0)
    value = jnp.exp(exponent * jnp.log(safe_base))
    return jnp.where(positive, value, jnp.where(exponent > 0, 0.0, 1.0))


def code1(
    alpha: Float[ArrayLike, "*n"],
    hi: Float[ArrayLike, "*n"],
    lo: Float[ArrayLike, "*n"],
) -> Float[Array, "*n"]:
    r"""Piecewise exponential: :math:`hi^{\alpha}` for :math:`\alpha>0`, else :math:`lo^{-\alpha}`.

    Args:
        alpha: nuisance parameter values, float64 ``(*n)``.
        hi, lo: the up and down factors relative to nominal (``>= 0``), ``(*n)``.

    Returns:
        The multiplicative factor, ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    base = jnp.where(alpha > 0, hi, lo)
    return _safe_pow(base, jnp.abs(alpha))


# The inverse of the 6x6 system that fixes the polynomial's coefficients by value,
# first and second derivative at alpha = +-1 (pyhf's code4 with alpha0 = 1).
_CODE4_A_INVERSE = np.array(
    [
        [15 / 16, -15 / 16, -7 / 16, -7 / 16, 1 / 16, -1 / 16],
        [3 / 2, 3 / 2, -9 / 16, 9 / 16, 1 / 16, 1 / 16],
        [-5 / 8, 5 / 8, 5 / 8, 5 / 8, -1 / 8, 1 / 8],
        [3 / -2, 3 / -2, -7 / -8, 7 / -8, -1 / 8, -1 / 8],
        [3 / 16, -3 / 16, -3 / 16, -3 / 16, 1 / 16, -1 / 16],
        [1 / 2, 1 / 2, -5 / 16, 5 / 16, 1 / 16, 1 / 16],
    ]
)


def code4_coefficients(
    hi: Float[np.ndarray, "*n"], lo: Float[np.ndarray, "*n"]
) -> Float[np.ndarray, "6 *n"]:  # noqa: F821
    """Coefficients :math:`a_1..a_6` of code 4's polynomial, computed once (numpy).

    Args:
        hi, lo: the up and down factors, positive, ``(*n)``.

    Returns:
        ``(6, *n)`` float64: ``[i]`` multiplies :math:`\\alpha^{i+1}`, the layout
        :func:`code4` takes.
    """
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    log_hi, log_lo = np.log(hi), np.log(lo)
    b = np.stack(
        [hi - 1.0, lo - 1.0, log_hi * hi, -log_lo * lo, log_hi**2 * hi, log_lo**2 * lo]
    )
    return np.tensordot(_CODE4_A_INVERSE, b, axes=1)


def code4(
    alpha: Float[ArrayLike, "*n"],
    hi: Float[ArrayLike, "*n"],
    lo: Float[ArrayLike, "*n"],
    coefficients: Float[ArrayLike, "6 *n"],  # noqa: F821
) -> Float[Array, "*n"]:
    r"""Polynomial interpolation inside :math:`|\alpha|<1`, exponential outside.

    .. math::
        f(\alpha) = \begin{cases} hi^{\alpha} & \alpha \ge 1 \\
        1 + \sum_{i=1}^{6} a_i \alpha^i & |\alpha| < 1 \\
        lo^{-\alpha} & \alpha \le -1 \end{cases}

    Args:
        alpha: nuisance parameter values, ``(*n)``.
        hi, lo: positive up and down factors, ``(*n)``.
        coefficients: from :func:`code4_coefficients`, ``(6, *n)``.

    Returns:
        The multiplicative factor, ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    coefficients = jnp.asarray(coefficients)
    inside = jnp.clip(alpha, -1.0, 1.0)
    poly = coefficients[5]
    for i in (4, 3, 2, 1, 0):
        poly = poly * inside + coefficients[i]
    poly = 1.0 + poly * inside
    above, below = alpha >= 1.0, alpha <= -1.0
    # one exponential: alpha*ln(hi) above, -alpha*ln(lo) below, 0 (unused) inside
    exponent = jnp.where(
        above, alpha * jnp.log(hi), jnp.where(below, -alpha * jnp.log(lo), 0.0)
    )
    return jnp.where(above | below, jnp.exp(exponent), poly)


def code0(
    alpha: Float[ArrayLike, "*n"],
    up: Float[ArrayLike, "*n"],
    dn: Float[ArrayLike, "*n"],
) -> Float[Array, "*n"]:
    r"""Piecewise linear: :math:`\alpha\,\delta^+` for :math:`\alpha>0`, else :math:`\alpha\,\delta^-`.

    Args:
        alpha: nuisance parameter values, ``(*n)``.
        up: ``hi_data - nominal``, ``(*n)``.
        dn: ``nominal - lo_data``, ``(*n)``.

    Returns:
        The additive delta, ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    return alpha * jnp.where(alpha > 0, up, dn)


def code2(
    alpha: Float[ArrayLike, "*n"],
    up: Float[ArrayLike, "*n"],
    dn: Float[ArrayLike, "*n"],
) -> Float[Array, "*n"]:
    r"""Quadratic inside :math:`|\alpha|\le 1`, linear outside — pyhf 0.7's formula.

    With :math:`a = (\delta^+ - \delta^-)/2` and :math:`b = (\delta^+ + \delta^-)/2`:
    :math:`a\alpha^2 + b\alpha` for :math:`|\alpha| \le 1`, :math:`(b+2a)(\alpha-1)`
    for :math:`\alpha>1` and :math:`(b-2a)\,\alpha` for :math:`\alpha<-1`.

    Note:
        This reproduces pyhf 0.7.x exactly. Its extrapolation outside
        :math:`|\alpha|\le 1` is not continuous and differs from ROOT's
        ``PiecewiseInterpolation`` code 2; avoid code 2 where :math:`|\alpha|` may
        exceed 1, or compare with ROOT before relying on it there.

    Args:
        alpha: nuisance parameter values, ``(*n)``.
        up: ``hi_data - nominal``, ``(*n)``.
        dn: ``nominal - lo_data``, ``(*n)``.

    Returns:
        The additive delta, ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    a = 0.5 * (jnp.asarray(up) - dn)
    b = 0.5 * (jnp.asarray(up) + dn)
    inside = a * alpha * alpha + b * alpha
    above = (b + 2.0 * a) * (alpha - 1.0)
    below = (b - 2.0 * a) * alpha
    return jnp.where(alpha >= -1.0, jnp.where(alpha > 1.0, above, inside), below)


def code4p(
    alpha: Float[ArrayLike, "*n"],
    up: Float[ArrayLike, "*n"],
    dn: Float[ArrayLike, "*n"],
) -> Float[Array, "*n"]:
    r"""Sixth-order polynomial inside :math:`|\alpha|\le 1`, linear outside.

    .. math::
        \delta(\alpha) = \begin{cases} \alpha\,\delta^+ & \alpha > 1 \\
        \alpha S + \alpha^2 (15 + \alpha^2(3\alpha^2 - 10)) A & |\alpha| \le 1 \\
        \alpha\,\delta^- & \alpha < -1 \end{cases}

    with :math:`S = (\delta^+ + \delta^-)/2` and :math:`A = (\delta^+ - \delta^-)/16`.

    Args:
        alpha: nuisance parameter values, ``(*n)``.
        up: ``hi_data - nominal``, ``(*n)``.
        dn: ``nominal - lo_data``, ``(*n)``.

    Returns:
        The additive delta, ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    s = 0.5 * (jnp.asarray(up) + dn)
    a = 0.0625 * (jnp.asarray(up) - dn)
    a2 = alpha * alpha
    inside = a2 * (a2 * (a2 * 3.0 - 10.0) + 15.0) * a + alpha * s
    return jnp.where(
        alpha < -1.0, alpha * dn, jnp.where(alpha > 1.0, alpha * up, inside)
    )
