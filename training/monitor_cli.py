"""``kuaxin monitor``: score past snapshots with a model and backtest them against outcomes.

Heavy imports happen inside the command body so ``kuaxin --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def run_monitor(
    model: str,
    snapshots: Path,
    outcomes: Path | None,
    out: Path,
    observed_to: str | None = None,
    reference: Path | None = None,
    config: Path | None = None,
    tracking_uri: str | None = None,
    log: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Body of ``kuaxin monitor``: load, monitor, write ``monitor.json`` and ``report.html``, log.

    Returns
    -------
    dict
        The report, with ``run_id`` when logged to MLflow.
    """
    import pandas as pd

    from training.monitor import (
        load_model,
        load_monitor_config,
        log_monitor,
        monitor,
        read_outcomes,
        read_snapshots,
        write_report,
    )

    cfg = load_monitor_config(config)
    credit_model, info = load_model(model, tracking_uri)
    frames = read_snapshots(snapshots)
    events, seen_to = (None, None)
    if outcomes is not None:
        events, seen_to = read_outcomes(outcomes, observed_to)
    ref = pd.read_parquet(reference) if reference is not None else None
    report = monitor(credit_model, frames, events, seen_to, ref, cfg, progress=progress)
    report["model_registry"] = info
    _, html_path = write_report(report, out)
    if log:
        report["run_id"] = log_monitor(report, html_path, tracking_uri)
        write_report(report, out)
    return report


def register(app: typer.Typer) -> None:
    """Add ``kuaxin monitor`` to the ``kuaxin`` app."""

    @app.command("monitor")
    def monitor_cmd(
        model: Annotated[
            str,
            typer.Option(help="Model folder, or models:/NAME/VERSION or models:/NAME@champion."),
        ],
        snapshots: Annotated[
            Path,
            typer.Option(help="Snapshot Parquet file or folder (kuaxin features / dataset)."),
        ],
        outcomes: Annotated[
            Path | None,
            typer.Option(help="Clean folder (kuaxin ingest) or usc_code,default_date file."),
        ] = None,
        out: Annotated[Path, typer.Option(help="Folder for report.html and monitor.json.")] = Path(
            "data/monitor"
        ),
        observed_to: Annotated[
            str | None, typer.Option(help="Last date the outcomes cover (YYYY-MM-DD).")
        ] = None,
        reference: Annotated[
            Path | None, typer.Option(help="PSI reference Parquet (default: training window).")
        ] = None,
        config: Annotated[Path | None, typer.Option(help="Monitoring configuration YAML.")] = None,
        tracking_uri: Annotated[
            str | None, typer.Option(help="MLflow tracking URI (else MLFLOW_TRACKING_URI).")
        ] = None,
        no_log: Annotated[bool, typer.Option("--no-log", help="Do not log to MLflow.")] = False,
    ) -> None:
        """Backtest a model on past snapshots: per-grade traffic lights, AUC, PSI, verdict."""
        try:
            report = run_monitor(
                model,
                snapshots,
                outcomes,
                out,
                observed_to,
                reference,
                config,
                tracking_uri,
                not no_log,
            )
        except (ValueError, FileNotFoundError, KeyError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        s = report["summary"]
        typer.echo(
            f"{report['verdict']['en']} ({s['periods']} periods, {s['complete_periods']} with "
            f"outcomes; grade lights {s['green_grades']} green, {s['yellow_grades']} yellow, "
            f"{s['red_grades']} red); report in {out / 'report.html'}"
            + (f"; MLflow run {report['run_id']}" if "run_id" in report else "")
        )
