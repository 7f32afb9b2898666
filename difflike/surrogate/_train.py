r"""Training surrogates: Optax Adam, early stopping, ensembles, hyper-parameter search.

:func:`train` turns a labelled dataset (:func:`difflike.sample.sample`) into a
:class:`~difflike.surrogate.Surrogate`:

1. **Split.** Rows are split 60/20/20 into train, validation and test by a seeded
   permutation (the same split for every expectation; rows whose fit did not
   converge for an expectation are left out of that expectation's sets).
2. **Baseline and standardisation.** With ``counting`` (the default) the networks
   learn :math:`\Delta - \Delta_\mathrm{c}`, the departure from the counting
   baseline of :mod:`difflike.surrogate._counting`, whose parameters the dataset
   records (``meta["counting"]``; for older datasets they are computed from the
   workspace, read again and its SHA-256 checked) and the surrogate stores; with
   ``calibrate`` the baseline's variances are first scaled per signal bin to fit
   the training labels (:func:`calibration_scales`). On ATLAS-SUSY-2018-04 that
   target's standard deviation is 40-60 times smaller than that of :math:`\Delta`
   itself. Inputs are standardised by the training rows' mean and standard
   deviation per feature; each expectation's target by its standard deviation with
   every row weighted as in the loss (:func:`target_scales`; no shift: the
   surrogate subtracts its value at :math:`s = 0`, see
   :mod:`difflike.surrogate._surrogate`). Weighted, the scale is the band's: on
   ATLAS-SUSY-2019-08 the unweighted one was set by the far tails (12-17 against
   1.1-1.9), and the band rows within 0.05 rose from 29-46% to 38-55% when it
   changed (docs/surrogates.md); on ATLAS-SUSY-2018-04 it barely moves.
3. **Loss.** Weighted mean squared error of the standardised target (one network
   per expectation, or one multi-head network; expectations whose labels are
   identical, ``observed_asimov`` and ``aposteriori``, share a network with an
   output for each). Weights follow :math:`\Delta` itself: rows
   inside the band that inference uses, :math:`-2\Delta \le` ``band``, weigh 1;
   rows beyond it weigh ``(band / (-2Δ))**tail_power``, so the far tails (which only
   need to be "excluded") do not dominate the squared error. The default power is
   4: where the labels' departure from the baseline grows with :math:`-2\Delta`
   (ATLAS-SUSY-2019-08) a power of 1 still lets the tails dominate and the networks
   underfit the band (docs/surrogates.md). Where the dataset records each label's
   gradient :math:`\partial\Delta/\partial s` (:mod:`difflike.sample`), the loss
   adds ``gradient_weight`` times the same weighted squared error of the network's
   gradient (through the features, in units of the target's scale per training
   standard deviation of each yield): N more numbers per row. Off by default:
   weight 3 raised the ATLAS-SUSY-2019-08 band rows within 0.05 by 9-10 points
   before the targets' scale was loss-weighted (nothing since) and costs
   ATLAS-SUSY-2018-04's observed band most of its accuracy (docs/surrogates.md).
4. **Optimiser.** Adam (``optax.adamw`` with optional decoupled weight decay),
   learning rate warmed up linearly over ``warmup_epochs`` then decayed by a cosine
   to 1% over ``max_epochs``; minibatches reshuffled every epoch; an epoch is one
   compiled ``lax.scan``. Early stopping: training ends when the validation loss
   has not improved for ``patience`` epochs; the best epoch's parameters are kept.
5. **Search and ensemble.** ``trials`` candidates per network: the settings as
   given, then random draws of width, depth, learning rate and batch size (seeded),
   until ``trials`` are done or ``budget_s`` seconds have passed. The ``ensemble``
   candidates with the lowest validation loss form the ensemble (their mean),
   leaving out any whose loss is more than twice the best one's.

Everything is resumable. Each candidate checkpoints its parameters, optimiser state,
best parameters, RNG key and loss history with Orbax every ``checkpoint_every``
epochs (``OUT/checkpoints/net<i>/trial<t>``); a finished candidate is recorded in
``OUT/trials.json`` with its parameters beside it, so a restarted :func:`train` with
the same settings skips finished candidates and resumes the interrupted one at its
last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from difflike._files import atomic_write
from difflike._version import __version__
from difflike.errors import InputError
from difflike.surrogate._counting import counting_delta
from difflike.surrogate._network import (
    Architecture,
    Params,
    apply,
    flatten_params,
    init_params,
    unflatten_params,
)

__all__ = ["TrainSettings", "split_indices", "train", "train_network"]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How :func:`train` trains (module doc).

    Attributes:
        widths: hidden layer widths of the first candidate.
        learning_rate: peak learning rate of the first candidate.
        batch_size: minibatch size of the first candidate.
        max_epochs: epochs at most (also the cosine decay's length).
        patience: epochs without a better validation loss before stopping.
        warmup_epochs: linear learning-rate warm-up.
        weight_decay: decoupled weight decay (AdamW); 0 is plain Adam.
        negative_slope: LeakyReLU's negative slope (with ``activation="leaky_relu"``).
        activation: hidden nonlinearity (:data:`~difflike.surrogate._network.ACTIVATIONS`).
            LeakyReLU by default: on ATLAS likelihoods with restarted labels it
            represents the ridge where two minima of the profile cross, which
            SiLU rounds off (docs/surrogates.md); SiLU is the better choice on
            smooth likelihoods.
        band: :math:`-2\\Delta` up to which rows weigh fully in the loss.
        tail_power: rows beyond ``band`` weigh ``(band / (-2Δ))**tail_power``.
        gradient_weight: weight of the gradient term of the loss (module doc), used
            where the dataset records the labels' gradients; 0 (the default)
            learns the values alone. The term is in the targets' own units, so
            its best weight depends on the likelihood: 3 helped on
            ATLAS-SUSY-2019-08 and hurt on ATLAS-SUSY-2018-04
            (docs/surrogates.md).
        multihead: one network for all expectations (``True``) or one per
            expectation (``False``).
        counting: learn the departure from the counting baseline (module doc);
            needs the dataset's workspace at training time only.
        calibrate: scale the counting baseline's variances per signal bin to fit
            the training labels before the networks learn the rest (module doc;
            only with ``counting``).
        log_features: give the networks :math:`\\ln(1 + s/b)` beside the yields
            (:func:`~difflike.surrogate._surrogate.features`; needs the dataset's
            yield space).
        trials: candidates per network (hyper-parameter search; 1 = no search).
        ensemble: candidates kept per network (the ensemble's size).
        budget_s: stop starting new candidates after this many seconds (per
            network); ``None``: no limit.
        split: train, validation and test fractions.
        seed: seed of the split, the initialisations and the search.
        checkpoint_every: epochs between Orbax checkpoints.
    """

    widths: tuple[int, ...] = (128, 128, 128)
    learning_rate: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 400
    patience: int = 40
    warmup_epochs: int = 5
    weight_decay: float = 0.0
    negative_slope: float = 0.01
    activation: str = "leaky_relu"
    band: float = 10.0
    tail_power: float = 4.0
    gradient_weight: float = 0.0
    multihead: bool = False
    counting: bool = True
    calibrate: bool = False
    log_features: bool = True
    trials: int = 4
    ensemble: int = 3
    budget_s: float | None = None
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        if self.trials < 1 or not 1 <= self.ensemble <= self.trials:
            raise InputError(
                "need 1 <= ensemble <= trials", got=(self.ensemble, self.trials)
            )
        if (
            len(self.split) != 3
            or min(self.split) <= 0
            or abs(sum(self.split) - 1) > 1e-9
        ):
            raise InputError(
                "split must be three positive fractions summing to 1", got=self.split
            )
        if not (self.band > 0 and self.tail_power >= 0 and self.gradient_weight >= 0):
            raise InputError(
                "band must be positive, tail_power and gradient_weight non-negative",
                got=(self.band, self.tail_power, self.gradient_weight),
            )
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise InputError(
                "batch_size, max_epochs and patience must be positive",
                got=(self.batch_size, self.max_epochs, self.patience),
            )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "widths": list(self.widths),
            "split": list(self.split),
        }


@dataclasses.dataclass(frozen=True)
class _Candidate:
    widths: tuple[int, ...]
    learning_rate: float
    batch_size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "widths": list(self.widths),
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
        }


def _candidates(settings: TrainSettings, net: int) -> list[_Candidate]:
    """The first candidate as configured, then seeded random draws."""
    rng = np.random.default_rng([settings.seed, net, 17])
    out = [_Candidate(settings.widths, settings.learning_rate, settings.batch_size)]
    while len(out) < settings.trials:
        width = int(rng.choice([64, 128, 256]))
        depth = int(rng.choice([2, 3, 4]))
        lr = float(np.exp(rng.uniform(np.log(3e-4), np.log(3e-3))))
        batch = int(rng.choice([128, 256, 512]))
        out.append(_Candidate((width,) * depth, round(lr, 6), batch))
    return out


def split_indices(n: int, fractions=(0.6, 0.2, 0.2), seed: int = 0):
    """Seeded train/validation/test row indices of ``n`` rows (sorted, disjoint)."""
    perm = np.random.default_rng([seed, 23]).permutation(n)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    parts = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
    return tuple(np.sort(p) for p in parts)


#: the calibrated variances stay within this factor of the propagated ones
CALIBRATION_RANGE = 10.0
#: training rows a calibration fits at most (an evenly spaced subset beyond)
CALIBRATION_ROWS = 20_000


def calibration_scales(
    count: dict[str, np.ndarray],
    signal: np.ndarray,
    delta: np.ndarray,
    converged: np.ndarray,
    band: float,
    tail_power: float,
) -> np.ndarray:
    r"""Per expectation and signal bin, the factor on the counting baseline's
    variance that brings :math:`\Delta_\mathrm{c}` closest to the labels,
    ``(nexpect, nsignal)``.

    The variances come from the background-only fit's covariance propagated
    linearly; where a bin's background is uncertain by tens of percent the profile
    bends less steeply than that Gaussian says (benchmarks/counting_baseline.py:
    doubling them halves what the networks must learn on the a-posteriori data of
    both published analyses). The factors minimise the weighted mean squared
    :math:`\Delta - \Delta_\mathrm{c}` over the converged training rows (the
    loss's weights, :func:`band_weights`) by BFGS on their logarithms, which stay
    within :math:`\pm\ln` :data:`CALIBRATION_RANGE`.
    """
    from jax.scipy.optimize import minimize

    bound = np.log(CALIBRATION_RANGE)
    scales = np.ones_like(np.asarray(count["variance"], np.float64))
    for k in range(scales.shape[0]):
        rows = np.flatnonzero(converged[:, k])
        if len(rows) > CALIBRATION_ROWS:
            rows = rows[np.linspace(0, len(rows) - 1, CALIBRATION_ROWS).astype(int)]
        if len(rows) == 0:
            continue
        s = jnp.asarray(signal[rows])
        d = jnp.asarray(delta[rows, k])
        w = jnp.asarray(band_weights(delta[rows, k], band, tail_power))
        n, b, v = (
            jnp.asarray(count[key][k : k + 1], jnp.float64) for key in COUNT_KEYS
        )

        def loss(u, n=n, b=b, v=v, s=s, d=d, w=w):
            scale = jnp.exp(bound * jnp.tanh(u / bound))  # within the range
            r = d - counting_delta(n, b, v * scale, s)[:, 0]
            return jnp.sum(w * r * r) / jnp.sum(w)

        u = minimize(loss, jnp.zeros(scales.shape[1]), method="BFGS").x
        if bool(jnp.all(jnp.isfinite(u))) and loss(u) < loss(jnp.zeros_like(u)):
            scales[k] = np.exp(bound * np.tanh(np.asarray(u) / bound))
    return scales


def band_weights(delta: np.ndarray, band: float, power: float) -> np.ndarray:
    """Loss weight of each row (module doc), same shape as ``delta``."""
    q = -2.0 * np.asarray(delta)
    return np.where(q <= band, 1.0, (band / np.maximum(q, band)) ** power)


def target_scales(
    target: np.ndarray, weights: np.ndarray, ok: np.ndarray
) -> np.ndarray:
    """Each expectation's standardisation scale: the standard deviation of its
    converged rows' targets, each row weighted as in the loss (module doc).

    ``target``, ``weights``, ``ok``: ``(n, nexpect)``; returns ``(nexpect,)``.
    Unweighted, the far tails set the scale (on ATLAS-SUSY-2019-08 a standard
    deviation of 12-17 against 1-2 in the band), and the band the loss is about
    is a sliver of the network's output range."""
    w = np.where(ok, weights, 0.0)
    total = np.maximum(w.sum(axis=0), 1e-300)
    t = np.where(ok, target, 0.0)
    mean = (w * t).sum(axis=0) / total
    var = (w * (t - mean) ** 2).sum(axis=0) / total
    return np.maximum(np.sqrt(var), 1e-6)


# ---- one network -----------------------------------------------------------


def _loss(arch, params, x0, gradient_weight, x, y, w, *grad):
    """``(loss, value term)``: the weighted squared error of the standardised values,
    plus ``gradient_weight`` times that of the gradients where ``grad`` is given.

    ``grad`` is ``(dx, yg, wg)``: each feature's derivative with respect to its
    yield, times that yield's scale, ``(n, nfeature)`` (feature ``j`` depends on
    yield ``j % nsignal`` alone, :func:`~difflike.surrogate._surrogate.features`);
    the target gradients in the same units, ``(n, nout, nsignal)``; their weights
    ``(n,)`` (zero where a label's gradient is not finite)."""
    pred = apply(arch, params, x) - apply(arch, params, x0)
    value = jnp.sum(w[:, None] * (pred - y) ** 2) / (jnp.sum(w) * y.shape[-1])
    if not grad:
        return value, value
    dx, yg, wg = grad
    n, nout, nsignal = yg.shape
    # d output / d feature per row (reverse mode: fewer outputs than features)
    jac = jax.vmap(jax.jacrev(lambda xi: apply(arch, params, xi[None])[0]))(x)
    pred_g = (jac * dx[:, None, :]).reshape(n, nout, -1, nsignal).sum(axis=2)
    err = jnp.sum(wg[:, None, None] * (pred_g - yg) ** 2)
    term = err / (jnp.maximum(jnp.sum(wg), 1e-30) * nout * nsignal)
    return value + gradient_weight * term, value


def _programs(arch: Architecture, tx, nbatch: int, batch: int, gradient_weight: float):
    """The compiled epoch (``lax.scan`` over shuffled minibatches) and validation
    loss (the value term alone, comparable between trainings with and without
    gradients)."""

    @jax.jit
    def epoch(params, opt_state, key, x0, rows):
        perm = jax.random.permutation(key, rows[0].shape[0])[: nbatch * batch]

        def step(carry, idx):
            params, opt_state = carry
            (loss, _), grads = jax.value_and_grad(
                lambda p: _loss(arch, p, x0, gradient_weight, *(r[idx] for r in rows)),
                has_aux=True,
            )(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = lax.scan(
            step, (params, opt_state), perm.reshape(nbatch, batch)
        )
        return params, opt_state, jnp.mean(losses)

    @jax.jit
    def evaluate(params, x0, x, y, w):
        return _loss(arch, params, x0, 0.0, x, y, w)[1]

    return epoch, evaluate


def train_network(
    arch: Architecture,
    train: tuple[np.ndarray, ...],
    val: tuple[np.ndarray, ...],
    x0: np.ndarray,
    *,
    learning_rate: float,
    batch_size: int,
    settings: TrainSettings,
    seed: int,
    checkpoints: Path | None = None,
    progress: bool = True,
    desc: str = "training",
) -> tuple[Params, dict[str, Any]]:
    """Train one network on standardised data; returns ``(best params, record)``.

    Args:
        arch: the network.
        train, val: ``(x, y, w)``: inputs ``(n, nin)``, targets ``(n, nout)`` and
            loss weights ``(n,)``, standardised, float32; ``train`` may carry the
            gradient targets after them, ``(dx, yg, wg)`` (:func:`_loss`), learnt
            with weight ``settings.gradient_weight``.
        x0: the standardised zero-yield input, ``(1, nin)`` (subtracted, see
            :mod:`difflike.surrogate._surrogate`).
        checkpoints: Orbax checkpoint folder; resumes from it when it holds one.

    Returns:
        The parameters of the best validation epoch, and a record: ``best_val``,
        ``best_epoch``, ``epochs`` run, ``history`` (train and validation loss per
        epoch), ``seconds``.
    """
    import orbax.checkpoint as ocp

    rows = tuple(jnp.asarray(a, jnp.float32) for a in train)
    xv, yv, wv = (jnp.asarray(a, jnp.float32) for a in val[:3])
    x0 = jnp.asarray(x0, jnp.float32)
    batch = max(1, min(batch_size, rows[0].shape[0]))
    nbatch = max(1, rows[0].shape[0] // batch)
    total = settings.max_epochs * nbatch
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=min(settings.warmup_epochs * nbatch, total - 1),
        decay_steps=total,
        end_value=0.01 * learning_rate,
    )
    tx = optax.adamw(schedule, weight_decay=settings.weight_decay)
    epoch_fn, evaluate = _programs(
        arch, tx, nbatch, batch, float(settings.gradient_weight)
    )

    params = init_params(arch, seed)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "best": params,
        "key": jax.random.key_data(jax.random.key(seed)),
        "epoch": np.asarray(0),
        "best_val": np.asarray(np.inf, np.float32),
        "best_epoch": np.asarray(-1),
        "history": np.full((settings.max_epochs, 2), np.nan, np.float32),
    }
    manager = None
    if checkpoints is not None:
        manager = ocp.CheckpointManager(
            Path(checkpoints).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
        )
        step = manager.latest_step()
        if step is not None:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            state = manager.restore(step, args=ocp.args.StandardRestore(abstract))

    params, opt_state, best = state["params"], state["opt_state"], state["best"]
    key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
    start = int(state["epoch"])
    best_val, best_epoch = float(state["best_val"]), int(state["best_epoch"])
    history = np.array(state["history"])
    t0 = time.perf_counter()
    bar = _bar(settings.max_epochs, start, desc, progress)

    saved = [start]

    def save(epoch: int) -> None:
        if manager is None or epoch == saved[0]:
            return
        saved[0] = epoch
        tree = {
            "params": params,
            "opt_state": opt_state,
            "best": best,
            "key": jax.random.key_data(key),
            "epoch": np.asarray(epoch),
            "best_val": np.asarray(best_val, np.float32),
            "best_epoch": np.asarray(best_epoch),
            "history": history,
        }
        manager.save(epoch, args=ocp.args.StandardSave(tree), force=True)
        manager.wait_until_finished()

    epoch = start
    try:
        while epoch < settings.max_epochs and epoch - best_epoch <= settings.patience:
            key, sub = jax.random.split(key)
            params, opt_state, loss = epoch_fn(params, opt_state, sub, x0, rows)
            val_loss = float(evaluate(params, x0, xv, yv, wv))
            history[epoch] = (float(loss), val_loss)
            if not math.isfinite(val_loss):
                break
            if val_loss < best_val:
                best_val, best_epoch, best = val_loss, epoch, params
            epoch += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val=f"{val_loss:.3g}", best=f"{best_val:.3g}")
            if epoch % settings.checkpoint_every == 0:
                save(epoch)
        save(epoch)
    finally:
        if bar is not None:
            bar.close()
        if manager is not None:
            manager.close()
    record = {
        "best_val": best_val,
        "best_epoch": best_epoch,
        "epochs": epoch,
        "history": history[:epoch].tolist(),
        "seconds": time.perf_counter() - t0,
    }
    return jax.tree.map(np.asarray, best), record


def _bar(total: int, initial: int, desc: str, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="epoch",
        file=sys.stderr,
        leave=False,
    )


# ---- a whole surrogate -----------------------------------------------------


def train(
    dataset,
    out: str | os.PathLike,
    settings: TrainSettings = TrainSettings(),
    *,
    expectations: tuple[str, ...] | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
):
    """Train a surrogate on a labelled dataset and write it to ``out`` (module doc).

    Args:
        dataset: a :class:`~difflike.sample.YieldDataset` or its folder.
        out: output folder: ``surrogate.json`` + ``params.npz`` (the surrogate),
            ``trials.json`` (every candidate's settings, losses and history),
            ``checkpoints/`` (Orbax, for resuming).
        settings: :class:`TrainSettings`; a resumed run must use the same.
        expectations: which of the dataset's expectations to learn (default: all).
        progress: progress bars on stderr.
        callback: called with each finished candidate's record.

    Returns:
        The :class:`~difflike.surrogate.Surrogate`, with test-split metrics in
        ``meta["metrics"]``.
    """
    from difflike.sample import YieldDataset, load_dataset
    from difflike.surrogate._metrics import test_metrics
    from difflike.surrogate._surrogate import Surrogate, SurrogateNets, features

    if not isinstance(dataset, YieldDataset):
        dataset = load_dataset(dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = tuple(expectations or dataset.expectations)
    cols = [
        dataset.expectations.index(e) if e in dataset.expectations else -1
        for e in names
    ]
    if -1 in cols:
        raise InputError(
            "the dataset has no labels for that expectation",
            got=names[cols.index(-1)],
            expected=", ".join(dataset.expectations),
        )
    meta = dataset.meta
    n = len(dataset)
    if n < 10:
        raise InputError(
            "too few labelled rows to train on", got=n, file=str(dataset.folder)
        )
    parts = split_indices(n, settings.split, settings.seed)
    signal = np.asarray(dataset.signal, np.float64)
    delta = np.asarray(dataset.delta[:, cols], np.float64)
    conv = np.asarray(dataset.converged[:, cols], bool)

    train_rows = parts[0]
    space = meta.get("space") or {}
    log_features = settings.log_features and bool(space)
    margin = float(meta.get("settings", {}).get("lower_margin", 0.05))
    background = (
        -np.asarray(space["lower"], np.float64) / (1.0 - margin)
        if log_features
        else np.ones(signal.shape[1])
    )
    counting = settings.counting
    count = {k: np.zeros((len(names), signal.shape[1])) for k in COUNT_KEYS}
    scales = np.ones((len(names), signal.shape[1]))
    base = np.zeros_like(delta)
    if counting:
        stored = meta.get("counting") or {}
        if not all(e in stored for e in names):
            stored = _counting_parameters(meta, names)
        count = {k: np.array([stored[e][k] for e in names]) for k in COUNT_KEYS}
        if settings.calibrate:
            scales = calibration_scales(
                count,
                signal[train_rows],
                delta[train_rows],
                conv[train_rows],
                settings.band,
                settings.tail_power,
            )
            count["variance"] = count["variance"] * scales
        base = np.asarray(
            counting_delta(*(np.asarray(count[k]) for k in COUNT_KEYS), signal)
        )
    target = delta - base  # what the networks learn; the loss weights use delta
    feats = np.asarray(features(signal, background, log_features), np.float64)
    x_shift = feats[train_rows].mean(axis=0)
    x_scale = np.maximum(feats[train_rows].std(axis=0), 1e-6)
    loss_weights = band_weights(delta, settings.band, settings.tail_power)
    y_scale = target_scales(
        target[train_rows], loss_weights[train_rows], conv[train_rows]
    )
    x_all = ((feats - x_shift) / x_scale).astype(np.float32)
    y_all = (target / y_scale).astype(np.float32)
    gradients = getattr(dataset, "gradient", None)
    use_gradients = gradients is not None and settings.gradient_weight > 0
    if use_gradients:
        # the gradient targets in the values' standardised units per yield scale
        u = np.maximum(signal[train_rows].std(axis=0), 1e-6)
        learnt = np.asarray(gradients[:, cols], np.float64)
        if counting:
            learnt = learnt - _counting_gradient(count, signal)
        g_all = learnt / y_scale[None, :, None] * u
        g_ok = np.isfinite(g_all).all(axis=2)
        g_all = np.where(g_ok[..., None], g_all, 0.0).astype(np.float32)
        slopes = np.asarray(_feature_slopes(signal, background, log_features))
        dx_all = (slopes / x_scale * np.tile(u, slopes.shape[1] // len(u))).astype(
            np.float32
        )
    zero = np.asarray(
        features(np.zeros((1, signal.shape[1])), background, log_features)
    )
    x0 = ((zero - x_shift) / x_scale).astype(np.float32)

    groups = (
        [tuple(range(len(names)))]
        if settings.multihead
        else _identical_groups(delta, conv)
    )
    ledger_path = out / "trials.json"
    ledger = _read_ledger(ledger_path, dataset, settings, names)

    def rows(part, heads):
        ok = np.all(conv[np.ix_(part, heads)], axis=1)
        r = part[ok]
        w = np.min(loss_weights[np.ix_(r, heads)], axis=1).astype(np.float32)
        out = (x_all[r], y_all[np.ix_(r, heads)], w)
        if not use_gradients:
            return out
        wg = w * np.all(g_ok[np.ix_(r, heads)], axis=1)
        return (*out, dx_all[r], g_all[np.ix_(r, heads)], wg.astype(np.float32))

    params_all, archs_all, ensembles = [], [], []
    for g, heads in enumerate(groups):
        tr, va = rows(parts[0], list(heads)), rows(parts[1], list(heads))
        if len(tr[0]) < 2 or len(va[0]) < 1:
            raise InputError(
                "too few converged rows to train on",
                got=len(tr[0]),
                expected=f"expectation(s) {', '.join(names[h] for h in heads)}",
            )
        started = time.perf_counter()
        for t, cand in enumerate(_candidates(settings, g)):
            tag = f"net{g}-trial{t}"
            if tag in ledger["trials"]:
                continue
            if (
                settings.budget_s is not None
                and t >= settings.ensemble
                and time.perf_counter() - started > settings.budget_s
            ):
                break
            arch = Architecture(
                nin=x_all.shape[1],
                widths=cand.widths,
                nout=len(heads),
                negative_slope=settings.negative_slope,
                activation=settings.activation,
            )
            params, record = train_network(
                arch,
                tr,
                va,
                x0,
                learning_rate=cand.learning_rate,
                batch_size=cand.batch_size,
                settings=settings,
                seed=settings.seed * 1000 + g * 100 + t,
                checkpoints=out / "checkpoints" / tag,
                progress=progress,
                desc=f"{'+'.join(names[h] for h in heads)} {t + 1}/{settings.trials}",
            )
            flat = flatten_params(params)
            path = out / f"{tag}.npz"
            atomic_write(path, lambda f, flat=flat: np.savez(f, **flat))
            record |= {
                "net": g,
                "trial": t,
                "candidate": cand.to_json(),
                "arch": arch.to_json(),
            }
            ledger["trials"][tag] = record
            _write_ledger(ledger_path, ledger)
            if callback is not None:
                callback(record)
        done = sorted(
            (r for r in ledger["trials"].values() if r["net"] == g),
            key=lambda r: r["best_val"],
        )
        kept = _ensemble(done, settings.ensemble)
        members, archs = [], []
        for r in kept:
            arch = Architecture.from_json(r["arch"])
            with np.load(out / f"net{g}-trial{r['trial']}.npz") as z:
                members.append(unflatten_params(z, arch))
            archs.append(arch)
        params_all.append(tuple(members))
        archs_all.append(tuple(archs))
        ensembles.append(kept)

    nets = SurrogateNets(
        params=tuple(params_all),
        x_shift=jnp.asarray(x_shift, jnp.float32),
        x_scale=jnp.asarray(x_scale, jnp.float32),
        y_scale=jnp.asarray(y_scale, jnp.float32),
        background=jnp.asarray(background, jnp.float32),
        **{f"count_{k}": jnp.asarray(count[k], jnp.float32) for k in COUNT_KEYS},
        archs=tuple(archs_all),
        heads=tuple(groups),
        nexpect=len(names),
        log_features=log_features,
        counting=counting,
    )
    surrogate = Surrogate(
        nets=nets,
        signal_regions=tuple(meta["signal_regions"]),
        signal_nbins=tuple(meta["signal_nbins"]),
        expectations=names,
        # datasets written before the POI was recorded: pyhf's normfactor default
        poi_bounds=tuple(meta.get("poi", {}).get("bounds", (0.0, 10.0))),
        meta={
            "workspace": meta.get("workspace", {}),
            "dataset": {
                "folder": str(dataset.folder),
                "rows": n,
                "seed": meta.get("seed"),
            },
            "settings": settings.to_json(),
            # the points the labels were fitted from (Surrogate.starts)
            "basins": meta.get("basins", {}),
            # whether the loss had the labels' gradients (datasets since 2026-12-05)
            "gradients": bool(use_gradients),
            # per expectation and signal bin, the factor calibrate put on the
            # counting baseline's variance (ones without it)
            "counting_variance_scales": scales.tolist(),
            "ensembles": [
                [{k: r[k] for k in ENSEMBLE_FIELDS} for r in kept] for kept in ensembles
            ],
            "difflike_version": __version__,
        },
    )
    test = parts[2]
    metrics = test_metrics(
        surrogate,
        signal[test],
        delta[test],
        conv[test],
        np.asarray(dataset.nll[:, cols], np.float64)[test],
    )
    surrogate = dataclasses.replace(
        surrogate, meta=surrogate.meta | {"metrics": metrics}
    )
    surrogate.save(out)
    return surrogate


def _counting_gradient(count: dict[str, np.ndarray], signal: np.ndarray) -> np.ndarray:
    """:math:`\\partial\\Delta_\\mathrm{c}/\\partial s` of every expectation at every row of
    ``signal`` ``(n, nsignal)``: ``(n, nexpect, nsignal)`` float64."""
    args = [jnp.asarray(count[k], jnp.float64) for k in COUNT_KEYS]
    jac = jax.jit(jax.vmap(jax.jacrev(lambda s: counting_delta(*args, s))))
    step = 65536  # bounded memory on large datasets
    parts = [
        jac(jnp.asarray(signal[i : i + step])) for i in range(0, len(signal), step)
    ]
    return np.concatenate([np.asarray(p) for p in parts])


def _feature_slopes(
    signal: np.ndarray, background: np.ndarray, log: bool
) -> np.ndarray:
    """Each feature's derivative with respect to the one yield it depends on,
    ``(n, nfeature)`` (:func:`~difflike.surrogate._surrogate.features`)."""
    from difflike.surrogate._surrogate import features

    s = jnp.asarray(signal, jnp.float32)
    return jax.jvp(lambda x: features(x, background, log), (s,), (jnp.ones_like(s),))[1]


#: what the surrogate's metadata records of each ensemble member
ENSEMBLE_FIELDS = ("trial", "candidate", "best_val", "best_epoch", "epochs")
#: ensemble members' validation loss at most this multiple of the best one's
ENSEMBLE_TOLERANCE = 2.0


def _identical_groups(delta: np.ndarray, conv: np.ndarray) -> list[tuple[int, ...]]:
    """One network per expectation, except that expectations with identical labels
    and flags share one (pyhf's Asimov data at mu = 0 are the a-posteriori
    expectation, so ``observed_asimov`` labels equal ``aposteriori`` ones): a
    network with an output for each, trained once."""
    groups: list[list[int]] = []
    for k in range(delta.shape[1]):
        for g in groups:
            j = g[0]
            if np.array_equal(delta[:, j], delta[:, k]) and np.array_equal(
                conv[:, j], conv[:, k]
            ):
                g.append(k)
                break
        else:
            groups.append([k])
    return [tuple(g) for g in groups]


#: the counting baseline's parameters
#: (:func:`difflike.sample._label.counting_summary`)
COUNT_KEYS = ("data", "background", "variance")


def _counting_parameters(meta: dict[str, Any], names: tuple[str, ...]) -> dict:
    """The counting baseline of the dataset's workspace for expectations ``names``
    (datasets written before the sampler stored it in ``meta["counting"]``)."""
    from difflike.sample._dataset import recorded_workspace

    model, data = recorded_workspace(
        meta.get("workspace", {}),
        meta["signal_regions"],
        why="the counting baseline needs the dataset's workspace",
        hint="train with counting=False, or --no-counting, to do without",
    )
    from difflike.sample._label import background_targets, counting_summary

    targets, column, _ = background_targets(model, data, names)
    return counting_summary(model, targets, column, names)


def _ensemble(ranked: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best candidates (``ranked`` by validation loss), without those
    whose loss exceeds :data:`ENSEMBLE_TOLERANCE` times the best: averaging with a
    clearly worse network makes the mean worse, not better."""
    best = ranked[0]["best_val"]
    return [r for r in ranked[:k] if r["best_val"] <= ENSEMBLE_TOLERANCE * best]


def _read_ledger(path: Path, dataset, settings: TrainSettings, names) -> dict[str, Any]:
    key = {
        "settings": settings.to_json(),
        "expectations": list(names),
        "dataset_rows": len(dataset),
        "dataset_seed": dataset.meta.get("seed"),
        # the targets' scale changed from the plain to the loss-weighted standard
        # deviation: a folder trained before must not be resumed with the new one
        "target_scale": "loss-weighted",
    }
    if path.is_file():
        ledger = json.loads(path.read_text())
        if ledger.get("key") != key:
            raise InputError(
                "this folder holds a training with other settings or data; "
                "use another --out or the same settings",
                file=str(path),
            )
        return ledger
    return {"key": key, "trials": {}}


def _write_ledger(path: Path, ledger: dict[str, Any]) -> None:
    text = json.dumps(ledger, indent=1).encode()
    atomic_write(path, lambda f: f.write(text))
