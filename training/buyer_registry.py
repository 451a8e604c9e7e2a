"""Train, log, register, gate and score the buyer grade model (MLflow).

``train_and_register`` builds the panel from clean tables, fits, evaluates out of time (with
the oracle when given), logs everything to MLflow and registers a new version of
``registry.name``; the version gets the ``champion`` alias only when the gate passes.
``score_buyers`` grades every buyer at an as-of date into the file the service reads
(``KUAXIN_BUYER_GRADES``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.buyer_experience import TABLES_USED, buyer_experience, country_categories
from features.feature_availability import SnapshotConfig, month_index_of
from features.io import read_table
from training.buyer_model import (
    BuyerModel,
    _derived,
    build_panel,
    evaluate,
    fit,
    grade_on_scale,
    load_buyer_config,
    platform_defaults,
    split,
)
from training.registry import _client, _ensure_experiment, _flatten

ARTIFACT = "buyer_model"


def read_buyer_tables(clean_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read the tables the buyer features use from a folder of clean (or raw) tables."""
    out = {}
    for name in TABLES_USED:
        if (Path(clean_dir) / name).exists():
            out[name] = read_table(clean_dir, name)
    missing = [t for t in ("buyers", "fx_receipts") if t not in out]
    if missing:
        raise FileNotFoundError(f"{clean_dir}: no {missing} table; simulate a world with buyers")
    return out


def data_end(tables: dict[str, pd.DataFrame]) -> date:
    """Last day of the last month of FX receipts (the data's end)."""
    last = str(tables["fx_receipts"]["period"].max())
    return (pd.Period(last, "M").end_time).date()


def train(
    tables: dict[str, pd.DataFrame],
    scale: Sequence[tuple[str, float]],
    oracle_dir: str | Path | None = None,
    cfg: dict[str, Any] | None = None,
    snapshot_config: SnapshotConfig | None = None,
) -> tuple[BuyerModel, dict[str, Any]]:
    """Build the panel, split by time, fit and evaluate. Returns the model and its metrics."""
    c = cfg or load_buyer_config()
    end = data_end(tables)
    panel = build_panel(tables, end, country_categories(), c, snapshot_config)
    parts = split(panel, end, c)
    version = f"buyer-{end:%Y%m}-{len(panel)}"
    model = fit(parts, c, version=version)
    oracle = None
    if oracle_dir is not None and (Path(oracle_dir) / "buyer_pd").exists():
        oracle = pd.read_parquet(Path(oracle_dir) / "buyer_pd")
    metrics = evaluate(model, parts["test"], scale, oracle, c)
    metrics["split"] = {
        k: {
            "rows": len(v),
            "events": int(v["label"].sum()),
            "first_as_of": str(v["as_of"].min().date()) if len(v) else None,
            "last_as_of": str(v["as_of"].max().date()) if len(v) else None,
        }
        for k, v in parts.items()
    }
    if oracle_dir is not None and (Path(oracle_dir) / "buyer_defaults").exists():
        metrics["label_vs_oracle"] = label_agreement(
            platform_defaults(tables, c), pd.read_parquet(Path(oracle_dir) / "buyer_defaults")
        )
    model.metrics = metrics
    return model, metrics


def label_agreement(
    platform: pd.DataFrame, oracle: pd.DataFrame, months: int = 3
) -> dict[str, Any]:
    """How many true (oracle) buyer defaults the platform's label sees within ``months``."""
    o = oracle.assign(m=pd.to_datetime(oracle["default_date"]).map(month_index_of))
    seen = platform.groupby("buyer_id")["default_month"].apply(np.asarray).to_dict()
    hit = [
        bool(np.any(np.abs(seen.get(b, np.array([-999])) - m) <= months))
        for b, m in zip(o["buyer_id"], o["m"], strict=True)
    ]
    return {
        "oracle_defaults": len(o),
        "platform_defaults": len(platform),
        "seen_within_months": months,
        "recall": float(np.mean(hit)) if hit else None,
    }


def register(
    model: BuyerModel,
    metrics: dict[str, Any],
    tracking_uri: str | None = None,
    cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Log the run and register a version; alias it ``champion`` only when the gate passes."""
    import mlflow
    from mlflow.exceptions import MlflowException

    c = cfg or load_buyer_config()
    reg = c["registry"]
    client = _client(tracking_uri)
    _ensure_experiment(client, reg["experiment"], tracking_uri)
    flat: dict[str, float] = {}
    _flatten("", {k: v for k, v in metrics.items() if k != "calibration_by_grade"}, flat)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=model.version) as run:
        mlflow.log_params(
            {
                "kind": model.kind,
                "n_features": len(model.features),
                "strength_months": model.strength_months,
                "model_version": model.version,
            }
        )
        mlflow.log_metrics({k.replace("[", "_").replace("]", ""): v for k, v in flat.items()})
        mlflow.log_dict(metrics, "metrics.json")
        mlflow.log_artifacts(str(model.save(Path(tmp) / ARTIFACT)), ARTIFACT)
        try:
            client.get_registered_model(reg["name"])
        except MlflowException:  # not registered yet
            client.create_registered_model(reg["name"])
        mv = client.create_model_version(
            reg["name"], source=f"{run.info.artifact_uri}/{ARTIFACT}", run_id=run.info.run_id
        )
        passed = bool(metrics["gate"]["passed"])
        client.set_model_version_tag(
            reg["name"], mv.version, "gate", "passed" if passed else "failed"
        )
        if passed:
            client.set_registered_model_alias(reg["name"], reg["alias"], mv.version)
        return {
            "run_id": run.info.run_id,
            "version": str(mv.version),
            "promoted": passed,
            "name": reg["name"],
        }


def load_champion(tracking_uri: str | None = None, cfg: dict[str, Any] | None = None) -> BuyerModel:
    """Download and load the buyer model version the ``champion`` alias points at."""
    c = cfg or load_buyer_config()
    client = _client(tracking_uri)
    mv = client.get_model_version_by_alias(c["registry"]["name"], c["registry"]["alias"])
    dest = Path(tempfile.mkdtemp(prefix="kx_buyer_"))
    path = client.download_artifacts(mv.run_id, ARTIFACT, str(dest))
    return BuyerModel.load(path)


def score_buyers(
    model: BuyerModel,
    tables: dict[str, pd.DataFrame],
    as_of: date,
    scale: Sequence[tuple[str, float]],
    cfg: dict[str, Any] | None = None,
    snapshot_config: SnapshotConfig | None = None,
) -> pd.DataFrame:
    """Grade every buyer with history at ``as_of``; buyers in (visible) default get D, PD 1.

    Returns
    -------
    DataFrame
        ``buyer_id``, ``as_of``, static columns, ``pd``, ``grade``, ``pd_model``,
        ``pd_prior``, ``weight``, ``in_default``, ``reasons`` (JSON text), the payment
        experience features and ``model_version``.
    """
    c = cfg or load_buyer_config()
    sc = snapshot_config or SnapshotConfig.load()
    feats = _derived(buyer_experience(tables, as_of, sc), c, country_categories())
    pred = model.predict(feats, top=int(c["reasons"]))
    out = feats.assign(**{k: pred[k].to_numpy() for k in ("pd", "pd_model", "pd_prior", "weight")})
    out["reasons"] = [json.dumps(r, ensure_ascii=False) for r in pred["reasons"]]
    # A default is visible once its protracted months have been published.
    lag = int(sc.tables.get("fx_receipts", {}).get("lag_days", 0))
    visible_until = month_index_of(pd.Timestamp(as_of) - pd.Timedelta(days=lag)) - int(
        c["label"]["protracted_months"]
    )
    d = platform_defaults(tables, c)
    cure = int(c["label"]["cure_months"])
    recent = d[(d["default_month"] <= visible_until) & (d["default_month"] > visible_until - cure)]
    out["in_default"] = out["buyer_id"].isin(set(recent["buyer_id"]))
    out.loc[out["in_default"], "pd"] = 1.0
    out["grade"] = out["pd"].map(lambda v: grade_on_scale(v, scale))
    out["model_version"] = model.version
    return out


CLAIM_COLUMNS = (
    "claim_id",
    "policy_id",
    "usc_code",
    "buyer_id",
    "notified_date",
    "loss_usd",
    "paid_usd",
    "decision_date",
    "status",
)


def with_extra_claims(platform: pd.DataFrame | None, path: str | Path) -> pd.DataFrame:
    """Return the platform's claims plus the service's (``platform_row`` of ``GET /v1/insurer/claims``).

    Rows whose ``claim_id`` is already in the platform's table are not added twice.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = [c["platform_row"] for c in data["claims"]] if isinstance(data, dict) else list(data)
    extra = pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
    for col in ("notified_date", "decision_date"):
        extra[col] = pd.to_datetime(extra[col])
    if platform is None or not len(platform):
        return extra
    extra = extra[~extra["claim_id"].isin(set(platform["claim_id"]))]
    return pd.concat([platform, extra], ignore_index=True)
