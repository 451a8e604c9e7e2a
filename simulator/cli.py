"""``kuaxin simulate``: the simulated platform's command.

Heavy imports live inside the command so that ``kuaxin --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str) -> None:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to the ``kuaxin`` app.

    Parameters
    ----------
    app : typer.Typer
        The top-level app.
    """

    @app.command()
    def simulate(
        out: Annotated[Path, typer.Option(help="folder for the raw platform tables")] = Path(
            "data/raw"
        ),
        oracle_out: Annotated[
            Path | None, typer.Option(help="folder for the oracle (default: OUT/../oracle)")
        ] = None,
        firms: Annotated[int, typer.Option(min=1, help="number of firms")] = 2000,
        seed: Annotated[int, typer.Option(help="random seed")] = 7,
        start: Annotated[str, typer.Option(help="first month YYYY-MM")] = "2019-01",
        end: Annotated[str, typer.Option(help="last month YYYY-MM")] = "2025-12",
        fault_rate: Annotated[
            float, typer.Option(min=0.0, max=0.5, help="share of rows given a data-quality fault")
        ] = 0.0,
        chunk_size: Annotated[
            int, typer.Option(min=100, help="firms generated per chunk")
        ] = 20_000,
    ) -> None:
        """Simulate the Shenzhen credit platform and trade feeds as Parquet tables."""
        from simulator.simulate import SimulationError
        from simulator.simulate import simulate as run

        try:
            summary = run(
                n_firms=firms,
                seed=seed,
                start=start,
                end=end,
                out_dir=out,
                oracle_dir=oracle_out or out.parent / "oracle",
                fault_rate=fault_rate,
                chunk_size=chunk_size,
                progress=True,
            )
        except SimulationError as exc:
            _fail(str(exc))
        typer.echo(summary.get("message", f"wrote {out}"))
