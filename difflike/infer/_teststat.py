r"""Profile-likelihood test statistics with pyhf's conventions (arXiv:1007.1727).

With :math:`t = 2\,[\mathrm{nll}(\mu) - \mathrm{nll}(\hat\mu)]` clipped at 0:

* ``tmu``: :math:`t_\mu = t`;
* ``q`` (:math:`q_\mu`) and ``qtilde`` (:math:`\tilde q_\mu`): ``t`` where
  :math:`\hat\mu \le \mu`, else 0. They differ only in the POI's lower bound during
  the global fit: :math:`\tilde q_\mu` is meant for a POI bounded at 0 (the usual
  ``[0, 10]``), :math:`q_\mu` for one unbounded below; as in pyhf, the bounds are the
  likelihood's own, so pass a model whose POI bounds suit the statistic;
* ``q0``: ``t`` at :math:`\mu = 0` where :math:`\hat\mu \ge 0`, else 0.

Functions take a :class:`~difflike.infer.Likelihood` and one hypothesis; the free
fit may be passed in (``free=(muhat, nll)``) so that callers reuse it.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from difflike.errors import InputError
from difflike.infer._likelihood import Likelihood

__all__ = ["TEST_STATISTICS", "q0", "qmu", "qmu_tilde", "test_statistic", "tmu"]

TEST_STATISTICS = ("qtilde", "q", "q0", "tmu")


def _t(mu, lik: Likelihood, free):
    muhat, nll_hat = lik.fit() if free is None else free
    return jnp.clip(2.0 * (lik.nll(mu) - nll_hat), 0.0, None), muhat


def tmu(mu, lik: Likelihood, free=None) -> Array:
    """:math:`t_\\mu = -2\\ln\\lambda(\\mu)`, clipped at 0."""
    return _t(mu, lik, free)[0]


def qmu(mu, lik: Likelihood, free=None) -> Array:
    """:math:`q_\\mu`: :math:`t_\\mu` where :math:`\\hat\\mu \\le \\mu`, else 0."""
    t, muhat = _t(mu, lik, free)
    return jnp.where(muhat > mu, 0.0, t)


def qmu_tilde(mu, lik: Likelihood, free=None) -> Array:
    r""":math:`\tilde q_\mu`: :func:`qmu` on a likelihood whose POI is bounded at 0."""
    return qmu(mu, lik, free)


def q0(mu, lik: Likelihood, free=None) -> Array:
    """:math:`q_0` (discovery): :math:`t_0` where :math:`\\hat\\mu \\ge 0`, else 0."""
    t, muhat = _t(mu, lik, free)
    return jnp.where(muhat < 0.0, 0.0, t)


_BY_NAME = {"qtilde": qmu_tilde, "q": qmu, "q0": q0, "tmu": tmu}


def test_statistic(name: str):
    """The test statistic called ``name`` (one of :data:`TEST_STATISTICS`)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(
            "unknown test statistic",
            got=repr(name),
            expected=f"one of {list(TEST_STATISTICS)}",
        ) from None
