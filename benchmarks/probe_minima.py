"""Look for deeper minima than the standard fit's by probing along each parameter.

For the ATLAS-SUSY-2018-04 signal-region model (SR1cut_cuts, SR2cut_cuts) and the
20 yield vectors of ``tests/fixtures/sample_pyhf_refs.json.gz``: the fit at mu = 1
from the background-only fit (as the labeller starts it), and a second fit started
from the best of ``4 P`` probes, the background-only fit moved by -2, -1, +1 and +2
along each free parameter (one vectorised NLL evaluation). Prints Delta from each,
pyhf's Delta, and the parameter of the best probe (all Deltas against the standard
background-only fit); then the same probe for the background-only fit itself
(mu = 0, s = 0), which Delta is measured from: where it finds a deeper minimum,
every Delta shifts by the difference.

    python benchmarks/probe_minima.py [--likelihoods ../shared/likelihoods]

Found on 2026-11-25: the probe reaches pyhf's minimum in the six rows where the
standard fit ends higher, and a deeper one than pyhf's in nine more, always by
raising TopSystHardCodeSR1 (a normsys with hi = 40 on a 0.04-event sample); the
background-only fit has a deeper minimum there as well (108.4965 against 108.5397).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import difflike as dl

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ["SR1cut_cuts", "SR2cut_cuts"]


def probe_start(model, data, signal, mu: float, x0: np.ndarray):
    """The best of the probes around ``x0`` (module doc) and its parameter's name."""
    cfg = model.config
    lo, hi = np.asarray(cfg.bounds).T
    free = ~np.array(cfg.fixed)
    free[cfg.poi_index] = False
    idx = np.flatnonzero(free)

    @jax.jit
    @jax.vmap
    def nll(p):
        return -model.logpdf(p.at[cfg.poi_index].set(mu), data, signal=signal)

    probes = []
    for t in (-2.0, -1.0, 1.0, 2.0):
        p = np.repeat(x0[None], len(idx), axis=0)
        p[np.arange(len(idx)), idx] += t
        probes.append(np.clip(p, lo, hi))
    probes = np.concatenate(probes)
    values = np.array(nll(jnp.asarray(probes)))
    values[~np.isfinite(values)] = np.inf
    k = int(np.argmin(values))
    return probes[k], cfg.par_names[idx[k % len(idx)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    args = parser.parse_args()
    with gzip.open(ROOT / "tests" / "fixtures" / "sample_pyhf_refs.json.gz") as f:
        ref = json.load(f)["analyses"]["ATLAS-SUSY-2018-04"]
    path = args.likelihoods / "ATLAS-SUSY-2018-04" / "BkgOnly.json"
    model, data = dl.load(path, signal_regions=REGIONS)
    zero = np.zeros(model.config.nsignal)
    bkg = dl.profile(model, data, 0.0, signal=zero)
    x0 = np.asarray(bkg.pars)
    print("row  Delta(standard)  Delta(probe)  Delta(pyhf)  probe parameter")
    for i, s in enumerate(np.asarray(ref["signal"])):
        start, name = probe_start(model, data, jnp.asarray(s), 1.0, x0)
        a = dl.profile(model, data, 1.0, signal=s, init=x0)
        b = dl.profile(model, data, 1.0, signal=s, init=start)
        print(
            f"{i:3d}  {float(bkg.nll - a.nll):15.4f}  {float(bkg.nll - b.nll):12.4f}  "
            f"{ref['delta']['observed'][i]:11.4f}  {name}"
        )
    start, name = probe_start(model, data, jnp.asarray(zero), 0.0, x0)
    again = dl.profile(model, data, 0.0, signal=zero, init=start)
    print(
        f"background-only fit: standard {float(bkg.nll):.5f}, "
        f"from the probe along {name} {float(again.nll):.5f}"
    )


if __name__ == "__main__":
    main()
