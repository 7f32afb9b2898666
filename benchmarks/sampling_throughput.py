"""Labelled yield samples per second, and the labels against pyhf's fits.

Runs :func:`difflike.sample.sample` on a signal-region model: by default the
ATLAS-SUSY-2018-04 one (SR1cut_cuts, SR2cut_cuts) when ``--likelihoods`` holds it,
else the built-in example. The first run compiles (its time is printed apart); a
second call extends the same dataset by ``--n`` samples and gives the warm
throughput, split into NUTS and labelling time. The labels of ``--pyhf-check``
random samples are then compared with pyhf 0.7's fixed-POI fits (numpy backend) of
the equivalent pyhf model: acceptance wants ``|Δ - Δ_pyhf| <= 1e-4`` (with the
two references' difference added back where the labels' reference is a deeper
minimum than pyhf's background-only fit; rows where pyhf's fit fails or stops in
a shallower minimum are counted apart).

    python benchmarks/sampling_throughput.py [--analysis 2018-04|2019-08|example]
        [--n 2000] [--pyhf-check 200] [--chains 4] [--restart-above 10]
        [--num-warmup 200] [--label-batch 1024]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import jax
import numpy as np

import difflike as dl
from difflike.sample import SamplerSettings, background_targets, sample, summarize

ROOT = Path(__file__).resolve().parents[1]
REGIONS = {
    "2018-04": ("ATLAS-SUSY-2018-04", ["SR1cut_cuts", "SR2cut_cuts"]),
    "2019-08": ("ATLAS-SUSY-2019-08", ["SRLMEM_mct2", "SRMMEM_mct2", "SRHMEM_mct2"]),
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def load(analysis: str, likelihoods: Path):
    if analysis == "example":
        spec = dl.workspace.read_json(dl.example_workspace())
        return spec, *dl.load(
            dl.example_workspace(), signal_regions=["SR_low", "SR_high"]
        )
    folder, regions = REGIONS[analysis]
    path = likelihoods / folder / "BkgOnly.json"
    spec = dl.workspace.read_json(path)
    return spec, *dl.load(path, signal_regions=regions)


def pyhf_check(spec, model, data, ds, n: int, seed: int = 0) -> dict:
    """Δ of ``n`` random samples against pyhf's fixed-POI fits, per sampled
    expectation. pyhf's Δ is taken against its background-only fit, which where the
    profile has a deeper minimum elsewhere (``find_basins``) is not the labels'
    reference: the difference of the two references is added back. Counted apart:
    rows where pyhf's SLSQP fails, and rows where the label's minimum is deeper
    than pyhf's by more than 1e-4 (pyhf stopped in a shallower one)."""
    import pyhf

    sys.path.insert(0, str(ROOT))
    from tests.conftest import pyhf_delta

    expectations = ("observed", "aposteriori")
    first, column, _ = background_targets(model, data, expectations, basins=False)
    # the labels' reference as the dataset records it (what its Delta are taken
    # against), else as the labeller finds it now (the search for other minima
    # runs only then)
    recorded = ds.meta.get("basins", {})
    if all("nll0" in recorded.get(e, {}) for e in expectations):
        nll0 = [recorded[e]["nll0"] for e in expectations]
    else:
        targets, column, _ = background_targets(model, data, expectations)
        nll0 = [float(targets.nll0[column[i]]) for i in range(len(expectations))]
    below = np.asarray(first.nll0)[column] - np.asarray(nll0)
    rows = np.random.default_rng(seed).choice(len(ds), min(n, len(ds)), replace=False)
    out = {}
    for i, e in enumerate(expectations):
        col = ds.expectations.index(e)
        diffs, kept, failed = [], [], 0
        start = time.perf_counter()
        for r in rows:
            try:
                ref = pyhf_delta(spec, model.config, data, ds.signal[r], e)
            except pyhf.exceptions.FailedMinimization:
                failed += 1
                continue
            diffs.append(float(ds.delta[r, col]) + below[i] - ref)
            kept.append(int(r))
        diffs = np.asarray(diffs)
        close = np.abs(diffs) <= 1e-4
        # the rows that disagree, to look at again without repeating every fit
        apart = [
            {"row": r, "signal": ds.signal[r].tolist(), "difference": float(d)}
            for r, d in zip(kept, diffs)
            if abs(d) > 1e-4
        ]
        out[e] = {
            "n": len(rows),
            "reference_below_pyhf": float(below[i]),
            "pyhf_failed": failed,
            "within_1e-4": int(close.sum()),
            "deeper_than_pyhf": int(np.sum(diffs > 1e-4)),
            "shallower_than_pyhf": int(np.sum(diffs < -1e-4)),
            "max_abs_diff_close": float(np.abs(diffs[close]).max(initial=0.0)),
            "max_abs_diff": float(np.abs(diffs).max(initial=0.0)),
            "pyhf_seconds_per_label": (time.perf_counter() - start) / len(rows),
            "apart": apart,
        }
        log(
            f"pyhf check {e}: {out[e]['within_1e-4']}/{len(rows)} within 1e-4 "
            f"(largest {out[e]['max_abs_diff_close']:.1e}); deeper than pyhf "
            f"{out[e]['deeper_than_pyhf']}, shallower {out[e]['shallower_than_pyhf']},"
            f" pyhf failed {failed}; references {below[i]:.6f} apart"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    parser.add_argument(
        "--analysis", default=None, choices=("2018-04", "2019-08", "example")
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps-per-chunk", type=int, default=50)
    parser.add_argument("--num-warmup", type=int, default=SamplerSettings.num_warmup)
    parser.add_argument(
        "--label-batch",
        type=int,
        default=SamplerSettings.label_batch,
        help="yields per labelling call (on a GPU, a whole chunk pays)",
    )
    parser.add_argument("--pyhf-check", type=int, default=0)
    parser.add_argument(
        "--restart-above",
        type=lambda x: None if x == "none" else float(x),
        default=SamplerSettings.label_restart_above,
        help="-2 Delta beyond which (and for negative yields) label fits restart "
        "from other starts; inf: negative yields only; none: never",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    analysis = args.analysis or (
        "2018-04" if (args.likelihoods / "ATLAS-SUSY-2018-04").is_dir() else "example"
    )
    spec, model, data = load(analysis, args.likelihoods)
    settings = SamplerSettings(
        chains_per_target=args.chains,
        steps_per_chunk=args.steps_per_chunk,
        num_warmup=args.num_warmup,
        label_batch=args.label_batch,
        label_restart_above=args.restart_above,
    )
    log(
        f"{analysis}: {model.config.npars} parameters, {model.config.nsignal} yields, "
        f"{settings.nchains} chains, chunks of {settings.chunk_size}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sample(model, data, args.n, tmp, settings=settings)
        cold = time.perf_counter() - start
        first = len(json.loads((Path(tmp) / "dataset.json").read_text())["chunks"])
        start = time.perf_counter()
        ds = sample(model, data, 2 * args.n, tmp, settings=settings)
        warm = time.perf_counter() - start
        chunks = ds.meta["chunks"][first:]
        n_warm = sum(c["n"] for c in chunks)
        nuts = sum(c["nuts_seconds"] for c in chunks)
        labels = sum(c["label_seconds"] for c in chunks)
        leapfrogs = sum(c["leapfrog_steps"] for c in chunks)
        summary = summarize(ds)
        result = {
            "analysis": analysis,
            "device": jax.devices()[0].device_kind,
            "platform": platform.machine(),
            "date": date.today().isoformat(),
            "jax": jax.__version__,
            "nchains": settings.nchains,
            "label_batch": settings.label_batch,
            "label_restart_above": settings.label_restart_above,
            "cold_seconds": cold,
            "cold_samples": args.n,
            "warm_samples": n_warm,
            "warm_seconds": warm,
            "samples_per_second": n_warm / warm,
            "nuts_seconds": nuts,
            "label_seconds": labels,
            "labels_per_second": n_warm * len(ds.expectations) / labels,
            "leapfrog_steps_per_nuts_sample": leapfrogs
            / max(1, n_warm - int((ds.target[-n_warm:] < 0).sum())),
            "failed": summary.failed,
            "coverage": {e: [c["min"], c["max"]] for e, c in summary.coverage.items()},
            "divergences": summary.divergences,
            "rhat": summary.rhat,
        }
        print(
            f"{analysis} on {result['device']}: cold {args.n} samples in {cold:.1f} "
            f"s; warm {n_warm} samples in {warm:.1f} s = "
            f"{result['samples_per_second']:.1f} labelled samples/s "
            f"(NUTS {nuts:.1f} s, {result['leapfrog_steps_per_nuts_sample']:.1f} "
            f"leapfrog steps per sample; labels {labels:.1f} s for "
            f"{len(ds.expectations)} expectations)",
            flush=True,
        )
        if args.pyhf_check:
            result["pyhf_check"] = pyhf_check(spec, model, data, ds, args.pyhf_check)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
