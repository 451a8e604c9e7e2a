"""Reloading the model or snapshot: broken ones are refused and the old one keeps serving."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from serving.settings import Settings
from serving.state import LoadError, ServingState


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture()
def svc(
    make_service: Any,
    db_url: str,
    svc_settings_kwargs: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    # The tests' files live under pytest's base folder: that is where admins may reload from.
    base = tmp_path_factory.getbasetemp()
    return make_service(db_url, **svc_settings_kwargs, model_roots=[base], snapshot_roots=[base])


def _broken_model(src: Path, dest: Path, how: str) -> Path:
    shutil.copytree(src, dest)
    if how == "booster":
        (dest / "booster.txt").write_text("this is not a LightGBM model\n")
    elif how == "json":
        (dest / "model.json").write_text("{ not json")
    else:
        (dest / "booster.txt").unlink()
    return dest


@pytest.mark.parametrize("how", ["booster", "json", "missing"])
def test_corrupt_model_is_refused_and_old_keeps_serving(
    svc: Any, trained_model_dir: Path, tmp_path: Path, svc_firms: Any, how: str, caplog: Any
) -> None:
    admin, ent = svc.key("admin", "ops"), svc.key("enterprise", "a", svc_firms.a)
    before = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).json()
    bad = _broken_model(trained_model_dir, tmp_path / "bad", how)
    r = svc.client.post("/v1/admin/reload", json={"model_dir": str(bad)}, headers=h(admin))
    assert r.status_code == 409, r.text
    assert str(bad) in r.json()["detail"]
    assert any("load refused" in rec.getMessage() for rec in caplog.records)
    after = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent))
    assert after.status_code == 200 and after.json() == before
    ready = svc.client.get("/v1/ready", headers=h(admin)).json()
    assert ready["ready"] and str(bad) in ready["last_error"]
    # Without an admin key, readiness says a reload failed but shows no paths or errors.
    public = svc.client.get("/v1/ready").json()
    assert public["reload_failed"] and public["last_error"] is None
    assert public["served"]["snapshot"] is None and str(bad) not in json.dumps(public)


def test_corrupt_or_mismatched_snapshot_is_refused(
    svc: Any, tmp_path: Path, snapshot: Any, svc_firms: Any
) -> None:
    admin = svc.key("admin", "ops")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1 not really")
    lacking = tmp_path / "lacking.parquet"
    snapshot.drop(columns=["refund_rate_6m"]).to_parquet(lacking)
    dup = tmp_path / "dup.parquet"
    snapshot.iloc[[0, 0]].to_parquet(dup)
    for path, words in [
        (garbage, "Parquet"),
        (lacking, "refund_rate_6m"),
        (dup, "more than once"),
        (tmp_path / "none.parquet", "does not exist"),
    ]:
        r = svc.client.post("/v1/admin/reload", json={"snapshot": str(path)}, headers=h(admin))
        assert r.status_code == 409 and words in r.json()["detail"], r.text
    assert svc.client.get("/v1/ready").json()["served"]["firms"] == len(svc.loaded.position)


def test_reload_swaps_without_dropping_requests(
    svc: Any, tmp_path: Path, snapshot: Any, svc_firms: Any
) -> None:
    admin, ent = svc.key("admin", "ops"), svc.key("enterprise", "a", svc_firms.a)
    # A smaller snapshot that still has firm A: the swap is visible in the firm count.
    others = snapshot[snapshot["usc_code"] != svc_firms.a].head(99)
    small = tmp_path / "small.parquet"
    pd.concat([others, snapshot[snapshot["usc_code"] == svc_firms.a]]).to_parquet(small)
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(
                svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).status_code
            )

    t = threading.Thread(target=hammer)
    t.start()
    try:
        r = svc.client.post("/v1/admin/reload", json={"snapshot": str(small)}, headers=h(admin))
    finally:
        stop.set()
        t.join()
    assert r.status_code == 200, r.text
    assert r.json()["firms"] == 100
    assert statuses and set(statuses) == {200}
    served = svc.client.get("/v1/ready", headers=h(admin)).json()["served"]
    assert served["snapshot"] == str(small.resolve())
    # Non-admins may not reload.
    assert svc.client.post("/v1/admin/reload", json={}, headers=h(ent)).status_code == 403


def test_state_load_keeps_old_bundle(
    svc_settings_kwargs: dict[str, Any], svc_loaded: Any, tmp_path: Path, trained_model_dir: Path
) -> None:
    state = ServingState(svc_loaded)
    bad = _broken_model(trained_model_dir, tmp_path / "bad", "booster")
    with pytest.raises(LoadError, match="cannot be loaded"):
        state.load(Settings(database_url="sqlite://", **svc_settings_kwargs), model_dir=bad)
    assert state.current is svc_loaded
    fresh = state.load(Settings(database_url="sqlite://", **svc_settings_kwargs))
    assert state.current is fresh and fresh.model_version == svc_loaded.model_version


def test_startup_without_loadable_model_is_not_ready(
    tmp_path: Path, db_url: str, svc_snapshot_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    settings = Settings(
        database_url=db_url,
        model_dir=tmp_path / "nope",
        snapshot=svc_snapshot_path,
    )
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/ready", headers=h(_admin_key(db_url)))
        assert r.status_code == 503 and "nope" in r.json()["last_error"]


def _admin_key(url: str) -> str:
    from serving.auth import create_key
    from serving.db import Database

    db = Database(url)
    try:
        with db.session() as s:
            return create_key(s, "admin", "ops")[0]
    finally:
        db.dispose()


def test_startup_loads_and_migrates(db_url: str, svc_settings_kwargs: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.db import current_revision

    url = db_url
    with TestClient(create_app(Settings(database_url=url, **svc_settings_kwargs))) as client:
        assert client.get("/v1/ready").json()["ready"] is True
    from serving.db import head_revision

    assert current_revision(url) == head_revision()


def test_startup_loads_the_registry_champion(
    tmp_path: Path, trained_credit: Any, mlflow_tracking_uri: str, svc_snapshot_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from training.registry import log_training, promote

    name = "kuaxin-service-test"
    log_training(
        trained_credit,
        trained_credit.metrics,
        "<html></html>",
        name=name,
        tracking_uri=mlflow_tracking_uri,
    )
    assert promote(name, tracking_uri=mlflow_tracking_uri)["promoted"]
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'k.db'}",
        model_name=name,
        mlflow_tracking_uri=mlflow_tracking_uri,
        snapshot=svc_snapshot_path,
    )
    with TestClient(create_app(settings)) as client:
        key = _admin_key(settings.database_url)
        served = client.get("/v1/ready", headers=h(key)).json()["served"]
    assert served["model_version"] == trained_credit.model.version
    assert served["model_source"] == f"models:/{name}@champion"


def test_database_down_fails_closed(svc_loaded: Any, svc_firms: Any) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    # Nothing listens on port 1: every database call fails at once.
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/test",
        load_on_start=False,
        migrate_on_start=False,
    )
    with TestClient(create_app(settings, ServingState(svc_loaded))) as client:
        r = client.get(f"/v1/firms/{svc_firms.a}/score", headers=h("kx_000000000000_" + "a" * 43))
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        body = client.get("/v1/ready").json()
        assert body == {
            "ready": False,
            "database": False,
            "database_writable": False,
            "audit_writes": True,  # no audit write was tried: the key check failed first
            "served": body["served"],
            "last_error": None,
            "reload_failed": False,
        }
