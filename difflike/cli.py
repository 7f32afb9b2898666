"""The ``difflike`` command line: thin wrappers that parse, call the library and print.

Results go to standard output; progress and errors go to standard error. An error
in the user's input exits with status 2 and a one-line message naming the file,
channel, sample, modifier or parameter at fault; a fit that did not converge makes
``fit``, ``cls`` and ``limit`` exit with status 1 after printing every result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence

__all__ = ["main"]


def _add_workspace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("workspace", help="workspace .json or .json.gz")
    p.add_argument("--patch", help="a JSON patch to apply")
    p.add_argument("--patchset", help="a patchset .json or .json.gz")
    p.add_argument("--point", help="the patchset point to apply (its name)")
    p.add_argument(
        "--signal-regions",
        nargs="+",
        metavar="CHANNEL",
        help="channels whose signal yields become an input (a signal-region model)",
    )
    p.add_argument("--measurement", help="measurement name (default: the first)")


def _load(args: argparse.Namespace):
    import difflike as dl

    return dl.load(
        args.workspace,
        patch=args.patch,
        patchset=args.patchset,
        point=args.point,
        signal_regions=args.signal_regions,
        measurement=args.measurement,
    )


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe(model, data) -> dict:
    """A summary of a model as plain data (what ``difflike info --json`` prints)."""
    import numpy as np

    config = model.config
    data = np.asarray(data)
    nominal = np.asarray(model.nominal)
    channels = []
    for name, sl in config.channel_slices.items():
        samples = [
            s
            for k, s in enumerate(config.samples)
            if np.any(nominal[k, sl] != 0)
            or (
                config.signal_regions
                and k == model.signal_sample
                and name in config.signal_regions
            )
        ]
        channels.append(
            {
                "name": name,
                "bins": sl.stop - sl.start,
                "samples": samples,
                "observed": data[sl].tolist(),
                "signal_region": name in config.signal_regions,
            }
        )
    by_type = Counter(t for _, t in config.modifiers)
    parameters = []
    init, bounds, fixed = (
        np.asarray(config.init),
        np.asarray(config.bounds),
        np.asarray(config.fixed),
    )
    for name, (start, stop), constraint, types in zip(
        config.par_order, config.par_slices, config.par_constraints, config.par_types
    ):
        parameters.append(
            {
                "name": name,
                "size": stop - start,
                "types": list(types),
                "constraint": constraint,
                "init": init[start:stop].tolist(),
                "bounds": bounds[start:stop].tolist(),
                "fixed": fixed[start:stop].tolist(),
            }
        )
    return {
        "source": config.source,
        "measurement": config.measurement,
        "poi": config.poi_name,
        "signal_regions": list(config.signal_regions),
        "channels": channels,
        "samples": list(config.samples),
        "modifiers_by_type": dict(sorted(by_type.items())),
        "parameters": parameters,
        "npars": config.npars,
        "nmaindata": config.nmaindata,
        "nauxdata": config.nauxdata,
        "interpolation": dict(config.modifier_settings),
    }


def _print_info(summary: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"Workspace    {summary['source']}", file=out)
    print(f"Measurement  {summary['measurement']}", file=out)
    print(f"POI          {summary['poi']}", file=out)
    if summary["signal_regions"]:
        print(
            f"Signal regions (signal-vector order): {', '.join(summary['signal_regions'])}",
            file=out,
        )
    print(
        f"Size         {len(summary['channels'])} channels, {summary['nmaindata']} bins, "
        f"{len(summary['samples'])} samples, {summary['npars']} parameters "
        f"({len(summary['parameters'])} named), {summary['nauxdata']} auxiliary data",
        file=out,
    )
    interp = summary["interpolation"]
    print(
        f"Interpolation normsys {interp['normsys']}, histosys {interp['histosys']}",
        file=out,
    )
    print("", file=out)
    rows = [
        (
            c["name"] + (" (SR)" if c["signal_region"] else ""),
            c["bins"],
            len(c["samples"]),
            ", ".join(f"{v:g}" for v in c["observed"][:6])
            + (" ..." if c["bins"] > 6 else ""),
        )
        for c in summary["channels"]
    ]
    print(_table(rows, ("channel", "bins", "samples", "observed")), file=out)
    print("", file=out)
    rows = list(summary["modifiers_by_type"].items())
    print(_table(rows, ("modifier type", "count")), file=out)
    print("", file=out)
    rows = []
    for p in summary["parameters"]:
        bounds = (
            p["bounds"][0]
            if p["size"] == 1
            else [min(b[0] for b in p["bounds"]), max(b[1] for b in p["bounds"])]
        )
        fixed = (
            "all"
            if all(p["fixed"])
            else (f"{sum(p['fixed'])}" if any(p["fixed"]) else "")
        )
        rows.append(
            (
                p["name"],
                p["size"],
                "/".join(p["types"]),
                p["constraint"] or "free",
                f"{p['init'][0]:g}",
                f"[{bounds[0]:g}, {bounds[1]:g}]",
                fixed,
            )
        )
    print(
        _table(
            rows, ("parameter", "size", "type", "constraint", "init", "bounds", "fixed")
        ),
        file=out,
    )


def cmd_info(args: argparse.Namespace) -> int:
    model, data = _load(args)
    summary = describe(model, data)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        _print_info(summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import difflike as dl
    from difflike._example import EXAMPLE_SIGNAL_REGIONS

    print(
        "difflike demo: the built-in example workspace as a signal-region model",
        file=sys.stderr,
    )
    model, data = dl.load(
        dl.example_workspace(), signal_regions=list(EXAMPLE_SIGNAL_REGIONS)
    )
    summary = describe(model, data)
    _print_info(summary)
    signal = np.array([4.0, 2.0, 2.5, 1.5])
    init = model.config.init
    print("")
    print(
        f"signal yields s = {signal.tolist()} in bins of {', '.join(EXAMPLE_SIGNAL_REGIONS)}"
    )
    print(
        f"ln L(init; observed, s)     = {float(model.logpdf(init, data, signal)):.10f}"
    )
    print(
        f"ln L(init; observed, s = 0) = {float(model.logpdf(init, data, 0 * signal)):.10f}"
    )
    expected = np.asarray(model.expected_actualdata(init, signal))
    rows = [
        (
            f"{name}[{j}]",
            f"{float(data[sl.start + j]):g}",
            f"{expected[sl.start + j]:.3f}",
        )
        for name, sl in model.config.channel_slices.items()
        for j in range(sl.stop - sl.start)
    ]
    print("")
    print(_table(rows, ("bin", "observed", "expected (init, s)")))

    n = args.batch
    rng = np.random.default_rng(0)
    lo, hi = np.asarray(model.config.bounds).T
    pars = rng.uniform(
        np.maximum(lo, -2), np.minimum(hi, 2), size=(n, model.config.npars)
    )
    signals = rng.uniform(0, 5, size=(n, model.config.nsignal))
    batched = jax.jit(lambda m, p, s: m.logpdf(p, data, s))
    batched(model, pars, signals).block_until_ready()
    start = time.perf_counter()
    values = batched(model, pars, signals).block_until_ready()
    elapsed = time.perf_counter() - start
    print("")
    print(
        f"jit + vmap: {n} log-likelihoods (random parameters and signals) in "
        f"{elapsed * 1e3:.2f} ms ({n / elapsed:,.0f} per second); all finite: "
        f"{bool(np.isfinite(np.asarray(values)).all())}"
    )
    return 0


def _add_grid_args(p: argparse.ArgumentParser, surrogate: bool = False) -> None:
    if surrogate:
        p.add_argument(
            "workspace", nargs="?", help="workspace .json or .json.gz (or --surrogate)"
        )
        p.add_argument(
            "--surrogate",
            metavar="PATH",
            help="a trained surrogate (folder or .onnx) instead of a workspace; "
            "give the yields with --yields",
        )
        p.add_argument(
            "--expectation",
            default="observed",
            help="with --surrogate: the expectation to use (default observed)",
        )
    else:
        p.add_argument("workspace", help="workspace .json or .json.gz")
    p.add_argument("--patchset", help="a patchset .json or .json.gz")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--point", nargs="+", metavar="NAME", help="patchset points")
    which.add_argument(
        "--all", action="store_true", help="every point of the patchset, in one call"
    )
    p.add_argument(
        "--signal-regions",
        nargs="+",
        metavar="CHANNEL",
        help="channels whose signal yields are given by --yields",
    )
    p.add_argument(
        "--yields",
        nargs="+",
        type=float,
        metavar="S",
        help="signal yields per signal-region bin (with --signal-regions)",
    )
    p.add_argument("--measurement", help="measurement name (default: the first)")
    p.add_argument(
        "--mirror",
        action="store_true",
        help="also fit from each minimum mirrored (likelihoods with several "
        "minima; about twice the time; see the README)",
    )
    p.add_argument("--json", action="store_true", help="print results as JSON")


def _load_grid(args: argparse.Namespace):
    """``(model, data, signal, names)``; ``model`` is a grid for several points."""
    import numpy as np

    import difflike as dl
    from difflike.errors import InputError

    if (args.point or args.all) and not args.patchset:
        raise InputError("--point and --all need --patchset")
    if args.yields is not None and not args.signal_regions:
        raise InputError("--yields needs --signal-regions")
    if args.signal_regions and (args.patchset or args.point):
        raise InputError("--signal-regions is for a background-only workspace")
    if args.patchset and (args.all or (args.point and len(args.point) > 1)):
        model, data = dl.load_patchset(
            args.workspace,
            args.patchset,
            points=None if args.all else args.point,
            measurement=args.measurement,
            progress=sys.stderr.isatty(),
        )
        return model, data, None, list(model.config.points)
    if args.patchset and not args.point:
        raise InputError("with --patchset, name the points (--point) or use --all")
    point = args.point[0] if args.point else None
    model, data = dl.load(
        args.workspace,
        patchset=args.patchset,
        point=point,
        signal_regions=args.signal_regions,
        measurement=args.measurement,
    )
    signal = None
    if args.signal_regions:
        if args.yields is None:
            raise InputError("a signal-region model needs --yields")
        signal = np.asarray(args.yields, float)
    return model, data, signal, [point or "workspace"]


def _timed(what: str, fn, *args, **kwargs):
    import jax

    print(f"{what} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    print(f"{what}: {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return out


def _print_results(args, names, key, obs, exp, ok, header, meta, notes=None):
    """One result per point: JSON (``{**meta, "results": [...]}``) or a table.

    ``obs`` ``(n,)`` and ``exp`` ``(n, 5)`` are printed as ``key`` and
    ``key + "_exp"``; ``header`` names the table's point, value and status
    columns; ``notes`` maps a JSON field to ``(flags, text)``: per-point flags, and
    the text appended to the status column where a flag is set.
    """
    notes = notes or {}
    if args.json:
        results = [
            {
                "point": n,
                key: float(obs[i]),
                f"{key}_exp": exp[i].tolist(),
                "converged": bool(ok[i]),
                **{field: bool(flags[i]) for field, (flags, _) in notes.items()},
            }
            for i, n in enumerate(names)
        ]
        json.dump({**meta, "results": results}, sys.stdout, indent=1)
        print()
        return
    rows = [
        [
            n,
            f"{obs[i]:.4g}",
            *(f"{v:.4g}" for v in exp[i]),
            ("ok" if ok[i] else "FAILED")
            + "".join(f" ({text})" for flags, text in notes.values() if flags[i]),
        ]
        for i, n in enumerate(names)
    ]
    point, value, status = header
    expected = ("-2sig", "-1sig", "median", "+1sig", "+2sig")
    print(_table(rows, (point, value, *expected, status)))


def _surrogate_inputs(args: argparse.Namespace):
    """``(surrogate, yields)`` for ``--surrogate`` (JAX rebuilt from ONNX if needed)."""
    import numpy as np

    from difflike.errors import InputError
    from difflike.surrogate import load

    if args.workspace or args.patchset or args.point or args.all or args.signal_regions:
        raise InputError("--surrogate replaces the workspace, patchset and regions")
    if args.yields is None:
        raise InputError("--surrogate needs the signal yields (--yields)")
    if args.mirror:
        raise InputError(
            "--mirror is a setting of a workspace's fits, not of --surrogate"
        )
    sur = load(args.surrogate)
    if hasattr(sur, "to_jax"):
        sur = sur.to_jax()
    return sur, np.asarray(args.yields, float)[None, :]


def _check_workspace(args: argparse.Namespace) -> None:
    from difflike.errors import InputError

    if not args.workspace:
        raise InputError("give a workspace, or a surrogate with --surrogate")


def cmd_cls(args: argparse.Namespace) -> int:
    import numpy as np

    import difflike as dl

    if args.surrogate:
        from difflike.surrogate import hypotest

        sur, yields = _surrogate_inputs(args)
        out = _timed(
            f"CLs at mu = {args.mu:g} (surrogate, {args.expectation})",
            hypotest,
            sur,
            yields,
            args.mu,
            expectation=args.expectation,
            test_stat=args.test_stat,
        )
        names = ["yields"]
        meta = {"mu": args.mu, "test_stat": args.test_stat, "surrogate": args.surrogate}
        cls, exp = np.asarray(out.cls), np.asarray(out.cls_exp).reshape(-1, 5)
        ok = np.asarray(out.converged).reshape(-1)
        _print_results(args, names, "cls", cls, exp, ok, ("point", "CLs", "fit"), meta)
        return 0 if ok.all() else 1
    _check_workspace(args)
    model, data, signal, names = _load_grid(args)
    out = _timed(
        f"CLs at mu = {args.mu:g} ({len(names)} point{'s' * (len(names) > 1)})",
        dl.hypotest,
        args.mu,
        model,
        data,
        signal,
        test_stat=args.test_stat,
        return_details=True,
        mirror=args.mirror,
    )
    cls = np.atleast_1d(np.asarray(out.cls))
    exp = np.asarray(out.cls_exp).reshape(-1, 5)
    ok = np.atleast_1d(np.asarray(out.converged))
    meta = {"mu": args.mu, "test_stat": args.test_stat}
    _print_results(args, names, "cls", cls, exp, ok, ("point", "CLs", "fit"), meta)
    if args.plot:
        _save_contour(args, names, cls, exp)
    return 0 if ok.all() else 1


def _save_contour(args, names, cls, exp) -> None:
    from difflike.plotting import DEFAULT_MASS_PATTERN, exclusion_contour

    ax = exclusion_contour(
        names, cls, exp, pattern=args.mass_pattern or DEFAULT_MASS_PATTERN
    )
    ax.figure.savefig(args.plot, bbox_inches="tight")
    print(f"exclusion contour written to {args.plot}", file=sys.stderr)


def cmd_limit(args: argparse.Namespace) -> int:
    import numpy as np

    import difflike as dl

    if args.surrogate:
        from difflike.surrogate import upper_limit

        sur, yields = _surrogate_inputs(args)
        names = ["yields"]
        out = _timed(
            f"{args.cl:.0%} CL upper limit (surrogate, {args.expectation})",
            upper_limit,
            sur,
            yields,
            cl=args.cl,
            expectation=args.expectation,
        )
    else:
        _check_workspace(args)
        model, data, signal, names = _load_grid(args)
        out = _timed(
            f"{args.cl:.0%} CL upper limits ({len(names)} point{'s' * (len(names) > 1)})",
            dl.upper_limit,
            model,
            data,
            signal,
            cl=args.cl,
            return_details=True,
            mirror=args.mirror,
        )
    obs = np.atleast_1d(np.asarray(out.mu_up))
    exp = np.asarray(out.mu_up_exp).reshape(-1, 5)
    ok = np.asarray(out.converged).reshape(-1, 6).all(axis=1)
    widened = np.atleast_1d(np.asarray(out.widened))
    _print_results(
        args,
        names,
        "mu_up",
        obs,
        exp,
        ok,
        ("point", "observed", ""),
        {"cl": args.cl},
        {"beyond_poi_bound": (widened, "beyond POI bound")},
    )
    return 0 if ok.all() else 1


def cmd_fit(args: argparse.Namespace) -> int:
    import numpy as np

    import difflike as dl

    model, data, signal, names = _load_grid(args)
    if len(names) > 1:
        from difflike.errors import InputError

        raise InputError("difflike fit takes one point (--point NAME)")
    if args.mu is None:
        res = _timed("global fit", dl.fit, model, data, signal, mirror=args.mirror)
    else:
        res = _timed(
            f"fit at mu = {args.mu:g}",
            dl.profile,
            model,
            data,
            args.mu,
            signal,
            mirror=args.mirror,
        )
    pars = np.asarray(res.pars)
    config = model.config
    if args.json:
        json.dump(
            {
                "nll": float(res.nll),
                "converged": bool(res.converged),
                "status": int(res.status),
                "message": str(res.message.item()),
                "iterations": int(res.nit),
                "pars": dict(zip(config.par_names, pars.tolist())),
            },
            sys.stdout,
            indent=1,
        )
        print()
    else:
        print(
            f"-ln L = {float(res.nll):.10g}   ({res.message.item()}, {int(res.nit)} iterations)"
        )
        lo, hi = np.asarray(config.bounds).T
        fixed = np.asarray(config.fixed)
        rows = [
            [
                name,
                f"{pars[i]:.6g}",
                "fixed"
                if fixed[i] or (args.mu is not None and i == config.poi_index)
                else "",
                f"[{lo[i]:g}, {hi[i]:g}]",
            ]
            for i, name in enumerate(config.par_names)
        ]
        print(_table(rows, ("parameter", "value", "", "bounds")))
    return 0 if bool(res.converged) else 1


def _print_summary(summary, meta, out=None) -> None:
    """The completion report of ``difflike sample``, for a person."""
    out = out or sys.stdout
    total = summary.n
    print(
        f"{total} samples in {meta['signal_regions']} "
        f"({sum(meta['signal_nbins'])} yields), {summary.seconds:.1f} s of sampling "
        f"({total / max(summary.seconds, 1e-9):.0f} samples/s)",
        file=out,
    )
    edges = summary.coverage[next(iter(summary.coverage))]["edges"]
    bins = [f"[{a:g},{b:g})" for a, b in itertools.pairwise(edges)]
    rows = []
    for e, cov in summary.coverage.items():
        kept = total - summary.failed[e]
        rows.append(
            [e, kept, summary.failed[e], f"{cov['min']:.3g}", f"{cov['max']:.4g}"]
            + cov["counts"]
        )
    print("\n-2 Delta per expectation (kept = converged labels):", file=out)
    print(
        _table(rows, ["expectation", "kept", "failed", "min", "max", *bins]), file=out
    )
    rows = [
        [
            name,
            f"{summary.accept[name]:.2f}",
            summary.divergences[name],
            f"{summary.rhat.get(name, float('nan')):.3f}",
        ]
        for name in summary.divergences
    ]
    print("\nNUTS per sampled density:", file=out)
    print(_table(rows, ["density", "accept", "divergences", "max r-hat"]), file=out)


def cmd_sample(args: argparse.Namespace) -> int:
    from difflike.errors import InputError
    from difflike.sample import SamplerSettings, sample, summarize

    if not args.signal_regions:
        raise InputError("sampling needs --signal-regions (a signal-region model)")
    model, data = _load(args)
    restart = {}  # the sampler's default unless asked otherwise
    if args.no_restarts:
        restart["label_restart_above"] = None
    elif args.restart_above is not None:
        restart["label_restart_above"] = args.restart_above
    settings = SamplerSettings(
        chains_per_target=args.chains,
        num_warmup=args.warmup,
        steps_per_chunk=args.steps_per_chunk,
        temperatures=tuple(args.temperatures),
        explore_fraction=args.explore_fraction,
        density=args.density,
        **restart,
    )
    ds = sample(
        model,
        data,
        args.n,
        args.out,
        settings=settings,
        seed=args.seed,
        progress=not args.quiet,
    )
    summary = summarize(ds)
    if args.json:
        print(json.dumps(summary.to_json(), indent=1))
    else:
        _print_summary(summary, ds.meta)
    return 0


def cmd_relabel(args: argparse.Namespace) -> int:
    from difflike.sample import relabel, summarize

    ds = relabel(
        args.dataset, args.out, workspace=args.workspace, progress=not args.quiet
    )
    summary = summarize(ds)
    if args.json:
        print(json.dumps(summary.to_json(), indent=1))
    else:
        _print_summary(summary, ds.meta)
        changed = {e: v["starts"] for e, v in ds.meta["basins"].items()}
        print(f"\nother minima used as starts, per expectation: {changed}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import difflike

    parser = argparse.ArgumentParser(
        prog="difflike",
        description="Differentiable HistFactory likelihoods in JAX.",
    )
    parser.add_argument(
        "--version", action="version", version=f"difflike {difflike.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="run the main job on the built-in example workspace"
    )
    p.add_argument(
        "--batch",
        type=int,
        default=10_000,
        help="batch size of the timing (default 10000)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "info", help="describe a workspace: channels, samples, modifiers, parameters"
    )
    _add_workspace_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fit", help="a global fit, or a fit at fixed mu (--mu)")
    _add_grid_args(p)
    p.add_argument("--mu", type=float, help="fix the POI at this value")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "cls", help="asymptotic CLs with the expected band, for one or many points"
    )
    _add_grid_args(p, surrogate=True)
    p.add_argument("--mu", type=float, default=1.0, help="tested mu (default 1)")
    p.add_argument(
        "--test-stat",
        default="qtilde",
        choices=("qtilde", "q", "q0"),
        help="test statistic (default qtilde)",
    )
    p.add_argument("--plot", metavar="FILE", help="draw the exclusion contour (--all)")
    p.add_argument(
        "--mass-pattern",
        metavar="REGEX",
        help="two-group regular expression reading masses from point names",
    )
    p.set_defaults(func=cmd_cls)

    p = sub.add_parser("limit", help="upper limits on mu, observed and expected")
    _add_grid_args(p, surrogate=True)
    p.add_argument("--cl", type=float, default=0.95, help="confidence level (0.95)")
    p.set_defaults(func=cmd_limit)

    p = sub.add_parser(
        "sample",
        help="NUTS samples of signal yields, labelled with Delta, written to a folder",
    )
    _add_workspace_args(p)
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--out", required=True, help="dataset folder (resumed if present)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--chains", type=int, default=4, help="chains per density (default 4)"
    )
    p.add_argument(
        "--warmup", type=int, default=200, help="warm-up transitions (default 200)"
    )
    p.add_argument(
        "--steps-per-chunk",
        type=int,
        default=50,
        help="transitions per chain between commits (default 50)",
    )
    p.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[1.0, 0.25, 1 / 16, 1 / 64],
        help="the tempering ladder beta (default 1 1/4 1/16 1/64)",
    )
    p.add_argument(
        "--explore-fraction",
        type=float,
        default=0.2,
        help="share of exploratory prior draws (default 0.2)",
    )
    p.add_argument(
        "--density",
        default="joint",
        choices=("joint", "profiled"),
        help="what NUTS samples: yields with nuisance parameters (joint, default) "
        "or yields under the exact profile, a fit per step (profiled)",
    )
    p.add_argument(
        "--restart-above",
        type=float,
        help="-2 Delta beyond which (and for any negative yield) a label's fit is "
        "repeated from probe starts, keeping the deepest minimum (default: "
        "SamplerSettings.label_restart_above, 20; inf: negative yields only)",
    )
    p.add_argument(
        "--no-restarts",
        action="store_true",
        help="label from the background-only fit alone (faster; on likelihoods "
        "with several minima some labels end in a shallower one)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "relabel",
        help="a dataset's labels made again with this version's labeller (the other "
        "minima of the profile), into a new folder",
    )
    p.add_argument("dataset", help="dataset folder written by 'difflike sample'")
    p.add_argument(
        "--out", required=True, help="new dataset folder (resumed if present)"
    )
    p.add_argument(
        "--workspace",
        help="the workspace where it is not at the path the dataset records "
        "(its SHA-256 must match)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_relabel)

    p = sub.add_parser(
        "train", help="train a surrogate on a dataset written by 'difflike sample'"
    )
    p.add_argument("dataset", help="dataset folder")
    p.add_argument("--out", required=True, help="surrogate folder (resumed if present)")
    p.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=[128, 128, 128],
        help="hidden widths of the first candidate (default 128 128 128)",
    )
    p.add_argument(
        "--activation",
        default="leaky_relu",
        choices=("leaky_relu", "silu", "softplus", "tanh"),
        help="hidden nonlinearity (default leaky_relu; see docs/surrogates.md)",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
    p.add_argument("--batch-size", type=int, default=256, help="minibatch (256)")
    p.add_argument("--epochs", type=int, default=400, help="epochs at most (400)")
    p.add_argument("--patience", type=int, default=40, help="early stopping (40)")
    p.add_argument(
        "--trials", type=int, default=4, help="search candidates per network (4)"
    )
    p.add_argument("--ensemble", type=int, default=3, help="members kept (3)")
    p.add_argument(
        "--budget", type=float, help="seconds per network for the search (no limit)"
    )
    p.add_argument(
        "--multihead",
        action="store_true",
        help="one network for all expectations (default: one each)",
    )
    p.add_argument(
        "--no-counting",
        action="store_true",
        help="learn Delta itself, not its departure from the counting baseline "
        "(which needs the dataset's workspace; docs/surrogates.md)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="scale the counting baseline's variances per signal bin to fit the "
        "training labels first (docs/surrogates.md)",
    )
    p.add_argument(
        "--band",
        type=float,
        default=10.0,
        help="-2 Delta up to which rows weigh fully in the loss (default 10)",
    )
    p.add_argument(
        "--tail-power",
        type=float,
        default=4.0,
        help="rows beyond the band weigh (band / -2 Delta) ** this (default 4; "
        "docs/surrogates.md)",
    )
    p.add_argument(
        "--gradient-weight",
        type=float,
        default=0.0,
        help="weight of the labels' gradients in the loss, where the dataset has "
        "them (default 0: values alone; docs/surrogates.md)",
    )
    p.add_argument(
        "--expectations", nargs="+", help="expectations to learn (default: all)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="write a trained surrogate as ONNX")
    p.add_argument("surrogate", help="surrogate folder (written by 'difflike train')")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.set_defaults(func=cmd_export)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from difflike.surrogate import TrainSettings, train

    settings = TrainSettings(
        widths=tuple(args.widths),
        activation=args.activation,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        trials=args.trials,
        ensemble=args.ensemble,
        budget_s=args.budget,
        multihead=args.multihead,
        counting=not args.no_counting,
        calibrate=args.calibrate,
        band=args.band,
        tail_power=args.tail_power,
        gradient_weight=args.gradient_weight,
        seed=args.seed,
    )
    start = time.perf_counter()
    sur = train(
        args.dataset,
        args.out,
        settings,
        expectations=tuple(args.expectations) if args.expectations else None,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    metrics = sur.meta["metrics"]
    if args.json:
        json.dump(
            {"out": args.out, "seconds": seconds, "metrics": metrics},
            sys.stdout,
            indent=1,
        )
        print()
        return 0
    rows = [
        [
            e,
            m["rows"],
            f"{m.get('nll_mape', float('nan')):.3g}",
            f"{m.get('nll_maxape', float('nan')):.3g}",
            f"{m.get('q_err_p99', float('nan')):.3g}",
            m.get("band_rows", 0),
            f"{100 * m.get('band_within_tolerance', float('nan')):.1f}%",
            f"{m.get('band_q_err_max', float('nan')):.3g}",
        ]
        for e, m in metrics.items()
    ]
    header = (
        "expectation",
        "test rows",
        "NLL MAPE %",
        "MaxAPE %",
        "|err -2D| p99",
        "band rows",
        "band <=0.05",
        "band max",
    )
    print(f"surrogate written to {args.out} in {seconds:.0f} s (test split):")
    print(_table(rows, header))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from difflike.surrogate import load_folder
    from difflike.surrogate.onnx import export

    path = export(load_folder(args.surrogate), args.out)
    print(f"ONNX surrogate written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``difflike`` command."""
    from difflike.errors import DifflikeError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DifflikeError as err:
        print(f"difflike: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"difflike: error: {err.strerror}: {err.filename}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == "__main__":
    sys.exit(main())
