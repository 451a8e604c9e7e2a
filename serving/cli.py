"""``kuaxin`` commands of the service: serve, keys, consent, audit, db, reload, demo.

Heavy imports live inside the commands so that ``kuaxin --help`` stays instant. Errors are one
line on stderr with a non-zero exit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

#: Institutions the demo creates keys for (their earlier demo keys are revoked on a re-run).
DEMO_ORGS = {
    "bank": "Demo Bank",
    "insurer": "Demo Insurer",
    "enterprise": "Demo Enterprise",
    "regulator": "Demo Commerce Bureau",
    "admin": "Demo Operations",
}

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL (default: KUAXIN_DATABASE_URL or sqlite:///kuaxin.db)",
    ),
]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _settings(**overrides: Any) -> Any:
    from serving.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _database(database_url: str | None) -> Any:
    from serving.db import Database, upgrade

    settings = _settings(database_url=database_url)
    try:
        upgrade(settings.database_url)
    except Exception as exc:  # unreachable server, bad URL, permissions
        _fail(f"database {settings.database_url} cannot be migrated: {exc}")
    return Database(settings.database_url)


def _seed_demo_applications(
    database: Any, settings: Any, snapshot: Path, info: dict[str, Any]
) -> Any:
    """Seed applications in several states (serving.demo.seed_applications); skipped without a model."""
    from serving.demo import applications_seeded, seed_applications
    from serving.market import load_market
    from serving.state import ServingState

    if applications_seeded(database, DEMO_ORGS):
        return []
    typer.echo(
        "seeding demo applications (loads the model and scores the snapshot once) ...", err=True
    )
    try:
        loaded = ServingState().load(settings.model_copy(update={"snapshot": snapshot}))
    except Exception as exc:  # no model yet: the keys still work, the pages start empty
        typer.echo(f"warning: no demo applications: {exc}", err=True)
        return []
    return seed_applications(
        database, loaded, load_market(settings), DEMO_ORGS, info["firm"]["usc_code"]
    )


def _while_waiting(what: str, call: Callable[[], T]) -> T:
    """Run ``call`` while a progress line on stderr counts the seconds (a reload takes a while).

    The line shows only on a terminal; piped output stays clean.
    """
    import threading
    import time

    from tqdm import tqdm

    done = threading.Event()
    result: list[T] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(call())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=work, daemon=True)
    start = time.monotonic()
    worker.start()
    with tqdm(desc=what, unit="s", bar_format="{desc}: {elapsed}", disable=None) as bar:
        while not done.wait(0.5):
            bar.update(time.monotonic() - start - bar.n)
    if failure:
        raise failure[0]
    return result[0]


def _parse_expiry(expires: str | None, days: int | None) -> datetime:
    if expires is not None:
        try:
            ts = datetime.fromisoformat(expires)
        except ValueError:
            _fail(f"--expires must be an ISO date or timestamp; got {expires!r}")
            raise
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    return datetime.now(UTC) + timedelta(days=days if days is not None else 365)


def _serve_commands(app: typer.Typer) -> None:
    """Add ``kuaxin serve``."""

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
        snapshot: Annotated[Path | None, typer.Option(help="feature snapshot Parquet file")] = None,
        model_dir: Annotated[
            Path | None, typer.Option(help="exported model package (default: registry champion)")
        ] = None,
        database_url: DatabaseOpt = None,
        log_level: Annotated[str, typer.Option(help="log level")] = "info",
        access_log: Annotated[bool, typer.Option(help="log every request")] = True,
        workers: Annotated[
            int,
            typer.Option(
                min=1, max=64, help="processes sharing the port (scores precomputed once)"
            ),
        ] = 1,
    ) -> None:
        """Run the scoring service (uvicorn; several workers with --workers N)."""
        import logging

        from serving.workers import LOG_FORMAT
        from serving.workers import serve as run_service

        logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
        settings = _settings(snapshot=snapshot, model_dir=model_dir, database_url=database_url)
        if settings.snapshot is None:
            _fail("no snapshot: pass --snapshot FILE or set KUAXIN_SNAPSHOT")
        run_service(settings, host, port, workers, log_level=log_level, access_log=access_log)


def _key_commands(keys: typer.Typer) -> None:
    """Add ``kuaxin keys create|list|revoke``."""

    @keys.command("create")
    def keys_create(
        role: Annotated[str, typer.Option(help="bank | insurer | enterprise | regulator | admin")],
        org: Annotated[str, typer.Option(help="institution, or the firm's name")],
        firm: Annotated[str | None, typer.Option(help="USCC of an enterprise key's firm")] = None,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Create an API key and print it (it is shown once; only its hash is stored)."""
        from serving.auth import ApiKeyError, create_key

        database = _database(database_url)
        try:
            with database.session() as session:
                key, row = create_key(session, role, org, firm)
                key_id = row.id
        except ApiKeyError as exc:
            _fail(str(exc))
        finally:
            database.dispose()
        typer.echo(
            f"id {key_id}  role {role}  org {org}" + (f"  firm {firm}" if firm else ""), err=True
        )
        typer.echo(key)

    @keys.command("list")
    def keys_list(
        all_: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
        database_url: DatabaseOpt = None,
    ) -> None:
        """List keys (never the keys themselves)."""
        from serving.auth import list_keys

        database = _database(database_url)
        with database.session() as session:
            for k in list_keys(session, include_revoked=all_):
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                typer.echo(
                    f"{k.id}\t{k.role}\t{k.org}\t{k.firm_usc or '-'}\tkx_{k.prefix}_…\t{state}"
                )
        database.dispose()

    @keys.command("revoke")
    def keys_revoke(
        key_id: Annotated[int, typer.Argument(help="id from `kuaxin keys list`")],
        database_url: DatabaseOpt = None,
    ) -> None:
        """Revoke a key at once."""
        from serving.auth import ApiKeyError, revoke_key

        database = _database(database_url)
        try:
            with database.session() as session:
                revoke_key(session, key_id)
        except ApiKeyError as exc:
            _fail(str(exc))
        finally:
            database.dispose()
        typer.echo(f"revoked key {key_id}")


def _consent_commands(consent: typer.Typer) -> None:
    """Add ``kuaxin consent grant|revoke|list``."""

    @consent.command("grant")
    def consent_grant(
        firm: Annotated[str, typer.Option(help="USCC of the granting firm")],
        to: Annotated[str, typer.Option("--to", help="institution (the org of its API keys)")],
        scope: Annotated[list[str], typer.Option(help="score | explanation | quote (repeatable)")],
        purpose: Annotated[str, typer.Option(help="why the institution reads")],
        days: Annotated[
            int | None, typer.Option(min=1, help="valid for this many days (default 365)")
        ] = None,
        expires: Annotated[
            str | None, typer.Option(help="expiry as ISO date/time instead of --days")
        ] = None,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Record a firm's consent to an institution."""
        from serving.consent import ConsentError, grant

        expires_at = _parse_expiry(expires, days)
        database = _database(database_url)
        try:
            with database.session() as session:
                row = grant(session, firm, to, scope, purpose, expires_at)
                consent_id = row.id
        except ConsentError as exc:
            _fail(str(exc))
        finally:
            database.dispose()
        typer.echo(
            f"consent {consent_id}: {firm} -> {to} {','.join(sorted(set(scope)))} until {expires_at.isoformat()}"
        )

    @consent.command("revoke")
    def consent_revoke(
        consent_id: Annotated[int, typer.Argument(help="consent id")],
        database_url: DatabaseOpt = None,
    ) -> None:
        """Revoke a consent at once."""
        from serving.consent import ConsentError, revoke

        database = _database(database_url)
        try:
            with database.session() as session:
                revoke(session, consent_id)
        except ConsentError as exc:
            _fail(str(exc))
        finally:
            database.dispose()
        typer.echo(f"revoked consent {consent_id}")

    @consent.command("list")
    def consent_list(
        firm: Annotated[str | None, typer.Option(help="only this firm's consents")] = None,
        to: Annotated[
            str | None, typer.Option("--to", help="only consents to this institution")
        ] = None,
        database_url: DatabaseOpt = None,
    ) -> None:
        """List consents with their state now."""
        from serving.consent import list_consents, state_of

        database = _database(database_url)
        with database.session() as session:
            for c in list_consents(session, firm_usc=firm, institution=to):
                typer.echo(
                    f"{c.id}\t{c.firm_usc}\t{c.institution}\t{c.scopes}\t{state_of(c).value}\t"
                    f"{c.expires_at:%Y-%m-%d}\t{c.purpose}"
                )
        database.dispose()


def _audit_and_db_commands(audit: typer.Typer, db: typer.Typer) -> None:
    """Add ``kuaxin audit verify`` and ``kuaxin db upgrade``."""

    @audit.command("verify")
    def audit_verify(database_url: DatabaseOpt = None) -> None:
        """Check the audit hash chain; exit 1 naming the first broken row."""
        from serving.audit import verify

        database = _database(database_url)
        with database.session() as session:
            result = verify(session)
        database.dispose()
        if not result.ok:
            typer.echo(
                f"audit chain BROKEN at row {result.first_bad_id}: {result.reason}", err=True
            )
            raise typer.Exit(code=1)
        typer.echo(f"audit chain ok: {result.rows} rows")

    @db.command("upgrade")
    def db_upgrade(database_url: DatabaseOpt = None) -> None:
        """Apply the database migrations."""
        from serving.db import current_revision

        settings = _settings(database_url=database_url)
        _database(database_url).dispose()
        typer.echo(f"database at revision {current_revision(settings.database_url)}")


def _reload_command(app: typer.Typer) -> None:
    """Add ``kuaxin reload``."""

    @app.command()
    def reload(
        url: Annotated[
            str, typer.Option(help="base URL of the running service")
        ] = "http://127.0.0.1:8000",
        key: Annotated[str, typer.Option(envvar="KUAXIN_ADMIN_KEY", help="admin API key")] = "",
        model_dir: Annotated[
            Path | None, typer.Option(help="model package (default: registry champion)")
        ] = None,
        snapshot: Annotated[Path | None, typer.Option(help="snapshot Parquet file")] = None,
    ) -> None:
        """Ask a running service to reload its model and/or snapshot (refused ones keep the old)."""
        import httpx

        if not key:
            _fail("an admin key is needed: --key KEY or KUAXIN_ADMIN_KEY")
        body = {
            "model_dir": str(model_dir.resolve()) if model_dir else None,
            "snapshot": str(snapshot.resolve()) if snapshot else None,
        }
        try:
            resp = _while_waiting(
                "reloading (the service scores and explains every firm)",
                lambda: httpx.post(
                    f"{url.rstrip('/')}/v1/admin/reload",
                    json=body,
                    headers={"X-API-Key": key},
                    timeout=600,
                ),
            )
        except httpx.HTTPError as exc:
            _fail(f"service at {url} unreachable: {exc}")
            raise
        if resp.status_code != 200:
            _fail(f"reload refused ({resp.status_code}): {resp.json().get('detail', resp.text)}")
        info = resp.json()
        typer.echo(
            f"serving model {info['model_version']} on {info['snapshot']} as of {info['as_of']} ({info['firms']} firms)"
        )


def _demo_command(app: typer.Typer) -> None:
    """Add ``kuaxin demo``."""

    @app.command()
    def demo(
        snapshot: Annotated[Path, typer.Option(help="the snapshot the service will serve")],
        out: Annotated[
            Path,
            typer.Option(help="JSON file for the demo keys (a .env file is written beside it)"),
        ],
        base_url: Annotated[
            str, typer.Option(help="URL the service will listen on")
        ] = "http://127.0.0.1:8000",
        model_dir: Annotated[
            Path | None,
            typer.Option(help="model package the service will serve (default: champion)"),
        ] = None,
        database_url: DatabaseOpt = None,
    ) -> None:
        """Create demo keys (bank, insurer, enterprise with consents, regulator, admin) and print curl lines."""
        from serving.demo import create_demo

        database = _database(database_url)
        try:
            settings = _settings(database_url=database_url, model_dir=model_dir)
            info = create_demo(
                database, snapshot, base_url=base_url, orgs=DEMO_ORGS, settings=settings
            )
            info["applications"] = _seed_demo_applications(database, settings, snapshot, info)
        except ValueError as exc:
            _fail(str(exc))
            raise
        finally:
            database.dispose()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        env = out.with_suffix(".env")
        env.write_text(
            "".join(f"export {k}={v}\n" for k, v in info["env"].items()), encoding="utf-8"
        )
        typer.echo(f"demo keys written to {out} and {env} (source it: `source {env}`)")
        typer.echo(f"demo firm {info['firm']['usc_code']} {info['firm']['name'] or ''}")
        seeded = info.get("applications") or []
        if seeded:
            states = ", ".join(sorted({a["status"] for a in seeded}))
            typer.echo(
                f"seeded {len(seeded)} applications ({states}); console: {base_url}/console/"
            )
        for role, k in info["keys"].items():
            typer.echo(f"  {role:<10} {k['org']:<22} {k['key']}")
        typer.echo("try (after `make serve` or while `make run` serves):")
        for line in info["curl"]:
            typer.echo(f"  {line}")


def register(app: typer.Typer) -> None:
    """Add the service's commands to the ``kuaxin`` app.

    Parameters
    ----------
    app : typer.Typer
        The top-level app.
    """
    keys = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
    consent = typer.Typer(
        help="Consents of firms to institutions: grant, revoke, list.", no_args_is_help=True
    )
    audit = typer.Typer(help="The audit log.", no_args_is_help=True)
    db = typer.Typer(help="The service database.", no_args_is_help=True)
    app.add_typer(keys, name="keys")
    app.add_typer(consent, name="consent")
    app.add_typer(audit, name="audit")
    app.add_typer(db, name="db")
    _serve_commands(app)
    _key_commands(keys)
    _consent_commands(consent)
    _audit_and_db_commands(audit, db)
    _reload_command(app)
    _demo_command(app)
