"""What counts as a leak of English into a Chinese page or answer.

A Chinese text may contain Latin letters only as:

- **codes**: an 18-character USCC; an ISO 3166 alpha-3 country code of the OECD table; a grade
  of the master scale, a tax grade (A/B/M/C/D), a supervision or FX class (A-D), a buyer grade;
  payment terms (L/C, D/P, D/A, O/A); a product id inside parentheses, e.g. ``（pcb_policy_financing）``;
- **units and established acronyms**: USD, CNY, RMB, kWh, m (of m³), OECD, B2B, B2C, AEO, API,
  SME, Y / Y+1 (a tax year in a formula);
- **proper names** the caller passes: institutions (API key orgs), the firm's own words (consent
  purposes), the model version, marketplace brands written in Latin letters (Temu, SHEIN,
  Shopee, TikTok, eBay), and "English" (the language switch).

Anything else (an English word, a field name such as ``store_age_months``, a category code such
as ``baoan``, a role such as ``enterprise``, a route such as ``POST /v1/firms/{usc_code}/quote``,
a country name in English, the category code ``HI``) is a leak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GRADES = {"AAA", "AA", "A", "BBB+", "BBB", "BB", "B", "CCC", "CC", "C", "D", "M"}
TERMS = {"L/C", "D/P", "D/A", "O/A"}
ACRONYMS = {"USD", "CNY", "RMB", "kWh", "m", "OECD", "B2B", "B2C", "AEO", "API", "SME", "Y", "Y+1"}
BRANDS = {"Temu", "SHEIN", "Shopee", "TikTok", "eBay", "English"}
USCC = re.compile(r"(?<![0-9A-Za-z])[0-9A-HJ-NPQRTUWXY]{18}(?![0-9A-Za-z])")
TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_+'’./{}-]*")
PRODUCT_ID = re.compile(r"[（(]\s*[a-z][a-z0-9_]*\s*[)）]")


def leaks(text: str, iso3: Iterable[str] = (), names: Iterable[str] = ()) -> list[str]:
    """Latin-script tokens of ``text`` that are neither codes, units nor the given names."""
    for name in sorted(names, key=len, reverse=True):
        if name:
            text = text.replace(name, " ")
    text = PRODUCT_ID.sub(" ", USCC.sub(" ", text))
    countries = set(iso3)
    out = []
    for token in TOKEN.findall(text):
        token = token.rstrip(".-/'’")
        if not token:
            continue
        parts = token.split("/")
        if (
            token in GRADES
            or token in TERMS
            or token in ACRONYMS
            or token in BRANDS
            or token in countries
            or (len(parts) > 1 and all(p in GRADES for p in parts))
        ):
            continue
        out.append(token)
    return out
