r"""How good a surrogate is: errors on held-out labels and on inference results.

:func:`test_metrics` compares the surrogate with the labels of rows it never saw
(the test split), per expectation:

* ``nll_mape`` / ``nll_maxape``: mean and largest absolute percentage error of the
  profiled negative log-likelihood :math:`-\ln L_e(s)`, as the seeds report them
  (:math:`100\,|\Delta_\mathrm{pred} - \Delta| / |\mathrm{nll}|`, since the
  surrogate's nll is the label's nll shifted by the error of :math:`\Delta`);
* ``q_err_*``: absolute error of :math:`-2\Delta` (median, 99th percentile, max);
* ``band_*``: the same restricted to rows with :math:`-2\Delta \le 10` (where
  limits and :math:`\hat\mu` are decided), and the fraction of them within 0.05.

:func:`inference_metrics` compares what users compute, :math:`\hat\mu`, CLs at
:math:`\mu = 1` and the 95% CL upper limit, between the surrogate and the exact
profiler on given yield vectors (the patchset points of an analysis, say).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BAND", "inference_metrics", "test_metrics"]

#: the inference-relevant band of -2 Delta
BAND = 10.0
#: largest |error of -2 Delta| counted as good inside the band
BAND_TOLERANCE = 0.05


def _predict(surrogate, signal: np.ndarray, chunk: int = 65536) -> np.ndarray:
    parts = [
        np.asarray(surrogate.delta(signal[i : i + chunk]))
        for i in range(0, max(len(signal), 1), chunk)
    ]
    return (
        np.concatenate(parts) if parts else np.zeros((0, len(surrogate.expectations)))
    )


def test_metrics(surrogate, signal, delta, converged, nll) -> dict[str, dict[str, Any]]:
    """Per expectation (``surrogate.expectations`` order of the columns of
    ``delta``, ``converged``, ``nll``, each ``(n, nexpect)``): the metrics of the
    module doc, computed on converged rows."""
    pred = _predict(surrogate, np.asarray(signal, np.float64)) if len(signal) else None
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(surrogate.expectations):
        ok = np.asarray(converged[:, k], bool)
        if pred is None or not ok.any():
            out[name] = {"rows": 0}
            continue
        truth, guess = delta[ok, k], pred[ok, k]
        q_err = np.abs(2.0 * (guess - truth))
        ape = 100.0 * np.abs(guess - truth) / np.maximum(np.abs(nll[ok, k]), 1e-12)
        band = -2.0 * truth <= BAND
        entry: dict[str, Any] = {
            "rows": int(ok.sum()),
            "nll_mape": float(ape.mean()),
            "nll_maxape": float(ape.max()),
            "q_err_median": float(np.median(q_err)),
            "q_err_p99": float(np.quantile(q_err, 0.99)),
            "q_err_max": float(q_err.max()),
            "band_rows": int(band.sum()),
        }
        if band.any():
            entry |= {
                "band_within_tolerance": float(np.mean(q_err[band] <= BAND_TOLERANCE)),
                "band_q_err_p99": float(np.quantile(q_err[band], 0.99)),
                "band_q_err_max": float(q_err[band].max()),
            }
        out[name] = entry
    return out


def inference_metrics(
    surrogate, model, data, signals, *, expectation: str = "observed", starts=None
):
    """Surrogate against exact profiler on yield vectors ``signals`` (``(n, nsignal)``)
    of ``model`` with ``data`` (the data of ``expectation``): per point and summary.
    ``starts``: other starting points of the exact fits (:func:`difflike.hypotest`),
    where the profile has minima that Newton does not reach from the initial
    parameters (a surrogate learns labels from the deepest, docs/sampling.md).

    Returns:
        A dict: ``exact`` and ``surrogate`` arrays (``muhat``, ``cls`` at mu = 1,
        ``limit`` observed), and the summary ``limit_rel_err`` (per point),
        ``limit_within_2pct``, ``limit_within_5pct``, ``exclusion_agreement``
        (CLs < 0.05 at mu = 1 on both sides), ``muhat_abs_err_max``.
    """
    import difflike as dl
    from difflike.surrogate._likelihood import hypotest, upper_limit

    signals = np.asarray(signals, np.float64)
    exact_h = dl.hypotest(
        1.0, model, data, signal=signals, return_details=True, starts=starts
    )
    exact_l = dl.upper_limit(model, data, signal=signals, starts=starts)
    sur_h = hypotest(surrogate, signals, 1.0, expectation=expectation)
    sur_l = upper_limit(surrogate, signals, expectation=expectation)
    exact = {
        "muhat": np.asarray(exact_h.muhat),
        "cls": np.asarray(exact_h.cls),
        "limit": np.asarray(exact_l.mu_up),
    }
    ours = {
        "muhat": np.asarray(sur_h.muhat),
        "cls": np.asarray(sur_h.cls),
        "limit": np.asarray(sur_l.mu_up),
    }
    rel = np.abs(ours["limit"] / exact["limit"] - 1.0)
    return {
        "exact": exact,
        "surrogate": ours,
        "limit_rel_err": rel,
        "limit_within_2pct": float(np.mean(rel <= 0.02)),
        "limit_within_5pct": float(np.mean(rel <= 0.05)),
        "exclusion_agreement": float(
            np.mean((ours["cls"] < 0.05) == (exact["cls"] < 0.05))
        ),
        "muhat_abs_err_max": float(np.max(np.abs(ours["muhat"] - exact["muhat"]))),
        "cls_abs_err_max": float(np.max(np.abs(ours["cls"] - exact["cls"]))),
    }
