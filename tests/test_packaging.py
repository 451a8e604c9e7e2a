"""Packaging: the extras split (a serving install needs no training libraries), declared
dependencies are used, lower bounds hold for the pinned versions, and the CLI's help reads well."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Import name of each distribution whose name differs from it.
IMPORT_NAME = {
    "scikit-learn": "sklearn",
    "pyyaml": "yaml",
    "pandera": "pandera",
    "psycopg": "psycopg",
    "prometheus-client": "prometheus_client",
    "pydantic-settings": "pydantic_settings",
    "fastapi-offline": "fastapi_offline",
    "dask": "dask",
}
#: Declared for a reason other than an import in the code.
NOT_IMPORTED = {
    "uvicorn": "serving/cli.py imports it inside `kuaxin serve`",
    "psycopg": "the PostgreSQL driver SQLAlchemy loads for postgresql+psycopg:// URLs",
    "pytest-xdist": "pytest -n",
    "httpx2": "starlette.testclient imports it for the tests' TestClient",
    "ipykernel": "the kernel the notebooks run on",
    "ruff": "make lint",
    "mypy": "make lint",
}
#: Training-only distributions a serving install must not need (import names).
TRAIN_ONLY = ["shap", "optuna", "matplotlib", "mlflow", "dask", "distributed", "sklearn"]


def _requirements(group: str | None) -> list[Requirement]:
    project = PYPROJECT["project"]
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(r) for r in raw]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line:
            name, version = line.strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_extras_split_serving_from_training() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"serve", "train", "distributed", "dev"} <= set(extras)
    serving = {r.name for r in _requirements(None) + _requirements("serve")}
    assert not serving & {"shap", "optuna", "matplotlib", "mlflow", "dask", "scikit-learn"}
    assert "httpx" in serving  # `kuaxin reload` calls the running service with it
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "RUN_EXTRAS := serve,train" in makefile
    assert "TEST_EXTRAS := serve,train,distributed,dev" in makefile


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    groups = [None, *PYPROJECT["project"]["optional-dependencies"]]
    for group in groups:
        for req in _requirements(group):
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert name in pins, f"{req} is not pinned in constraints.txt"
            assert req.specifier.contains(pins[name]), f"{req} excludes the pin {pins[name]}"
            lower = [s.version for s in req.specifier if s.operator == ">="]
            # The lower bound is a version the suite runs with: same major.minor as the pin.
            assert lower and pins[name].split(".")[:2] >= lower[0].split(".")[:2], req


def test_every_declared_dependency_is_used() -> None:
    sources = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in (
            "features",
            "simulator",
            "training",
            "tradefinance",
            "serving",
            "kuaxin",
            "tests",
        )
        for p in (ROOT / folder).rglob("*.py")
    )
    notebooks = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "notebooks").glob("*.ipynb")
    )
    for group in [None, *PYPROJECT["project"]["optional-dependencies"]]:
        for req in _requirements(group):
            if req.name in NOT_IMPORTED:
                continue
            module = IMPORT_NAME.get(req.name, req.name.replace("-", "_"))
            pattern = rf"^\s*(import|from) {module}\b"
            used = re.search(pattern, sources, re.M) or re.search(
                rf"(import|from) {module}\b", notebooks
            )
            assert used, f"{req.name} is declared but nothing imports {module}"


BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
        return None
sys.meta_path.insert(0, Block())
from fastapi.testclient import TestClient
from serving.app import create_app
from serving.auth import create_key
from serving.db import Database
from serving.settings import Settings
settings = Settings(database_url=sys.argv[2], model_dir=sys.argv[3], snapshot=sys.argv[4])
with TestClient(create_app(settings)) as client:
    with Database(settings.database_url).session() as s:
        key, _ = create_key(s, "admin", "ops")
    served = client.get("/v1/ready").json()
    assert served["ready"] is True, served
    assert client.get("/portal/grade").status_code == 200
    assert client.get("/docs").status_code == 200
    products = client.get("/v1/products", headers={"X-API-Key": key})
    assert products.status_code == 200, products.text
print("served", served["served"]["firms"], "firms")
"""


@pytest.mark.slow
def test_the_service_runs_without_training_libraries(
    tmp_path: Path, trained_model_dir: Path, snapshot
) -> None:
    snap = tmp_path / "snapshot.parquet"
    snapshot.to_parquet(snap)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            ",".join(TRAIN_ONLY),
            f"sqlite:///{tmp_path / 'kuaxin.db'}",
            str(trained_model_dir),
            str(snap),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "served" in proc.stdout


def test_cli_help_has_no_value_placeholder_on_flags() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kuaxin.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--help" in proc.stdout and "<bool>" not in proc.stdout
    assert "score-batch" in proc.stdout and "serve" in proc.stdout
    serve = subprocess.run(
        [sys.executable, "-m", "kuaxin.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "--access-log / --no-access-log" in serve.stdout and "<bool>" not in serve.stdout


@pytest.mark.slow
def test_the_editable_install_builds_without_warnings(tmp_path: Path) -> None:
    # What `make run` does first, on a copy of the tracked files in a venv of its own: the
    # build backend must not warn about the project's own metadata or layout.
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    src = tmp_path / "src"
    for name in filter(None, tracked):
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            (src / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            (src / os.fsdecode(name)).write_bytes(path.read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--no-deps", "-e", str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # a machine's own pip configuration (a missing extra index) is not the project's warning
    own = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "warning" in line.lower() and "is neither a file nor a directory" not in line
    ]
    assert not own, "\n".join(own)
    pth = list((venv / "lib").glob("python*/site-packages/__editable__.kuaxin-*.pth"))
    assert len(pth) == 1 and pth[0].read_text().strip() == str(src)
