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
