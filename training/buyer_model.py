"""Buyer grade model: a calibrated 12-month buyer PD on the buyer master scale, with reasons.

Data: the monthly as-of panel of :func:`features.buyer_experience.buyer_experience` (what the
insured exporters' records say of each buyer, point in time) with the label "the buyer defaults
within 12 months", where a default is what the platform itself sees (``label`` in
``training/config/buyer_model.yaml``): the buyer pays at most a small share of what falls due
for consecutive months, or a claim is notified on it.

Model: LightGBM with monotone constraints when training has enough defaults, else a logistic
scorecard (``model.kind``); Platt-calibrated on the last training months; out-of-time test on
later as-of dates. Reasons: TreeSHAP contributions (LightGBM) or coefficient x deviation from
the training mean (scorecard, the exact SHAP values of a linear model), largest first.

Thin history: a buyer seen for few months is shrunk toward its country-category x sector prior
in logit space, ``logit pd = w logit pd_model + (1 - w) logit pd_prior`` with
``w = months / (months + k)``; :func:`evaluate` reports the effect on thin buyers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.special import expit, logit

from features.buyer_experience import buyer_experience, buyer_months, load_params
from features.feature_availability import SnapshotConfig, period_to_month_index
from training.metrics import binary_metrics, safe_auc

CONFIG_PATH = Path(__file__).parent / "config" / "buyer_model.yaml"
EPS = 1e-6


@lru_cache(maxsize=2)
def load_buyer_config(path: str | None = None) -> dict[str, Any]:
    """Read the buyer model configuration (checked for its sections)."""
    data = yaml.safe_load(Path(path or CONFIG_PATH).read_text(encoding="utf-8"))
    need = ("label", "panel", "model", "shrinkage", "gate", "registry", "reasons")
    missing = [k for k in need if k not in data]
    if missing:
        raise ValueError(f"{path or CONFIG_PATH}: missing sections {missing}")
    if data["model"]["kind"] not in ("auto", "lightgbm", "scorecard"):
        raise ValueError("model.kind must be auto, lightgbm or scorecard")
    return data


def _month_start(index: int) -> pd.Timestamp:
    return pd.Timestamp(year=index // 12, month=index % 12 + 1, day=1)


def platform_defaults(tables: dict[str, pd.DataFrame], cfg: dict[str, Any]) -> pd.DataFrame:
    """Buyer default months as the platform sees them (protracted non-payment or a claim).

    Returns
    -------
    DataFrame
        ``buyer_id``, ``default_month`` (month index), ``source`` (``unpaid``/``claim``); every
        default, in time order.
    """
    lab = cfg["label"]
    fx = tables["fx_receipts"]
    fx = fx[fx["buyer_id"].notna()]
    m = (
        pd.DataFrame(
            {
                "buyer_id": fx["buyer_id"].astype(str).to_numpy(),
                "month": period_to_month_index(fx["period"].astype(str)),
                "expected": fx["expected_usd"].astype(float).fillna(0).to_numpy(),
                "received": fx["received_usd"].astype(float).fillna(0).to_numpy(),
            }
        )
        .groupby(["buyer_id", "month"], as_index=False)
        .sum()
    )
    m["unpaid"] = (m["expected"] >= lab["min_expected_usd"]) & (
        m["received"] <= lab["unpaid_cut"] * m["expected"]
    )
    m = m.sort_values(["buyer_id", "month"])
    k = int(lab["protracted_months"])
    # A run of k consecutive unpaid months starting at the row (months are contiguous per buyer
    # when the buyer keeps owing; a gap breaks the run).
    run = m.groupby("buyer_id")["unpaid"].transform(
        lambda s: s.astype(int).iloc[::-1].rolling(k, min_periods=k).sum().iloc[::-1]
    )
    nxt = m.groupby("buyer_id")["month"].shift(-(k - 1))
    start = (run == k) & (nxt - m["month"] == k - 1)
    prev_unpaid = m.groupby("buyer_id")["unpaid"].shift(1, fill_value=False)
    unpaid = m.loc[start & ~prev_unpaid, ["buyer_id", "month"]].assign(source="unpaid")
    cl = tables.get("insurance_claims")
    claims = pd.DataFrame(columns=["buyer_id", "month", "source"])
    if cl is not None and len(cl):
        nd = pd.to_datetime(cl["notified_date"])
        claims = pd.DataFrame(
            {
                "buyer_id": cl["buyer_id"].astype(str),
                "month": (nd.dt.year * 12 + nd.dt.month - 1).to_numpy(),
                "source": "claim",
            }
        )
    out = pd.concat([unpaid, claims], ignore_index=True).rename(columns={"month": "default_month"})
    return out.sort_values(["buyer_id", "default_month"], ignore_index=True)


def _labels(panel: pd.DataFrame, defaults: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """Attach ``label`` (default within the horizon) and drop buyers in default or cure at T."""
    h, cure = int(cfg["label"]["horizon_months"]), int(cfg["label"]["cure_months"])
    t = panel["as_of"].dt.year * 12 + panel["as_of"].dt.month - 1  # month index of T's month
    label = np.zeros(len(panel), dtype=int)
    in_default = np.zeros(len(panel), dtype=bool)
    by_buyer = defaults.groupby("buyer_id")["default_month"].apply(np.asarray).to_dict()
    for i, (b, ti) in enumerate(zip(panel["buyer_id"].to_numpy(), t.to_numpy(), strict=True)):
        d = by_buyer.get(b)
        if d is None:
            continue
        # T is the first day of month ti: a default in month >= ti is in the future.
        in_default[i] = bool(((d < ti) & (d >= ti - cure)).any())
        label[i] = int(((d >= ti) & (d < ti + h)).any())
    return panel.assign(label=label)[~in_default].reset_index(drop=True)


def _derived(frame: pd.DataFrame, cfg: dict[str, Any], categories: dict[str, str]) -> pd.DataFrame:
    out = frame.copy()
    rank = {"HI": 0, **{str(i): i + 1 for i in range(8)}}
    cat = out["country_iso3"].astype(object).map(categories).fillna("unknown")
    out["country_category"] = cat
    out["country_category_rank"] = cat.map(rank).astype(float)
    out["size_rank"] = out["size_band"].astype(object).map(cfg["model"]["size_rank"]).astype(float)
    return out


def build_panel(
    tables: dict[str, pd.DataFrame],
    end: date,
    categories: dict[str, str],
    cfg: dict[str, Any] | None = None,
    snapshot_config: SnapshotConfig | None = None,
) -> pd.DataFrame:
    """Monthly as-of panel of buyer features with labels, from ``panel.first_as_of`` to ``end``.

    Parameters
    ----------
    tables : dict
        Clean tables (buyers, customs_declarations, fx_receipts, insurance_claims, macro).
    end : date
        Last as-of date (labels of dates within 12 months of the data's end are incomplete;
        :func:`split` drops them).
    categories : dict
        Country ISO3 -> OECD category (``tradefinance`` country table).
    cfg : dict, optional
    snapshot_config : SnapshotConfig, optional
        Lags.
    """
    c = cfg or load_buyer_config()
    sc = snapshot_config or SnapshotConfig.load()
    p = load_params()
    months = buyer_months(tables, float(p["late_days"]))
    dates = pd.date_range(
        c["panel"]["first_as_of"], pd.Timestamp(end), freq=f"{c['panel']['step_months']}MS"
    )
    frames = [buyer_experience(tables, d.date(), sc, p, months=months) for d in dates]
    panel = pd.concat(frames, ignore_index=True)
    return _derived(_labels(panel, platform_defaults(tables, c), c), c, categories)


def split(
    panel: pd.DataFrame, data_end: date, cfg: dict[str, Any] | None = None
) -> dict[str, pd.DataFrame]:
    """Train / calibration / out-of-time test by as-of date; drop dates with incomplete outcomes."""
    c = cfg or load_buyer_config()
    complete = pd.Timestamp(data_end) - pd.DateOffset(months=int(c["label"]["horizon_months"]))
    p = panel[panel["as_of"] <= complete]
    oot = pd.Timestamp(c["panel"]["oot_start"])
    cal_start = oot - pd.DateOffset(months=int(c["panel"]["calibration_months"]))
    # Training outcomes must end before the test starts (no overlap of label windows).
    train_end = cal_start - pd.DateOffset(months=int(c["label"]["horizon_months"]))
    return {
        "train": p[p["as_of"] < train_end].reset_index(drop=True),
        "calibration": p[(p["as_of"] >= cal_start) & (p["as_of"] < oot)].reset_index(drop=True),
        "test": p[p["as_of"] >= oot].reset_index(drop=True),
    }


@dataclass
class BuyerModel:
    """A fitted buyer grade model (everything needed to score, saved as JSON + booster text)."""

    kind: str
    features: list[str]
    version: str
    calibration: tuple[float, float]
    priors: dict[str, float]
    prior_global: float
    strength_months: float
    fill: dict[str, float]
    scale_mean: dict[str, float] = field(default_factory=dict)
    scale_std: dict[str, float] = field(default_factory=dict)
    coef: dict[str, float] = field(default_factory=dict)
    intercept: float = 0.0
    log_features: list[str] = field(default_factory=list)
    booster: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def _matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = frame.reindex(columns=self.features).astype(float)
        for f in self.log_features:
            x[f] = np.log1p(x[f].clip(lower=0))
        return x

    def raw_margin(self, frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        """Uncalibrated log-odds and each feature's contribution to it."""
        x = self._matrix(frame)
        if self.kind == "lightgbm":
            contrib = self.booster.predict(x, pred_contrib=True)
            return contrib.sum(axis=1), pd.DataFrame(
                contrib[:, :-1], columns=self.features, index=frame.index
            )
        z = (x.fillna(pd.Series(self.fill)) - pd.Series(self.scale_mean)) / pd.Series(
            self.scale_std
        )
        parts = z * pd.Series(self.coef)
        return parts.sum(axis=1).to_numpy() + self.intercept, parts

    def prior(self, frame: pd.DataFrame) -> np.ndarray:
        """Country-category x sector prior PD of each buyer (the overall rate when unseen)."""
        keys = frame["country_category"].astype(str) + "|" + frame["sector"].astype(str)
        return keys.map(self.priors).fillna(self.prior_global).to_numpy(float)

    def predict(self, frame: pd.DataFrame, top: int = 3) -> pd.DataFrame:
        """PD before and after shrinkage, the shrinkage weight and the top reasons."""
        margin, parts = self.raw_margin(frame)
        a, b = self.calibration
        pd_model = np.clip(expit(a + b * margin), EPS, 1 - EPS)
        prior = np.clip(self.prior(frame), EPS, 1 - EPS)
        months = frame["months_history"].astype(float).fillna(0).to_numpy()
        w = months / (months + self.strength_months)
        pd_final = expit(w * logit(pd_model) + (1 - w) * logit(prior))
        order = np.argsort(-parts.to_numpy(), axis=1)[:, :top]
        names = np.asarray(self.features)
        reasons = [
            [
                {
                    "feature": names[j],
                    "value": _plain(frame.iloc[i][names[j]]),
                    "contribution": float(parts.iat[i, j]),
                }
                for j in row
                if parts.iat[i, j] > 0
            ]
            for i, row in enumerate(order)
        ]
        return pd.DataFrame(
            {
                "pd_model": pd_model,
                "pd_prior": prior,
                "weight": w,
                "pd": pd_final,
                "reasons": reasons,
            },
            index=frame.index,
        )

    def save(self, path: str | Path) -> Path:
        """Write ``buyer_model.json`` (and ``booster.txt``) into ``path``."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in self.__dict__.items() if k != "booster"}
        (d / "buyer_model.json").write_text(json.dumps(meta, indent=1, default=_plain), "utf-8")
        if self.booster is not None:
            self.booster.save_model(str(d / "booster.txt"))
        return d

    @classmethod
    def load(cls, path: str | Path) -> BuyerModel:
        """Read a saved model folder."""
        d = Path(path)
        meta = json.loads((d / "buyer_model.json").read_text("utf-8"))
        meta["calibration"] = tuple(meta["calibration"])
        model = cls(**meta)
        if model.kind == "lightgbm":
            import lightgbm as lgb

            model.booster = lgb.Booster(model_file=str(d / "booster.txt"))
        return model


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, str | int | float | bool | type(None)) else str(v)


def _priors(train: pd.DataFrame, smoothing: float) -> tuple[dict[str, float], float]:
    g = float(train["label"].mean())
    keys = train["country_category"].astype(str) + "|" + train["sector"].astype(str)
    agg = train.groupby(keys)["label"].agg(["sum", "count"])
    return ((agg["sum"] + smoothing * g) / (agg["count"] + smoothing)).to_dict(), g


def _fit_lightgbm(train: pd.DataFrame, m: BuyerModel, cfg: dict[str, Any]) -> None:
    import lightgbm as lgb

    params = dict(cfg["model"]["lightgbm"])
    rounds = int(params.pop("num_boost_round"))
    params["monotone_constraints"] = [int(cfg["model"]["monotone"].get(f, 0)) for f in m.features]
    ds = lgb.Dataset(m._matrix(train), label=train["label"].to_numpy(), free_raw_data=True)
    m.booster = lgb.train(params, ds, num_boost_round=rounds)


def _fit_scorecard(train: pd.DataFrame, m: BuyerModel, cfg: dict[str, Any]) -> None:
    from sklearn.linear_model import LogisticRegression

    x = m._matrix(train)
    m.fill = x.median().fillna(0.0).to_dict()
    x = x.fillna(pd.Series(m.fill))
    m.scale_mean = x.mean().to_dict()
    m.scale_std = x.std().replace(0, 1).fillna(1).to_dict()
    z = (x - pd.Series(m.scale_mean)) / pd.Series(m.scale_std)
    sc = cfg["model"]["scorecard"]
    lr = LogisticRegression(C=float(sc["C"]), max_iter=int(sc["max_iter"])).fit(z, train["label"])
    m.coef = dict(zip(m.features, lr.coef_[0].astype(float), strict=True))
    m.intercept = float(lr.intercept_[0])


def fit(
    parts: dict[str, pd.DataFrame], cfg: dict[str, Any] | None = None, version: str = ""
) -> BuyerModel:
    """Fit on ``train``, calibrate on ``calibration`` (Platt on the margin), set the priors."""
    c = cfg or load_buyer_config()
    train, cal = parts["train"], parts["calibration"]
    if train["label"].sum() == 0 or cal["label"].sum() == 0:
        raise ValueError(
            "buyer model: training and calibration need defaults; simulate a longer or larger world"
        )
    kind = c["model"]["kind"]
    if kind == "auto":
        kind = (
            "lightgbm" if train["label"].sum() >= c["model"]["min_events_lightgbm"] else "scorecard"
        )
    priors, g = _priors(train, float(c["shrinkage"]["prior_smoothing"]))
    m = BuyerModel(
        kind=kind,
        features=list(c["model"]["features"]),
        version=version,
        calibration=(0.0, 1.0),
        priors=priors,
        prior_global=g,
        strength_months=float(c["shrinkage"]["strength_months"]),
        fill={},
        log_features=list(c["model"].get("log_features", [])) if kind == "scorecard" else [],
    )
    (_fit_lightgbm if kind == "lightgbm" else _fit_scorecard)(train, m, c)
    from sklearn.linear_model import LogisticRegression

    margin, _ = m.raw_margin(cal)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(margin.reshape(-1, 1), cal["label"])
    m.calibration = (float(lr.intercept_[0]), float(lr.coef_[0][0]))
    return m


def grade_on_scale(pd_: float, scale: Sequence[tuple[str, float]]) -> str:
    """Return the first grade of ``scale`` (``(grade, upper PD bound)``, best first) that holds ``pd_``."""
    return next((g for g, upper in scale if pd_ <= upper), scale[-1][0])


def evaluate(
    model: BuyerModel,
    test: pd.DataFrame,
    scale: Sequence[tuple[str, float]],
    oracle_pd: pd.DataFrame | None = None,
    cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Out-of-time metrics, calibration by buyer grade, shrinkage effect, oracle gap, gate.

    Parameters
    ----------
    model : BuyerModel
    test : DataFrame
        The out-of-time panel (features + ``label``).
    scale : sequence of (grade, upper PD bound)
        The buyer master scale, best first (``tradefinance/config/insurer.yaml``).
    oracle_pd : DataFrame, optional
        ``ORACLE/buyer_pd`` (``buyer_id``, ``as_of``, ``pd_12m``): the true PD of simulated buyers.
    cfg : dict, optional
    """
    c = cfg or load_buyer_config()
    pred = model.predict(test)
    y = test["label"].to_numpy()
    out: dict[str, Any] = {
        "kind": model.kind,
        "rows": len(test),
        "events": int(y.sum()),
        "buyers": int(test["buyer_id"].nunique()),
    }
    out["oot"] = binary_metrics(y, pred["pd"].to_numpy()) if 0 < y.sum() < len(y) else {}
    out["oot_model_only_auc"] = safe_auc(y, pred["pd_model"].to_numpy())
    grades = pred["pd"].map(lambda v: grade_on_scale(v, scale))
    out["calibration_by_grade"] = [
        {
            "grade": g,
            "n": int((grades == g).sum()),
            "mean_pd": float(pred["pd"][grades == g].mean()),
            "observed": float(y[(grades == g).to_numpy()].mean()),
        }
        for g in sorted(grades.unique())
    ]
    out["mean_pd"], out["observed_rate"] = float(pred["pd"].mean()), float(y.mean())
    out["shrinkage"] = _shrinkage_effect(test, pred, float(c["shrinkage"]["thin_months"]))
    if oracle_pd is not None and len(oracle_pd):
        out["oracle"] = _oracle_gap(test, pred, oracle_pd)
    g = c["gate"]
    auc = out["oot"].get("auc") or 0.0
    gap = abs(out["mean_pd"] - out["observed_rate"]) / max(out["observed_rate"], EPS)
    out["relative_calibration_gap"] = gap
    out["gate"] = {
        "min_auc": g["min_auc"],
        "max_relative_calibration_gap": g["max_relative_calibration_gap"],
        "passed": bool(
            auc >= g["min_auc"]
            and gap <= g["max_relative_calibration_gap"]
            and out["events"] >= g["min_oot_events"]
        ),
    }
    return out


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()) if len(y) else float("nan")


def _shrinkage_effect(test: pd.DataFrame, pred: pd.DataFrame, thin: float) -> dict[str, Any]:
    mask = (test["months_history"].astype(float) < thin).to_numpy()
    y = test["label"].to_numpy()
    return {
        "thin_months": thin,
        "thin_rows": int(mask.sum()),
        "thin_events": int(y[mask].sum()),
        "logloss_thin_model_only": _logloss(y[mask], pred["pd_model"].to_numpy()[mask]),
        "logloss_thin_shrunk": _logloss(y[mask], pred["pd"].to_numpy()[mask]),
        "pd_std_thin_model_only": float(np.std(pred["pd_model"].to_numpy()[mask]))
        if mask.any()
        else None,
        "pd_std_thin_shrunk": float(np.std(pred["pd"].to_numpy()[mask])) if mask.any() else None,
        "logloss_all_model_only": _logloss(y, pred["pd_model"].to_numpy()),
        "logloss_all_shrunk": _logloss(y, pred["pd"].to_numpy()),
    }


def _oracle_gap(test: pd.DataFrame, pred: pd.DataFrame, oracle_pd: pd.DataFrame) -> dict[str, Any]:
    o = oracle_pd.assign(as_of=pd.to_datetime(oracle_pd["as_of"]))
    j = (
        test[["buyer_id", "as_of", "label"]]
        .assign(pd=pred["pd"].to_numpy())
        .merge(o, on=["buyer_id", "as_of"], how="inner")
    )
    if not len(j):
        return {"matched": 0}
    y = j["label"].to_numpy()
    model_auc, oracle_auc = safe_auc(y, j["pd"].to_numpy()), safe_auc(y, j["pd_12m"].to_numpy())
    return {
        "matched": len(j),
        "model_auc": model_auc,
        "oracle_auc": oracle_auc,
        "auc_gap": None if model_auc is None or oracle_auc is None else oracle_auc - model_auc,
        "rank_correlation": float(j["pd"].rank().corr(j["pd_12m"].rank())),
        "mean_pd_model": float(j["pd"].mean()),
        "mean_pd_oracle": float(j["pd_12m"].mean()),
    }
