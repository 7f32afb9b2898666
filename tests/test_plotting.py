"""Plot helpers: they draw what they are given, and name bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")

from difflike.errors import InputError
from difflike.plotting import cls_scan, exclusion_contour, parse_masses


def test_cls_scan_draws_the_brazil_band(tmp_path):
    mu = np.linspace(0, 3, 16)
    exp = np.exp(-mu[:, None] * np.array([3.0, 2.0, 1.5, 1.0, 0.7]))
    ax = cls_scan(mu, np.exp(-1.2 * mu), exp, mu_up=2.5, label="test")
    assert len(ax.collections) == 2  # the two bands
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"observed", "expected"} <= set(labels)
    ax.figure.savefig(tmp_path / "scan.png")
    with pytest.raises(InputError):
        cls_scan(mu, mu, exp[:, :3])


def test_parse_masses():
    names = ["C1N2_Wh_hbb_300_50", "DS_440_40_Staus", "sig_150p5_0"]
    np.testing.assert_array_equal(
        parse_masses(names), [[300, 50], [440, 40], [150.5, 0]]
    )
    assert parse_masses(["m1=200,m2=30"], r"m1=(\d+),m2=(\d+)").tolist() == [[200, 30]]
    with pytest.raises(InputError, match="sig_X"):
        parse_masses(["sig_X"])


def test_exclusion_contour(tmp_path):
    m1, m2 = np.meshgrid(np.arange(100, 600, 50), np.arange(0, 300, 50))
    keep = m2 < m1 - 50
    m1, m2 = m1[keep], m2[keep]
    names = [f"pt_{a}_{b}" for a, b in zip(m1, m2)]
    cls = np.exp(-(600 - m1) / 60.0)  # excluded at low m1
    shifts = np.array([0.5, 0.8, 1.0, 1.25, 1.6])
    ax = exclusion_contour(names, cls, cls[:, None] ** shifts)
    ax.figure.savefig(tmp_path / "contour.png")
    assert (tmp_path / "contour.png").stat().st_size > 1000
    with pytest.raises(InputError):
        exclusion_contour(names, cls[:-1], cls[:, None] ** shifts)
