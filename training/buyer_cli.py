"""``kuaxin buyers train | score``: the buyer grade model's commands."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

buyers_app = typer.Typer(help="Buyer grades: train the buyer model, grade buyers as of a date.")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _scale(path: Path | None) -> list[tuple[str, float]]:
    """Return the buyer master scale (grade, upper PD) of ``tradefinance/config/insurer.yaml``."""
    import yaml

    src = path or Path(__file__).resolve().parents[1] / "tradefinance" / "config" / "insurer.yaml"
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    return [(g, float(b["pd_upper"])) for g, b in data["buyer_scale"].items() if g != "unknown"]


@buyers_app.command("train")
def train_cmd(
    clean: Annotated[Path, typer.Option(help="folder of clean tables with buyers")],
    oracle: Annotated[Path | None, typer.Option(help="oracle folder (buyer_pd) to compare")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    register: Annotated[bool, typer.Option(help="log and register in MLflow")] = True,
    model_out: Annotated[Path | None, typer.Option(help="also save the model folder here")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="write the metrics JSON here")] = None,
    insurer_config: Annotated[Path | None, typer.Option(help="insurer.yaml (buyer scale)")] = None,
) -> None:
    """Train the buyer grade model, evaluate out of time, register and gate it."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from training.buyer_registry import read_buyer_tables, train
    from training.buyer_registry import register as register_model

    try:
        tables = read_buyer_tables(clean)
    except FileNotFoundError as exc:
        _fail(str(exc))
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), transient=True) as bar:
        bar.add_task("building the buyer panel and training", total=None)
        try:
            model, metrics = train(tables, _scale(insurer_config), oracle)
        except ValueError as exc:
            _fail(str(exc))
    if model_out:
        model.save(model_out)
    out = {
        "model_version": model.version,
        "kind": model.kind,
        "auc": metrics["oot"].get("auc"),
        "gate": metrics["gate"],
        "oracle": metrics.get("oracle"),
        "shrinkage": metrics["shrinkage"],
    }
    if register:
        out["registry"] = register_model(model, metrics, tracking_uri)
    if metrics_out:
        metrics_out.write_text(json.dumps(metrics, indent=1, default=str), encoding="utf-8")
    typer.echo(json.dumps(out, indent=1, default=str))


@buyers_app.command("score")
def score_cmd(
    clean: Annotated[Path, typer.Option(help="folder of clean tables with buyers")],
    as_of: Annotated[str, typer.Option(help="as-of date YYYY-MM-DD")],
    out: Annotated[Path, typer.Option(help="Parquet file the service reads (KUAXIN_BUYER_GRADES)")],
    model_dir: Annotated[
        Path | None, typer.Option(help="a saved model folder (else the champion)")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    insurer_config: Annotated[Path | None, typer.Option(help="insurer.yaml (buyer scale)")] = None,
    extra_claims: Annotated[
        Path | None,
        typer.Option(
            help="JSON of GET /v1/insurer/claims: the service's claims join the platform's"
        ),
    ] = None,
) -> None:
    """Grade every buyer with platform history at AS_OF into a Parquet file."""
    from training.buyer_model import BuyerModel
    from training.buyer_registry import (
        load_champion,
        read_buyer_tables,
        score_buyers,
        with_extra_claims,
    )

    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        _fail(f"--as-of must be YYYY-MM-DD; got {as_of!r}")
    try:
        tables = read_buyer_tables(clean)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if extra_claims is not None:
        try:
            tables["insurance_claims"] = with_extra_claims(
                tables.get("insurance_claims"), extra_claims
            )
        except (OSError, ValueError, KeyError) as exc:
            _fail(f"--extra-claims {extra_claims}: {exc}")
    model = BuyerModel.load(model_dir) if model_dir else load_champion(tracking_uri)
    graded = score_buyers(model, tables, day, _scale(insurer_config))
    out.parent.mkdir(parents=True, exist_ok=True)
    graded.to_parquet(out, index=False)
    counts = graded["grade"].value_counts().sort_index().to_dict()
    typer.echo(f"graded {len(graded)} buyers as of {day} with {model.version}: {counts} -> {out}")


def register(app: typer.Typer) -> None:
    """Add ``kuaxin buyers`` to the top-level app."""
    app.add_typer(buyers_app, name="buyers")
