"""``kuaxin demo`` seeds applications in several states so every page has content."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import headers

ORGS = {
    "bank": "Demo Bank",
    "insurer": "Demo Insurer",
    "enterprise": "Demo Enterprise",
    "regulator": "Demo Commerce Bureau",
    "admin": "Demo Operations",
}


def test_demo_seeds_applications_in_several_states(
    tmp_path: Path, make_service: Any, svc_loaded: Any, svc_firms: Any
) -> None:
    from serving.db import Database, upgrade
    from serving.demo import DEMO_APPLICATIONS, seed_applications
    from serving.market import load_market

    url = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    upgrade(url)
    db = Database(url)
    seeded = seed_applications(db, svc_loaded, load_market(), ORGS, svc_firms.a)
    assert len(seeded) == len(DEMO_APPLICATIONS)
    assert {a["status"] for a in seeded} == {
        "submitted",
        "under_review",
        "info_requested",
        "approved",
        "declined",
        "disbursed",
    }
    assert seed_applications(db, svc_loaded, load_market(), ORGS, svc_firms.a) == []  # idempotent
    db.dispose()
    svc = make_service(url)
    c = svc.client
    firm = c.get(
        f"/v1/firms/{svc_firms.a}/applications",
        headers=headers(svc.key("enterprise", "Demo Enterprise", svc_firms.a)),
    ).json()
    assert len(firm) == 3
    bank = headers(svc.key("bank", "Demo Bank"))
    inbox = c.get("/v1/provider/applications", headers=bank).json()
    assert len(inbox) == len(DEMO_APPLICATIONS) - 1
    declined = next(a for a in inbox if a["status"] == "declined")
    view = c.get(f"/v1/provider/applications/{declined['id']}", headers=bank).json()
    assert view["decision"]["notice"]["zh"] and view["consent_state"] == "active"
    mine = c.get("/v1/provider/products", headers=bank).json()["products"]
    assert {p["id"] for p in mine} == {"demo_bank_trade_loan", "demo_bank_order_financing"}
    insurer = c.get(
        "/v1/provider/applications", headers=headers(svc.key("insurer", "Demo Insurer"))
    ).json()
    assert [a["product_id"] for a in insurer] == ["demo_insurer_easy_cover"]
    stats = c.get(
        "/v1/regulator/applications", headers=headers(svc.key("regulator", "Demo Commerce Bureau"))
    ).json()
    assert stats["totals"]["applications"] == len(DEMO_APPLICATIONS)


README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_loop() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[
        text.index("<!-- section:applications -->") : text.index("<!-- /section:applications -->")
    ]
    block = section[section.index("```bash") + 7 :]
    return block[: block.index("```")]


@pytest.mark.slow
def test_the_readme_loop_works_verbatim_after_kuaxin_demo(
    tmp_path: Path, svc_settings_kwargs: dict[str, Any], svc_snapshot_path: Path
) -> None:
    import socket
    import threading
    import time

    import uvicorn
    from typer.testing import CliRunner

    from kuaxin.cli import app as cli
    from serving.app import create_app
    from serving.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    out = tmp_path / "data" / "demo-keys.json"
    res = CliRunner().invoke(
        cli,
        [
            "demo",
            "--snapshot",
            str(svc_snapshot_path),
            "--out",
            str(out),
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--model-dir",
            str(svc_settings_kwargs["model_dir"]),
            "--database-url",
            url,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "seeded 7 applications" in res.output
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(database_url=url, **svc_settings_kwargs)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 120
        while not server.started and time.time() < deadline:
            time.sleep(0.1)
        assert server.started
        script = _readme_loop().replace(
            "source data/demo-keys.env", f"source {out.with_suffix('.env')}"
        )
        proc = subprocess.run(
            ["bash", "-e", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        bodies, text, decoder = [], proc.stdout.strip(), json.JSONDecoder()
        while text:  # curl prints the bodies back to back
            body, end = decoder.raw_decode(text)
            bodies.append(body)
            text = text[end:].strip()
        assert len(bodies) == 8
        problems = [
            b
            for b in bodies
            if isinstance(b, dict) and isinstance(b.get("status"), int) and b["status"] >= 400
        ]
        assert not problems, problems
        stats = bodies[-2]
        assert stats["totals"]["applications"] == 8 and stats["by_status"]["disbursed"] == 2
        upload = bodies[-1]
        assert (upload["read"], upload["accepted"], upload["quarantined"]) == (1, 1, 0)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
