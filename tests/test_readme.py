"""The README's examples hold: codes validate, figures are recomputed, commands run.

(The curl lines of the service and matching sections run verbatim against a real server in
``tests/serving/test_service_cli.py``.)
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.uscc import validate
from kuaxin.cli import app
from serving.schemas import USCC_EXAMPLE
from tradefinance.pricing import premium_rate
from training.registry import MODEL_NAME

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(name: str) -> str:
    return README[
        README.index(f"<!-- section:{name} -->") : README.index(f"<!-- /section:{name} -->")
    ]


def test_every_uscc_in_the_readme_and_the_api_examples_is_valid() -> None:
    codes = set(re.findall(r"(?<![0-9A-Z])9[0-9A-Z]{17}(?![0-9A-Z])", README)) | {USCC_EXAMPLE}
    codes = {c for c in codes if c[2:4] == "44"}  # Guangdong codes, not table examples
    assert codes
    assert all(validate(c).valid for c in codes), [(c, validate(c).reason) for c in codes]


def test_batch_scoring_examples_point_at_the_exported_package() -> None:
    lines = [x for x in README.splitlines() if "score-batch" in x and "--model-dir" in x]
    assert lines
    for line in lines:
        model_dir = line.split("--model-dir")[1].split()[0]
        if model_dir != "DIR":
            assert model_dir == f"models/{MODEL_NAME}", line


def _rate(**kw: object) -> str:
    r = premium_rate(terms="O/A", cover=0.9, exporter_grade="BB", **kw)  # type: ignore[arg-type]
    return f"{r.rate * 100:.2f}"


def test_the_premium_examples_are_what_the_formula_gives() -> None:
    text = " ".join(_section("matching").split())
    us_b = _rate(country_category="HI", buyer_grade="B", credit_days=60)
    us_unknown = _rate(country_category="HI", buyer_grade="unknown", credit_days=60)
    assert f"US buyer of grade B, 60 days O/A, 90 % cover, exporter BB → {us_b} %" in text
    assert f"({us_unknown} % for an unrated buyer)" in text
    vnm = [_rate(country_category="4", buyer_grade=g, credit_days=360) for g in "AD"]
    assert f"{vnm[0]}-{vnm[1]} % for buyer grades A-D" in text
    nga = [_rate(country_category="6", buyer_grade=g, credit_days=360) for g in "AC"]
    assert f"Nigeria (cat. 6) {nga[0]}-{nga[1]} % for A-C" in text


def _command_lines() -> list[str]:
    service = _section("service")
    block = service[service.index("**Commands.**") :]
    block = block[block.index("```bash") + 7 :]
    block = block[: block.index("```")]
    out = []
    for line in block.splitlines():
        for part in line.split("#")[0].split(";"):
            if part.strip().startswith("kuaxin "):
                out.append(part.strip())
    return out


@pytest.mark.slow
def test_the_commands_block_runs(tmp_path: Path) -> None:
    """Every command of the service's Commands block that works on the database runs as shown
    (placeholders USCC and ID filled in); reload and serve need a running service and are run
    by the CLI test."""
    db = f"sqlite:///{tmp_path / 'kuaxin.db'}"
    firm = next(c for c in re.findall(r"9[0-9A-Z]{17}", _section("service")) if validate(c).valid)
    ran = 0
    ids = {"key": None, "consent": None}
    for line in _command_lines():
        args = shlex.split(line)[1:]
        if args[0] in ("reload", "serve"):
            continue
        args = [firm if a == "USCC" else a for a in args]
        if "ID" in args:
            kind = "consent" if args[0] == "consent" else "key"
            args = [str(ids[kind]) if a == "ID" else a for a in args]
        result = CliRunner().invoke(app, [*args, "--database-url", db])
        assert result.exit_code == 0, (line, result.output)
        ran += 1
        found = re.search(r"(?:^id |consent )(\d+)", result.output, re.M)
        if args[:2] == ["keys", "create"] and found:
            ids["key"] = int(found.group(1))
        if args[:2] == ["consent", "grant"] and found:
            ids["consent"] = int(found.group(1))
    assert ran >= 8
