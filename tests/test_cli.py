"""The ``difflike`` command: demo, info, errors on stderr with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import difflike as dl
from difflike.cli import main


def test_demo(capsys):
    assert main(["demo", "--batch", "64"]) == 0
    out, err = capsys.readouterr()
    assert "SR_low" in out and "staterror_CR" in out
    assert "ln L(init; observed, s)" in out and "all finite: True" in out
    assert "built-in example" in err


def test_info_example(capsys):
    assert main(["info", str(dl.example_workspace())]) == 0
    out = capsys.readouterr().out
    for word in (
        "CR",
        "SR_high",
        "histosys",
        "shapesys",
        "shapefactor",
        "wjets_shape_CR",
        "[0.915, 1.085]",
    ):
        assert word in out


def test_info_json_with_patchset(capsys):
    args = [
        "info",
        str(dl.example_workspace()),
        "--patchset",
        str(dl.example_patchset()),
        "--point",
        "sig_500_100",
        "--json",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["poi"] == "mu"
    assert summary["modifiers_by_type"]["normsys"] == 4
    assert {c["name"] for c in summary["channels"]} == {"CR", "SR_low", "SR_high"}
    assert summary["npars"] == 21


def test_info_signal_regions(capsys):
    assert (
        main(
            [
                "info",
                str(dl.example_workspace()),
                "--signal-regions",
                "SR_high",
                "SR_low",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Signal regions (signal-vector order): SR_high, SR_low" in out
    assert "SR_high (SR)" in out


def test_errors_go_to_stderr_with_status_2(capsys, tmp_path):
    code = main(
        [
            "info",
            str(dl.example_workspace()),
            "--patchset",
            str(dl.example_patchset()),
            "--point",
            "sig_400_10",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("difflike: error:") and "did you mean 'sig_400_100'" in err
    assert main(["info", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


@pytest.mark.shared
def test_info_published(likelihoods, capsys):
    folder = likelihoods / "ATLAS-SUSY-2018-04"
    args = [
        "info",
        str(folder / "BkgOnly.json"),
        "--patchset",
        str(folder / "patchset.json.gz"),
        "--point",
        "DS_400_40_Staus",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SR1cut_cuts" in out and "120 parameters" in out


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "difflike.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("difflike ")


EXAMPLE = [str(dl.example_workspace()), "--patchset", str(dl.example_patchset())]


def test_cls_all_json_and_contour(capsys, tmp_path):
    plot = tmp_path / "contour.png"
    assert main(["cls", *EXAMPLE, "--all", "--json", "--plot", str(plot)]) == 0
    out, err = capsys.readouterr()
    results = json.loads(out)["results"]
    assert [r["point"] for r in results][:2] == ["sig_300_0", "sig_300_100"]
    assert len(results) == 11 and all(r["converged"] for r in results)
    # pyhf 0.7.6 on sig_300_0 (tests/infer/test_infer.py checks the method)
    first = results[0]
    assert 0.0 < first["cls"] < 0.2 and sorted(first["cls_exp"]) == first["cls_exp"]
    assert plot.stat().st_size > 1000 and "CLs at mu = 1 (11 points)" in err


# shares the compiled signal-region limit with tests/infer/test_infer.py
@pytest.mark.xdist_group("infer-example")
def test_limit_and_fit_on_a_signal_region_model(capsys):
    sr = [str(dl.example_workspace()), "--signal-regions", "SR_low", "SR_high"]
    yields = ["--yields", "4", "2", "2.5", "1.5"]
    assert main(["limit", *sr, *yields]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["point", "observed", "-2sig"]
    row = out.splitlines()[2].split()
    assert row[0] == "workspace" and row[-1] == "ok"
    observed, *expected = map(float, row[1:7])
    assert expected == sorted(expected) and 0.1 < observed < 10
    assert main(["fit", *sr, *yields, "--mu", "1", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["converged"] and fit["pars"]["mu"] == 1.0
    model, data = dl.load(dl.example_workspace(), signal_regions=["SR_low", "SR_high"])
    want = dl.profile(model, data, 1.0, [4.0, 2.0, 2.5, 1.5])
    assert fit["nll"] == pytest.approx(float(want.nll), abs=1e-9)
    # a unimodal likelihood: the mirrored start finds the same minimum
    assert main(["fit", *sr, *yields, "--mu", "1", "--json", "--mirror"]) == 0
    mirrored = json.loads(capsys.readouterr().out)
    assert mirrored["converged"]
    assert mirrored["nll"] == pytest.approx(float(want.nll), abs=1e-9)


@pytest.mark.parametrize(
    "args",
    [
        ["cls", str(dl.example_workspace()), "--all"],  # no patchset
        ["cls", str(dl.example_workspace()), "--yields", "1"],  # no signal regions
        ["limit", *EXAMPLE],  # which points?
        ["cls", *EXAMPLE, "--point", "sig_999_0"],
    ],
)
def test_cli_input_errors(capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("difflike: error:") and len(err.splitlines()) == 1


def test_cls_on_a_published_point(capsys, likelihoods):
    folder = likelihoods / "ATLAS-SUSY-2018-04"
    args = [
        str(folder / "BkgOnly.json"),
        "--patchset",
        str(folder / "patchset.json.gz"),
    ]
    assert main(["cls", *args, "--point", "DS_440_40_Staus", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    # pyhf 0.7.6: tests/fixtures/inference_pyhf_refs.json.gz
    assert result["cls"] == pytest.approx(0.15391139311995267, rel=1e-3)
