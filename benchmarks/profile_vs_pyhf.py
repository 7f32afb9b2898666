"""Profile-likelihood inference: difflike against pyhf, measured in the same run.

Three measurements, each printed with its ratio:

1. **CLs grid** — asymptotic CLs at mu = 1 (q~mu, observed and expected band) for
   every point of the ATLAS-SUSY-2018-04 patchset. difflike: the whole grid as one
   batched model in one call, cold (compilation included) and warm. pyhf 0.7
   (numpy backend, its fastest on the CPU, default settings): ``pyhf.infer.hypotest``
   timed on ``--pyhf-points`` points spread over the grid, the mean scaled to the
   grid (the number of points timed is printed).
2. **Upper-limit grid** — 95% CL upper limits, observed and the five expected, for
   the whole grid in one call, against ``pyhf.infer.intervals.upper_limits.
   upper_limit`` timed on ``--pyhf-limit-points`` points and scaled.
3. **Fit throughput** — fixed-mu fits per second of the ATLAS-SUSY-2018-16 EWKinos
   signal-region model (every SR channel's yields an input) at batches of random
   signal-yield vectors, against pyhf's ``fixed_poi_fit`` of the equivalent model
   (signal sample patched in) timed on a few yield vectors.

Timings end with ``block_until_ready``; warm figures are the best of ``--repeats``.

    python benchmarks/profile_vs_pyhf.py [--likelihoods ../shared/likelihoods]
        [--pyhf-points 5] [--pyhf-limit-points 1] [--batches 1 64 1024 4096]
        [--skip cls limits fits] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import gzip
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


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def best(fn, repeats: int) -> float:
    return min(timed(fn)[0] for _ in range(repeats))


def spread(n_total: int, n: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, n_total - 1, max(1, n))})


def pyhf_grid(folder: Path):
    import pyhf

    pyhf.set_backend("numpy")
    ws = pyhf.Workspace(json.loads((folder / "BkgOnly.json").read_text()))
    with gzip.open(folder / "patchset.json.gz") as f:
        patchset = pyhf.PatchSet(json.load(f))
    return pyhf, ws, patchset


def _grid_vs_pyhf(tag, grid, data, folder, ours, theirs, npyhf, repeats) -> dict:
    """Time ``ours(grid, data)`` (the whole grid, cold and warm) and
    ``theirs(pyhf, model, data)`` on ``npyhf`` points spread over the grid, whose
    mean is scaled to the grid. A pyhf call that raises is logged and skipped
    (its toms748 limit scan fails where a limit lies beyond the POI's bound)."""
    npoints = len(grid.config.points)
    cold, out = timed(lambda: ours(grid, data))
    warm = best(lambda: ours(grid, data), repeats)
    log(f"[{tag}] difflike: {npoints} points, cold {cold:.2f} s, warm {warm:.3f} s")
    pyhf, ws, patchset = pyhf_grid(folder)
    times = []
    for i in spread(npoints, npyhf):
        name = patchset.patches[i].name
        model = ws.model(patches=[patchset.patches[i]])
        try:
            t, _ = timed(lambda model=model: theirs(pyhf, model, ws.data(model)))
        except Exception as err:
            log(f"[{tag}] pyhf {name}: failed ({err})")
            continue
        times.append(t)
        log(f"[{tag}] pyhf {name}: {t:.2f} s")
    per_point = float(np.mean(times)) if times else float("nan")
    return out, {
        "points": npoints,
        "difflike_cold_s": cold,
        "difflike_warm_s": warm,
        "pyhf_points_timed": len(times),
        "pyhf_per_point_s": per_point,
        "pyhf_grid_s": per_point * npoints,
        "ratio_warm": per_point * npoints / warm,
        "ratio_cold": per_point * npoints / cold,
    }


def bench_cls(grid, data, folder: Path, args) -> dict:
    out, result = _grid_vs_pyhf(
        "cls",
        grid,
        data,
        folder,
        lambda grid, data: dl.hypotest(1.0, grid, data, return_details=True),
        lambda pyhf, model, data: pyhf.infer.hypotest(
            1.0, data, model, return_expected_set=True
        ),
        args.pyhf_points,
        args.repeats,
    )
    return {**result, "converged": int(np.sum(np.asarray(out.converged)))}


def bench_limits(grid, data, folder: Path, args) -> dict:
    out, result = _grid_vs_pyhf(
        "limits",
        grid,
        data,
        folder,
        lambda grid, data: dl.upper_limit(grid, data, return_details=True),
        lambda pyhf, model, data: pyhf.infer.intervals.upper_limits.upper_limit(
            data, model
        ),
        args.pyhf_limit_points,
        args.repeats,
    )
    return {
        **result,
        "converged": int(np.sum(np.asarray(out.converged).all(axis=-1))),
        "beyond_poi_bound": int(np.sum(np.asarray(out.widened))),
    }


def _pyhf_signal_model(spec: dict, model, signal: np.ndarray):
    """pyhf's model of ``spec`` with ``signal`` (scaled by ``mu``) patched in."""
    import pyhf

    spec = copy.deepcopy(spec)
    split = np.cumsum(model.config.signal_nbins)[:-1]
    parts = dict(zip(model.config.signal_regions, np.split(signal, split)))
    for channel in spec["channels"]:
        if channel["name"] in parts:
            channel["samples"].append(
                {
                    "name": "signal",
                    "data": parts[channel["name"]].tolist(),
                    "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                }
            )
    for measurement in spec["measurements"]:
        measurement["config"]["poi"] = "mu"
    return pyhf.Workspace(spec).model()


def bench_fits(path: Path, args) -> dict:
    import pyhf

    pyhf.set_backend("numpy")
    spec = json.loads(path.read_text())
    regions = [c["name"] for c in spec["channels"] if c["name"].startswith("SR")]
    model, data = dl.load(path, signal_regions=regions)
    rng = np.random.default_rng(0)
    log(
        f"[fits] {path.name}: {len(regions)} signal regions, "
        f"{model.config.npars} parameters, {model.config.nmaindata} bins"
    )
    rows = []
    for batch in args.batches:
        signal = rng.uniform(0.0, 5.0, size=(batch, model.config.nsignal))
        cold, res = timed(lambda s=signal: dl.profile(model, data, 1.0, s))
        warm = best(lambda s=signal: dl.profile(model, data, 1.0, s), args.repeats)
        ok = int(np.sum(np.asarray(res.converged)))
        rows.append(
            {
                "batch": batch,
                "cold_s": cold,
                "warm_s": warm,
                "fits_per_s": batch / warm,
                "converged": ok,
            }
        )
        log(
            f"[fits] batch {batch}: {batch / warm:,.1f} fits/s ({ok}/{batch} converged)"
        )
    times = []
    for signal in rng.uniform(0.0, 5.0, size=(args.pyhf_fits, model.config.nsignal)):
        pmodel = _pyhf_signal_model(spec, model, signal)
        pdata = np.asarray(data)
        t, _ = timed(
            lambda pmodel=pmodel, pdata=pdata: pyhf.infer.mle.fixed_poi_fit(
                1.0, pdata, pmodel, return_fitted_val=True
            )
        )
        times.append(t)
    pyhf_rate = 1.0 / float(np.mean(times))
    log(f"[fits] pyhf: {pyhf_rate:.2f} fits/s ({len(times)} fits timed)")
    for row in rows:
        row["ratio"] = row["fits_per_s"] / pyhf_rate
    return {
        "model": path.name,
        "pyhf_fits_per_s": pyhf_rate,
        "pyhf_fits_timed": len(times),
        "batches": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    parser.add_argument("--pyhf-points", type=int, default=5)
    parser.add_argument("--pyhf-limit-points", type=int, default=1)
    parser.add_argument("--pyhf-fits", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["cls", "limits", "fits"]
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (args.likelihoods / "ATLAS-SUSY-2018-04").is_dir():
        sys.exit(f"published likelihoods not found at {args.likelihoods}")
    device = jax.devices()[0]
    header = {
        "date": date.today().isoformat(),
        "device": f"{device.platform}: {getattr(device, 'device_kind', '')}",
        "cpu_count": __import__("os").cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "difflike": dl.__version__,
    }
    log(json.dumps(header))
    results = {"header": header}
    folder = args.likelihoods / "ATLAS-SUSY-2018-04"
    if {"cls", "limits"} - set(args.skip):
        log("loading the ATLAS-SUSY-2018-04 grid")
        grid, data = dl.load_patchset(
            folder / "BkgOnly.json", folder / "patchset.json.gz", progress=False
        )
    if "cls" not in args.skip:
        results["cls"] = bench_cls(grid, data, folder, args)
    if "limits" not in args.skip:
        results["limits"] = bench_limits(grid, data, folder, args)
    if "fits" not in args.skip:
        results["fits"] = bench_fits(
            args.likelihoods / "ATLAS-SUSY-2018-16" / "EWKinos_bkgonly.json", args
        )

    print(
        f"# profile_vs_pyhf — {header['device']}, {header['date']}, jax {header['jax']}"
    )
    for key, title in (("cls", "CLs at mu = 1"), ("limits", "95% CL upper limits")):
        if key in results:
            r = results[key]
            print(
                f"{title}, ATLAS-SUSY-2018-04 grid ({r['points']} points): difflike "
                f"cold {r['difflike_cold_s']:.2f} s, warm {r['difflike_warm_s']:.3f} s; "
                f"pyhf {r['pyhf_per_point_s']:.2f} s/point x {r['points']} = "
                f"{r['pyhf_grid_s']:.0f} s (timed on {r['pyhf_points_timed']} points); "
                f"ratio warm {r['ratio_warm']:,.0f}x, cold {r['ratio_cold']:,.0f}x"
            )
    if "fits" in results:
        r = results["fits"]
        print(
            f"fixed-mu fits, {r['model']} signal-region model: pyhf "
            f"{r['pyhf_fits_per_s']:.2f} fits/s"
        )
        print("| batch | difflike fits/s | × pyhf | converged |")
        print("|---:|---:|---:|---:|")
        for row in r["batches"]:
            print(
                f"| {row['batch']:,} | {row['fits_per_s']:,.1f} | {row['ratio']:,.0f} | "
                f"{row['converged']}/{row['batch']} |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
