"""How close is the surrogates' counting baseline to the profiled Δ, and would the
signal bins' full background covariance bring it closer?

For one analysis's signal-region model this draws random signal yields (per bin a
Gaussian of width 0.1-1.5 times sqrt(max(b, 1)), b the post-fit background,
shifted up by 0.3 of that width, floored at -0.8 b), computes the exact Δ with
``dl.delta`` for the observed and the a-posteriori data, and compares the spread of
``Δ - baseline`` (what a surrogate's networks must learn) for

* no baseline;
* the independent-bin baseline surrogates use (:mod:`difflike.surrogate._counting`:
  each bin's background Gaussian around its post-fit value with its own variance);
* the same with the full post-fit covariance of the signal bins' backgrounds,
  maximised over the backgrounds to round-off in float64 (damped Newton with a
  linear solve): the best a correlated baseline of this kind could do.

Prints, per data set and baseline, the standard deviation of the residual and the
99th percentile of its absolute deviation from the median, inside the band
(-2Δ <= 10) and overall.

    python benchmarks/counting_baseline.py [--analysis 2019-08] [--n 800]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import difflike as dl  # noqa: E402
from difflike.sample import background_targets  # noqa: E402
from difflike.sample._label import signal_bin_covariance  # noqa: E402
from difflike.surrogate._counting import counting_delta  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REGIONS = {
    "2018-04": ("ATLAS-SUSY-2018-04", ["SR1cut_cuts", "SR2cut_cuts"]),
    "2019-08": (
        "ATLAS-SUSY-2019-08",
        ["SRLMEM_mct2", "SRMMEM_mct2", "SRHMEM_mct2"],
    ),
}
EXPECTATIONS = ("observed", "aposteriori")


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def correlated_ell(n, b, precision, s, steps: int = 60):
    r""":math:`\max_\beta \sum_i n_i \ln(s_i + \beta_i) - (s_i + \beta_i) -
    (\beta - b)^\top P (\beta - b)/2` over positive rates, ``()``."""

    def objective(beta):
        t = s + beta
        logs = jnp.where(n > 0, n * jnp.log(jnp.where(t > 0, t, 1.0)), 0.0)
        r = beta - b
        return jnp.sum(logs - t) - 0.5 * r @ precision @ r

    def step(beta, _):
        t = s + beta
        g = n / t - 1.0 - precision @ (beta - b)
        d = jnp.linalg.solve(jnp.diag(n / t**2) + precision, g)
        # stay where every rate is positive, then halve until the objective rises
        room = jnp.min(jnp.where(d < 0, -t / jnp.where(d < 0, d, -1.0), jnp.inf))
        f0 = objective(beta)

        def halve(a, _):
            return jnp.where(objective(beta + a * d) >= f0, a, 0.5 * a), None

        a, _ = jax.lax.scan(halve, jnp.minimum(1.0, 0.9 * room), None, length=30)
        return beta + a * d, None

    beta, _ = jax.lax.scan(step, jnp.maximum(b, 1e-3 - s), None, length=steps)
    return objective(beta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--likelihoods", type=Path, default=ROOT.parent / "shared" / "likelihoods"
    )
    parser.add_argument("--analysis", choices=sorted(REGIONS), default="2019-08")
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder, regions = REGIONS[args.analysis]
    model, data = dl.load(
        args.likelihoods / folder / "BkgOnly.json", signal_regions=regions
    )
    targets, column, _ = background_targets(model, data, EXPECTATIONS)
    counts, backgrounds, covariances = signal_bin_covariance(model, targets)
    rng = np.random.default_rng(args.seed)
    print(f"# {folder}, {len(regions)} signal regions, {args.n} random yield vectors")
    print("| data | baseline | band rows | std band | p99 band | std all |")
    print("|---|---|---:|---:|---:|---:|")
    for e in EXPECTATIONS:
        k = int(column[EXPECTATIONS.index(e)])
        n, b, cov = counts[k], backgrounds[k], covariances[k]
        width = np.sqrt(np.maximum(b, 1.0)) * rng.uniform(0.1, 1.5, (args.n, 1))
        s = rng.standard_normal((args.n, len(b))) * width + 0.3 * width
        s = np.maximum(s, -0.8 * b)
        start = time.perf_counter()
        exact = np.asarray(dl.delta(model, data, s, expectation=e))
        log(f"{e}: {args.n} exact labels in {time.perf_counter() - start:.1f} s")

        def independent(scale):
            v = scale * np.diag(cov)[None]
            return np.asarray(counting_delta(n[None], b[None], v, s))[:, 0]

        ell = jax.jit(
            jax.vmap(
                lambda y: correlated_ell(
                    jnp.asarray(n), jnp.asarray(b), jnp.asarray(np.linalg.inv(cov)), y
                )
            )
        )
        correlated = np.asarray(ell(jnp.asarray(s))) - float(
            ell(jnp.zeros((1, len(b))))[0]
        )
        ok = np.isfinite(exact) & np.isfinite(correlated)
        band = ok & (-2.0 * exact <= 10.0)
        for name, base in (
            ("none", np.zeros_like(exact)),
            ("independent bins", independent(1.0)),
            ("independent bins, variance x2", independent(2.0)),
            ("independent bins, variance x4", independent(4.0)),
            ("full covariance", correlated),
        ):
            r = exact - base
            p99 = np.percentile(np.abs(r[band] - np.median(r[band])), 99)
            print(
                f"| {e} | {name} | {band.sum()} | {np.std(r[band]):.3f} | {p99:.3f} | "
                f"{np.std(r[ok]):.3f} |"
            )


if __name__ == "__main__":
    main()
