r"""Profile-likelihood test statistics with pyhf's conventions (arXiv:1007.1727).

With :math:`t = 2\,[\mathrm{nll}(\mu) - \mathrm{nll}(\hat\mu)]` clipped at 0:

* ``tmu``: :math:`t_\mu = t`;
* ``q`` (:math:`q_\mu`) and ``qtilde`` (:math:`\tilde q_\mu`): ``t`` where
  :math:`\hat\mu \le \mu`, else 0. They differ only in the POI's lower bound during
  the global fit: :math:`\tilde q_\mu` is meant for a POI bounded at 0 (the usual
  ``[0, 10]``), :math:`q_\mu` for one unbounded below; as in pyhf, the bounds are the
  likelihood's own, so pass a model whose POI bounds suit the statistic;
* ``q0``: ``t`` at :math:`\mu = 0` where :math:`\hat\mu \ge 0`, else 0.

Each statistic is arithmetic on four numbers, ``(mu, muhat, nll_mu, nll_hat)``
(:func:`from_fits`), so callers run the fits they need in one batched call. The
public functions take a :class:`~difflike.infer.Likelihood` and one hypothesis and
run the global fit and the fit at ``mu`` together.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array

from difflike.errors import InputError
from difflike.infer._likelihood import Likelihood, free_and_fixed

__all__ = [
    "TEST_STATISTICS",
    "from_fits",
    "q0",
    "qmu",
    "qmu_tilde",
    "test_statistic",
    "tmu",
]

TEST_STATISTICS = ("qtilde", "q", "q0", "tmu")


def _tmu(mu, muhat, nll_mu, nll_hat):
    return jnp.clip(2.0 * (nll_mu - nll_hat), 0.0, None)


def _qmu(mu, muhat, nll_mu, nll_hat):
    return jnp.where(muhat > mu, 0.0, _tmu(mu, muhat, nll_mu, nll_hat))


def _q0(mu, muhat, nll_mu, nll_hat):
    return jnp.where(muhat < 0.0, 0.0, _tmu(mu, muhat, nll_mu, nll_hat))


_FROM_FITS = {"qtilde": _qmu, "q": _qmu, "q0": _q0, "tmu": _tmu}


def from_fits(name: str):
    """The statistic ``name`` as a function of ``(mu, muhat, nll_mu, nll_hat)``.

    ``nll_mu`` is the profiled ``-ln L`` at ``mu``, ``nll_hat`` the global minimum
    at :math:`\\hat\\mu`; arguments broadcast.
    """
    _check_name(name)
    return _FROM_FITS[name]


@partial(jax.jit, static_argnums=0)
def _on(kernel, mu, lik: Likelihood) -> Array:
    """``kernel`` after the global fit and the fit at ``mu``, run together."""
    muhat, nll_hat, nll_mu, _ = free_and_fixed(lik, mu)
    return kernel(mu, muhat, nll_mu, nll_hat)


def tmu(mu, lik: Likelihood) -> Array:
    """:math:`t_\\mu = -2\\ln\\lambda(\\mu)`, clipped at 0 (scalar ``mu``)."""
    return _on(_tmu, mu, lik)


def qmu(mu, lik: Likelihood) -> Array:
    """:math:`q_\\mu`: :math:`t_\\mu` where :math:`\\hat\\mu \\le \\mu`, else 0."""
    return _on(_qmu, mu, lik)


def qmu_tilde(mu, lik: Likelihood) -> Array:
    r""":math:`\tilde q_\mu`: :func:`qmu` on a likelihood whose POI is bounded at 0."""
    return _on(_qmu, mu, lik)


def q0(mu, lik: Likelihood) -> Array:
    """:math:`q_0` (discovery): :math:`t_0` where :math:`\\hat\\mu \\ge 0`, else 0."""
    return _on(_q0, mu, lik)


_BY_NAME = {"qtilde": qmu_tilde, "q": qmu, "q0": q0, "tmu": tmu}


def test_statistic(name: str):
    """The test statistic called ``name`` (one of :data:`TEST_STATISTICS`), as a
    function of ``(mu, lik)``."""
    _check_name(name)
    return _BY_NAME[name]


def _check_name(name: str) -> None:
    if name not in _BY_NAME:
        raise InputError(
            "unknown test statistic",
            got=repr(name),
            expected=f"one of {list(TEST_STATISTICS)}",
        )
