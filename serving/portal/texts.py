"""Interface texts of the portal: a view of the one text catalog (:mod:`features.texts`)."""

from __future__ import annotations

from features.texts import LANGS, catalog, texts_for

#: Every text, ``key -> {zh, en}`` (kept for callers that index the whole table).
TEXTS = catalog()

__all__ = ["LANGS", "TEXTS", "texts_for"]
