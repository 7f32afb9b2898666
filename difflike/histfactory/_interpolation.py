r"""Interpolation codes of HistFactory systematics, as pyhf 0.7 computes them.

Each function takes the nuisance parameter values ``alpha`` and per-application
constants, all broadcast together, and returns a multiplicative factor (``normsys``
codes) or an additive delta (``histosys`` codes). They are pure, elementwise and
safe to differentiate: where a branch holds a logarithm or a power, the unused branch
is fed harmless values (the double-``where`` idiom) so it cannot poison gradients.
Code 4 takes ``ln(hi)`` and ``ln(lo)`` with a weight of 0 where unused, which is safe
because its factors are positive (checked when a workspace is compiled).

Every code except normsys ``code1`` is also written in a *separable* form, which is
how :class:`~difflike.histfactory.Model` evaluates it:

* a histosys delta is ``basis[0](alpha) * up + basis[1](alpha) * dn``: two
  functions of the parameter alone (:func:`histosys_basis`) times the entry's two
  constants, so the sum over parameters is a matrix product, with no per-entry
  nonlinearity;
* a code-4 normsys factor is ``exp(w_hi(alpha) ln(hi) + w_lo(alpha) ln(lo))`` times a
  polynomial that is 1 outside ``|alpha| < 1`` (:func:`code4_weights`,
  :func:`code4_polynomial`), so a product over parameters takes one exponential per
  bin instead of one per entry.

The elementwise functions below are these same forms evaluated entry by entry.

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
    "code4_polynomial",
    "code4_weights",
    "code4p",
    "histosys_basis",
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


def code4_weights(
    alpha: Float[ArrayLike, "*n"],
) -> tuple[Float[Array, "*n"], Float[Array, "*n"]]:
    r"""Weights of :math:`\ln hi` and :math:`\ln lo` in code 4's exponent.

    :math:`w_{hi} = \alpha` for :math:`\alpha \ge 1` (else 0) and
    :math:`w_{lo} = -\alpha` for :math:`\alpha \le -1` (else 0).

    Args:
        alpha: nuisance parameter values, ``(*n)``.

    Returns:
        ``(w_hi, w_lo)``, each ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    zero = jnp.zeros_like(alpha)
    return jnp.where(alpha >= 1.0, alpha, zero), jnp.where(alpha <= -1.0, -alpha, zero)


def code4_polynomial(
    alpha: Float[ArrayLike, "*n"],
    coefficients: Float[ArrayLike, "6 *n"],  # noqa: F821
) -> Float[Array, "*n"]:
    r"""Code 4's polynomial :math:`1 + \sum_i a_i \alpha^i` inside :math:`|\alpha|<1`, 1 outside.

    Args:
        alpha: nuisance parameter values, ``(*n)``.
        coefficients: from :func:`code4_coefficients`, ``(6, *n)``.

    Returns:
        ``(*n)``.
    """
    alpha = jnp.asarray(alpha)
    coefficients = jnp.asarray(coefficients)
    inside = jnp.clip(alpha, -1.0, 1.0)
    poly = coefficients[5]
    for i in (4, 3, 2, 1, 0):
        poly = poly * inside + coefficients[i]
    poly = 1.0 + poly * inside
    return jnp.where(jnp.abs(alpha) >= 1.0, 1.0, poly)


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

    Evaluated as :math:`\exp(w_{hi} \ln hi + w_{lo} \ln lo)` times
    :func:`code4_polynomial` (see :func:`code4_weights`).

    Args:
        alpha: nuisance parameter values, ``(*n)``.
        hi, lo: positive up and down factors, ``(*n)``.
        coefficients: from :func:`code4_coefficients`, ``(6, *n)``.

    Returns:
        The multiplicative factor, ``(*n)``.
    """
    w_hi, w_lo = code4_weights(alpha)
    exponent = w_hi * jnp.log(hi) + w_lo * jnp.log(lo)
    return jnp.exp(exponent) * code4_polynomial(alpha, coefficients)


def _basis_code0(alpha):
    zero = jnp.zeros_like(alpha)
    above = alpha > 0  # pyhf's branch, and its one-sided derivative (dn) at 0
    return jnp.where(above, alpha, zero), jnp.where(above, zero, alpha)


def _basis_code2(alpha):
    above, below = alpha > 1.0, alpha < -1.0
    a2 = alpha * alpha
    up = jnp.where(
        above, 1.5 * (alpha - 1.0), jnp.where(below, -0.5 * alpha, 0.5 * (a2 + alpha))
    )
    dn = jnp.where(
        above, -0.5 * (alpha - 1.0), jnp.where(below, 1.5 * alpha, 0.5 * (alpha - a2))
    )
    return up, dn


def _basis_code4p(alpha):
    a2 = alpha * alpha
    half = 0.5 * alpha
    even = a2 * (a2 * (a2 * 3.0 - 10.0) + 15.0) * 0.0625
    zero = jnp.zeros_like(alpha)
    above, below = alpha > 1.0, alpha < -1.0
    up = jnp.where(above, alpha, jnp.where(below, zero, half + even))
    dn = jnp.where(above, zero, jnp.where(below, alpha, half - even))
    return up, dn


_HISTOSYS_BASIS = {
    "code0": _basis_code0,
    "code2": _basis_code2,
    "code4p": _basis_code4p,
}


def histosys_basis(code: str, alpha: Float[ArrayLike, "*n"]) -> Float[Array, "2 *n"]:  # noqa: F821
    r"""The weights of :math:`\delta^+` and :math:`\delta^-` in a histosys code's delta.

    The delta is ``basis[0] * up + basis[1] * dn``, with :math:`\delta^+` = ``up`` =
    ``hi_data - nominal`` and :math:`\delta^-` = ``dn`` = ``nominal - lo_data``.
    Outside the interpolation range one weight is exactly 0, so a delta that
    should vanish (``alpha * dn`` with ``dn = 0``) is exactly 0.

    Args:
        code: ``"code0"``, ``"code2"`` or ``"code4p"``.
        alpha: nuisance parameter values, ``(*n)``.

    Returns:
        ``(2, *n)``.
    """
    return jnp.stack(_HISTOSYS_BASIS[code](jnp.asarray(alpha)))


def _histosys(code, alpha, up, dn):
    basis = histosys_basis(code, alpha)
    return basis[0] * jnp.asarray(up) + basis[1] * jnp.asarray(dn)


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
    return _histosys("code0", alpha, up, dn)


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
    return _histosys("code2", alpha, up, dn)


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
    return _histosys("code4p", alpha, up, dn)
