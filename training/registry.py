"""MLflow tracking, the model registry, the promotion gate, rollback and export.

One registered model (``registry.model_name`` in ``training/config/model.yaml``) holds every
trained version; the ``champion`` alias names the version the service uses and ``previous``
the one before it. Nothing here touches MLflow at import time: the tracking URI is resolved per
call from the argument, ``MLFLOW_TRACKING_URI`` or the configured SQLite default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.manifest import write_manifest
from training.metrics import binary_metrics
from training.model import MODEL_FILE, CreditModel
from training.scale import load_config

log = logging.getLogger(__name__)

MODEL_NAME = "kuaxin-credit"
CHAMPION, PREVIOUS = "champion", "previous"
MODEL_ARTIFACT = "model"
EVAL_ARTIFACT = "evaluation/test_window.parquet"


class GateError(RuntimeError):
    """The promotion gate or a rollback could not proceed (no candidate, no previous, ...)."""


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """Return the tracking URI: the argument, ``MLFLOW_TRACKING_URI``, or the configured default."""
    if tracking_uri:
        return tracking_uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return str(load_config()["registry"]["default_tracking_uri"])


def _client(tracking_uri: str | None) -> Any:
    import mlflow
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _ensure_experiment(client: Any, experiment: str, tracking_uri: str | None) -> None:
    """Select the experiment, creating it with artifacts beside a SQLite store.

    A SQLite store's default artifact root is ``./mlruns`` under the working directory; the
    artifacts go to ``mlartifacts/`` next to the database file instead.
    """
    import mlflow

    if client.get_experiment_by_name(experiment) is None:
        uri = resolve_tracking_uri(tracking_uri)
        location = None
        if uri.startswith("sqlite:///"):
            location = (
                Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
            ).as_uri()
        client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, bool | np.bool_) or (
        isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value)
    ):
        out[prefix] = float(value)


def log_training(
    result: Any,
    report: dict[str, Any],
    report_html: str,
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    figures: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Log one training run and register its model as a new version.

    Parameters
    ----------
    result : training.train.TrainResult
        The trained model, metrics, trials and evaluation frame.
    report : dict
        The metrics JSON (also written by ``--metrics-out``).
    report_html : str
        The evaluation report (HTML with embedded plots).
    name : str
        Registered model name.
    tracking_uri : str, optional
        Tracking and registry URI.
    experiment : str, optional
        Experiment name (config ``registry.experiment``).
    run_name : str, optional
        MLflow run name.
    figures : dict, optional
        The report's plots (name → base64 PNG), logged one file each under ``plots/`` so the
        MLflow UI shows them without opening the report.

    Returns
    -------
    tuple of str
        ``(run_id, registered version)``.
    """
    import mlflow
    from mlflow.models import infer_signature

    client = _client(tracking_uri)
    _ensure_experiment(client, experiment or load_config()["registry"]["experiment"], tracking_uri)
    model: CreditModel = result.model
    metrics: dict[str, float] = {}
    _flatten("", {k: v for k, v in report.items() if k not in ("segments", "psi")}, metrics)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({f"lgb.{k}": v for k, v in result.params.items()})
        mlflow.log_params(
            {
                "protocol": report["protocol"]["kind"],
                "n_features": len(model.features),
                "pd_floor": model.pd_floor,
                "model_version": model.version,
            }
        )
        mlflow.set_tags(
            {
                "data_fingerprint": report.get("data_fingerprint", ""),
                "model_version": model.version,
            }
        )
        mlflow.log_metrics({k.replace("[", "_").replace("]", ""): v for k, v in metrics.items()})
        mlflow.log_dict(report, "metrics.json")
        mlflow.log_text(report_html, "report.html")
        mlflow.log_dict(
            {
                "score_scale": model.score_scale.to_dict(),
                "master_scale": model.master_scale.to_list(),
                "pd_floor": model.pd_floor,
                "calibration": model.calibration,
            },
            "scale.json",
        )
        if model.catalog_yaml:
            mlflow.log_text(model.catalog_yaml, "catalog.yaml")
        _log_figures(figures or {}, Path(tmp) / "plots")
        _log_trials_and_window(result, model, Path(tmp))

        model_dir = model.save(Path(tmp) / "credit_model")
        example = result.eval_frame[model.feature_names].head(3)
        example = model.prepare(example)
        from training.pyfunc_model import CreditPyfunc  # noqa: F401  (import check only)

        scored = _pyfunc_output(model, example)
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model_dir": str(model_dir)},
            signature=infer_signature(_signature_input(example), scored),
            input_example=_signature_input(example),
            pip_requirements=_requirements(),
            # the model's own code travels with it: `mlflow models serve` and
            # `mlflow.pyfunc.load_model` work outside this checkout
            code_paths=[str(Path(__file__).parent)],
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        client.set_model_version_tag(name, version, "model_version", model.version)
        client.set_model_version_tag(name, version, "run_id", run.info.run_id)
        return run.info.run_id, version


def _log_trials_and_window(result: Any, model: CreditModel, tmp: Path) -> None:
    import mlflow

    if len(result.trials):
        trials_path = tmp / "search_trials.csv"
        result.trials.to_csv(trials_path, index=False)
        mlflow.log_artifact(str(trials_path))
    # The evaluation window goes with the run so the gate can score the champion on it.
    eval_path = tmp / "test_window.parquet"
    keep = [
        c
        for c in result.eval_frame.columns
        if c in (*model.feature_names, "label", "usc_code", "as_of")
    ]
    result.eval_frame[keep].to_parquet(eval_path, index=False)
    mlflow.log_artifact(str(eval_path), "evaluation")


def _log_figures(figures: dict[str, str], folder: Path) -> None:
    import base64
    import re

    import mlflow

    if not figures:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        (folder / f"{safe}.png").write_bytes(base64.b64decode(png))
    mlflow.log_artifacts(str(folder), "plots")


def _signature_input(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object).astype("string")
    return out


def _pyfunc_output(model: CreditModel, frame: pd.DataFrame) -> pd.DataFrame:
    from training.pyfunc_model import CONTRIB_PREFIX

    out = model.score(frame).reset_index(drop=True)
    contrib, base = model.explain(frame)
    out["base"] = base
    return pd.concat(
        [out, pd.DataFrame(contrib, columns=[CONTRIB_PREFIX + n for n in model.feature_names])],
        axis=1,
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}"
        for pkg in ("mlflow", "lightgbm", "pandas", "numpy", "pyyaml", "scikit-learn", "pyarrow")
    ]


# ---------------------------------------------------------------------------- loading
def _download_model_dir(model_uri: str, tracking_uri: str | None, dest: Path) -> Path:
    import mlflow

    _client(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest)))
    found = sorted(local.rglob(MODEL_FILE))
    if not found:
        raise GateError(f"{model_uri} holds no {MODEL_FILE}; it is not a Kuaxin credit model")
    return found[0].parent


def load_version(
    name: str = MODEL_NAME,
    version: str | None = None,
    alias: str | None = None,
    tracking_uri: str | None = None,
    isolated: bool = False,
) -> CreditModel:
    """Load a registered version (by number or alias) as a :class:`CreditModel`.

    ``isolated`` parses the booster in a child process first (see :meth:`CreditModel.load`).
    """
    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    uri = f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"
    with tempfile.TemporaryDirectory() as tmp:
        return CreditModel.load(_download_model_dir(uri, tracking_uri, Path(tmp)), isolated)


def load_champion(
    name: str = MODEL_NAME,
    tracking_uri: str | None = None,
    alias: str = CHAMPION,
    isolated: bool = False,
) -> CreditModel:
    """Load the registered model's ``champion`` version (or the version another alias names;
    ``isolated``: see :func:`load_version`).

    Raises
    ------
    GateError
        When the model has no version under that alias.
    """
    if _alias_version(_client(tracking_uri), name, alias) is None:
        hint = "run kuaxin promote" if alias == CHAMPION else "set it in the registry"
        raise GateError(f"registered model {name!r} has no {alias!r} alias; {hint}")
    return load_version(name, alias=alias, tracking_uri=tracking_uri, isolated=isolated)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _latest_version(client: Any, name: str) -> str:
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise GateError(f"registered model {name!r} has no versions; run kuaxin train first")
    return str(max(int(v.version) for v in versions))


# ---------------------------------------------------------------------------- gate
def promote(
    name: str = MODEL_NAME,
    version: str | None = None,
    tracking_uri: str | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move the ``champion`` alias to a candidate version if it passes the gate.

    The candidate must reach ``gate.min_auc`` and ``gate.max_ece`` on its own evaluation window,
    and must not be worse than the current champion scored on that same window (AUC lower by
    more than ``gate.max_auc_drop`` or ECE higher by more than ``gate.max_ece_rise``). On
    success the old champion keeps the ``previous`` alias.

    Parameters
    ----------
    name : str
        Registered model name.
    version : str, optional
        Candidate version (the latest when omitted).
    tracking_uri : str, optional
        Tracking URI.
    config : dict, optional
        Model configuration (for the ``gate`` thresholds).

    Returns
    -------
    dict
        ``promoted`` (bool), ``candidate``, ``champion_before``, ``reasons`` (failed checks),
        candidate and champion metrics.
    """
    import mlflow

    gate = (config or load_config())["gate"]
    client = _client(tracking_uri)
    candidate = version or _latest_version(client, name)
    mv = client.get_model_version(name, candidate)
    champion = _alias_version(client, name, CHAMPION)
    decision: dict[str, Any] = {
        "promoted": False,
        "candidate": candidate,
        "champion_before": champion,
        "reasons": [],
        "thresholds": gate,
    }
    if champion == candidate:
        decision["already_champion"] = True
        return decision
    bins = int(load_config()["report"]["calibration_bins"])
    with tempfile.TemporaryDirectory() as tmp:
        eval_path = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path=EVAL_ARTIFACT, dst_path=tmp
        )
        window = pd.read_parquet(eval_path)
        cand_model = load_version(name, version=candidate, tracking_uri=tracking_uri)
        y = window["label"].to_numpy(dtype=int)
        cand = binary_metrics(y, cand_model.predict_pd(window, num_threads=1), bins)
        decision["candidate_metrics"] = {k: cand[k] for k in ("auc", "ece", "brier", "log_loss")}
        if cand["auc"] < gate["min_auc"]:
            decision["reasons"].append(f"AUC {cand['auc']:.4f} < min_auc {gate['min_auc']}")
        if cand["ece"] > gate["max_ece"]:
            decision["reasons"].append(f"ECE {cand['ece']:.4f} > max_ece {gate['max_ece']}")
        if champion is not None:
            champ_model = load_version(name, version=champion, tracking_uri=tracking_uri)
            try:
                champ = binary_metrics(y, champ_model.predict_pd(window, num_threads=1), bins)
            except ValueError as exc:  # champion cannot read the candidate's features
                decision["reasons"].append(f"champion cannot score the candidate's window: {exc}")
                champ = None
            if champ is not None:
                decision["champion_metrics"] = {
                    k: champ[k] for k in ("auc", "ece", "brier", "log_loss")
                }
                if cand["auc"] < champ["auc"] - gate["max_auc_drop"]:
                    decision["reasons"].append(
                        f"AUC {cand['auc']:.4f} worse than champion v{champion} "
                        f"{champ['auc']:.4f} on the same window"
                    )
                if cand["ece"] > champ["ece"] + gate["max_ece_rise"]:
                    decision["reasons"].append(
                        f"ECE {cand['ece']:.4f} worse than champion v{champion} "
                        f"{champ['ece']:.4f} on the same window"
                    )
    if not decision["reasons"]:
        if champion is not None:
            client.set_registered_model_alias(name, PREVIOUS, champion)
        client.set_registered_model_alias(name, CHAMPION, candidate)
        decision["promoted"] = True
    client.set_model_version_tag(name, candidate, "gate", json.dumps(decision, default=str)[:4900])
    return decision


def rollback(name: str = MODEL_NAME, tracking_uri: str | None = None) -> dict[str, Any]:
    """Give the ``champion`` alias back to the ``previous`` version.

    Returns
    -------
    dict
        ``champion`` (restored version) and ``demoted`` (the version that was champion).

    Raises
    ------
    GateError
        When there is no ``previous`` version.
    """
    client = _client(tracking_uri)
    previous = _alias_version(client, name, PREVIOUS)
    if previous is None:
        raise GateError(f"registered model {name!r} has no {PREVIOUS!r} alias to roll back to")
    current = _alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.delete_registered_model_alias(name, PREVIOUS)
    if current is not None:
        client.set_model_version_tag(name, current, "rolled_back", "true")
    return {"champion": previous, "demoted": current}


def export(
    dest: Path | str = "models", name: str = MODEL_NAME, tracking_uri: str | None = None
) -> Path:
    """Write the champion as a self-contained model package ``dest/<name>/``.

    The folder (``booster.txt``, ``model.json``, ``catalog.yaml``, ``registry.json`` and the
    ``manifest.json`` listing their SHA-256) loads
    with :meth:`CreditModel.load` without the tracking store.

    Returns
    -------
    Path
        The package folder.
    """
    client = _client(tracking_uri)
    champion = _alias_version(client, name, CHAMPION)
    if champion is None:
        raise GateError(f"registered model {name!r} has no {CHAMPION!r} alias; run kuaxin promote")
    target = Path(dest) / name
    with tempfile.TemporaryDirectory() as tmp:
        src = _download_model_dir(f"models:/{name}/{champion}", tracking_uri, Path(tmp))
        CreditModel.load(src)  # refuse to export a broken package
        staging = Path(dest) / f".{name}.tmp"
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(src, staging)
    (staging / "registry.json").write_text(
        json.dumps(
            {
                "name": name,
                "version": champion,
                "tracking_uri": resolve_tracking_uri(tracking_uri),
                "run_id": client.get_model_version(name, champion).run_id,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    write_manifest(staging)  # the package's files, registry.json included
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
