"""The service's commands: keys, consents, db, demo; and the README's curl lines against a
real uvicorn server, verbatim."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kuaxin.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_keys_and_consent_commands(db_url: str, svc_firms: Any) -> None:
    from serving.db import head_revision

    created = run("keys", "create", "--role", "bank", "--org", "CLI Bank", "--database-url", db_url)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("kx_")
    listed = run("keys", "list", "--database-url", db_url)
    assert "CLI Bank" in listed.output and key not in listed.output
    bad = run("keys", "create", "--role", "banker", "--org", "x", "--database-url", db_url)
    assert bad.exit_code == 2 and "role must be one of" in bad.output
    bad = run(
        "keys",
        "create",
        "--role",
        "enterprise",
        "--org",
        "x",
        "--firm",
        "123",
        "--database-url",
        db_url,
    )
    assert bad.exit_code == 2 and "length" in bad.output
    granted = run(
        "consent",
        "grant",
        "--firm",
        svc_firms.a,
        "--to",
        "CLI Bank",
        "--scope",
        "score",
        "--purpose",
        "loan",
        "--days",
        "10",
        "--database-url",
        db_url,
    )
    assert granted.exit_code == 0, granted.output
    cid = re.search(r"consent (\d+)", granted.output).group(1)
    assert (
        "\tactive\t"
        in run("consent", "list", "--firm", svc_firms.a, "--database-url", db_url).output
    )
    assert run("consent", "revoke", cid, "--database-url", db_url).exit_code == 0
    assert (
        "\trevoked\t" in run("consent", "list", "--to", "CLI Bank", "--database-url", db_url).output
    )
    bad = run(
        "consent",
        "grant",
        "--firm",
        svc_firms.a,
        "--to",
        "CLI Bank",
        "--scope",
        "everything",
        "--purpose",
        "x",
        "--database-url",
        db_url,
    )
    assert bad.exit_code == 2 and "scopes must be" in bad.output
    key_id = listed.output.split("\t")[0]
    assert run("keys", "revoke", key_id, "--database-url", db_url).exit_code == 0
    assert "revoked" in run("keys", "list", "--all", "--database-url", db_url).output
    assert (
        run("db", "upgrade", "--database-url", db_url).output.strip()
        == f"database at revision {head_revision()}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readme_curl_lines(name: str = "service") -> list[str]:
    """The curl lines of a README section's first bash block (continuation lines joined)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"<!-- section:{name} -->") : text.index(f"<!-- /section:{name} -->")]
    block = section[section.index("```bash") + 7 :]
    block = block[: block.index("```")].replace("\\\n", " ")
    return [line for line in block.splitlines() if line.startswith("curl ")]


@pytest.mark.slow
def test_demo_and_readme_curl_lines_work_verbatim(
    tmp_path: Path,
    db_url: str,
    svc_settings_kwargs: dict[str, Any],
    svc_snapshot_path: Path,
    svc_loaded: Any,
) -> None:
    import uvicorn

    from serving.app import create_app
    from serving.demo import curl_lines
    from serving.settings import Settings

    url = db_url
    port = _free_port()
    out = tmp_path / "demo-keys.json"
    res = run(
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
    )
    assert res.exit_code == 0, res.output
    info = json.loads(out.read_text())
    assert set(info["keys"]) == {"bank", "insurer", "enterprise", "regulator", "admin"}
    # The demo firm sits below the README's recourse target, so that line has work to do.
    scale = svc_loaded.model.master_scale
    grade = svc_loaded.scores.loc[info["firm"]["usc_code"], "grade"]
    assert scale.rank(grade) > scale.rank("BBB")
    assert all(line in res.output for line in info["curl"])
    # The README shows the demo's lines.
    readme = _readme_curl_lines()
    assert readme == curl_lines()
    # A second run revokes the first run's keys.
    res2 = run(
        "demo",
        "--snapshot",
        str(svc_snapshot_path),
        "--out",
        str(tmp_path / "k2.json"),
        "--base-url",
        f"http://127.0.0.1:{port}",
        "--model-dir",
        str(svc_settings_kwargs["model_dir"]),
        "--database-url",
        url,
    )
    assert res2.exit_code == 0, res2.output

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(
                Settings(
                    database_url=url,
                    # Admins reload from configured folders: the snapshot's and this test's.
                    snapshot_roots=[svc_snapshot_path.parent, tmp_path],
                    **svc_settings_kwargs,
                )
            ),
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
        env = {**os.environ}
        env_file = out.with_suffix(".env")
        outputs = []
        for line in readme:
            proc = subprocess.run(
                ["bash", "-c", f"source {env_file} && {line}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0, (line, proc.stderr)
            outputs.append(proc.stdout)
        # The first run's keys were revoked by the second run: they answer 401.
        for text, line in zip(outputs, readme, strict=True):
            if "_KEY" not in line:
                continue
            if "-w '%{http_code}" in line:
                assert text.strip() == "401"
            else:
                assert '"status":401' in text.replace(" ", ""), (line, text[:200])
        # With the current keys every line works.
        env_file2 = tmp_path / "k2.env"
        for line in readme:
            proc = subprocess.run(
                ["bash", "-c", f"source {env_file2} && {line}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0, (line, proc.stderr)
            if "-w '%{http_code}" in line:
                assert proc.stdout.strip() == "403"
                continue
            body = json.loads(proc.stdout)
            assert not (
                isinstance(body, dict) and "status" in body and body.get("status", 200) >= 400
            ), (line, body)
        # The matching section's lines (bank, insurer, firm, regulator) work verbatim too.
        matching = _readme_curl_lines("matching")
        assert len(matching) >= 7
        answers = []
        for line in matching:
            proc = subprocess.run(
                ["bash", "-c", f"source {env_file2} && {line}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, (line, proc.stderr)
            body = json.loads(proc.stdout)
            assert not (isinstance(body, dict) and body.get("status", 200) >= 400), (line, body)
            answers.append(body)
        quotes = [a["quote"] for a in answers if isinstance(a, dict) and "quote" in a]
        assert [q["buyer_country"] for q in quotes] == ["DEU", "RUS"]
        assert quotes[1]["decision"] == "declined"
        # The what-if example changes a figure the demo firm has.
        whatif = next(
            json.loads(
                subprocess.run(
                    ["bash", "-c", f"source {env_file2} && {line}"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
            )
            for line in readme
            if "/what-if" in line
        )
        assert whatif["changes"][0]["before"] is not None, whatif
        verify = subprocess.run(
            [
                "bash",
                "-c",
                f'source {env_file2} && curl -s -H "X-API-Key: $KX_ADMIN_KEY" $KX_URL/v1/admin/audit/verify',
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(verify.stdout)["ok"] is True
        # `kuaxin reload` asks the running server to reload; a broken snapshot is refused.
        keys2 = json.loads((tmp_path / "k2.json").read_text())["keys"]
        admin = keys2["admin"]["key"]
        base = f"http://127.0.0.1:{port}"
        ok = run("reload", "--url", base, "--key", admin, "--snapshot", str(svc_snapshot_path))
        assert ok.exit_code == 0 and "serving model" in ok.output, ok.output
        broken = tmp_path / "broken.parquet"
        broken.write_text("not parquet")
        bad = run("reload", "--url", base, "--key", admin, "--snapshot", str(broken))
        assert bad.exit_code == 2 and "refused (409)" in bad.output
        denied = run("reload", "--url", base, "--key", keys2["bank"]["key"])
        assert denied.exit_code == 2 and "403" in denied.output
    finally:
        server.should_exit = True
        thread.join(30)
