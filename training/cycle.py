"""The model through the cycle: per-year metrics and the point-in-time / through-the-cycle choice.

Two things live here so that :mod:`training.train` only calls them:

- :func:`apply_calibration_mode` turns the Platt map fitted on the validation window into the
  configured calibration (``calibration.mode`` in ``training/config/model.yaml``):

  * ``point_in_time`` (PIT) keeps the map: PDs follow the state of the cycle the features (and
    the latest validation window) describe, which is what a 12-month loan price or an IFRS 9
    stage needs;
  * ``through_the_cycle`` (TTC) shifts its intercept so that the mean PD over the validation
    window equals the long-run default rate (the mean of the yearly default rates of every
    labelled as-of year the model was fitted on), which keeps PDs and grades stable over the
    cycle, as a capital (IRB) model's long-run average PD must be.

  Both intercepts are kept in the model's metadata so the report can measure the other mode's
  effect on the same out-of-time rows.
- :func:`cycle_report` gives, per as-of year of the out-of-time test window and of the windows
  the model was fitted on (labelled in-sample), the observed default rate against the mean PD,
  AUC, ECE and the decile calibration table; and the PIT-vs-TTC comparison per test year.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from training.metrics import calibration_table, expected_calibration_error, safe_auc
from training.model_config import CalibrationConfig, CycleConfig

PIT, TTC = "point_in_time", "through_the_cycle"


def calibration_config(config: dict[str, Any]) -> CalibrationConfig:
    """Return the validated ``calibration`` section (defaults when absent)."""
    return CalibrationConfig.model_validate(config.get("calibration") or {})


def cycle_config(config: dict[str, Any]) -> CycleConfig:
    """Return the validated ``cycle`` section (defaults when absent)."""
    return CycleConfig.model_validate(config.get("cycle") or {})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def yearly_default_rates(times: pd.Series, y: np.ndarray) -> dict[int, float]:
    """Observed default rate per as-of year."""
    frame = pd.DataFrame({"year": pd.to_datetime(times).dt.year.to_numpy(), "y": y})
    return {int(k): float(v) for k, v in frame.groupby("year")["y"].mean().items()}


def ttc_shift(log_odds: np.ndarray, target_rate: float, max_shift: float) -> float:
    """Intercept shift that moves the mean PD of ``log_odds`` to ``target_rate``.

    Parameters
    ----------
    log_odds : ndarray
        Calibrated log-odds of the reference rows.
    target_rate : float
        The long-run default rate in (0, 1).
    max_shift : float
        Largest absolute shift allowed.

    Returns
    -------
    float
        ``d`` with ``mean(sigmoid(log_odds + d)) == target_rate``.

    Raises
    ------
    ValueError
        When the target is not in (0, 1) or needs a shift beyond ``max_shift``.
    """
    if not 0.0 < target_rate < 1.0:
        raise ValueError(f"long-run default rate must be in (0, 1); got {target_rate}")
    z = np.asarray(log_odds, dtype=float)

    def gap(d: float) -> float:
        return float(_sigmoid(z + d).mean() - target_rate)

    if gap(-max_shift) > 0 or gap(max_shift) < 0:
        raise ValueError(
            f"through-the-cycle shift to a mean PD of {target_rate:.4f} exceeds "
            f"calibration.max_shift={max_shift} log-odds"
        )
    return float(brentq(gap, -max_shift, max_shift, xtol=1e-10))


def apply_calibration_mode(
    model: Any,
    frame: pd.DataFrame,
    y: np.ndarray,
    times: pd.Series,
    fitted: np.ndarray,
    valid: np.ndarray,
    config: dict[str, Any],
    num_threads: int = 1,
) -> dict[str, Any]:
    """Apply the configured calibration mode to ``model.calibration`` (a PIT Platt map).

    Parameters
    ----------
    model : CreditModel
        With the validation-window Platt map in ``calibration``; its intercept is shifted in
        place for ``through_the_cycle``.
    frame : DataFrame
        All labelled rows.
    y : ndarray
        Labels of ``frame``.
    times : Series
        As-of dates of ``frame``.
    fitted, valid : ndarray of bool
        Rows the model is fitted on (the long-run window) and the calibration window.
    config : dict
        Model configuration.
    num_threads : int
        LightGBM threads.

    Returns
    -------
    dict
        ``mode``, ``pit_intercept``, ``ttc_shift``, ``long_run_default_rate`` and the yearly
        rates it averages: what the report needs to measure either mode.
    """
    cal = calibration_config(config)
    rates = yearly_default_rates(times[fitted], y[fitted])
    long_run = float(np.mean(list(rates.values())))
    log_odds = model.calibrate(model.margin(frame.loc[valid], num_threads))
    shift = ttc_shift(log_odds, long_run, cal.max_shift)
    pit_intercept = float(model.calibration["intercept"])
    if cal.mode == TTC:
        model.calibration = {**model.calibration, "intercept": pit_intercept + shift}
    return {
        "mode": cal.mode,
        "pit_intercept": pit_intercept,
        "ttc_shift": shift,
        "long_run_default_rate": long_run,
        "yearly_default_rates": {str(k): v for k, v in rates.items()},
        "validation_default_rate": float(np.mean(y[valid])),
    }


def year_rows(
    y: np.ndarray, p: np.ndarray, years: np.ndarray, cfg: CycleConfig
) -> list[dict[str, Any]]:
    """Per as-of year: rows, defaults, default rate, mean PD, AUC, ECE and calibration table."""
    out = []
    for year in sorted(np.unique(years)):
        m = years == year
        yy, pp = y[m], p[m]
        n, d = int(m.sum()), int(yy.sum())
        enough = n >= cfg.min_year_rows and d >= cfg.min_year_defaults and d < n
        out.append(
            {
                "year": int(year),
                "n": n,
                "defaults": d,
                "default_rate": d / n,
                "mean_pd": float(pp.mean()),
                "ratio_observed_to_pd": (d / n) / float(pp.mean()) if pp.mean() > 0 else None,
                "auc": safe_auc(yy, pp) if enough else None,
                "ece": expected_calibration_error(yy, pp, cfg.calibration_bins) if enough else None,
                "calibration_table": calibration_table(yy, pp, cfg.calibration_bins).to_dict(
                    "records"
                )
                if enough
                else [],
            }
        )
    return out


def _years(frame: pd.DataFrame) -> np.ndarray:
    return pd.to_datetime(frame["as_of"]).dt.year.to_numpy()


def cycle_report(result: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """Per-year metrics of the out-of-time and in-sample windows, and PIT vs TTC per test year.

    Parameters
    ----------
    result : training.train.TrainResult
        Of the out-of-time protocol (``None`` is returned for the cross-validated one).
    config : dict
        Model configuration.

    Returns
    -------
    dict or None
        ``out_of_time`` and ``in_sample`` lists of year rows, ``calibration`` (mode, shift,
        long-run rate) and ``modes`` (each mode's test-window mean PD and ECE per year).
    """
    ev, tr = result.eval_frame, result.train_frame
    if "as_of" not in ev.columns or "as_of" not in tr.columns:
        return None
    cfg = cycle_config(config)
    model = result.model
    y_te = ev["label"].to_numpy(dtype=int)
    oot = year_rows(y_te, ev["pd"].to_numpy(), _years(ev), cfg)
    if "challenger_pd" in ev.columns:
        chall = year_rows(y_te, ev["challenger_pd"].to_numpy(), _years(ev), cfg)
        for row, c in zip(oot, chall, strict=True):
            row["challenger_auc"], row["challenger_ece"] = c["auc"], c["ece"]
            row["challenger_mean_pd"] = c["mean_pd"]
    out: dict[str, Any] = {
        "description": (
            "Per as-of year: observed 12-month default rate vs mean PD, AUC and ECE. "
            "'out_of_time' is the test window (never seen by search, calibration or fit); "
            "'in_sample' are the years the final booster was fitted on (optimistic)."
        ),
        "out_of_time": oot,
    }
    if "label" in tr.columns:
        in_pd = model.predict_pd(tr, 1)
        out["in_sample"] = year_rows(tr["label"].to_numpy(dtype=int), in_pd, _years(tr), cfg)
    info = model.metadata.get("calibration_mode")
    if info:
        out["calibration"] = {k: v for k, v in info.items()}
        margin = model.margin(ev, 1)
        slope = float(model.calibration["slope"])
        pit = model.floor(info["pit_intercept"] + slope * margin)
        ttc = model.floor(info["pit_intercept"] + info["ttc_shift"] + slope * margin)
        modes = {}
        for name, p in ((PIT, pit), (TTC, ttc)):
            rows = year_rows(y_te, p, _years(ev), cfg)
            modes[name] = {
                "ece": expected_calibration_error(y_te, p, cfg.calibration_bins),
                "mean_pd": float(p.mean()),
                "years": [
                    {k: r[k] for k in ("year", "default_rate", "mean_pd", "ece")} for r in rows
                ],
            }
        out["modes"] = modes
    return out


def cycle_plot(cycle: dict[str, Any]) -> Any:
    """Figure: observed rate vs mean PD per year, and one calibration panel per test year."""
    import matplotlib.pyplot as plt

    oot = [r for r in cycle["out_of_time"] if r["calibration_table"]]
    rows = cycle.get("in_sample", []) + cycle["out_of_time"]
    n_panels = 1 + len(oot)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    years = [r["year"] for r in rows]
    ax.plot(years, [r["default_rate"] for r in rows], "o-", label="observed default rate")
    ax.plot(years, [r["mean_pd"] for r in rows], "s--", label="mean PD")
    if oot:
        ax.axvspan(oot[0]["year"] - 0.5, oot[-1]["year"] + 0.5, color="#eee", label="out of time")
    ax.set_xlabel("as-of year")
    ax.set_title("Default rate vs PD per year")
    ax.legend(fontsize=7)
    for k, r in enumerate(oot, start=1):
        t = pd.DataFrame(r["calibration_table"])
        top = max(t["mean_pd"].max(), t["default_rate"].max()) * 1.05
        a = axes[0, k]
        a.plot([0, top], [0, top], "k--", lw=1)
        a.plot(t["mean_pd"], t["default_rate"], "o-")
        a.set_title(f"{r['year']} (ECE {r['ece']:.4f})")
        a.set_xlabel("mean PD (decile)")
    axes[0, 1 if oot else 0].set_ylabel("observed default rate")
    fig.tight_layout()
    return fig


def oracle_per_year(
    eval_frame: pd.DataFrame, oracle: pd.DataFrame, config: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per as-of year of the evaluation rows: the oracle's AUC, mean true PD and ECE.

    Parameters
    ----------
    eval_frame : DataFrame
        ``usc_code, as_of, label`` rows.
    oracle : DataFrame
        ``usc_code, as_of, pd_12m`` (the simulator's true PDs).
    config : dict
        Model configuration.

    Returns
    -------
    list of dict
        ``year, n, defaults, default_rate, mean_pd (true), auc, ece`` of the oracle.
    """
    frame = eval_frame[["usc_code", "as_of", "label"]].assign(
        as_of=pd.to_datetime(eval_frame["as_of"])
    )
    joined = frame.merge(oracle, on=["usc_code", "as_of"], how="inner")
    if joined.empty:
        return []
    return year_rows(
        joined["label"].to_numpy(dtype=int),
        joined["pd_12m"].clip(1e-6, 1 - 1e-6).to_numpy(),
        _years(joined),
        cycle_config(config),
    )
