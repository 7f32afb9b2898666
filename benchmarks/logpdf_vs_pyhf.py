"""Batched log-likelihood evaluations per second: difflike against pyhf, same run.

On ATLAS-SUSY-2019-08 with one signal point patched in, evaluate the full
log-likelihood at a batch of random parameter vectors (and data sets) and report
evaluations per second for

* difflike (``jax.jit`` of ``model.logpdf`` over the batch),
* pyhf 0.7, numpy backend (its native batching, ``batch_size=N``),
* pyhf 0.7, jax backend (native batching, as pyhf runs it), and the same
  wrapped in ``jax.jit`` (the fastest pyhf can do),

with the ratios. Every timing is warm (compiled and run once before) and ends with
``block_until_ready``; the best of several repeats is kept.

    python benchmarks/logpdf_vs_pyhf.py [--likelihoods ../shared/likelihoods]
        [--batches 1 100 1000 10000] [--point C1N2_Wh_hbb_500_100]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import jax
import numpy as np

import difflike as dl

ROOT = Path(__file__).resolve().parents[1]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (compiles)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def pyhf_model(folder: Path, point: str, backend: str, batch: int):
    import gzip

    import pyhf

    pyhf.set_backend(backend)
    spec = json.loads((folder / "BkgOnly.json").read_text())
    ps = pyhf.PatchSet(json.load(gzip.open(folder / "patchset.json.gz")))
    ws = pyhf.Workspace(spec)
    return ws.model(patches=[ps[point]], batch_size=batch), ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000, 10000])
    parser.add_argument("--point", default="C1N2_Wh_hbb_500_100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--skip-pyhf-above",
        type=int,
        default=10000,
        help="largest batch timed with pyhf",
    )
    args = parser.parse_args()
    folder = args.likelihoods / "ATLAS-SUSY-2019-08"
    if not folder.is_dir():
        sys.exit(f"no published likelihoods at {args.likelihoods} (use --likelihoods)")

    model, data = dl.load(
        folder / "BkgOnly.json", patchset=folder / "patchset.json.gz", point=args.point
    )
    device = jax.devices()[0]
    print(
        f"# logpdf throughput, ATLAS-SUSY-2019-08 point {args.point}: {model.config.npars} parameters, "
        f"{model.config.nmaindata} bins",
        file=sys.stderr,
    )
    print(
        f"# {date.today()}  jax {jax.__version__} on {device.platform} ({device.device_kind}); "
        f"{platform.processor() or platform.machine()}",
        file=sys.stderr,
    )

    lo, hi = np.asarray(model.config.bounds).T
    rng = np.random.default_rng(0)
    init = np.asarray(model.config.init)
    header = f"{'batch':>7} {'difflike/s':>12} {'pyhf np/s':>11} {'pyhf jax/s':>11} {'pyhf jit/s':>11} {'x np':>8} {'x jax':>8} {'x jit':>8}"
    print(header)
    rows = []
    logpdf = jax.jit(lambda m, p, d: m.logpdf(p, d))
    for batch in args.batches:
        pars = np.clip(
            init + 0.3 * rng.standard_normal((batch, init.size)),
            np.maximum(lo, -5),
            np.minimum(hi, 5),
        )
        datas = np.broadcast_to(np.asarray(data), (batch, data.size)).copy()
        jp, jd = jax.device_put(pars), jax.device_put(datas)
        t_dl = best_time(
            lambda: logpdf(model, jp, jd).block_until_ready(), args.repeats
        )
        rates = {"difflike": batch / t_dl}
        if batch <= args.skip_pyhf_above:
            for backend in ("numpy", "jax"):
                pm, _ = pyhf_model(folder, args.point, backend, batch)
                if backend == "numpy":
                    t = best_time(
                        lambda: pm.logpdf(pars, datas), max(1, args.repeats // 2)
                    )
                    rates["numpy"] = batch / t
                else:
                    import jax.numpy as jnp

                    pp, pd = jnp.asarray(pars), jnp.asarray(datas)
                    t = best_time(
                        lambda: pm.logpdf(pp, pd).block_until_ready(),
                        max(1, args.repeats // 2),
                    )
                    rates["jax"] = batch / t
                    jitted = jax.jit(pm.logpdf)
                    t = best_time(
                        lambda: jitted(pp, pd).block_until_ready(), args.repeats
                    )
                    rates["jax_jit"] = batch / t
        ratio = {
            k: rates["difflike"] / rates[k]
            for k in ("numpy", "jax", "jax_jit")
            if k in rates
        }
        cells = [f"{batch:>7}", f"{rates['difflike']:>12,.0f}"]
        cells += [
            f"{rates[k]:>11,.0f}" if k in rates else f"{'-':>11}"
            for k in ("numpy", "jax", "jax_jit")
        ]
        cells += [
            f"{ratio[k]:>8,.1f}" if k in ratio else f"{'-':>8}"
            for k in ("numpy", "jax", "jax_jit")
        ]
        print(" ".join(cells), flush=True)
        rows.append({"batch": batch, "rates": rates, "ratios": ratio})
    print(
        json.dumps(
            {
                "benchmark": "logpdf_vs_pyhf",
                "device": str(device.device_kind),
                "date": str(date.today()),
                "rows": rows,
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
