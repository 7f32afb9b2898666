"""Do fits converge on random signal yields? ATLAS-SUSY-2018-16 signal-region models.

For the EWKinos and Sleptons background-only workspaces of ATLAS-SUSY-2018-16 as
signal-region models (every channel whose name starts with ``SR``), this draws
``--n`` random signal-yield vectors (seeded; each bin uniform in
``[0, --scale * sqrt(b)]`` for its nominal background ``b``, so that the points range
from background-like to strongly excluded) and fits each at fixed ``mu`` (default 1)
and, with ``--global``, with ``mu`` free. It prints how many converged, the status
of every failure, the iteration counts and the time.

    python benchmarks/fit_convergence.py [--likelihoods ../shared/likelihoods]
        [--n 1000] [--mu 1] [--global] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import jax
import numpy as np

import difflike as dl

ROOT = Path(__file__).resolve().parents[1]
WORKSPACES = ("EWKinos_bkgonly.json", "Sleptons_bkgonly.json")


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def run(path: Path, args) -> dict:
    spec = dl.workspace.read_json(path)
    regions = [c["name"] for c in spec["channels"] if c["name"].startswith("SR")]
    model, data = dl.load(path, signal_regions=regions)
    zero = np.zeros(model.config.nsignal)
    main = np.asarray(model.expected_actualdata(model.config.init, zero))
    b = np.maximum(main[np.asarray(model.signal_bins)], 1.0)
    rng = np.random.default_rng(args.seed)
    signal = rng.uniform(0.0, 1.0, (args.n, len(b))) * args.scale * np.sqrt(b)
    out = {"workspace": path.name, "npars": model.config.npars, "nsignal": len(b)}
    kinds = [("fixed_mu", args.mu)] + ([("global", None)] if args.global_fit else [])
    for kind, mu in kinds:
        start = time.perf_counter()
        if mu is None:
            res = jax.block_until_ready(dl.fit(model, data, signal))
        else:
            res = jax.block_until_ready(dl.profile(model, data, mu, signal))
        seconds = time.perf_counter() - start
        ok = np.asarray(res.converged)
        failures = Counter(np.asarray(res.message)[~ok].tolist())
        nit = np.asarray(res.nit)
        out[kind] = {
            "fits": args.n,
            "converged": int(ok.sum()),
            "failures": dict(failures),
            "finite_nll": int(np.isfinite(np.asarray(res.nll)).sum()),
            "nit_median": float(np.median(nit)),
            "nit_max": int(nit.max()),
            "seconds_with_compilation": seconds,
        }
        log(
            f"{path.name} {kind}: {ok.sum()}/{args.n} converged "
            f"(failures: {dict(failures) or 'none'}), iterations median "
            f"{np.median(nit):.0f} max {nit.max()}, {seconds:.0f} s"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--mu", type=float, default=1.0)
    parser.add_argument("--scale", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--global", dest="global_fit", action="store_true")
    parser.add_argument("--only", choices=WORKSPACES)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = args.likelihoods / "ATLAS-SUSY-2018-16"
    results = [run(folder / w, args) for w in WORKSPACES if args.only in (None, w)]
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
