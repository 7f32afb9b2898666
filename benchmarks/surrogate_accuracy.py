"""How accurate a surrogate is, on held-out labels and on the patchset's signal points.

1. Test-split metrics per expectation (``meta["metrics"]``, docs/surrogates.md):
   MAPE and MaxAPE of the profiled NLL (the seeds' figures), the error of −2Δ
   overall and in the band −2Δ ≤ 10 (target: ≤ 0.05 for ≥ 99% of rows).
2. On the signal-region yields of every point of the analysis' patchset: μ̂, CLs at
   μ = 1 and the observed 95% CL upper limit from the surrogate against the exact
   profiler (targets: limits within 2% for ≥ 95% of points and 5% for all;
   exclusion decisions agree for ≥ 99%). The exact fits start from the initial
   parameters and from the other minima the labels were fitted from
   (``--first-minimum``: the initial parameters alone, pyhf's answer).

    python benchmarks/surrogate_accuracy.py --dataset DIR --out SURROGATE_DIR
        [--workspace WS] [--patchset PATCHSET] [--markdown]

Trains the surrogate into ``--out`` first (resumable) unless it holds one already.
The workspace is the dataset's (its recorded source, or ``--workspace`` with the
same SHA-256); ``--patchset`` defaults to
``patchset.json.gz`` beside it (the built-in example's for the example).
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
from difflike.sample import background_targets, load_dataset
from difflike.sample._dataset import recorded_workspace
from difflike.surrogate import TrainSettings, inference_metrics, load_folder, train


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def patchset_beside(workspace: Path) -> Path:
    """The patchset of a surrogate's workspace: the built-in example's, or
    ``patchset.json.gz`` in the workspace's folder (the published layout)."""
    if workspace.name == Path(dl.example_workspace()).name:
        return Path(dl.example_patchset())
    return workspace.parent / "patchset.json.gz"


def exact_starts(model, data, dataset=None) -> np.ndarray | None:
    """The points the observed labels were fitted from where the profile has other
    minima: the record of ``dataset`` (a dataset or a surrogate trained on one:
    :meth:`~difflike.sample.YieldDataset.starts`,
    :meth:`~difflike.surrogate.Surrogate.starts`), or else found again
    (``difflike.sample.background_targets``, docs/sampling.md). The
    exact profiler's other starts, so that both sides answer for the deepest
    minimum. ``None`` where there are none."""
    if dataset is not None and dataset.starts("observed") is not None:
        return dataset.starts("observed")
    targets, _, _ = background_targets(model, data, ("observed",))
    if targets.starts is None:
        return None
    points = np.concatenate(
        [np.asarray(targets.init[:1]), np.asarray(targets.starts[0])]
    )
    return np.unique(points, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="surrogate folder")
    parser.add_argument("--patchset", type=Path)
    parser.add_argument(
        "--workspace",
        type=Path,
        help="the workspace where it is not at the path the surrogate records (a "
        "dataset made on another machine); its SHA-256 must match",
    )
    parser.add_argument(
        "--first-minimum",
        action="store_true",
        help="exact fits from the initial parameters alone (pyhf's answer), not also "
        "from the other minima that the labels were fitted from",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    ds = load_dataset(args.dataset)
    start = time.perf_counter()
    if (args.out / "surrogate.json").is_file():
        sur = load_folder(args.out)
        log(f"surrogate read from {args.out}")
    else:
        sur = train(ds, args.out, TrainSettings())
        log(f"trained in {time.perf_counter() - start:.0f} s")
    source = args.workspace or Path(sur.meta["workspace"]["source"])
    patchset = args.patchset or patchset_beside(source)
    regions = list(sur.signal_regions)
    model, data = recorded_workspace(sur.meta["workspace"], regions, source)
    names, yields = dl.workspace.signal_yields(source, patchset, regions)
    starts = None
    if not args.first_minimum:
        starts = exact_starts(model, data, ds)
    log(
        f"{len(names)} patchset points; exact limits "
        f"(from the model's init and {0 if starts is None else len(starts)} "
        "more starting points) ..."
    )
    inf = inference_metrics(sur, model, data, yields, starts=starts)

    device = jax.devices()[0]
    print(
        f"# {source.name} ({', '.join(regions)}); {len(ds)} rows; "
        f"{device.device_kind}, {platform.machine()}, {date.today()}"
    )
    print(
        "| expectation | test rows | NLL MAPE % | NLL MaxAPE % | |err −2Δ| p99 | "
        "band rows | band ≤ 0.05 | band max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for e, m in sur.meta["metrics"].items():
        print(
            f"| {e} | {m['rows']} | {m.get('nll_mape', np.nan):.3g} | "
            f"{m.get('nll_maxape', np.nan):.3g} | {m.get('q_err_p99', np.nan):.3g} | "
            f"{m.get('band_rows', 0)} | "
            f"{100 * m.get('band_within_tolerance', np.nan):.1f}% | "
            f"{m.get('band_q_err_max', np.nan):.3g} |"
        )
    print()
    print(
        f"patchset points: {len(names)}; limits within 2%: "
        f"{100 * inf['limit_within_2pct']:.1f}%, within 5%: "
        f"{100 * inf['limit_within_5pct']:.1f}%; exclusion agreement "
        f"{100 * inf['exclusion_agreement']:.1f}%; max |Δμ̂| "
        f"{inf['muhat_abs_err_max']:.3g}; max |ΔCLs| {inf['cls_abs_err_max']:.3g}"
    )
    if not args.markdown:
        worst = np.argsort(-inf["limit_rel_err"])[:5]
        for i in worst:
            print(
                f"  {names[i]}: limit {inf['surrogate']['limit'][i]:.4g} vs "
                f"{inf['exact']['limit'][i]:.4g} ({100 * inf['limit_rel_err'][i]:.2f}%)"
            )
    (args.out / "accuracy.json").write_text(
        json.dumps(
            {
                "points": names,
                "metrics": sur.meta["metrics"],
                **{
                    k: v for k, v in inf.items() if not isinstance(v, dict | np.ndarray)
                },
                "limit_rel_err": inf["limit_rel_err"].tolist(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
