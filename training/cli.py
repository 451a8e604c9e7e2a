"""``kuaxin train | promote | rollback | export``: the model's commands.

Heavy imports (LightGBM, MLflow, optuna) happen inside the command bodies so ``kuaxin --help``
stays fast. ``mlflow run . -e train`` calls the same ``kuaxin train`` command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def run_training(
    dataset: Path | None,
    table: Path | None,
    target: str | None,
    id_col: str | None,
    time_col: str | None,
    oracle: Path | None,
    metrics_out: Path | None,
    trials: int | None,
    register: bool,
    tracking_uri: str | None,
    name: str | None,
    progress: bool = True,
    num_threads: int = 1,
    table_opts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, report, log and register (the body of ``kuaxin train``).

    ``table_opts`` carries the ``--table`` options: ``positive``, ``directions`` (a file),
    ``seconds`` (time budget), ``workers`` and ``master_scale`` (a file).

    Returns
    -------
    dict
        The metrics JSON, plus ``registered_version`` and ``run_id`` when registered.
    """
    import pandas as pd

    from training.registry import MODEL_NAME, log_training
    from training.report import _default, build_report, plots, render_html, write_metrics
    from training.table_prep import read_directions, read_master_scale
    from training.train import read_table, train_credit, train_table

    t0 = time.perf_counter()
    if (dataset is None) == (table is None):
        raise ValueError("give exactly one of --dataset or --table")
    if table is not None:
        if not target:
            raise ValueError("--table needs --target COL")
        opts = dict(table_opts or {})
        opts["directions"] = read_directions(opts.get("directions"))
        opts["master_scale"] = read_master_scale(opts.get("master_scale"))
        result = train_table(
            read_table(table),
            target,
            id_col,
            time_col,
            trials=trials,
            num_threads=num_threads,
            progress=progress,
            **opts,
        )
    else:
        assert dataset is not None
        if not dataset.is_file():
            raise FileNotFoundError(f"dataset {dataset} must exist; run kuaxin dataset first")
        result = train_credit(
            pd.read_parquet(dataset), trials=trials, num_threads=num_threads, progress=progress
        )
    train_seconds = time.perf_counter() - t0
    report = build_report(result, oracle_dir=oracle)
    report["train_seconds"] = train_seconds
    report["source"] = str(dataset or table)
    report = json.loads(json.dumps(report, default=_default))
    if register:
        figures = plots(result, report)
        html = render_html(result, report, figures=figures)
        run_id, version = log_training(
            result,
            report,
            html,
            name=name or MODEL_NAME,
            tracking_uri=tracking_uri,
            figures=figures,
        )
        report["run_id"], report["registered_version"] = run_id, version
    report["total_seconds"] = time.perf_counter() - t0
    if metrics_out is not None:
        write_metrics(report, metrics_out)
    return report


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``kuaxin`` app."""
    _register_train(app)
    _register_registry(app)


def _register_train(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        dataset: Annotated[
            Path | None, typer.Option(help="Training set Parquet from `kuaxin dataset`.")
        ] = None,
        table: Annotated[
            Path | None, typer.Option(help="Any labelled table (CSV or Parquet).")
        ] = None,
        target: Annotated[str | None, typer.Option(help="Target column of --table.")] = None,
        id_col: Annotated[
            str | None, typer.Option("--id", help="Row id column of --table.")
        ] = None,
        time_col: Annotated[
            str | None, typer.Option("--time", help="As-of date column of --table.")
        ] = None,
        oracle: Annotated[
            Path | None, typer.Option(help="Simulator oracle folder (true_pd/).")
        ] = None,
        metrics_out: Annotated[
            Path | None, typer.Option(help="Write the metrics JSON here.")
        ] = None,
        trials: Annotated[
            int | None, typer.Option(help="Search budget (default from config).")
        ] = None,
        no_register: Annotated[
            bool, typer.Option("--no-register", help="Do not log to MLflow.")
        ] = False,
        tracking_uri: Annotated[
            str | None, typer.Option(help="MLflow tracking URI (else MLFLOW_TRACKING_URI).")
        ] = None,
        name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
        threads: Annotated[int, typer.Option(help="LightGBM threads.")] = 1,
        positive: Annotated[
            str | None, typer.Option(help="Target value of --table meaning default (else 0/1).")
        ] = None,
        directions: Annotated[
            Path | None,
            typer.Option(help="CSV/YAML of column,direction (increases_risk/decreases_risk)."),
        ] = None,
        budget_seconds: Annotated[
            float | None, typer.Option(help="Time budget of the --table search, in seconds.")
        ] = None,
        workers: Annotated[
            int | None, typer.Option(help="--table searches run at once (0: free cores).")
        ] = None,
        master_scale: Annotated[
            Path | None, typer.Option(help="YAML master scale of --table (grade, upper, class).")
        ] = None,
    ) -> None:
        """Train the PD model, write the report and register a new model version."""
        table_opts = {
            "positive": positive,
            "directions": directions,
            "seconds": budget_seconds,
            "workers": workers,
            "master_scale": master_scale,
        }
        try:
            report = run_training(
                dataset,
                table,
                target,
                id_col,
                time_col,
                oracle,
                metrics_out,
                trials,
                not no_register,
                tracking_uri,
                name,
                num_threads=threads,
                table_opts=table_opts,
            )
        except (ValueError, FileNotFoundError, KeyError) as exc:
            _fail(str(exc))
            return
        typer.echo(_summary(report))


def _register_registry(app: typer.Typer) -> None:
    @app.command("promote")
    def promote_cmd(
        version: Annotated[str | None, typer.Option(help="Candidate version (latest).")] = None,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
        name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    ) -> None:
        """Make the candidate the champion if it passes the gate (exit 1 when refused)."""
        from training.registry import MODEL_NAME, GateError, promote

        try:
            decision = promote(name or MODEL_NAME, version, tracking_uri)
        except GateError as exc:
            _fail(str(exc))
            return
        if decision.get("already_champion"):
            typer.echo(f"version {decision['candidate']} is already the champion")
        elif decision["promoted"]:
            typer.echo(
                f"promoted version {decision['candidate']} to champion"
                + (
                    f" (previous: {decision['champion_before']})"
                    if decision["champion_before"]
                    else ""
                )
            )
        else:
            _fail(f"version {decision['candidate']} refused: " + "; ".join(decision["reasons"]))

    @app.command("rollback")
    def rollback_cmd(
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
        name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    ) -> None:
        """Give the champion alias back to the previous version."""
        from training.registry import MODEL_NAME, GateError, rollback

        try:
            out = rollback(name or MODEL_NAME, tracking_uri)
        except GateError as exc:
            _fail(str(exc))
            return
        typer.echo(f"champion is version {out['champion']} again (demoted {out['demoted']})")

    @app.command("export")
    def export_cmd(
        dest: Annotated[Path, typer.Option(help="Folder for the model package.")] = Path("models"),
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
        name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    ) -> None:
        """Write the champion as a package that loads without the tracking store."""
        from training.registry import MODEL_NAME, GateError, export

        try:
            path = export(dest, name or MODEL_NAME, tracking_uri)
        except GateError as exc:
            _fail(str(exc))
            return
        typer.echo(f"exported champion to {path}")


def _summary(report: dict[str, Any]) -> str:
    parts = [f"protocol {report['protocol']['kind']}"]
    if "lightgbm" in report:
        t, c = report["lightgbm"]["test"], report["challenger"]["test"]
        parts.append(f"test AUC {t['auc']:.4f} (challenger {c['auc']:.4f}), ECE {t['ece']:.4f}")
        if report.get("oracle", {}).get("oracle_auc") is not None:
            parts.append(f"oracle AUC {report['oracle']['oracle_auc']:.4f}")
    else:
        parts.append(
            f"CV mean AUC defaults {report['defaults']['mean_auc']:.4f}, "
            f"tuned {report['tuned']['mean_auc']:.4f} (headline; pooled OOF "
            f"{report['tuned']['pooled_oof_auc']:.4f}), "
            f"challenger {report['challenger']['mean_auc']:.4f}"
        )
    if "registered_version" in report:
        parts.append(f"registered version {report['registered_version']}")
    parts.append(f"{report['train_seconds']:.1f}s")
    return "; ".join(parts)
