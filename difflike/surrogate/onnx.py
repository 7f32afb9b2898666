r"""ONNX export of surrogates, and reading them back.

:func:`export` writes a surrogate as an ONNX model (jax2onnx) with one input and one
output:

* ``signal``: signal yields, ``(batch, nsignal)`` float32, bins in the order of the
  ``signal_regions`` metadata;
* ``delta``: :math:`\Delta_e(s)` per expectation, ``(batch, nexpect)`` float32,
  columns in the order of the ``expectations`` metadata.

Any ONNX runtime evaluates it; nothing of difflike or JAX is needed
(``onnxruntime.InferenceSession(path).run(None, {"signal": s})``). The model's
metadata (``metadata_props``) carry the description a user needs to call it
correctly and to know what it is:

``difflike``
    the surrogate's JSON document (format, signal regions and bins, expectations,
    POI bounds, networks, and ``meta``: the workspace's name and SHA-256, the
    dataset, training settings, ensembles, test metrics, difflike version);
``signal_regions``, ``expectations``, ``workspace_sha256``, ``difflike_version``
    the most-asked entries again, as plain strings;
``normalisation``
    the input shift and scale and output scales (JSON);
``counting``
    the counting baseline inside the graph (JSON: per expectation the signal
    bins' data, background and background variance; ``null`` without one).

Every weight of the network sits in the graph as an initializer named after its
place in the surrogate (``difflike/net0/member1/dense2/kernel``, ...), so
:func:`load` can also rebuild the JAX surrogate from the file alone
(:meth:`OnnxSurrogate.to_jax`), with gradients, for ``dl.hypotest`` and
``dl.upper_limit``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PREFIX", "OnnxSurrogate", "export", "load"]

#: prefix of the initializer names that hold the surrogate's arrays
PREFIX = "difflike/"


def export(surrogate, path: str | os.PathLike, *, opset: int = 21) -> Path:
    """Write ``surrogate`` to ``path`` as ONNX (module doc); returns the path."""
    import jax.numpy as jnp
    import onnx
    from jax2onnx import to_onnx

    from difflike._files import atomic_write

    nets = surrogate.nets

    def fn(signal):
        return nets.delta32(signal.astype(jnp.float32))

    with warnings.catch_warnings():
        # jax2onnx's stand-in for nnx.Linear reads Variable.value, which flax
        # deprecates; nothing a user can act on
        warnings.filterwarnings(
            "ignore",
            message=r".*'\.value' access is now deprecated",
            category=DeprecationWarning,
        )
        proto = to_onnx(
            fn,
            [("B", surrogate.nsignal)],
            model_name="difflike_surrogate",
            opset=opset,
            input_names=["signal"],
            output_names=["delta"],
        )
    _name_weights(proto, surrogate.arrays())
    doc = surrogate.to_json()
    props = {
        "difflike": json.dumps(doc, sort_keys=True),
        "signal_regions": json.dumps(list(surrogate.signal_regions)),
        "signal_nbins": json.dumps(list(surrogate.signal_nbins)),
        "expectations": json.dumps(list(surrogate.expectations)),
        "workspace_sha256": str(surrogate.meta.get("workspace", {}).get("sha256", "")),
        "difflike_version": str(doc["difflike_version"]),
        "normalisation": json.dumps(
            {
                "x_shift": np.asarray(nets.x_shift).tolist(),
                "x_scale": np.asarray(nets.x_scale).tolist(),
                "y_scale": np.asarray(nets.y_scale).tolist(),
            }
        ),
        "counting": json.dumps(
            {
                e: {
                    "data": np.asarray(nets.count_data[k]).tolist(),
                    "background": np.asarray(nets.count_background[k]).tolist(),
                    "variance": np.asarray(nets.count_variance[k]).tolist(),
                }
                for k, e in enumerate(surrogate.expectations)
            }
            if nets.counting
            else None
        ),
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (
        "difflike surrogate likelihood: input 'signal' (batch, nsignal) signal yields; "
        "output 'delta' (batch, nexpect) = ln L(s) - ln L(0), profiled; see the "
        "metadata 'signal_regions' and 'expectations' for the order."
    )
    onnx.checker.check_model(proto)
    path = Path(path)
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))
    return path


def _name_weights(proto, arrays: dict[str, np.ndarray]) -> None:
    """Rename the graph's initializers that hold a surrogate array to its name
    (matched by shape and exact float32 values); arrays the export folded away are
    added as unused initializers, so that every one can be read back."""
    from onnx import numpy_helper

    graph = proto.graph
    remaining = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    renames: dict[str, str] = {}
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        for key, arr in remaining.items():
            if (
                value.shape == arr.shape
                and value.dtype == arr.dtype
                and np.array_equal(value, arr)
            ):
                renames[init.name] = PREFIX + key
                init.name = PREFIX + key
                del remaining[key]
                break
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]
    for key, arr in remaining.items():
        graph.initializer.append(numpy_helper.from_array(arr, PREFIX + key))


class OnnxSurrogate:
    """A surrogate read from ONNX, evaluated by onnxruntime (no JAX needed).

    Attributes:
        path: the file.
        doc: the surrogate's JSON document (the ``difflike`` metadata).
        signal_regions, signal_nbins, expectations: as in the metadata.
    """

    def __init__(self, path: str | os.PathLike):
        import onnxruntime as ort

        from difflike.errors import InputError

        self.path = Path(path)
        try:
            self._bytes = self.path.read_bytes()
            options = ort.SessionOptions()
            options.log_severity_level = 3  # unused initializers are expected
            self.session = ort.InferenceSession(
                self._bytes, options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise InputError(f"cannot read ONNX model: {err}", file=str(path)) from err
        props = self.session.get_modelmeta().custom_metadata_map
        if "difflike" not in props:
            raise InputError(
                "not a difflike surrogate (no 'difflike' metadata)", file=str(path)
            )
        self.doc: dict[str, Any] = json.loads(props["difflike"])
        self.signal_regions = tuple(self.doc["signal_regions"])
        self.signal_nbins = tuple(self.doc["signal_nbins"])
        self.expectations = tuple(self.doc["expectations"])

    @property
    def meta(self) -> dict[str, Any]:
        return self.doc.get("meta", {})

    @property
    def nsignal(self) -> int:
        return int(sum(self.signal_nbins))

    def delta(self, s, expectation: str | None = None) -> np.ndarray:
        """:math:`\\Delta_e(s)` by onnxruntime: ``(*b,)`` for one ``expectation``,
        else ``(*b, nexpect)`` (float64 of the float32 output)."""
        from difflike.errors import InputError

        s = np.asarray(s, np.float32)
        if s.ndim < 1 or s.shape[-1] != self.nsignal:
            raise InputError(
                f"signal yields need a last axis of {self.nsignal}",
                got=s.shape,
                file=str(self.path),
            )
        batch = s.shape[:-1]
        (out,) = self.session.run(None, {"signal": s.reshape(-1, self.nsignal)})
        out = out.astype(np.float64).reshape(*batch, -1)
        if expectation is None:
            return out
        if expectation not in self.expectations:
            raise InputError(
                "this surrogate has no network for that expectation",
                got=expectation,
                expected=", ".join(self.expectations),
            )
        return out[..., self.expectations.index(expectation)]

    __call__ = delta

    def arrays(self) -> dict[str, np.ndarray]:
        """The surrogate's arrays by name, read from the initializers."""
        import onnx
        from onnx import numpy_helper

        proto = onnx.load_from_string(self._bytes)
        return {
            init.name[len(PREFIX) :]: numpy_helper.to_array(init)
            for init in proto.graph.initializer
            if init.name.startswith(PREFIX)
        }

    def to_jax(self):
        """The :class:`~difflike.surrogate.Surrogate` rebuilt from the file's
        weights (differentiable; a :class:`~difflike.infer.Likelihood` through
        ``.likelihood(signal)``)."""
        from difflike.surrogate._surrogate import Surrogate

        return Surrogate.from_arrays(self.doc, self.arrays())


def load(path: str | os.PathLike) -> OnnxSurrogate:
    """Read an ONNX surrogate (:class:`OnnxSurrogate`)."""
    return OnnxSurrogate(path)
