r"""The counting baseline a surrogate's networks correct.

Each signal bin :math:`i` alone, with data :math:`n_i`, a background :math:`\beta_i`
constrained by a Gaussian around its post-fit value :math:`b_i` with the post-fit
variance :math:`v_i`, and signal :math:`s_i`, has the profiled log-likelihood

.. math::

    \ell_i(s_i) = \max_{\beta}\; n_i \ln(s_i + \beta) - (s_i + \beta)
        - \frac{(\beta - b_i)^2}{2 v_i},

in closed form: :math:`t = s_i + \hat\beta` is the positive root of
:math:`t^2 + (v_i - s_i - b_i)\,t - n_i v_i = 0`, and since
:math:`\hat\beta - b_i = v_i (n_i/t - 1)` at the optimum,
:math:`\ell_i = n_i \ln t - t - v_i (n_i/t - 1)^2 / 2` (no division by a small
:math:`v_i`). Where that :math:`\hat\beta` would be negative (a variance larger
than the background), the background stops at zero; with :math:`n_i = 0` the rate
stops at zero. The baseline is :math:`\Delta_\mathrm{c}(s) = \sum_i \ell_i(s_i) -
\ell_i(0)`, zero at :math:`s = 0`, written as differences of small terms so that it
is accurate in float32.

It is the likelihood of the signal regions without correlations between bins or
with the control regions, so it is close to, not equal to, the workspace's profiled
:math:`\Delta`; a surrogate's networks learn the difference (:mod:`._train`), which
is small and smooth where :math:`\Delta` is steep, so the same relative error of the
network is a far smaller absolute error of :math:`\Delta`.

The parameters :math:`n, b, v` per expectation come from the workspace
(:func:`difflike.sample._label.counting_summary`, recorded in a dataset's
``meta["counting"]``): the data of the expectation, its background-only fit, and
the variance of the signal bins' post-fit background from the fit's covariance
(the inverse Hessian of :math:`-\ln L` over the free parameters, propagated
linearly).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["counting_delta"]


def _profiled(n, b, v, s):
    """``(t, q)``: the profiled rate :math:`t = s + \\hat\\beta` and the constraint
    term :math:`(\\hat\\beta - b)^2 / 2v`, elementwise (broadcasting)."""
    p = s + b - v
    root = jnp.sqrt(p * p + 4.0 * n * v)
    # the stationary point's positive root, without cancellation on either side
    # of p = 0; for n = 0 it is max(p, 0), where the rate would turn negative
    denom = root - p
    small = 2.0 * n * v / jnp.where(denom > 0, denom, 1.0)
    t_free = jnp.where(p >= 0, 0.5 * (p + root), small)
    # background and rate must not be negative: the concave objective's optimum
    # over beta >= max(0, -s) is the stationary point or that bound
    beta = jnp.maximum(t_free - s, jnp.maximum(0.0, -s))
    beta = jnp.where(n > 0, beta, jnp.maximum(b - v, jnp.maximum(0.0, -s)))
    interior = (beta == t_free - s) & (n > 0)
    t = s + beta
    ratio = n / jnp.where(t > 0, t, 1.0)
    v_safe = jnp.where(v > 0, v, 1.0)
    q = jnp.where(
        interior,
        0.5 * v * (ratio - 1.0) ** 2,  # (beta - b) = v (n/t - 1) there
        jnp.where(v > 0, 0.5 * (beta - b) ** 2 / v_safe, 0.0),
    )
    return t, q


def counting_delta(
    data: Float[ArrayLike, "nexpect nsignal"],
    background: Float[ArrayLike, "nexpect nsignal"],
    variance: Float[ArrayLike, "nexpect nsignal"],
    s: Float[ArrayLike, "*b nsignal"],
) -> Float[Array, "*b nexpect"]:
    r""":math:`\Delta_\mathrm{c}(s)` per expectation (module doc), ``(*b, nexpect)``,
    in the dtype of the inputs."""
    s = jnp.asarray(s)[..., None, :]  # (*b, 1, nsignal) against (nexpect, nsignal)
    n, b, v = (jnp.asarray(a, s.dtype) for a in (data, background, variance))
    t, q = _profiled(n, b, v, s)
    t0, q0 = _profiled(n, b, v, jnp.zeros_like(s))
    log_term = jnp.where(n > 0, n * jnp.log(jnp.where(t > 0, t, 1.0) / t0), 0.0)
    return jnp.sum(log_term - (t - t0) - (q - q0), axis=-1)
