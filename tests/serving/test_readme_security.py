"""The README's access table is the one serving/access.py enforces (printed from it)."""

from __future__ import annotations

from pathlib import Path

from serving.access import markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_prints_the_enforced_access_table() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- access-table -->\n", "\n<!-- /access-table -->"
    assert start in text and end in text, "README lacks the access-table markers"
    printed = text[text.index(start) + len(start) : text.index(end)]
    assert printed == markdown(), "README access table is stale: paste `python -m serving.access`"
