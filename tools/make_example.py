"""Write difflike's built-in example: a small workspace and a patchset of signal points.

The example has two signal regions (SR_low, SR_high; 2 bins each) and a control
region (CR; 3 bins), three background samples and every HistFactory modifier type:
normfactor, lumi, normsys, histosys (sharing a name with a normsys), staterror,
shapesys and shapefactor. The patchset adds a signal sample for a grid of masses.

Run from the repository root: ``python tools/make_example.py``.
"""

import gzip
import hashlib
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "difflike" / "data"


def digest(obj):
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf8")
    ).hexdigest()


def mod(name, mtype, data=None):
    return {"name": name, "type": mtype, "data": data}


def histo(nom, up, dn):
    return {
        "hi_data": [n * u for n, u in zip(nom, up)],
        "lo_data": [n * d for n, d in zip(nom, dn)],
    }


def workspace():
    ttbar = {"SR_low": [12.0, 6.5], "SR_high": [3.1, 1.2], "CR": [210.0, 150.0, 80.0]}
    wjets = {"SR_low": [8.0, 4.2], "SR_high": [1.9, 0.6], "CR": [120.0, 90.0, 41.0]}
    fakes = [30.0, 18.0, 7.0]
    observed = {"SR_low": [22, 12], "SR_high": [4, 3], "CR": [372, 262, 130]}
    channels = []
    for name in ("SR_low", "SR_high", "CR"):
        nb = len(ttbar[name])
        samples = [
            {
                "name": "ttbar",
                "data": ttbar[name],
                "modifiers": [
                    mod("lumi", "lumi"),
                    mod("mu_ttbar", "normfactor"),
                    mod("ttbar_xsec", "normsys", {"hi": 1.06, "lo": 0.95}),
                    mod("jes", "normsys", {"hi": 1.03, "lo": 0.98}),
                    mod(
                        "jes",
                        "histosys",
                        histo(
                            ttbar[name], [1.04, 1.07, 1.1][:nb], [0.97, 0.94, 0.9][:nb]
                        ),
                    ),
                    mod(
                        f"staterror_{name}",
                        "staterror",
                        [0.05 * v**0.5 * 2 for v in ttbar[name]],
                    ),
                ],
            },
            {
                "name": "wjets",
                "data": wjets[name],
                "modifiers": [
                    mod("lumi", "lumi"),
                    mod("wjets_xsec", "normsys", {"hi": 1.15, "lo": 0.87}),
                    mod(
                        "jes",
                        "histosys",
                        histo(
                            wjets[name],
                            [1.05, 1.02, 1.08][:nb],
                            [0.96, 0.99, 0.93][:nb],
                        ),
                    ),
                    mod(
                        "wjets_scale",
                        "histosys",
                        histo(
                            wjets[name], [1.1, 1.15, 1.2][:nb], [0.92, 0.88, 0.85][:nb]
                        ),
                    ),
                    mod(
                        f"staterror_{name}",
                        "staterror",
                        [0.08 * v**0.5 * 2 for v in wjets[name]],
                    ),
                ]
                + (
                    [mod("wjets_shape_CR", "shapesys", [0.1 * v for v in wjets[name]])]
                    if name == "CR"
                    else []
                ),
            },
        ]
        if name == "CR":
            samples.append(
                {
                    "name": "fakes",
                    "data": fakes,
                    "modifiers": [mod("fakes_shape", "shapefactor")],
                }
            )
        channels.append({"name": name, "samples": samples})
    return {
        "channels": channels,
        "observations": [
            {"name": n, "data": observed[n]} for n in ("SR_low", "SR_high", "CR")
        ],
        "measurements": [
            {
                "name": "example",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.017],
                            "bounds": [[0.915, 1.085]],
                            "inits": [1.0],
                        },
                        {"name": "mu_ttbar", "bounds": [[0.0, 5.0]], "inits": [1.0]},
                        {"name": "mu", "bounds": [[0.0, 10.0]], "inits": [1.0]},
                    ],
                },
            }
        ],
        "version": "1.0.0",
    }


def patchset(ws):
    index = {c["name"]: i for i, c in enumerate(ws["channels"])}
    patches = []
    for m1 in (300, 400, 500, 600):
        for m2 in (0, 100, 200):
            if m2 >= m1 - 100:
                continue
            scale = (300.0 / m1) ** 4
            split = (m1 - m2) / m1
            yields = {
                "SR_low": [6.0 * scale * (1.2 - split), 3.0 * scale * (1.2 - split)],
                "SR_high": [4.0 * scale * split, 2.5 * scale * split],
            }
            ops = []
            for ch, ys in yields.items():
                ys = [round(y, 6) for y in ys]
                ops.append(
                    {
                        "op": "add",
                        "path": f"/channels/{index[ch]}/samples/0",
                        "value": {
                            "name": "signal",
                            "data": ys,
                            "modifiers": [
                                mod("mu", "normfactor"),
                                mod("lumi", "lumi"),
                                mod("sig_theory", "normsys", {"hi": 1.1, "lo": 0.9}),
                                mod(
                                    f"staterror_{ch}",
                                    "staterror",
                                    [round(0.05 * y, 6) for y in ys],
                                ),
                            ],
                        },
                    }
                )
            patches.append(
                {
                    "metadata": {"name": f"sig_{m1}_{m2}", "values": [m1, m2]},
                    "patch": ops,
                }
            )
    return {
        "metadata": {
            "description": "difflike example signal grid (synthetic: the HEPData reference is a placeholder)",
            "digests": {"sha256": digest(ws)},
            "labels": ["m1", "m2"],
            "references": {
                "hepdata": "ins0000000"
            },  # the schema requires one; none exists
        },
        "patches": patches,
        "version": "1.0.0",
    }


if __name__ == "__main__":
    ws = workspace()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "example_workspace.json").write_text(json.dumps(ws, indent=1) + "\n")
    with gzip.open(OUT / "example_patchset.json.gz", "wt") as f:
        json.dump(patchset(ws), f)
    print("wrote", OUT)
