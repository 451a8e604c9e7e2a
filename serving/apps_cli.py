"""``kuaxin outcomes export``: a provider's labelled table for ``kuaxin train --table``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``outcomes`` commands to the ``kuaxin`` app."""
    outcomes = typer.Typer(help="Outcomes of applications: the provider's labelled table.")
    app.add_typer(outcomes, name="outcomes")

    @outcomes.command("export")
    def export(
        provider: Annotated[str, typer.Option(help="institution (the org of its API keys)")],
        out: Annotated[Path, typer.Option(help="table to write (.csv or .parquet)")],
        as_of: Annotated[
            str | None,
            typer.Option(help="outcomes known until this date, YYYY-MM-DD (default: today)"),
        ] = None,
        database_url: Annotated[
            str | None,
            typer.Option(
                "--database-url",
                help="SQLAlchemy URL (default: KUAXIN_DATABASE_URL or sqlite:///kuaxin.db)",
            ),
        ] = None,
    ) -> None:
        """Write the provider's table: features frozen at application time + default_12m.

        Train on it unchanged: ``kuaxin train --table OUT --target default_12m --id application_id``.
        """
        from serving.applications import config_for, export_outcomes
        from serving.db import Database, upgrade
        from serving.settings import Settings

        settings = Settings(database_url=database_url) if database_url else Settings()
        try:
            until = None if as_of is None else date.fromisoformat(as_of)
        except ValueError:
            typer.echo(f"error: --as-of must be a date YYYY-MM-DD; got {as_of!r}", err=True)
            raise typer.Exit(code=2) from None
        if out.suffix.lower() not in (".csv", ".parquet"):
            typer.echo(f"error: --out must end in .csv or .parquet; got {out.name}", err=True)
            raise typer.Exit(code=2)
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        try:
            with db.session() as session:
                frame, counts = export_outcomes(session, provider, config_for(settings), until)
        finally:
            db.dispose()
        if counts["rows"] == 0:
            typer.echo(
                f"error: {provider} has no disbursed application with a known 12-month outcome "
                f"({counts['applications']} applications, {counts['not_disbursed']} not disbursed, "
                f"{counts['censored']} still open)",
                err=True,
            )
            raise typer.Exit(code=1)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
        typer.echo(
            f"wrote {counts['rows']} rows ({counts['defaults']} defaults) to {out}; "
            f"{counts['not_disbursed']} not disbursed, {counts['censored']} still open. Train with: "
            f"kuaxin train --table {out} --target default_12m --id application_id"
        )
