"""The compiled HistFactory model: an immutable pytree of float64 arrays.

A :class:`Model` holds every number of the likelihood as an array leaf and only
hashable structure (names, interpolation codes, the signal's position) as static
metadata. It is an ordinary argument of jitted functions: a second call with new
parameters, data or signal yields reuses the compiled code, and a batch of models
with the same structure can be stacked and ``vmap``-ped over.

The expected rates follow pyhf's ``_MainModel``::

    rate[sample, bin] = (nominal + sum(histosys deltas)) * prod(multiplicative factors)
    main[bin]         = sum over samples of rate

where the multiplicative factors are parameter values (normfactor, lumi,
shapefactor, staterror, shapesys) or interpolated normsys factors. Parameter-valued
factors are a short padded list of parameter indices per entry (``mult_index``).
Interpolated modifiers are dense (parameter x sample x bin) tables that are neutral
(factor 1, delta 0) where a parameter does not apply: published likelihoods have
few bins and systematics that touch most samples, so these tables are small and
dense (gathers were 5-10x slower on the CPU). They are evaluated in separable form
(:mod:`difflike.histfactory.interpolation`): the sum of histosys deltas is a
matrix product of per-parameter basis values with the tables, and the product of
code-4 normsys factors is one exponential per bin (of a matrix product with the
tables' logarithms, taken once per call) times a product of polynomials, so no
transcendental function is evaluated per table entry and example.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from jax import numpy as jnp
from jax.scipy.special import gammaln
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from difflike._pytree import Label, pytree_dataclass, replace, static
from difflike._vectorize import default_chunk, vectorize
from difflike.errors import InvalidDataError, ShapeError, UnknownParameterError
from difflike.histfactory import _interpolation as interp

__all__ = ["Model", "ModelConfig"]


@pytree_dataclass
class ModelConfig:
    """The parameter layout and bookkeeping of a :class:`Model` (pyhf's ``model.config``).

    Static (hashable) attributes describe structure; ``init``, ``bounds``, ``fixed``
    and ``auxdata`` are arrays, so changing a bound or fixing a parameter does not
    recompile anything.

    Attributes:
        init: suggested initial values, ``(npars,)`` float64.
        bounds: suggested bounds, ``(npars, 2)`` float64.
        fixed: whether each parameter is fixed, ``(npars,)`` bool.
        auxdata: the auxiliary data, ``(nauxdata,)`` float64.
        par_names: one name per parameter component (``"staterror_SR[0]"``).
        par_order: the parameter (set) names, in order.
        par_slices: ``(start, stop)`` of each parameter set, aligned with ``par_order``.
        par_constraints: ``None``, ``"normal"`` or ``"poisson"`` per parameter set.
        par_types: the modifier types of each parameter set.
        poi_name, poi_index: the parameter of interest (``None`` if there is none).
        channels: channel names, sorted (the order of the main data).
        channel_nbins: number of bins per channel, aligned with ``channels``.
        samples: sample names, sorted.
        modifiers: ``(name, type)`` pairs, sorted.
        auxdata_order: names of the constrained parameter sets, in aux-data order.
        signal_regions: for a signal-region model, the channels whose signal yields
            are the model's ``signal`` input, in the signal vector's order.
        signal_nbins: bins per signal region, aligned with ``signal_regions``.
        measurement: the measurement used.
        modifier_settings: ``(("histosys", code), ("normsys", code))``.
        source: where the workspace came from (file, patch, point).
        digest: SHA-256 of the workspace document (pyhf's digest).
        points: for a stacked signal grid (:func:`difflike.load_patchset`), the
            name of each point, aligned with the leading axis of every array;
            empty for a single model.
    """

    init: Float[Array, " npars"]
    bounds: Float[Array, "npars 2"]
    fixed: Bool[Array, " npars"]
    auxdata: Float[Array, " nauxdata"]
    par_names: tuple[str, ...] = static()
    par_order: tuple[str, ...] = static()
    par_slices: tuple[tuple[int, int], ...] = static()
    par_constraints: tuple[str | None, ...] = static()
    par_types: tuple[tuple[str, ...], ...] = static()
    poi_name: str | None = static()
    poi_index: int | None = static()
    channels: tuple[str, ...] = static()
    channel_nbins: tuple[int, ...] = static()
    samples: tuple[str, ...] = static()
    modifiers: tuple[tuple[str, str], ...] = static()
    auxdata_order: tuple[str, ...] = static()
    signal_regions: tuple[str, ...] = static()
    signal_nbins: tuple[int, ...] = static()
    measurement: str = static()
    modifier_settings: tuple[tuple[str, str], ...] = static()
    source: str = static()
    digest: str = static()
    points: tuple[str, ...] = static(default=())

    def __post_init__(self) -> None:
        # provenance is not structure: models from different files share compiled
        # code (see difflike._pytree.Label)
        for name in ("source", "digest"):
            object.__setattr__(self, name, Label(getattr(self, name)))

    # -- sizes -------------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading axes shared by every array: ``(npoints,)`` for a grid, else ``()``."""
        return tuple(self.init.shape[:-1])

    @property
    def npars(self) -> int:
        """Number of parameter components."""
        return len(self.par_names)

    @property
    def nmaindata(self) -> int:
        """Number of main (observed) bins."""
        return sum(self.channel_nbins)

    @property
    def nauxdata(self) -> int:
        """Number of auxiliary data."""
        return int(self.auxdata.shape[-1])

    @property
    def ndata(self) -> int:
        """Length of a full data vector: main bins then auxiliary data."""
        return self.nmaindata + self.nauxdata

    @property
    def nsignal(self) -> int:
        """Length of the signal vector of a signal-region model (0 otherwise)."""
        return sum(self.signal_nbins)

    # -- pyhf-style accessors ----------------------------------------------------------
    @property
    def channel_slices(self) -> dict[str, slice]:
        """Main-bin slice of each channel."""
        out, start = {}, 0
        for name, n in zip(self.channels, self.channel_nbins):
            out[name] = slice(start, start + n)
            start += n
        return out

    @property
    def signal_slices(self) -> dict[str, slice]:
        """Slice of the signal vector belonging to each signal region."""
        out, start = {}, 0
        for name, n in zip(self.signal_regions, self.signal_nbins):
            out[name] = slice(start, start + n)
            start += n
        return out

    def par_slice(self, name: str) -> slice:
        """Slice of the parameter vector holding parameter set ``name``."""
        try:
            start, stop = self.par_slices[self.par_order.index(name)]
        except ValueError:
            raise UnknownParameterError(
                f"no parameter set named {name!r} in the model", file=self.source
            ) from None
        return slice(start, stop)

    def par_index(self, name: str) -> int:
        """Index of a parameter component by its full name (``"staterror_SR[1]"``)."""
        try:
            return self.par_names.index(name)
        except ValueError:
            raise UnknownParameterError(
                f"no parameter named {name!r} in the model", file=self.source
            ) from None

    def suggested_init(self) -> list[float]:
        """Initial values as a list (pyhf's ``suggested_init``)."""
        return np.asarray(self.init).tolist()

    def suggested_bounds(self) -> list[tuple[float, float]]:
        """Bounds as a list of pairs (pyhf's ``suggested_bounds``)."""
        return [tuple(b) for b in np.asarray(self.bounds).tolist()]

    def suggested_fixed(self) -> list[bool]:
        """Fixed flags as a list (pyhf's ``suggested_fixed``)."""
        return np.asarray(self.fixed).tolist()

    def __repr__(self) -> str:
        return (
            f"ModelConfig({len(self.channels)} channels, {self.nmaindata} bins, "
            f"{len(self.samples)} samples, {self.npars} parameters, "
            f"poi={self.poi_name!r})"
        )


@pytree_dataclass
class Model:
    """A compiled HistFactory model (see the module docstring for the arithmetic).

    Build one with :func:`difflike.load` or :func:`difflike.histfactory.compile_model`.
    All public methods accept leading batch axes on ``pars``, ``data`` and
    ``signal`` and broadcast them.

    Attributes:
        config: the parameter layout (:class:`ModelConfig`).
        nominal: nominal yields, ``(nsamples, nmaindata)``.
        mult_index: ``(L, nsamples, nmaindata)`` indices into ``[pars, 1]``: the
            parameter-valued factors (normfactor, lumi, shapefactor, staterror,
            shapesys) of each entry, padded with the index of the 1.
        normsys_param: parameter index of each normsys parameter, ``(A,)``.
        normsys_hi, normsys_lo: up and down factors per parameter and entry,
            ``(A, nsamples, nmaindata)``; 1 where the parameter does not apply.
        normsys_coef: code-4 polynomial coefficients, ``(6, A, nsamples, nmaindata)``.
        histosys_param: parameter index of each histosys parameter, ``(H,)``.
        histosys_up: ``hi_data - nominal``, ``(H, nsamples, nmaindata)``; 0 where the
            parameter does not apply.
        histosys_dn: ``nominal - lo_data``, likewise.
        aux_param: parameter index of each auxiliary datum, ``(nauxdata,)``.
        aux_sigma: Gaussian width (1 for Poisson terms), ``(nauxdata,)``.
        aux_factor: Poisson rate factor (1 for Gaussian terms), ``(nauxdata,)``.
        aux_poisson: whether each term is Poisson, ``(nauxdata,)``.
        aux_mask: whether each term counts (all true, except in a stacked grid
            for the parameters a point does not use), ``(nauxdata,)``.
        signal: default signal yields of a signal-region model, ``(nsignal,)``.
        normsys_code, histosys_code: interpolation codes.
        signal_sample: row of ``nominal`` that receives the signal (-1: none).
        signal_bins: main-bin index of each signal component.
    """

    config: ModelConfig
    nominal: Float[Array, "nsamples nmain"]
    mult_index: Int[Array, "L nsamples nmain"]
    normsys_param: Int[Array, " A"]
    normsys_hi: Float[Array, "A nsamples nmain"]
    normsys_lo: Float[Array, "A nsamples nmain"]
    normsys_coef: Float[Array, "6 A nsamples nmain"]
    histosys_param: Int[Array, " H"]
    histosys_up: Float[Array, "H nsamples nmain"]
    histosys_dn: Float[Array, "H nsamples nmain"]
    aux_param: Int[Array, " nauxdata"]
    aux_sigma: Float[Array, " nauxdata"]
    aux_factor: Float[Array, " nauxdata"]
    aux_poisson: Bool[Array, " nauxdata"]
    aux_mask: Bool[Array, " nauxdata"]
    signal: Float[Array, " nsignal"]
    normsys_code: str = static()
    histosys_code: str = static()
    signal_sample: int = static()
    signal_bins: tuple[int, ...] = static()

    # -- single-example kernels (vectorised by the public methods) -------------------
    # Interpolated modifiers are evaluated in their separable forms (see
    # difflike.histfactory.interpolation): the histosys sum over parameters is one
    # matrix product, and code-4 normsys factors take one exponential per bin, not
    # one per (parameter, sample, bin) entry. Normsys code 1 (whose factors may be
    # exactly 0) is evaluated entry by entry.
    def _normsys_scale(
        self, alpha: Float[Array, " A"]
    ) -> Float[Array, "nsamples nmain"]:
        """Product over parameters of the normsys factors, ``(nsamples, nmain)``."""
        if self.normsys_code == "code1":
            factors = interp.code1(
                alpha[:, None, None], self.normsys_hi, self.normsys_lo
            )
            return jnp.prod(factors, axis=0)
        growth = jnp.exp(self._code4_exponent(*interp.code4_weights(alpha)))
        poly = interp.code4_polynomial(alpha[:, None, None], self.normsys_coef)
        return growth * jnp.prod(poly, axis=0)

    def _code4_exponent(
        self, w_hi: Float[Array, " A"], w_lo: Float[Array, " A"]
    ) -> Float[Array, "nsamples nmain"]:
        """``sum_a w_hi[a] ln(hi[a]) + w_lo[a] ln(lo[a])``, ``(nsamples, nmain)``."""
        return jnp.tensordot(w_hi, jnp.log(self.normsys_hi), axes=1) + jnp.tensordot(
            w_lo, jnp.log(self.normsys_lo), axes=1
        )

    def _normsys_scale_and_derivatives(
        self, alpha: Float[Array, " A"]
    ) -> tuple[Float[Array, "nsamples nmain"], Float[Array, "A nsamples nmain"]]:
        """:meth:`_normsys_scale` and its derivative with respect to each parameter.

        Each factor depends on one parameter, so a forward pass with a tangent of
        ones gives every factor's derivative; the other factors enter through
        exclusive products (no division, so a factor of 0 is fine).
        """
        ones = jnp.ones_like(alpha)
        if self.normsys_code == "code1":
            factors, d_factors = jax.jvp(
                lambda a: interp.code1(
                    a[:, None, None], self.normsys_hi, self.normsys_lo
                ),
                (alpha,),
                (ones,),
            )
            return jnp.prod(factors, axis=0), _exclusive_prod(factors) * d_factors
        log_hi, log_lo = jnp.log(self.normsys_hi), jnp.log(self.normsys_lo)
        (w_hi, w_lo), (d_hi, d_lo) = jax.jvp(interp.code4_weights, (alpha,), (ones,))
        poly, d_poly = jax.jvp(
            lambda a: interp.code4_polynomial(a[:, None, None], self.normsys_coef),
            (alpha,),
            (ones,),
        )
        growth = jnp.exp(self._code4_exponent(w_hi, w_lo))
        scale = growth * jnp.prod(poly, axis=0)
        d_exponent = d_hi[:, None, None] * log_hi + d_lo[:, None, None] * log_lo
        derivs = growth * _exclusive_prod(poly) * d_poly + scale * d_exponent
        return scale, derivs

    def _histosys_shift(
        self, alpha: Float[Array, " H"]
    ) -> Float[Array, "nsamples nmain"]:
        """Sum over parameters of the histosys deltas, ``(nsamples, nmain)``."""
        return self._histosys_sum(interp.histosys_basis(self.histosys_code, alpha))

    def _histosys_sum(
        self, basis: Float[Array, "2 H"]
    ) -> Float[Array, "nsamples nmain"]:
        """``sum_h basis[0, h] up[h] + basis[1, h] dn[h]``, ``(nsamples, nmain)``."""
        return jnp.tensordot(basis[0], self.histosys_up, axes=1) + jnp.tensordot(
            basis[1], self.histosys_dn, axes=1
        )

    def _nominal(
        self, signal: Float[Array, " nsignal"]
    ) -> Float[Array, "nsamples nmain"]:
        if self.signal_sample < 0:
            return self.nominal
        bins = jnp.asarray(self.signal_bins)
        return self.nominal.at[self.signal_sample, bins].set(signal)

    def _rates(
        self, pars: Float[Array, " npars"], signal: Float[Array, " nsignal"]
    ) -> Float[Array, "nsamples nmain"]:
        factors = jnp.concatenate([pars, jnp.ones((1,), pars.dtype)])
        scale = jnp.prod(factors[self.mult_index], axis=0)
        scale = scale * self._normsys_scale(pars[self.normsys_param])
        shift = self._histosys_shift(pars[self.histosys_param])
        return (self._nominal(signal) + shift) * scale

    def _main_and_jacobian(
        self, pars: Float[Array, " npars"], signal: Float[Array, " nsignal"]
    ) -> tuple[Float[Array, " nmain"], Float[Array, "nmain npars"]]:
        """Expected main data and their Jacobian with respect to ``pars``.

        Built from the model's structure instead of ``nmain`` reverse passes: a
        parameter-valued factor's derivative is the product of the entry's other
        factors (exclusive products, no division, so a parameter at 0 is fine);
        normsys derivatives come from :meth:`_normsys_scale_and_derivatives`, and
        a histosys delta's from its basis functions' derivatives. Scatter-adds
        collect the columns.
        """
        npars = pars.shape[0]
        ones = jnp.ones((1,), pars.dtype)
        mult = jnp.concatenate([pars, ones])[self.mult_index]  # (L, S, N)
        ns_prod, d_ns = self._normsys_scale_and_derivatives(pars[self.normsys_param])
        a_hs = pars[self.histosys_param]
        basis, d_basis = jax.jvp(
            lambda a: interp.histosys_basis(self.histosys_code, a),
            (a_hs,),
            (jnp.ones_like(a_hs),),
        )  # (2, H) each
        base = self._nominal(signal) + self._histosys_sum(basis)  # (S, N)
        mult_prod = jnp.prod(mult, axis=0)
        main = jnp.sum(base * mult_prod * ns_prod, axis=0)

        nmain = main.shape[0]
        jac = jnp.zeros((nmain, npars + 1), pars.dtype)  # last column: the 1-factor
        bins = jnp.broadcast_to(jnp.arange(nmain), self.mult_index.shape)
        d_mult = base * ns_prod * _exclusive_prod(mult)  # (L, S, N)
        jac = jac.at[bins, self.mult_index].add(d_mult)
        d_norm = jnp.sum(base * mult_prod * d_ns, axis=1)  # (A, N)
        jac = jac.at[:, self.normsys_param].add(d_norm.T)
        weight = mult_prod * ns_prod  # (S, N)
        d_hist = d_basis[0][:, None] * jnp.sum(self.histosys_up * weight, axis=1)
        d_hist += d_basis[1][:, None] * jnp.sum(self.histosys_dn * weight, axis=1)
        jac = jac.at[:, self.histosys_param].add(d_hist.T)
        return main, jac[:, :npars]

    def _main(self, pars, signal):
        return jnp.sum(self._rates(pars, signal), axis=0)

    def _aux(self, pars):
        return pars[self.aux_param] * self.aux_factor

    def _main_logpdf(self, pars, maindata, signal):
        return jnp.sum(_poisson_logpdf(maindata, self._main(pars, signal)))

    def _constraint_logpdf(self, pars, auxdata):
        theta = pars[self.aux_param]
        gauss = _normal_logpdf(auxdata, theta, self.aux_sigma)
        rate = jnp.where(self.aux_poisson, theta * self.aux_factor, 1.0)
        pois = _poisson_logpdf(auxdata, rate)
        terms = jnp.where(self.aux_poisson, pois, gauss)
        return jnp.sum(jnp.where(self.aux_mask, terms, 0.0))

    def _logpdf(self, pars, data, signal):
        nmain = self.config.nmaindata
        return self._main_logpdf(pars, data[:nmain], signal) + self._constraint_logpdf(
            pars, data[nmain:]
        )

    def _expected(self, pars, signal):
        return jnp.concatenate([self._main(pars, signal), self._aux(pars)])

    # -- argument handling ------------------------------------------------------------
    def _pars(self, pars: ArrayLike) -> Array:
        pars = jnp.asarray(pars, dtype=jnp.float64)
        if pars.ndim == 0 or pars.shape[-1] != self.config.npars:
            raise ShapeError(
                "parameter vector has the wrong length",
                file=self.config.source,
                got=tuple(pars.shape),
                expected=f"(..., {self.config.npars}) for parameters "
                f"{_names_preview(self.config.par_names)}",
            )
        return pars

    def _data(self, data: ArrayLike, length: int, what: str) -> Array:
        concrete = not isinstance(data, jax.core.Tracer)
        data = jnp.asarray(data, dtype=jnp.float64)
        if data.ndim == 0 or data.shape[-1] != length:
            detail = (
                f"{self.config.nmaindata} main bins of channels "
                f"{list(self.config.channels)} then {self.config.nauxdata} auxiliary data"
                if what == "data"
                else f"{length} main bins"
            )
            raise ShapeError(
                f"{what} has the wrong length",
                file=self.config.source,
                got=tuple(data.shape),
                expected=f"(..., {length}): {detail}",
            )
        if concrete:
            _check_counts(np.asarray(data)[..., : self.config.nmaindata], self.config)
        return data

    def _signal(self, signal: ArrayLike | None) -> Array:
        nsig = self.config.nsignal
        if signal is None:
            return self.signal
        if self.signal_sample < 0:
            raise ShapeError(
                "a signal vector was given, but this model has no signal regions (its "
                "signal is in the workspace; load with signal_regions=[...] for a "
                "signal-region model)",
                file=self.config.source,
            )
        signal = jnp.asarray(signal, dtype=jnp.float64)
        if signal.ndim == 0 or signal.shape[-1] != nsig:
            raise ShapeError(
                "signal has the wrong length",
                file=self.config.source,
                got=tuple(signal.shape),
                expected=f"(..., {nsig}): bins of signal regions "
                f"{list(self.config.signal_regions)}",
            )
        return signal

    # -- public API -------------------------------------------------------------------
    def expected_data(
        self,
        pars: Float[ArrayLike, "*batch npars"],
        signal: Float[ArrayLike, "*batch nsignal"] | None = None,
        *,
        include_auxdata: bool = True,
    ) -> Float[Array, "*batch ndata"]:
        """Expected main data, then expected auxiliary data (pyhf's order).

        Args:
            pars: parameter values, ``(*batch, npars)``.
            signal: signal yields of a signal-region model, ``(*batch, nsignal)``;
                default: the model's ``signal`` (zeros unless set with
                :meth:`with_signal`).
            include_auxdata: append the expected auxiliary data.

        Returns:
            ``(*batch, nmaindata + nauxdata)`` float64, or ``(*batch, nmaindata)``.
        """
        pars, signal = self._pars(pars), self._signal(signal)
        if include_auxdata:
            return _expected_kernel(self, pars, signal)
        return _main_kernel(self, pars, signal)

    def expected_actualdata(
        self,
        pars: Float[ArrayLike, "*batch npars"],
        signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    ) -> Float[Array, "*batch nmaindata"]:
        """Expected main data only, ``(*batch, nmaindata)``."""
        return self.expected_data(pars, signal, include_auxdata=False)

    def expected_auxdata(
        self, pars: Float[ArrayLike, "*batch npars"]
    ) -> Float[Array, "*batch nauxdata"]:
        """Expected auxiliary data, ``(*batch, nauxdata)``."""
        return _aux_kernel(self, self._pars(pars))

    def expected_by_sample(
        self,
        pars: Float[ArrayLike, " npars"],
        signal: Float[ArrayLike, " nsignal"] | None = None,
    ) -> Float[Array, "*batch nsamples nmaindata"]:
        """Expected main data per sample, ``(*batch, nsamples, nmaindata)``."""
        pars, signal = self._pars(pars), self._signal(signal)
        return _rates_kernel(self, pars, signal)

    def logpdf(
        self,
        pars: Float[ArrayLike, "*batch npars"],
        data: Float[ArrayLike, "*batch ndata"],
        signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    ) -> Float[Array, "*batch"]:
        r"""Log-likelihood :math:`\ln L(\theta; n, a)`, with pyhf's constants.

        Equals ``pyhf.Model.logpdf(pars, data)[0]``: Poisson terms of the main bins
        (``n ln(lambda) - lambda - ln Gamma(n + 1)``) plus Gaussian and Poisson
        constraint terms of the auxiliary data.

        Args:
            pars: parameter values, ``(*batch, npars)``.
            data: main bins then auxiliary data, ``(*batch, ndata)``.
            signal: signal yields of a signal-region model, ``(*batch, nsignal)``.

        Returns:
            ``(*batch,)`` float64.

        Raises:
            ShapeError: an argument's last axis has the wrong length.
            InvalidDataError: concrete (non-traced) main data are negative or not
                finite.
        """
        pars, signal = self._pars(pars), self._signal(signal)
        data = self._data(data, self.config.ndata, "data")
        return _logpdf_kernel(self, pars, data, signal)

    def main_logpdf(
        self,
        pars: Float[ArrayLike, "*batch npars"],
        maindata: Float[ArrayLike, "*batch nmaindata"],
        signal: Float[ArrayLike, "*batch nsignal"] | None = None,
    ) -> Float[Array, "*batch"]:
        """The main (Poisson) part of :meth:`logpdf`, ``(*batch,)``."""
        pars, signal = self._pars(pars), self._signal(signal)
        maindata = self._data(maindata, self.config.nmaindata, "main data")
        return _main_logpdf_kernel(self, pars, maindata, signal)

    def constraint_logpdf(
        self,
        pars: Float[ArrayLike, "*batch npars"],
        auxdata: Float[ArrayLike, "*batch nauxdata"],
    ) -> Float[Array, "*batch"]:
        """The constraint part of :meth:`logpdf`, ``(*batch,)``."""
        pars = self._pars(pars)
        auxdata = jnp.asarray(auxdata, dtype=jnp.float64)
        if auxdata.ndim == 0 or auxdata.shape[-1] != self.config.nauxdata:
            raise ShapeError(
                "auxiliary data have the wrong length",
                file=self.config.source,
                got=tuple(auxdata.shape),
                expected=f"(..., {self.config.nauxdata})",
            )
        return _constraint_logpdf_kernel(self, pars, auxdata)

    def with_signal(self, signal: Float[ArrayLike, " nsignal"]) -> Model:
        """A copy whose default signal yields are ``signal`` (signal-region models)."""
        signal = self._signal(signal)
        if signal.ndim != 1:
            raise ShapeError(
                "with_signal takes one signal vector; pass batches as signal=...",
                file=self.config.source,
                got=tuple(signal.shape),
                expected=f"({self.config.nsignal},)",
            )
        return replace(self, signal=signal)

    def with_config(self, **changes: Any) -> Model:
        """A copy with some of ``init``, ``bounds``, ``fixed`` or ``auxdata`` replaced.

        Example:
            >>> fixed = model.config.fixed.at[model.config.par_index("lumi")].set(True)
            >>> model = model.with_config(fixed=fixed)  # doctest: +SKIP
        """
        allowed = {"init", "bounds", "fixed", "auxdata"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"with_config() cannot change {sorted(unknown)}")
        current = {k: getattr(self.config, k) for k in changes}
        new = {}
        for key, value in changes.items():
            dtype = jnp.bool_ if key == "fixed" else jnp.float64
            value = jnp.asarray(value, dtype=dtype)
            if value.shape != current[key].shape:
                raise ShapeError(
                    f"{key} has the wrong shape",
                    file=self.config.source,
                    got=tuple(value.shape),
                    expected=tuple(current[key].shape),
                )
            new[key] = value
        return replace(self, config=replace(self.config, **new))

    def __repr__(self) -> str:
        c = self.config
        kind = f", signal regions {list(c.signal_regions)}" if c.signal_regions else ""
        return (
            f"Model({c.source!r}: {len(c.channels)} channels, {c.nmaindata} bins, "
            f"{len(c.samples)} samples, {c.npars} parameters, poi={c.poi_name!r}{kind})"
        )


# Jitted, batched kernels behind the public methods. The model is an ordinary
# (dynamic) argument, so each structure compiles once per set of shapes; called
# inside a user's jit they are simply inlined. A stacked grid's point axis
# broadcasts with the other arguments' batch axes. Large batches of a single model
# run in groups on the CPU (difflike._vectorize.CHUNKS["cpu", "evaluate"]).
def _kernel(method: str, signature: str):
    def one(model: Model, *args: Array) -> Array:
        return getattr(model, method)(*args)

    def run(model: Model, *args: Array) -> Array:
        # a stacked grid is mapped over as one vmap: groups would copy its tables
        # for every example of a crossed batch
        chunk = default_chunk("evaluate") if model_batch_ndim(model) == 0 else None
        return vectorize(one, signature, batch_ndim=model_batch_ndim, chunk=chunk)(
            model, *args
        )

    run.__name__ = run.__qualname__ = f"model{method}"
    return jax.jit(run)


def model_batch_ndim(model: Model) -> int:
    """Number of leading batch (point) axes of a model's arrays."""
    return len(model.config.batch_shape)


_logpdf_kernel = _kernel("_logpdf", "(p),(n),(s)->()")
_main_logpdf_kernel = _kernel("_main_logpdf", "(p),(n),(s)->()")
_constraint_logpdf_kernel = _kernel("_constraint_logpdf", "(p),(a)->()")
_expected_kernel = _kernel("_expected", "(p),(s)->(n)")
_main_kernel = _kernel("_main", "(p),(s)->(n)")
_aux_kernel = _kernel("_aux", "(p)->(a)")
_rates_kernel = _kernel("_rates", "(p),(s)->(k,n)")


def _exclusive_prod(x: Array) -> Array:
    """``out[i] = prod_{j != i} x[j]`` along axis 0, without division."""
    if x.shape[0] == 0:
        return x
    one = jnp.ones_like(x[:1])
    before = jnp.concatenate([one, jnp.cumprod(x[:-1], axis=0)])
    after = jnp.flip(
        jnp.concatenate([one, jnp.cumprod(jnp.flip(x, 0)[:-1], axis=0)]), 0
    )
    return before * after


def _poisson_logpdf(n: Array, lam: Array) -> Array:
    """``n ln(lam) - lam - lnGamma(n + 1)`` with ``0 ln(0) = 0`` and safe gradients."""
    positive = n > 0
    safe_lam = jnp.where(positive, lam, 1.0)
    return jnp.where(positive, n * jnp.log(safe_lam), 0.0) - lam - gammaln(n + 1.0)


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _normal_logpdf(x: Array, mu: Array, sigma: Array) -> Array:
    z = (x - mu) / sigma
    return -0.5 * z * z - jnp.log(sigma) - _LOG_SQRT_2PI


def _names_preview(names: tuple[str, ...], limit: int = 4) -> str:
    head = ", ".join(names[:limit])
    return f"[{head}, ...]" if len(names) > limit else f"[{head}]"


def _check_counts(main: np.ndarray, config: ModelConfig) -> None:
    """Raise on negative or non-finite observed counts, naming channel and bin."""
    bad = ~np.isfinite(main) | (main < 0)
    if not bad.any():
        return
    index = np.argwhere(bad)[0]
    flat = int(index[-1])
    value = main[tuple(index)]
    for name, sl in config.channel_slices.items():
        if sl.start <= flat < sl.stop:
            problem = "is not finite" if not np.isfinite(value) else "is negative"
            raise InvalidDataError(
                f"observed count in bin {flat - sl.start} of channel {name!r} "
                f"(data index {flat}) {problem}",
                file=config.source,
                got=float(value),
                expected="a finite count >= 0",
            )
