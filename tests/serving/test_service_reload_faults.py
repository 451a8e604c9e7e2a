"""Reload faults: broken model packages and snapshots are refused with the old bundle serving,
a booster that crashes LightGBM's parser does not take the service down, and paths outside the
configured model/snapshot folders are refused (admins choose among configured locations)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from training.manifest import MANIFEST_FILE, write_manifest


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture()
def roots(tmp_path: Path, trained_model_dir: Path, svc_snapshot_path: Path) -> dict[str, Any]:
    models, snaps = tmp_path / "models", tmp_path / "snapshots"
    shutil.copytree(trained_model_dir, models / "good")
    snaps.mkdir()
    shutil.copy(svc_snapshot_path, snaps / "good.parquet")
    return {"models": models, "snapshots": snaps}


@pytest.fixture()
def svc(make_service: Any, db_url: str, roots: dict[str, Any]) -> Any:
    return make_service(
        db_url,
        model_dir=roots["models"] / "good",
        snapshot=roots["snapshots"] / "good.parquet",
        model_roots=[roots["models"]],
        snapshot_roots=[roots["snapshots"]],
        rate_limits_enabled=False,
    )


def _reload(svc: Any, admin: str, **body: str) -> Any:
    return svc.client.post("/v1/admin/reload", json=body, headers=h(admin))


def _still_serving(svc: Any, ent: str, firm: str, before: Any) -> None:
    r = svc.client.get(f"/v1/firms/{firm}/score", headers=h(ent))
    assert r.status_code == 200 and r.json() == before


def _package(roots: dict[str, Any], name: str) -> Path:
    return Path(shutil.copytree(roots["models"] / "good", roots["models"] / name))


def test_truncated_booster_is_refused_by_its_manifest(
    svc: Any, roots: dict[str, Any], svc_firms: Any
) -> None:
    admin, ent = svc.key("admin", "ops"), svc.key("enterprise", "a", svc_firms.a)
    before = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).json()
    bad = _package(roots, "truncated")
    os.truncate(bad / "booster.txt", 100_000)
    r = _reload(svc, admin, model_dir=str(bad))
    assert r.status_code == 409 and "truncated or changed" in r.json()["detail"], r.text
    _still_serving(svc, ent, svc_firms.a, before)


def test_booster_that_crashes_the_parser_leaves_the_service_up(
    svc: Any, roots: dict[str, Any], svc_firms: Any
) -> None:
    admin, ent = svc.key("admin", "ops"), svc.key("enterprise", "a", svc_firms.a)
    before = svc.client.get(f"/v1/firms/{svc_firms.a}/score", headers=h(ent)).json()
    bad = _package(roots, "crashing")
    size = (bad / "booster.txt").stat().st_size
    os.truncate(bad / "booster.txt", min(100_000, size * 4 // 5))
    write_manifest(bad)  # a manifest that matches the broken file: only the probe can tell
    r = _reload(svc, admin, model_dir=str(bad))
    assert r.status_code == 409, r.text
    assert "crashed the parser" in r.json()["detail"] or "LightGBM" in r.json()["detail"]
    _still_serving(svc, ent, svc_firms.a, before)
    assert svc.client.get("/v1/ready").json()["ready"] is True


def test_wrong_manifest_is_refused(svc: Any, roots: dict[str, Any], svc_firms: Any) -> None:
    admin = svc.key("admin", "ops")
    bad = _package(roots, "wrong-manifest")
    manifest = json.loads((bad / MANIFEST_FILE).read_text())
    manifest["files"]["model.json"]["sha256"] = "0" * 64
    (bad / MANIFEST_FILE).write_text(json.dumps(manifest))
    r = _reload(svc, admin, model_dir=str(bad))
    assert r.status_code == 409 and "SHA-256" in r.json()["detail"], r.text
    (bad / MANIFEST_FILE).unlink()
    r = _reload(svc, admin, model_dir=str(bad))
    assert r.status_code == 409 and MANIFEST_FILE in r.json()["detail"], r.text


def test_bad_snapshots_are_refused(
    svc: Any, roots: dict[str, Any], snapshot: Any, svc_firms: Any
) -> None:
    admin = svc.key("admin", "ops")
    snaps = roots["snapshots"]
    snapshot.drop(columns=["refund_rate_6m"]).to_parquet(snaps / "lacking.parquet")
    (snaps / "text.parquet").write_text("usc_code,as_of\n1,2\n")
    for name, words in [("lacking.parquet", "refund_rate_6m"), ("text.parquet", "Parquet")]:
        r = _reload(svc, admin, snapshot=str(snaps / name))
        assert r.status_code == 409 and words in r.json()["detail"], r.text
    assert svc.client.get("/v1/ready").json()["ready"] is True


def test_paths_outside_the_configured_folders_are_refused(
    svc: Any, roots: dict[str, Any], trained_model_dir: Path, svc_snapshot_path: Path
) -> None:
    admin = svc.key("admin", "ops")
    outside = Path(tempfile.mkdtemp(prefix="kx-outside-"))
    try:
        shutil.copytree(trained_model_dir, outside / "model")
        shutil.copy(svc_snapshot_path, outside / "snap.parquet")
        (roots["models"] / "link").symlink_to(outside / "model")
        for body, field in [
            ({"model_dir": str(outside / "model")}, "body.model_dir"),
            ({"model_dir": str(roots["models"] / "link")}, "body.model_dir"),
            ({"model_dir": str(roots["models"] / ".." / "..")}, "body.model_dir"),
            ({"snapshot": "/etc/passwd"}, "body.snapshot"),
            ({"snapshot": str(outside / "snap.parquet")}, "body.snapshot"),
        ]:
            r = _reload(svc, admin, **body)
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["field"] == field
        ok = _reload(svc, admin, snapshot=str(roots["snapshots"] / "good.parquet"))
        assert ok.status_code == 200, ok.text
    finally:
        shutil.rmtree(outside)


def test_startup_with_a_crashing_booster_is_not_ready_but_alive(
    db_url: str, roots: dict[str, Any], svc_snapshot_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import Settings

    bad = _package(roots, "crash-at-start")
    size = (bad / "booster.txt").stat().st_size
    os.truncate(bad / "booster.txt", min(100_000, size * 4 // 5))
    write_manifest(bad)
    settings = Settings(database_url=db_url, model_dir=bad, snapshot=svc_snapshot_path)
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/ready")
        assert r.status_code == 503 and r.json()["reload_failed"] is True
        assert client.get("/v1/health").status_code == 200
