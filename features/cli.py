"""``kuaxin`` commands of the features package: ingest, features, dataset, drift.

Heavy imports live inside the commands so that ``kuaxin --help`` is instant.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str) -> None:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} must be a date YYYY-MM-DD; got {value!r}")
        raise  # unreachable, keeps type checkers content


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``kuaxin`` app.

    Parameters
    ----------
    app : typer.Typer
        The top-level app.
    """

    @app.command()
    def ingest(
        raw_dir: Annotated[Path, typer.Argument(help="folder of raw tables")],
        out: Annotated[
            Path, typer.Option(help="folder for clean tables, quarantine and report")
        ] = Path("data/clean"),
    ) -> None:
        """Validate raw tables against their contracts; write clean tables and a quarantine."""
        from features.ingest import UnusableTableError
        from features.ingest import ingest as run

        try:
            report = run(raw_dir, out, progress=True)
        except UnusableTableError as exc:
            _fail(str(exc))
        totals = report["totals"]
        typer.echo(
            f"read {totals['read']:,} rows: accepted {totals['accepted']:,}, "
            f"quarantined {totals['quarantined']:,} (report: {out / 'ingest_report.json'})"
        )

    @app.command("features")
    def features_cmd(
        clean_dir: Annotated[Path, typer.Argument(help="folder of clean tables")],
        as_of: Annotated[str, typer.Option(help="snapshot date YYYY-MM-DD")],
        out: Annotated[Path, typer.Option(help="Parquet file for the snapshot")] = Path(
            "data/features/snapshot.parquet"
        ),
        workers: Annotated[
            int,
            typer.Option(
                min=0, help="Dask worker processes sharded by firm (0: in-process pandas path)"
            ),
        ] = 0,
    ) -> None:
        """Build the point-in-time feature snapshot of every live firm at a date."""
        from features.snapshot import build_snapshot_file

        when = _parse_date(as_of, "--as-of")
        try:
            if workers:
                from features.distributed import build_snapshot_file_dask

                build_snapshot_file_dask(clean_dir, when, out, n_workers=workers)
            else:
                build_snapshot_file(clean_dir, when, out)
        except (FileNotFoundError, ValueError) as exc:  # missing tables, bad catalog or config
            _fail(str(exc))
        typer.echo(f"wrote {out}")

    @app.command()
    def dataset(
        clean_dir: Annotated[Path, typer.Argument(help="folder of clean tables")],
        date_from: Annotated[str, typer.Option("--from", help="first as-of date YYYY-MM-DD")],
        date_to: Annotated[str, typer.Option("--to", help="last as-of date YYYY-MM-DD")],
        every: Annotated[str, typer.Option(help="as-of spacing: month or quarter")] = "quarter",
        out: Annotated[Path, typer.Option(help="Parquet file for the training set")] = Path(
            "data/features/train.parquet"
        ),
    ) -> None:
        """Build the labelled (firm, as-of) training set."""
        from features.dataset import build_dataset_file

        if every not in ("month", "quarter"):
            _fail(f"--every must be month or quarter; got {every!r}")
        start, end = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
        try:
            build_dataset_file(clean_dir, start, end, every, out)
        except (FileNotFoundError, ValueError) as exc:  # missing tables, --to before --from
            _fail(str(exc))
        typer.echo(f"wrote {out}")

    @app.command()
    def drift(
        reference: Annotated[Path, typer.Argument(help="reference snapshot or dataset (Parquet)")],
        current: Annotated[Path, typer.Argument(help="current snapshot or dataset (Parquet)")],
        out: Annotated[Path | None, typer.Option(help="CSV file for the PSI table")] = None,
    ) -> None:
        """PSI of every catalog feature between two samples, with verdicts."""
        from features.drift import drift_report

        try:
            table = drift_report(reference, current)
        except (FileNotFoundError, ValueError, KeyError) as exc:  # unreadable or unrelated files
            _fail(str(exc))
        if out:
            table.to_csv(out, index=False)
        typer.echo(table.to_string(index=False))
