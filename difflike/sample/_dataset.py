"""Labelled yield samples on disk: chunked ``.npz`` files and a JSON sidecar.

A dataset is a folder::

    DIR/dataset.json       what, how and how far (below); the commit point
    DIR/warmup.npz         the chains' state after warm-up
    DIR/chunk-00000.npz    samples, labels and the chains' state after them
    DIR/chunk-00001.npz    ...

``dataset.json`` holds ``format`` (``"difflike-yield-samples"``) and ``version``;
``difflike`` (the version that wrote it); ``workspace`` (source file and the
SHA-256 digest of the workspace spec, as ``pyhf digest`` computes it);
``signal_regions`` and ``signal_nbins`` (the order of the yield columns, with
``columns`` naming each one ``channel[bin]``); ``expectations`` (the order of the
label columns); ``targets`` (expectation and temperature of each sampled density);
``space`` (the yield bounds and scales); ``settings`` and ``seed``; ``requested``
(the number of samples asked for); ``chunks`` (file, row count and SHA-256 of each
committed chunk); ``complete``.

Each chunk holds, for its ``n`` rows:

============= ==================== ===============================================
``signal``    ``(n, nsignal)``     the signal yields ``s``
``delta``     ``(n, nexpect)``     :math:`\\Delta_e(s) = \\ln L_e(s) - \\ln L_e(0)`
``nll``       ``(n, nexpect)``     :math:`-\\ln L_e(s)`, profiled
``converged`` ``(n, nexpect)``     whether the fit behind each label converged
``gradient``  ``(n, nexpect, ns)`` :math:`\\partial\\Delta_e/\\partial s` at the label's
                                   minimum, float32 (written since 2026-12-05;
                                   older chunks lack it)
``target``    ``(n,)``             index into ``targets``; -1 for exploratory draws
``chain``     ``(n,)``             the chain that drew it; -1 for exploratory draws
``step``      ``(n,)``             the chain's transition number after warm-up
``diverging`` ``(n,)``             whether the NUTS transition diverged
``accept_prob````(n,)``            the transition's mean acceptance probability
``state_*``                        the chains' state after this chunk
============= ==================== ===============================================

Writes are atomic: a chunk is written to a temporary file and renamed, then the
sidecar is rewritten the same way to list it. A run killed at any moment leaves a
dataset whose sidecar lists only complete chunks; an unlisted chunk file is
overwritten when the run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from difflike._files import atomic_write
from difflike.errors import InputError

__all__ = [
    "FORMAT",
    "VERSION",
    "YieldDataset",
    "load_dataset",
    "recorded_workspace",
]

FORMAT = "difflike-yield-samples"
VERSION = 1
SIDECAR = "dataset.json"
ROW_FIELDS = (
    "signal",
    "delta",
    "nll",
    "converged",
    "target",
    "chain",
    "step",
    "diverging",
    "accept_prob",
)
#: row fields that datasets written by older versions lack
OPTIONAL_FIELDS = ("gradient",)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> str:
    """Write ``arrays`` atomically to ``path``; returns the file's SHA-256."""
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sidecar(folder: Path, meta: Mapping[str, Any]) -> None:
    """Write ``dataset.json`` atomically (the commit point of every chunk)."""
    text = json.dumps(meta, indent=1, sort_keys=True).encode()
    atomic_write(folder / SIDECAR, lambda f: f.write(text))


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    """The sidecar of ``folder``, or ``None`` where there is none."""
    path = Path(folder) / SIDECAR
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(
            f"not a readable dataset sidecar ({err})", file=str(path)
        ) from None
    if meta.get("format") != FORMAT:
        raise InputError(
            "not a difflike yield-sample dataset",
            file=str(path),
            got=meta.get("format"),
            expected=FORMAT,
        )
    if meta.get("version") != VERSION:
        raise InputError(
            "unsupported dataset version",
            file=str(path),
            got=meta.get("version"),
            expected=VERSION,
        )
    return meta


def read_chunk(folder: Path, entry: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of one committed chunk, checked against its recorded digest."""
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise InputError("a chunk the sidecar lists is missing", file=str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise InputError(
            "chunk does not match the digest in dataset.json (modified or damaged)",
            file=str(path),
            got=digest[:16],
            expected=entry["sha256"][:16],
        )
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@dataclass(frozen=True)
class YieldDataset:
    """A labelled yield-sample dataset read from disk (see the module doc).

    Attributes:
        signal: yields, ``(n, nsignal)``.
        delta: :math:`\\Delta_e(s)`, ``(n, nexpect)``, columns in ``expectations`` order.
        nll: profiled :math:`-\\ln L_e(s)`, ``(n, nexpect)``.
        converged: fit flags of each label, ``(n, nexpect)``.
        target: sampled density of each row (-1: exploratory draw), ``(n,)``.
        chain: chain of each row (-1: exploratory draw), ``(n,)``.
        step: transition number of each row within its chain, ``(n,)``.
        diverging: whether the row's NUTS transition diverged, ``(n,)``.
        accept_prob: the transition's mean acceptance probability, ``(n,)``.
        gradient: :math:`\\partial\\Delta_e/\\partial s` of each label, ``(n, nexpect,
            nsignal)`` float32, or ``None`` where a chunk lacks it (datasets written
            before 2026-12-05).
        meta: the sidecar (workspace digest, signal regions, settings, ...).
        folder: where the dataset was read from.
    """

    signal: np.ndarray
    delta: np.ndarray
    nll: np.ndarray
    converged: np.ndarray
    target: np.ndarray
    chain: np.ndarray
    step: np.ndarray
    diverging: np.ndarray
    accept_prob: np.ndarray
    meta: dict[str, Any]
    folder: Path
    gradient: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.signal)

    @property
    def expectations(self) -> tuple[str, ...]:
        return tuple(self.meta["expectations"])

    @property
    def signal_regions(self) -> tuple[str, ...]:
        return tuple(self.meta["signal_regions"])

    def labels(self, expectation: str) -> tuple[np.ndarray, np.ndarray]:
        """``(signal, delta)`` of the rows whose ``expectation`` fit converged."""
        try:
            col = self.expectations.index(expectation)
        except ValueError:
            raise InputError(
                "this dataset has no labels for that expectation",
                got=expectation,
                expected=", ".join(self.expectations),
            ) from None
        ok = self.converged[:, col]
        return self.signal[ok], self.delta[ok, col]

    def starts(self, expectation: str = "observed") -> np.ndarray | None:
        """Every point the labels of ``expectation`` were fitted from where the
        profile has other minima (``find_basins``): the reference minimum, then the
        others, ``(k, npars)``. Pass them as ``starts=`` to :func:`difflike.delta`,
        :func:`difflike.hypotest` or :func:`difflike.upper_limit` for the exact
        answers the labels (and a surrogate trained on them) give. ``None`` where
        the labels have one starting point, or the dataset predates the record."""
        self.labels(expectation)  # an expectation the dataset has
        return recorded_starts(self.meta, expectation)


def recorded_starts(meta: Mapping[str, Any], expectation: str) -> np.ndarray | None:
    """The points an expectation's labels were fitted from, as a dataset's sidecar
    (or a surrogate's ``meta``) records them under ``basins``, ``(k, npars)``;
    ``None`` where none are recorded."""
    record = meta.get("basins", {}).get(expectation, {})
    if not record.get("points"):
        return None
    return np.asarray(record["points"], np.float64)


def load_dataset(folder: str | os.PathLike) -> YieldDataset:
    """Read a dataset folder written by :func:`difflike.sample.sample`.

    Raises:
        InputError: no dataset there, an unknown format, or a chunk that is missing
            or does not match its recorded digest.
    """
    folder = Path(folder)
    meta = read_sidecar(folder)
    if meta is None:
        raise InputError("no dataset here (no dataset.json)", file=str(folder))
    nsig = sum(meta["signal_nbins"])
    nexp = len(meta["expectations"])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ROW_FIELDS}
    optional: dict[str, list[np.ndarray] | None] = {k: [] for k in OPTIONAL_FIELDS}
    for entry in meta["chunks"]:
        chunk = read_chunk(folder, entry)
        for k in ROW_FIELDS:
            parts[k].append(chunk[k])
        for k, got in optional.items():
            # a field counts only if every chunk has it (a resumed old dataset)
            optional[k] = [*got, chunk[k]] if got is not None and k in chunk else None
    empty = {
        "signal": np.zeros((0, nsig)),
        "delta": np.zeros((0, nexp)),
        "nll": np.zeros((0, nexp)),
        "converged": np.zeros((0, nexp), bool),
        "diverging": np.zeros(0, bool),
        "accept_prob": np.zeros(0),
    }
    arrays = {
        k: np.concatenate(v) if v else empty.get(k, np.zeros(0, np.int64))
        for k, v in parts.items()
    }
    extra = {
        k: (np.concatenate(v) if v else np.zeros((0, nexp, nsig), np.float32))
        for k, v in optional.items()
        if v is not None
    }
    return YieldDataset(**arrays, **extra, meta=meta, folder=folder)


def recorded_workspace(
    workspace: Mapping[str, Any],
    signal_regions,
    path: str | os.PathLike | None = None,
    why: str = "this needs the dataset's workspace",
    hint: str = "",
):
    """``(model, data)`` of the signal-region model a dataset (or a surrogate trained
    on it) was made from: its ``meta["workspace"]`` record (``source``, ``sha256``),
    read from ``path`` where given (a dataset made on another machine) and checked
    against the recorded SHA-256. Where the file is missing the error says ``why``
    it was needed and, with ``hint``, how to do without."""
    import difflike as dl

    source = Path(path if path is not None else workspace.get("source", ""))
    if not source.is_file():
        extra = f" ({hint})" if hint else ""
        raise InputError(f"{why}, which is not there{extra}", file=str(source))
    model, data = dl.load(source, signal_regions=list(signal_regions))
    if str(model.config.digest) != workspace.get("sha256"):
        raise InputError(
            "the workspace is not the one the dataset was sampled from (SHA-256 "
            "differs)",
            file=str(source),
            got=str(model.config.digest),
            expected=workspace.get("sha256"),
        )
    return model, data
