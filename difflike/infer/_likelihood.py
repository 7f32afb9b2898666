r"""The Likelihood protocol that inference is written against, and its model backend.

Everything in :mod:`difflike.infer` needs only three things of a likelihood, for one
data set (batches are mapped over with :func:`jax.vmap`):

* ``poi_bounds()``: the POI's bounds, ``(lo, hi)``;
* ``profile(mu, fixed)``: ``(poi, nll, ok)``, the minimised negative log-likelihood
  with the POI fixed at ``mu`` where ``fixed`` is true (then ``poi`` is ``mu``), and
  the global fit otherwise (then ``poi`` is :math:`\hat\mu` and ``mu`` is
  ignored); ``ok`` says whether the minimisation converged (always true for a
  likelihood that needs none).
  ``fixed`` may be a traced boolean, so one compiled fit serves both kinds: inference
  maps ``profile`` over several hypotheses at once (:func:`profiles`);
* ``asimov(mu)``: the same likelihood on Asimov data built at ``mu`` (pyhf's:
  expected main and auxiliary data at the conditional fit to the data at ``mu``),
  with the same pytree structure as the original.

A compiled model with its data provides these by fitting (:class:`ModelLikelihood`);
a surrogate by evaluating its networks. All three must be traceable (jit, vmap, grad).

A likelihood that profiles by iterating from a starting point may also offer warm
starts, for searches that profile the same likelihood at nearby ``mu`` again and
again (an upper limit's root finding): a ``start`` attribute (a pytree: where its
fits start) and ``profile_from(mu, fixed, start)``, returning ``(poi, nll, ok,
end)`` with ``end`` where the fit ended (a pytree like ``start``).
:func:`profiles_of_two_from` uses them where present and plain ``profile`` otherwise.

How several profiles are batched is the likelihood's choice, through an optional
class attribute ``profile_in_one_call`` (true when absent). A fit costs about the
same whatever ``fixed`` says and whichever data it fits, so a model's profiles of
its data and of its Asimov data are one vectorised call of one compiled fit. For a
surrogate a fixed-``mu`` profile is one evaluation of a network and a free one is a
search, and the Asimov likelihood evaluates another network: mapped together, every
hypothesis would pay for the search and for both networks. A likelihood with
``profile_in_one_call = False`` is therefore profiled in groups, one per likelihood
and value of ``fixed`` (which must then be concrete); its ``asimov()`` may return a
likelihood of another pytree structure.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from difflike._pytree import pytree_dataclass, replace, static
from difflike.fit._api import MAX_ITER, TOL, _fit_one
from difflike.histfactory import Model

__all__ = [
    "Likelihood",
    "ModelLikelihood",
    "free_and_fixed",
    "profiles",
    "profiles_of_two",
    "profiles_of_two_from",
    "warm_starts",
]


@runtime_checkable
class Likelihood(Protocol):
    """A profiled likelihood of one data set, as inference sees it (module doc)."""

    def poi_bounds(self) -> tuple[Array, Array]: ...

    def profile(self, mu: Array, fixed: Array) -> tuple[Array, Array, Array]: ...

    def asimov(self, mu: float | Array) -> Likelihood: ...


def profiles(
    lik: Likelihood, mu: Float[ArrayLike, "*k"], fixed: Bool[ArrayLike, "*k"]
) -> tuple[Float[Array, "*k"], Float[Array, "*k"], Bool[Array, "*k"]]:
    """``lik.profile`` of several hypotheses in one vectorised call, ``(*k,)`` each
    (in groups for a likelihood with ``profile_in_one_call = False``, module doc).

    Example: the global fit and the fit at ``mu`` together, one compiled fit:
    ``profiles(lik, jnp.stack([0.0, mu]), jnp.array([False, True]))``.
    """
    mu = jnp.asarray(mu, jnp.float64)
    if not _in_one_call(lik):
        fixed = _concrete(fixed, bool)
        fixed = np.broadcast_to(fixed, np.broadcast_shapes(fixed.shape, mu.shape))
        mu = jnp.broadcast_to(mu, fixed.shape)
        flat = _grouped((lik,), np.zeros(mu.size, int), mu.ravel(), fixed.ravel())
        return tuple(x.reshape(mu.shape) for x in flat)
    fixed = jnp.asarray(fixed, bool)
    return jnp.vectorize(lik.profile, signature="(),()->(),(),()")(mu, fixed)


def _in_one_call(lik: Likelihood) -> bool:
    return bool(getattr(lik, "profile_in_one_call", True))


def _concrete(flags, dtype) -> np.ndarray:
    if isinstance(flags, jax.core.Tracer):
        raise TypeError(
            "a likelihood with profile_in_one_call = False needs concrete which and "
            "fixed flags (they choose what is evaluated)"
        )
    return np.asarray(flags, dtype)


def _grouped(liks, which, mu, fixed):
    """``liks[which[i]].profile(mu[i], fixed[i])`` for a likelihood profiled in
    groups (module doc): one vectorised call per likelihood and value of ``fixed``,
    which is passed on concrete. ``which`` and ``fixed`` ``(k,)`` numpy arrays."""
    k = which.shape[0]
    poi, nll = jnp.zeros(k, jnp.float64), jnp.zeros(k, jnp.float64)
    ok = jnp.zeros(k, bool)
    for w, f in sorted({(int(w), bool(f)) for w, f in zip(which, fixed)}):
        rows = np.flatnonzero((which == w) & (fixed == f))
        p, v, o = jax.vmap(lambda m, lk=liks[w], f=f: lk.profile(m, f))(mu[rows])
        poi, nll, ok = poi.at[rows].set(p), nll.at[rows].set(v), ok.at[rows].set(o)
    return poi, nll, ok


def free_and_fixed(lik: Likelihood, mu) -> tuple[Array, Array, Array, Array]:
    """``(muhat, nll_hat, nll_mu, ok)``: the global fit and the fit at ``mu``
    (scalar), in one vectorised call; ``ok`` when both converged."""
    mu = jnp.asarray(mu, jnp.float64)
    pois, nlls, ok = profiles(lik, jnp.stack([jnp.zeros_like(mu), mu]), [False, True])
    return pois[0], nlls[0], nlls[1], jnp.all(ok)


def _pick(lik: Likelihood, lik_a: Likelihood, which: Array):
    """Flat leaves of ``lik`` (``which == 0``) or ``lik_a`` (1) per entry of ``which``,
    and their vmap axes: leaves the two share (the model) are not copied."""
    leaves, treedef = jax.tree_util.tree_flatten(lik)
    leaves_a, treedef_a = jax.tree_util.tree_flatten(lik_a)
    if treedef != treedef_a:
        raise TypeError(
            "a Likelihood's asimov() must return a likelihood with the same pytree "
            f"structure; got {treedef_a} for {treedef}"
        )
    picked, axes = [], []
    for x, y in zip(leaves, leaves_a):
        if x is y:
            picked.append(x)
            axes.append(None)
        else:
            picked.append(jnp.stack([jnp.asarray(x), jnp.asarray(y)])[which])
            axes.append(0)
    return treedef, picked, tuple(axes)


def profiles_of_two(
    lik: Likelihood,
    lik_other: Likelihood,
    which: ArrayLike,
    mu: Float[ArrayLike, " k"],
    fixed: Bool[ArrayLike, " k"] | bool,
) -> tuple[Float[Array, " k"], Float[Array, " k"], Bool[Array, " k"]]:
    """``profile(mu[i], fixed[i])`` of ``lik`` where ``which[i] == 0`` and of
    ``lik_other`` (same pytree structure: an Asimov version, say) where it is 1, all
    in one vectorised call (one compiled fit; in groups for a likelihood with
    ``profile_in_one_call = False``, module doc), ``(k,)`` each."""
    if not _in_one_call(lik):
        which = _concrete(which, int)
        fixed = np.broadcast_to(_concrete(fixed, bool), which.shape)
        mu = jnp.broadcast_to(jnp.asarray(mu, jnp.float64), which.shape)
        return _grouped((lik, lik_other), which, mu, fixed)
    return _mapped_of_two(lik, lik_other, which, mu, fixed, _profile)


def _profile(lik, mu, fixed):
    return lik.profile(mu, fixed)


def _profile_from(lik, mu, fixed, start):
    return lik.profile_from(mu, fixed, start)


def _mapped_of_two(lik, lik_other, which, mu, fixed, call, *per_entry):
    """``call(lik_i, mu[i], fixed[i], *per_entry_i)`` with ``lik_i`` ``lik`` or
    ``lik_other`` as ``which[i]`` says, vectorised over ``i`` (leaves of
    ``per_entry`` with a leading axis ``k``)."""
    which = jnp.asarray(which)
    mu = jnp.broadcast_to(jnp.asarray(mu, jnp.float64), which.shape)
    fixed = jnp.broadcast_to(jnp.asarray(fixed, bool), which.shape)
    treedef, picked, axes = _pick(lik, lik_other, which)

    def one(m, f, extra, *leaves):
        return call(jax.tree_util.tree_unflatten(treedef, leaves), m, f, *extra)

    return jax.vmap(one, in_axes=(0, 0, 0, *axes))(mu, fixed, per_entry, *picked)


def warm_starts(lik: Likelihood) -> bool:
    """Whether ``lik`` offers warm starts (``start`` and ``profile_from``, module
    doc) through the vectorised path of :func:`profiles_of_two_from`."""
    return _in_one_call(lik) and hasattr(lik, "profile_from") and hasattr(lik, "start")


def profiles_of_two_from(
    lik: Likelihood,
    lik_other: Likelihood,
    which: ArrayLike,
    mu: Float[ArrayLike, " k"],
    fixed: Bool[ArrayLike, " k"] | bool,
    starts,
):
    """:func:`profiles_of_two` from the starting points ``starts`` (one per entry:
    a pytree like ``lik.start`` with a leading axis ``k``), also returning where
    each fit ended, ``(poi, nll, ok, ends)``. For a likelihood without warm starts
    (:func:`warm_starts`) ``starts`` is ignored and returned as ``ends``."""
    if not warm_starts(lik):
        return (*profiles_of_two(lik, lik_other, which, mu, fixed), starts)
    return _mapped_of_two(lik, lik_other, which, mu, fixed, _profile_from, starts)


@pytree_dataclass
class ModelLikelihood:
    """A compiled model with one data set (and signal yields), profiled by fitting.

    Attributes:
        model: the compiled model (its config's bounds and fixed flags apply).
        data: main bins then auxiliary data, ``(ndata,)``.
        signal: signal yields of a signal-region model, ``(nsignal,)``.
        init: where fits start, ``(npars,)``.
        tol, max_iter, mirror: fit settings (see :func:`difflike.fit.fit`);
            ``mirror`` is static.
        starts: other starting points of every fit, ``(k, npars)``, the deepest
            converged minimum kept; ``None``: none.
    """

    model: Model
    data: Float[Array, " ndata"]
    signal: Float[Array, " nsignal"]
    init: Float[Array, " npars"]
    tol: Float[Array, ""] = TOL
    max_iter: Array = MAX_ITER
    mirror: bool = static(default=False)
    starts: Float[Array, "k npars"] | None = None

    def _fit(self, mu, fix_poi, init):
        return _fit_one(
            self.model,
            self.data,
            self.signal,
            jnp.asarray(mu, jnp.float64),
            init,
            fix_poi=fix_poi,
            tol=self.tol,
            max_iter=self.max_iter,
            mirror=self.mirror,
            starts=self.starts,
        )

    def poi_bounds(self) -> tuple[Array, Array]:
        bounds = self.model.config.bounds[self.model.config.poi_index]
        return bounds[0], bounds[1]

    def profile(self, mu: Array, fixed: Array) -> tuple[Array, Array, Array]:
        """``(poi, nll, converged)``: fit at fixed ``mu`` where ``fixed``, else the
        global fit."""
        return self.profile_from(mu, fixed, self.init)[:3]

    @property
    def start(self) -> Float[Array, " npars"]:
        """Where fits start (warm starts, module doc), ``(npars,)``."""
        return self.init

    def profile_from(
        self, mu: Array, fixed: Array, start: Float[Array, " npars"]
    ) -> tuple[Array, Array, Array, Float[Array, " npars"]]:
        """:meth:`profile` started from ``start`` instead of ``init`` (fixed
        parameters keep ``start``'s values); also returns the fitted parameters,
        ``(npars,)``."""
        pars, value, status, _ = self._fit(mu, jnp.asarray(fixed, bool), start)
        return pars[self.model.config.poi_index], value, status <= 1, pars

    def fit(self) -> tuple[Array, Array]:
        """``(muhat, nll)`` of the global fit (a shortcut for ``profile``)."""
        return self.profile(0.0, False)[:2]

    def nll(self, mu: Array) -> Array:
        """Profiled ``-ln L`` at fixed ``mu`` (a shortcut for ``profile``)."""
        return self.profile(mu, True)[1]

    def asimov(self, mu: float | Array) -> ModelLikelihood:
        """The likelihood of Asimov data built as pyhf builds them at ``mu``: from
        the fit that starts at ``init`` alone, whatever the ``starts`` (the data
        sets are pyhf's; the profiles on them use every start)."""
        pars = replace(self, starts=None)._fit(mu, True, self.init)[0]
        data = self.model._expected(pars, self.signal)
        return replace(self, data=data, init=pars)
