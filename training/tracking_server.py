"""An MLflow tracking server backed by PostgreSQL, with an artifact root it serves over HTTP.

``make mlflow-server`` (``python -m training.tracking_server``) creates the database on the
machine's PostgreSQL when it is missing, then runs ``mlflow server`` with that database as the
backend (runs, metrics and the model registry) and ``--artifacts-destination`` as the artifact
root, served by the same process (``--serve-artifacts``): clients need only
``MLFLOW_TRACKING_URI=http://HOST:PORT`` — ``kuaxin train``, ``promote``, ``rollback``,
``export`` and the service's champion lookup all go through it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def ensure_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url`` unless it exists.

    Parameters
    ----------
    admin_url : str
        libpq URL of a database on the server to connect to (e.g. ``…/postgres``).
    name : str
        Database to create (letters, digits and underscores).

    Returns
    -------
    str
        SQLAlchemy URL of the database (``postgresql+psycopg://…/name``), for MLflow.
    """
    import psycopg

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"database name must be letters, digits and _; got {name!r}")
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'create database "{name}"')
    base = plain.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


def server_command(
    backend_uri: str, artifacts: Path | str, host: str, port: int, workers: int = 1
) -> list[str]:
    """Build the ``mlflow server`` command line for this backend and artifact root."""
    root = Path(artifacts).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        root.as_uri(),
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def main(argv: list[str] | None = None) -> None:
    """Create the database if needed and replace this process with ``mlflow server``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url", default=os.environ.get("KUAXIN_PG_ADMIN_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument("--database", default="kuaxin_mlflow")
    parser.add_argument("--artifacts", default="mlartifacts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        backend = ensure_database(args.admin_url, args.database)
    except Exception as exc:  # any failure to reach or create the database is a one-line stop
        sys.exit(f"error: PostgreSQL database {args.database} cannot be created: {exc}")
    cmd = server_command(backend, args.artifacts, args.host, args.port, args.workers)
    sys.stderr.write(
        f"MLflow tracking server on http://{args.host}:{args.port} "
        f"(backend {backend}, artifacts {Path(args.artifacts).resolve()})\n"
    )
    sys.stderr.flush()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
