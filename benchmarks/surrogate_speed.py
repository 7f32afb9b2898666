"""Surrogate against exact profiler: Δ evaluations and upper limits per second.

In one run, on the same signal-region model and yields: Δ(s) by the surrogate in
JAX (one compiled, batched call) and by onnxruntime, against ``dl.delta`` (profiled
fits); 95% CL upper limits by the surrogate (``difflike.surrogate.upper_limit``)
against ``dl.upper_limit``. Timings are warm (compiled and run once first) and the
best of ``--repeats``; the exact side runs smaller batches (it is slower by orders
of magnitude) and is scaled per point. The issue's target: limits ≥ 1,000× faster
than the exact profiler per point on the CPU. Where the observed profile has other
minima (``difflike.sample.background_targets``), the exact limits are also timed
fitted from them, the exact answer that the surrogate's labels learned
(surrogate_accuracy.py compares with that one).

    python benchmarks/surrogate_speed.py --surrogate DIR [--n-eval 100000]
        [--n-limits 1000] [--n-exact 16] [--limit-yields random|patchset]
        [--json out.json]

Limits are timed on random yields around each bin's background scale (default;
weak ones among them put a limit at many times the POI's bound, where a surrogate
extrapolates beyond its training yields), or with ``--limit-yields patchset`` on
the signal-region yields of the analysis' patchset points (``patchset.json.gz``
beside the workspace; repeated up to ``--n-limits``; the exact side takes the
first ``--n-exact`` points).

Without ``--surrogate``, a small one is sampled and trained on the built-in
example first (a few minutes; its accuracy does not matter for timing).
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
from difflike.surrogate import TrainSettings, load_folder, train, upper_limit
from difflike.surrogate.onnx import export
from difflike.surrogate.onnx import load as load_onnx


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def best_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm: compile and run once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def example_surrogate(folder: Path) -> Path:
    from difflike.sample import SamplerSettings, sample

    model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
    log("sampling 2,000 labelled yields of the built-in example ...")
    settings = SamplerSettings(chains_per_target=2, num_warmup=50, steps_per_chunk=50)
    sample(model, data, 2000, folder / "data", settings=settings, progress=True)
    log("training a small surrogate ...")
    fast = TrainSettings(widths=(64, 64), max_epochs=100, trials=1, ensemble=1)
    train(folder / "data", folder / "sur", fast)
    return folder / "sur"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--surrogate", type=Path, help="a trained surrogate folder")
    parser.add_argument("--n-eval", type=int, default=100_000)
    parser.add_argument("--n-limits", type=int, default=1000)
    parser.add_argument("--n-exact", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--limit-yields", choices=("random", "patchset"), default="random"
    )
    parser.add_argument("--expectation", default="observed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="difflike-surrogate-speed-"))
    folder = args.surrogate or example_surrogate(tmp)
    sur = load_folder(folder)
    source = sur.meta["workspace"]["source"]
    model, data = dl.load(source, signal_regions=list(sur.signal_regions))
    e = args.expectation
    col = sur.index(e)
    onnx_sur = load_onnx(export(sur, tmp / "sur.onnx"))

    # yields around the scale of each bin's background
    scale = np.asarray(sur.nets.background, float)
    rng = np.random.default_rng(0)
    s_eval = rng.uniform(-0.5, 3.0, (args.n_eval, sur.nsignal)) * np.sqrt(
        np.maximum(scale, 1.0)
    )
    s_lim = s_eval[: args.n_limits]
    s_exact = s_eval[: args.n_exact]
    if args.limit_yields == "patchset":
        from surrogate_accuracy import patchset_beside  # this folder

        names, points = dl.workspace.signal_yields(
            source, patchset_beside(Path(source)), list(sur.signal_regions)
        )
        points = np.asarray(points, float)
        log(f"limits on the yields of {len(names)} patchset points")
        s_lim = points[np.arange(args.n_limits) % len(points)]
        s_exact = points[: args.n_exact]

    rows = {}
    t = best_time(lambda: sur.delta(s_eval, e), args.repeats)
    rows["delta_jax"] = args.n_eval / t
    t = best_time(
        lambda: onnx_sur.delta(s_eval.astype(np.float32))[:, col], args.repeats
    )
    rows["delta_onnx"] = args.n_eval / t
    t = best_time(lambda: dl.delta(model, data, s_exact, expectation=e), args.repeats)
    rows["delta_exact"] = args.n_exact / t
    t = best_time(lambda: upper_limit(sur, s_lim, expectation=e).mu_up, args.repeats)
    rows["limit_surrogate"] = args.n_limits / t
    steps = np.asarray(upper_limit(sur, s_lim, expectation=e).nit)
    rows["limit_steps_mean"] = float(steps.mean())
    rows["limit_steps_max"] = int(steps.max())
    if e != "observed":
        log("exact limits are computed on the observed data")
    t = best_time(lambda: dl.upper_limit(model, data, s_exact).mu_up, args.repeats)
    rows["limit_exact"] = args.n_exact / t
    # the exact profiler that gives the surrogate's answer where the profile has
    # other minima: fitted from them too, as the labels were (surrogate_accuracy.py)
    from surrogate_accuracy import exact_starts  # this folder

    starts = exact_starts(model, data, sur) if e == "observed" else None
    if starts is not None:
        log(f"exact limits from {len(starts)} more starting points as well ...")
        t = best_time(
            lambda: dl.upper_limit(model, data, s_exact, starts=starts).mu_up,
            args.repeats,
        )
        rows["limit_exact_starts"] = args.n_exact / t

    device = jax.devices()[0]
    print(
        f"# {device.device_kind} ({device.platform}), {platform.machine()}, "
        f"{date.today()}, jax {jax.__version__}; surrogate {folder}; limits on "
        f"{args.limit_yields} yields"
    )
    print("| quantity | surrogate JAX /s | surrogate ONNX /s | exact /s | × (JAX) |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| Δ(s) | {rows['delta_jax']:,.0f} | {rows['delta_onnx']:,.0f} | "
        f"{rows['delta_exact']:,.1f} | {rows['delta_jax'] / rows['delta_exact']:,.0f} |"
    )
    print(
        f"| 95% CL upper limit | {rows['limit_surrogate']:,.0f} | – | "
        f"{rows['limit_exact']:,.2f} | "
        f"{rows['limit_surrogate'] / rows['limit_exact']:,.0f} |"
    )
    if "limit_exact_starts" in rows:
        print(
            f"| 95% CL upper limit, exact from every minimum | "
            f"{rows['limit_surrogate']:,.0f} | – | "
            f"{rows['limit_exact_starts']:,.2f} | "
            f"{rows['limit_surrogate'] / rows['limit_exact_starts']:,.0f} |"
        )
    print(
        f"surrogate root-finding steps per limit: mean {rows['limit_steps_mean']:.2f},"
        f" max {rows['limit_steps_max']} (a vectorised batch runs until its slowest"
        " member is done)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(rows | {"device": device.device_kind}, indent=1)
        )


if __name__ == "__main__":
    main()
