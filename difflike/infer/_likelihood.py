"""The Likelihood protocol that inference is written against, and its model backend.

Everything in :mod:`difflike.infer` needs only four things of a likelihood, for one
hypothesis (batches are mapped over with :func:`jax.vmap`):

* ``poi_bounds()``: the POI's bounds, ``(lo, hi)``;
* ``fit()``: the global fit, ``(muhat, nll)``;
* ``nll(mu)``: the profiled negative log-likelihood at fixed ``mu``;
* ``asimov(mu)``: the same likelihood on Asimov data built at ``mu`` (pyhf's:
  expected main and auxiliary data at the conditional fit to the data at ``mu``).

A compiled model with its data provides these by fitting (:class:`ModelLikelihood`);
a surrogate by evaluating its networks. All four must be traceable (jit, vmap, grad).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax.numpy as jnp
from jaxtyping import Array, Float

from difflike._pytree import pytree_dataclass, replace
from difflike.fit._api import MAX_ITER, TOL, _fit_one
from difflike.histfactory import Model

__all__ = ["Likelihood", "ModelLikelihood"]


@runtime_checkable
class Likelihood(Protocol):
    """A profiled likelihood of one hypothesis, as inference sees it."""

    def poi_bounds(self) -> tuple[Array, Array]: ...

    def fit(self) -> tuple[Array, Array]: ...

    def nll(self, mu: Array) -> Array: ...

    def asimov(self, mu: float | Array) -> Likelihood: ...


@pytree_dataclass
class ModelLikelihood:
    """A compiled model with one data set (and signal yields), profiled by fitting.

    Attributes:
        model: the compiled model (its config's bounds and fixed flags apply).
        data: main bins then auxiliary data, ``(ndata,)``.
        signal: signal yields of a signal-region model, ``(nsignal,)``.
        init: where fits start, ``(npars,)``.
        tol, max_iter: fit settings (see :func:`difflike.fit.fit`).
    """

    model: Model
    data: Float[Array, " ndata"]
    signal: Float[Array, " nsignal"]
    init: Float[Array, " npars"]
    tol: Float[Array, ""] = TOL
    max_iter: Array = MAX_ITER

    def _fit(self, mu, fix_poi: bool):
        return _fit_one(
            self.model,
            self.data,
            self.signal,
            jnp.asarray(mu, jnp.float64),
            self.init,
            fix_poi=fix_poi,
            tol=self.tol,
            max_iter=self.max_iter,
        )

    def poi_bounds(self) -> tuple[Array, Array]:
        bounds = self.model.config.bounds[self.model.config.poi_index]
        return bounds[0], bounds[1]

    def fit(self) -> tuple[Array, Array]:
        """``(muhat, nll)`` of the global fit."""
        pars, value, _, _ = self._fit(0.0, False)
        return pars[self.model.config.poi_index], value

    def nll(self, mu: Array) -> Array:
        """Profiled ``-ln L`` at fixed ``mu``."""
        return self._fit(mu, True)[1]

    def asimov(self, mu: float | Array) -> ModelLikelihood:
        """The likelihood of Asimov data built as pyhf builds them at ``mu``."""
        pars = self._fit(mu, True)[0]
        data = self.model._expected(pars, self.signal)
        return replace(self, data=data, init=pars)
