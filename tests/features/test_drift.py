"""PSI: zero for identical samples, bins fixed on the reference, empty bins and missing values
handled, equal to a hand computation; verdict bands; the CLI report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.drift import (
    EMPTY_BIN_SHARE,
    bin_counts,
    drift_report,
    psi,
    psi_frame,
    verdict,
)
from kuaxin.cli import app

EPS = EMPTY_BIN_SHARE


def _term(c: float, r: float) -> float:
    c, r = max(c, EPS), max(r, EPS)
    return (c - r) * math.log(c / r)


def test_identical_samples_give_zero() -> None:
    rng = np.random.default_rng(0)
    x = pd.Series(rng.lognormal(size=500))
    x[::7] = np.nan
    assert psi(x, x.copy()) == 0.0
    cats = pd.Series(pd.Categorical(["A", "B", None, "C"] * 50, categories=["A", "B", "C", "D"]))
    assert psi(cats, cats.copy()) == 0.0
    # same distribution, different order and length
    assert psi(x, pd.concat([x, x]).sample(frac=1, random_state=1)) == pytest.approx(0.0, abs=1e-12)


def test_numeric_matches_hand_computation_with_missing_and_empty_bin() -> None:
    ref = pd.Series([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype="float64")
    cur = pd.Series([1, 2, 3, 7, 8, 9, 10, 11, np.nan, np.nan])
    ref_counts, cur_counts, labels = bin_counts(ref, cur, bins=2)
    # the reference median 5.5 splits the bins; the missing bin is empty in the reference
    assert labels == ["(-inf, 5.5]", "(5.5, inf]", "missing"]
    assert ref_counts.tolist() == [5, 5, 0] and cur_counts.tolist() == [3, 5, 2]
    expected = _term(0.3, 0.5) + _term(0.5, 0.5) + _term(0.2, 0.0)
    assert psi(ref, cur, bins=2) == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(expected) and expected > 1.0


def test_categorical_matches_hand_computation() -> None:
    ref = pd.Series(["a"] * 6 + ["b"] * 4)
    cur = pd.Series(["a"] * 3 + ["b"] * 5 + ["c"] * 2)
    expected = _term(0.3, 0.6) + _term(0.5, 0.4) + _term(0.2, 0.0) + _term(0.0, 0.0)
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)


def test_bins_are_fixed_on_the_reference() -> None:
    ref = pd.Series(np.arange(100, dtype=float))
    shifted = ref + 1000  # everything lands in the reference's top bin
    ref_counts, cur_counts, _ = bin_counts(ref, shifted, bins=10)
    assert ref_counts[:10].tolist() == [10] * 10
    assert cur_counts[9] == 100 and cur_counts[:9].sum() == 0
    expected = 9 * _term(0.0, 0.1) + _term(1.0, 0.1)
    assert psi(ref, shifted) == pytest.approx(expected, rel=1e-12)
    assert verdict(psi(ref, shifted)) == "significant"


def test_constant_and_all_missing_references() -> None:
    const = pd.Series([3.0] * 50)
    assert psi(const, const) == 0.0
    assert psi(const, pd.Series([3.0] * 25 + [4.0] * 25)) > 0.25
    empty = pd.Series([np.nan] * 10)
    assert psi(empty, empty) == 0.0
    assert psi(empty, pd.Series([1.0] * 10)) > 0.25


def test_empty_sample_and_bad_bins_are_refused() -> None:
    with pytest.raises(ValueError, match="both samples"):
        psi(pd.Series([1.0, 2.0]), pd.Series([], dtype=float))
    with pytest.raises(ValueError, match="bins"):
        psi(pd.Series([1.0]), pd.Series([1.0]), bins=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "stable"),
        (0.0999, "stable"),
        (0.10, "moderate"),
        (0.2499, "moderate"),
        (0.25, "significant"),
        (3.0, "significant"),
    ],
)
def test_verdict_bands(value: float, expected: str) -> None:
    assert verdict(value) == expected


@pytest.mark.parametrize("value", [float("nan"), -0.1, float("inf")])
def test_verdict_refuses_non_psi(value: float) -> None:
    with pytest.raises(ValueError, match="PSI"):
        verdict(value)


def test_psi_frame_and_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    n = 400
    ref = pd.DataFrame(
        {
            "exports_12m_usd": rng.lognormal(12, 1, n),
            "tax_grade": pd.Categorical(rng.choice(list("ABMCD"), n), categories=list("ABMCD")),
            "pd": rng.uniform(0, 0.1, n),
            "unrelated": rng.normal(size=n),
        }
    )
    cur = ref.copy()
    cur["exports_12m_usd"] = cur["exports_12m_usd"] * 3
    cur.loc[: n // 4, "tax_grade"] = np.nan
    frame = psi_frame(ref, cur, ["exports_12m_usd", "tax_grade"])
    assert frame["feature"].tolist() == ["exports_12m_usd", "tax_grade"]
    assert frame.loc[1, "cur_missing"] == pytest.approx((n // 4 + 1) / n)
    with pytest.raises(KeyError, match="nope"):
        psi_frame(ref, cur, ["nope"])
    a, b = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    ref.to_parquet(a)
    cur.to_parquet(b)
    report = drift_report(a, b)
    assert set(report["feature"]) == {"exports_12m_usd", "tax_grade", "pd"}  # catalog + score
    assert report["psi"].is_monotonic_decreasing
    assert report.set_index("feature").loc["pd", "verdict"] == "stable"
    out = tmp_path / "psi.csv"
    result = CliRunner().invoke(app, ["drift", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "exports_12m_usd" in result.output and "significant" in result.output
    assert pd.read_csv(out)["feature"].tolist() == report["feature"].tolist()


def test_snapshot_drift_is_stable_against_itself(snapshot: pd.DataFrame) -> None:
    from features.snapshot import default_catalog

    cols = default_catalog().names
    table = psi_frame(snapshot, snapshot, cols)
    assert (table["psi"] == 0.0).all() and (table["verdict"] == "stable").all()


def test_cli_refuses_missing_file_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["drift", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    )
    assert result.exit_code != 0
    assert "a.parquet" in result.output and "Traceback" not in result.output


def test_verdict_bands_come_from_configuration(tmp_path: Path) -> None:
    from features.drift import load_drift_bands

    cfg = tmp_path / "drift.yaml"
    cfg.write_text("moderate: 0.05\nsignificant: 0.5\nempty_bin_share: 0.0001\n")
    bands = load_drift_bands(cfg)
    assert verdict(0.07, bands) == "moderate"
    assert verdict(0.07) == "stable"
    assert verdict(0.3, bands) == "moderate"


def test_drift_bands_must_be_ordered(tmp_path: Path) -> None:
    from features.drift import load_drift_bands

    cfg = tmp_path / "drift.yaml"
    cfg.write_text("moderate: 0.3\nsignificant: 0.2\nempty_bin_share: 0.0001\n")
    with pytest.raises(ValueError, match="significant"):
        load_drift_bands(cfg)


def test_psi_by_group_equals_psi_of_each_group() -> None:
    from features.drift import psi_by_group

    rng = np.random.default_rng(5)
    ref = pd.Series(rng.normal(size=3000))
    cur = pd.Series(np.r_[rng.normal(size=1000), rng.normal(0.5, 1, 1000), [np.nan] * 50])
    groups = np.r_[["a"] * 1000, ["b"] * 1050]
    out = psi_by_group(ref, cur, groups)
    assert out["a"] == pytest.approx(psi(ref, cur[:1000]))
    assert out["b"] == pytest.approx(psi(ref, cur[1000:].reset_index(drop=True)))
    cats = pd.Series(rng.choice(["x", "y", None], 500))
    by = psi_by_group(cats, cats, np.r_[[1] * 250, [2] * 250])
    assert by[1] == pytest.approx(psi(cats, cats[:250]))
