"""Do the sampled yields cover every published signal point? (ATLAS 2018-04, 2019-08)

For each analysis this samples (or resumes) a dataset of ``--n`` labelled yield
vectors of its signal-region model under ``--out``, then takes the signal-region
yields of every point of its patchset (``difflike.workspace.signal_yields``) and
asks, per point and expectation:

* is the point's Δ inside the range of the training labels?
* does it have sampled neighbours at a comparable distance? In coordinates scaled
  by each bin's yield scale, the distance from the point to its nearest sample is
  compared with the typical nearest-neighbour distance among the samples at a
  similar radius (median over samples whose radius is within ±30% of the point's);
  a ratio up to ``--max-ratio`` (default 3) counts as covered.

Prints a table per analysis and a JSON summary (``--json``).

    python benchmarks/sample_coverage.py [--likelihoods ../shared/likelihoods]
        [--n 20000] [--out out/coverage] [--json coverage.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import difflike as dl
from difflike.sample import SamplerSettings, background_targets, label, sample

ROOT = Path(__file__).resolve().parents[1]
ANALYSES = {
    "ATLAS-SUSY-2018-04": ["SR1cut_cuts", "SR2cut_cuts"],
    "ATLAS-SUSY-2019-08": ["SRLMEM_mct2", "SRMMEM_mct2", "SRHMEM_mct2"],
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def nearest(
    x: np.ndarray, points: np.ndarray, exclude_self: bool = False
) -> np.ndarray:
    """Distance from each row of ``x`` to its nearest row of ``points`` (k-d tree).

    With ``exclude_self``, ``x`` is ``points`` and the nearest *other* point is
    meant: distances of zero (the row itself, and the repeats a chain leaves where
    NUTS rejected a transition) are skipped.
    """
    from scipy.spatial import cKDTree

    if not exclude_self:
        return cKDTree(points).query(x, k=1)[0]
    d, _ = cKDTree(points).query(x, k=16)
    d = np.where(d > 0, d, np.inf)
    return d.min(axis=1)


def check(analysis: str, regions, args) -> dict:
    folder = args.likelihoods / analysis
    model, data = dl.load(folder / "BkgOnly.json", signal_regions=regions)
    settings = SamplerSettings()
    ds = sample(model, data, args.n, args.out / analysis, settings=settings)
    names, yields = dl.workspace.signal_yields(
        folder / "BkgOnly.json", folder / "patchset.json.gz", regions
    )
    expectations = ("observed", "aposteriori")
    targets, column, ok = background_targets(model, data, expectations)
    delta, _, conv = label(model, targets, column, yields, ok)
    scale = np.asarray(ds.meta["space"]["scale"])
    x = ds.signal / scale
    xp = yields / scale
    radius = np.linalg.norm(x, axis=1)
    nn_samples = nearest(x, x, exclude_self=True)
    nn_points = nearest(xp, x)
    rows = []
    covered_all = 0
    for i, name in enumerate(names):
        r = np.linalg.norm(xp[i])
        near = np.abs(radius - r) <= 0.3 * max(r, 1.0)
        typical = float(np.median(nn_samples[near])) if near.any() else np.inf
        ratio = nn_points[i] / typical
        inside = {}
        for col, e in enumerate(expectations):
            _, d = ds.labels(e)
            inside[e] = bool(d.min() <= delta[i, col] <= d.max())
        good = all(inside.values()) and ratio <= args.max_ratio and conv[i].all()
        covered_all += int(good)
        rows.append(
            {
                "point": name,
                "delta": delta[i].tolist(),
                "inside_label_range": inside,
                "nn_ratio": float(ratio),
                "covered": bool(good),
            }
        )
    worst = sorted(rows, key=lambda r: -r["nn_ratio"])[:5]
    out = {
        "analysis": analysis,
        "samples": len(ds),
        "points": len(names),
        "covered": covered_all,
        "label_range": {
            e: [float(ds.labels(e)[1].min()), float(ds.labels(e)[1].max())]
            for e in expectations
        },
        "point_delta_range": [float(delta.min()), float(delta.max())],
        "worst_nn_ratio": [(r["point"], round(r["nn_ratio"], 2)) for r in worst],
        "rows": rows,
    }
    print(
        f"{analysis}: {covered_all}/{len(names)} points covered by {len(ds)} samples; "
        f"label range {out['label_range']}, points' Δ in "
        f"[{out['point_delta_range'][0]:.3g}, {out['point_delta_range'][1]:.3g}]; "
        f"largest neighbour-distance ratios {out['worst_nn_ratio']}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "coverage")
    parser.add_argument("--max-ratio", type=float, default=3.0)
    parser.add_argument("--only", choices=sorted(ANALYSES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [check(a, r, args) for a, r in ANALYSES.items() if args.only in (None, a)]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
