r"""A trained surrogate: networks that give :math:`\Delta_e(s)` for several expectations.

For signal yields :math:`s` (``(nsignal,)``, the signal regions' bins in order), a
surrogate evaluates

.. math::

    \Delta_e(s) = \Delta_{\mathrm{c},e}(s)
        + \sigma_e\,\bigl[g_e(x(s)) - g_e(x(0))\bigr],
    \qquad x(s) = (s - m) / w,

with :math:`g_e` the mean over an ensemble of networks of the output that learns
expectation :math:`e`, :math:`m, w` the input standardisation, :math:`\sigma_e`
the output scale and :math:`\Delta_{\mathrm{c},e}` the counting baseline
(:mod:`difflike.surrogate._counting`; zero for surrogates trained without it), all
stored with the surrogate. Subtracting the network at :math:`s = 0` makes
:math:`\Delta_e(0) = 0` exact, as it is for the profiled likelihood by definition;
the network then only learns how the workspace departs from the baseline.

:class:`SurrogateNets` is the pytree of arrays (jit, vmap and grad go through it);
:class:`Surrogate` adds the metadata (signal regions, expectations, workspace
digest, metrics, training settings) and reads and writes a surrogate folder
(``surrogate.json`` + ``params.npz``, written atomically).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from difflike._pytree import pytree_dataclass, static
from difflike._version import __version__
from difflike.errors import InputError
from difflike.surrogate._counting import counting_delta
from difflike.surrogate._network import (
    Architecture,
    Params,
    apply,
    flatten_params,
    unflatten_params,
)

__all__ = ["FORMAT", "Surrogate", "SurrogateNets", "features", "load_folder"]

#: the ``format`` entry of ``surrogate.json``
FORMAT = "difflike-surrogate/1"


@pytree_dataclass
class SurrogateNets:
    """The arrays of a surrogate and the static structure that evaluates them.

    Attributes:
        params: per network, per ensemble member, a parameter dictionary.
        x_shift, x_scale: standardisation of the input features (:func:`features`),
            ``(nfeature,)`` float32.
        y_scale: output scale per expectation, ``(nexpect,)`` float32.
        background: post-fit background per signal bin (the scale of the
            logarithmic features), ``(nsignal,)`` float32.
        count_data, count_background, count_variance: the counting baseline's
            data, background and background variance per expectation and signal
            bin, ``(nexpect, nsignal)`` float32 (used only with ``counting``).
        archs: per network, per member, its :class:`Architecture` (static).
        heads: per network, the expectation index of each of its outputs, -1 for
            an output not used (static).
        nexpect: number of expectations (static).
        log_features: whether the inputs include :math:`\\ln(1 + s/b)` (static).
        counting: whether the networks correct the counting baseline (static).
    """

    params: tuple[tuple[Params, ...], ...]
    x_shift: Float[Array, " nfeature"]
    x_scale: Float[Array, " nfeature"]
    y_scale: Float[Array, " nexpect"]
    background: Float[Array, " nsignal"]
    count_data: Float[Array, "nexpect nsignal"]
    count_background: Float[Array, "nexpect nsignal"]
    count_variance: Float[Array, "nexpect nsignal"]
    archs: tuple[tuple[Architecture, ...], ...] = static()
    heads: tuple[tuple[int, ...], ...] = static()
    nexpect: int = static()
    log_features: bool = static(default=True)
    counting: bool = static(default=False)

    def raw(self, s: Float[ArrayLike, "*b nsignal"]) -> Float[Array, "*b nexpect"]:
        """Ensemble-mean network outputs at ``s`` (standardised units), ``(*b, nexpect)``."""
        x = features(s, self.background, self.log_features)
        x = (x - self.x_shift) / self.x_scale
        cols: list[Array | None] = [None] * self.nexpect
        for params, archs, heads in zip(self.params, self.archs, self.heads):
            out = sum(apply(a, p, x) for a, p in zip(archs, params)) / len(params)
            for k, e in enumerate(heads):
                if e >= 0:  # -1: an output this selection does not use
                    cols[e] = out[..., k]
        return jnp.stack(cols, axis=-1)

    @property
    def piecewise_linear(self) -> bool:
        """Whether any network has LeakyReLU layers (no curvature to use)."""
        return any(a.activation == "leaky_relu" for archs in self.archs for a in archs)

    def baseline(self, s: Float[ArrayLike, "*b nsignal"]) -> Float[Array, "*b nexpect"]:
        """The counting baseline at ``s``, ``(*b, nexpect)`` float32 (zeros without
        ``counting``)."""
        s = jnp.asarray(s, jnp.float32)
        if not self.counting:
            return jnp.zeros((*s.shape[:-1], self.nexpect), jnp.float32)
        return counting_delta(
            self.count_data, self.count_background, self.count_variance, s
        )

    def delta32(self, s: Float[ArrayLike, "*b nsignal"]) -> Float[Array, "*b nexpect"]:
        """:math:`\\Delta_e(s)` of every expectation in float32, ``(*b, nexpect)``
        (what the ONNX export computes)."""
        s = jnp.asarray(s, jnp.float32)
        # a batch of one zero vector: ONNX's Gemm wants rank-2 inputs
        zero = self.raw(jnp.zeros((1, s.shape[-1]), jnp.float32))[0]
        return (self.raw(s) - zero) * self.y_scale + self.baseline(s)

    def select(self, expectations: tuple[int, ...]) -> SurrogateNets:
        """Only the networks behind the outputs ``expectations`` (indices), whose
        outputs become ``0, 1, ...`` in that order: evaluating it skips the rest."""
        params, archs, heads = [], [], []
        for p, a, h in zip(self.params, self.archs, self.heads):
            new = tuple(expectations.index(e) if e in expectations else -1 for e in h)
            if any(k >= 0 for k in new):
                params.append(p)
                archs.append(a)
                heads.append(new)
        rows = jnp.asarray(expectations)
        return SurrogateNets(
            params=tuple(params),
            x_shift=self.x_shift,
            x_scale=self.x_scale,
            y_scale=self.y_scale[rows],
            background=self.background,
            count_data=self.count_data[rows],
            count_background=self.count_background[rows],
            count_variance=self.count_variance[rows],
            archs=tuple(archs),
            heads=tuple(heads),
            nexpect=len(expectations),
            log_features=self.log_features,
            counting=self.counting,
        )

    def delta(self, s: Float[ArrayLike, "*b nsignal"]) -> Float[Array, "*b nexpect"]:
        """:math:`\\Delta_e(s)` of every expectation, ``(*b, nexpect)`` float64."""
        return self.delta32(s).astype(jnp.float64)


def features(
    s: Float[ArrayLike, "*b nsignal"],
    background: Float[ArrayLike, " nsignal"],
    log: bool,
) -> Float[Array, "*b nfeature"]:
    r"""The networks' inputs before standardisation, float32: the yields ``s`` and,
    with ``log``, :math:`\ln(1 + s/b)` per bin (``nfeature = 2 nsignal``).

    A counting likelihood is linear in these, :math:`\Delta = \sum_i n_i \ln(1 +
    s_i/b_i) - s_i`, so the networks only learn how the profiled nuisance
    parameters bend it; the logarithm also carries the steep fall of
    :math:`\Delta` where a bin's expected count approaches zero. Ratios below
    :math:`-0.999` are clipped (the sampler stays above :math:`-0.95`).
    """
    s = jnp.asarray(s, jnp.float32)
    if not log:
        return s
    ratio = jnp.maximum(s / jnp.asarray(background, jnp.float32), -0.999)
    return jnp.concatenate([s, jnp.log1p(ratio)], axis=-1)


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A trained surrogate likelihood of signal yields (module doc).

    Attributes:
        nets: the networks (:class:`SurrogateNets`).
        signal_regions: the workspace channels whose bins are the inputs, in order.
        signal_nbins: bins per signal region.
        expectations: the expectation of each output, e.g. ``("observed", ...)``.
        poi_bounds: bounds of the signal strength ``mu`` (the workspace's).
        meta: everything else: workspace name and SHA-256, metrics, training
            settings, difflike version (JSON-serialisable).
    """

    nets: SurrogateNets
    signal_regions: tuple[str, ...]
    signal_nbins: tuple[int, ...]
    expectations: tuple[str, ...]
    poi_bounds: tuple[float, float]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def nsignal(self) -> int:
        return int(sum(self.signal_nbins))

    def index(self, expectation: str) -> int:
        """Output index of ``expectation``; :class:`InputError` if not learned."""
        try:
            return self.expectations.index(expectation)
        except ValueError:
            raise InputError(
                "this surrogate has no network for that expectation",
                got=expectation,
                expected=", ".join(self.expectations),
            ) from None

    def starts(self, expectation: str = "observed") -> np.ndarray | None:
        """The points the training labels of ``expectation`` were fitted from, as
        the dataset recorded them (:meth:`difflike.sample.YieldDataset.starts`):
        ``starts=`` of the exact profiler that gives the answers this surrogate
        learned, ``(k, npars)``; ``None`` where none are recorded."""
        from difflike.sample._dataset import recorded_starts

        self.index(expectation)  # an expectation the surrogate has
        return recorded_starts(self.meta, expectation)

    def _signal(self, s) -> Array:
        s = jnp.asarray(s)
        if s.ndim < 1 or s.shape[-1] != self.nsignal:
            raise InputError(
                f"signal yields need a last axis of {self.nsignal} "
                f"({', '.join(self.signal_regions)})",
                got=tuple(s.shape),
            )
        return s

    def delta(
        self, s: Float[ArrayLike, "*b nsignal"], expectation: str | None = None
    ) -> Array:
        """:math:`\\Delta_e(s)`: ``(*b,)`` for one ``expectation``, else ``(*b, nexpect)``."""
        out = _delta(self.nets, self._signal(s))
        return out if expectation is None else out[..., self.index(expectation)]

    def likelihood(
        self, signal: Float[ArrayLike, " nsignal"], expectation: str = "observed"
    ):
        """The :class:`~difflike.infer.Likelihood` of ``mu`` for yields ``signal``
        (one vector; ``jax.vmap`` for many), for ``dl.hypotest`` and
        ``dl.upper_limit``. See :class:`SurrogateLikelihood`."""
        from difflike.surrogate._likelihood import SurrogateLikelihood

        return SurrogateLikelihood.create(self, signal, expectation)

    # ---- files -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "difflike_version": __version__,
            "signal_regions": list(self.signal_regions),
            "signal_nbins": list(self.signal_nbins),
            "expectations": list(self.expectations),
            "poi_bounds": list(self.poi_bounds),
            "log_features": bool(self.nets.log_features),
            "counting": bool(self.nets.counting),
            "networks": [
                {"heads": list(h), "members": [a.to_json() for a in archs]}
                for h, archs in zip(self.nets.heads, self.nets.archs)
            ],
            "meta": self.meta,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by a flat name (``net0/member1/dense2/kernel``, ``x_shift``...)."""
        out = {
            "x_shift": np.asarray(self.nets.x_shift),
            "x_scale": np.asarray(self.nets.x_scale),
            "y_scale": np.asarray(self.nets.y_scale),
            "background": np.asarray(self.nets.background),
        }
        if self.nets.counting:
            out |= {
                "count_data": np.asarray(self.nets.count_data),
                "count_background": np.asarray(self.nets.count_background),
                "count_variance": np.asarray(self.nets.count_variance),
            }
        for i, members in enumerate(self.nets.params):
            for j, params in enumerate(members):
                out |= flatten_params(params, f"net{i}/member{j}/")
        return out

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/surrogate.json`` and ``folder/params.npz`` (atomically)."""
        from difflike._files import atomic_write

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "params.npz", lambda f: np.savez(f, **self.arrays()))
        text = json.dumps(self.to_json(), indent=1, sort_keys=True)
        atomic_write(folder / "surrogate.json", lambda f: f.write(text.encode()))
        return folder

    @classmethod
    def from_arrays(
        cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> Surrogate:
        """Rebuild from the JSON document and flat arrays of :meth:`to_json` and
        :meth:`arrays` (also what an ONNX file stores)."""
        if doc.get("format") != FORMAT:
            raise InputError("not a difflike surrogate", got=doc.get("format"))
        params, archs, heads = [], [], []
        for i, net in enumerate(doc["networks"]):
            members, member_archs = [], []
            for j, a in enumerate(net["members"]):
                arch = Architecture.from_json(a)
                members.append(unflatten_params(arrays, arch, f"net{i}/member{j}/"))
                member_archs.append(arch)
            params.append(tuple(members))
            archs.append(tuple(member_archs))
            heads.append(tuple(int(h) for h in net["heads"]))
        counting = bool(doc.get("counting", False))  # absent: made before the baseline
        shape = (len(doc["expectations"]), int(sum(doc["signal_nbins"])))
        count = {
            k: jnp.asarray(arrays[k] if counting else np.zeros(shape), jnp.float32)
            for k in ("count_data", "count_background", "count_variance")
        }
        nets = SurrogateNets(
            params=tuple(params),
            x_shift=jnp.asarray(arrays["x_shift"], jnp.float32),
            x_scale=jnp.asarray(arrays["x_scale"], jnp.float32),
            y_scale=jnp.asarray(arrays["y_scale"], jnp.float32),
            background=jnp.asarray(arrays["background"], jnp.float32),
            **count,
            archs=tuple(archs),
            heads=tuple(heads),
            nexpect=len(doc["expectations"]),
            log_features=bool(doc["log_features"]),
            counting=counting,
        )
        return cls(
            nets=nets,
            signal_regions=tuple(doc["signal_regions"]),
            signal_nbins=tuple(int(n) for n in doc["signal_nbins"]),
            expectations=tuple(doc["expectations"]),
            poi_bounds=(float(doc["poi_bounds"][0]), float(doc["poi_bounds"][1])),
            meta=dict(doc.get("meta", {})),
        )


def load_folder(folder: str | os.PathLike) -> Surrogate:
    """Read a surrogate folder written by :meth:`Surrogate.save`."""
    folder = Path(folder)
    doc_path = folder / "surrogate.json"
    if not doc_path.is_file():
        raise InputError("no surrogate here (no surrogate.json)", file=str(folder))
    try:
        doc = json.loads(doc_path.read_text())
        with np.load(folder / "params.npz") as z:
            arrays = {k: z[k] for k in z.files}
        return Surrogate.from_arrays(doc, arrays)
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"unreadable surrogate: {err}", file=str(folder)) from err


@jax.jit
def _delta(nets: SurrogateNets, s: Array) -> Array:
    return nets.delta(s)
