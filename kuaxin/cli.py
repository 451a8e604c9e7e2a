"""The ``kuaxin`` command: one Typer app assembled from each package's commands.

Each package's ``cli`` module exposes ``register(app)`` and imports its heavy dependencies
inside the command bodies, so ``kuaxin --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="kuaxin",
    help="Kuaxin (跨信): credit scoring and trade-finance matching for Shenzhen CBEC firms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Typer's rich help shows a value placeholder ("<bool>") even for flags such as --help;
    # Click's plain help lists options without one.
    rich_markup_mode=None,
)

for _module in (
    "simulator.cli",
    "features.cli",
    "training.cli",
    "training.monitor_cli",
    "training.batch",
    "training.buyer_cli",
    "serving.cli",
    "serving.apps_cli",
):
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as exc:  # a package whose CLI is not written yet
        if exc.name != _module:
            raise


def main() -> None:
    """Run the ``kuaxin`` command."""
    app()


if __name__ == "__main__":
    main()
