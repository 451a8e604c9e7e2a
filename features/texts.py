"""The one catalog of user-facing texts in Chinese and English.

Every file in ``features/config/texts/*.yaml`` maps a key to ``{zh: ..., en: ...}``; the files
are one catalog (a key may appear in only one file). Areas keep their own file (``portal.yaml``
for the enterprise portal, and e.g. ``countries.yaml``, ``rules.yaml``, ``applications.yaml``,
``insurer.yaml``) so they grow independently. Texts may hold ``{name}`` fields for
:func:`text`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

#: The languages every text has, the first is the default.
LANGS: tuple[str, ...] = ("zh", "en")
TEXTS_DIR = Path(__file__).parent / "config" / "texts"


class TextCatalogError(ValueError):
    """A text file is malformed (the message names the file and key)."""


@lru_cache(maxsize=4)
def catalog(folder: str | None = None) -> dict[str, dict[str, str]]:
    """Every text of every file of the folder, checked.

    Parameters
    ----------
    folder : str, optional
        Folder of YAML files; the shipped ``features/config/texts`` by default.

    Returns
    -------
    dict of str to dict of str to str
        ``key -> {lang: text}``.

    Raises
    ------
    TextCatalogError
        A file is not a mapping, a text lacks a language or is empty, or a key is in two files.
    """
    where = Path(folder) if folder else TEXTS_DIR
    out: dict[str, dict[str, str]] = {}
    origin: dict[str, str] = {}
    for path in sorted(where.glob("*.yaml")):
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise TextCatalogError(f"{path.name}: expected a mapping of key to {{zh, en}}")
        for key, value in data.items():
            if key in out:
                raise TextCatalogError(f"{path.name}: key {key!r} is also in {origin[key]}")
            if not isinstance(value, dict) or any(
                not isinstance(value.get(lang), str) or not value[lang].strip() for lang in LANGS
            ):
                raise TextCatalogError(f"{path.name}: key {key!r} needs non-empty {LANGS} texts")
            out[str(key)] = {lang: value[lang] for lang in LANGS}
            origin[str(key)] = path.name
    return out


def texts_for(lang: str, prefix: str = "") -> dict[str, str]:
    """Every text (or those whose key starts with ``prefix``) in one language."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}; got {lang!r}")
    return {k: v[lang] for k, v in catalog().items() if k.startswith(prefix)}


def text(key: str, lang: str, **fields: Any) -> str:
    """One text in one language, with ``{field}`` placeholders filled.

    Raises
    ------
    KeyError
        The key is not in the catalog (a missing text is a bug, never a silent fallback).
    """
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}; got {lang!r}")
    value = catalog()[key][lang]
    return value.format(**fields) if fields else value
