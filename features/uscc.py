"""Unified Social Credit Code (USCC, GB 32100-2015) validation and generation.

A USCC is 18 characters: registration department (1), organisation category (1),
administrative division (6 digits), the GB 11714 organisation code (8 body characters
plus its own check character) and a final GB 32100 check character over the first 17.
See DOMAIN.md section 4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: The 31-symbol alphabet of GB 32100 (no I, O, S, V, Z); a symbol's value is its index.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
#: Weights 3^(i-1) mod 31 for positions 1..17.
WEIGHTS = [pow(3, i, 31) for i in range(17)]
#: GB 11714 organisation-code weights over the first eight body characters.
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
PATTERN = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
#: Shenzhen's administrative division code and its districts (GB/T 2260).
SHENZHEN = "440300"
SHENZHEN_DISTRICTS = {
    "futian": "440304",
    "luohu": "440303",
    "nanshan": "440305",
    "baoan": "440306",
    "longgang": "440307",
    "yantian": "440308",
    "longhua": "440309",
    "pingshan": "440310",
    "guangming": "440311",
    "dapeng": "440300",
}
#: Early pilot-region codes that are legally valid but fail the standard check character
#: (DOMAIN.md section 4 caveat). They are accepted with a warning.
PILOT_EXCEPTIONS = frozenset({"91350100M0001TGQXM", "91350211M0000XUF46"})


def check_char(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters of a USCC.

    Parameters
    ----------
    first17 : str
        The first 17 characters, from the 31-symbol alphabet.

    Returns
    -------
    str
        The 18th character.
    """
    total = sum(_VALUE[c] * w for c, w in zip(first17.upper(), WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def _org_value(c: str) -> int:
    # GB 11714 values letters A=10 ... Z=35 (the full Latin alphabet, unlike GB 32100).
    return int(c) if c.isdigit() else ord(c) - ord("A") + 10


def org_check_char(body8: str) -> str:
    """Return the GB 11714 check character for the eight-character organisation-code body.

    Parameters
    ----------
    body8 : str
        Positions 9-16 of a USCC.

    Returns
    -------
    str
        The character expected at position 17 (``0``-``9`` or ``X``).
    """
    total = sum(_org_value(c) * w for c, w in zip(body8.upper(), ORG_WEIGHTS, strict=True))
    c9 = 11 - total % 11
    return {10: "X", 11: "0"}.get(c9, str(c9))


@dataclass(frozen=True)
class UsccCheck:
    """Outcome of validating one code.

    Attributes
    ----------
    valid : bool
        Whether the code is accepted.
    reason : str or None
        For a rejected code, which check failed (``length``, ``charset``, ``check_char`` or
        ``org_check_char``).
    warning : str or None
        For an accepted code that failed a check but is a known exception.
    """

    valid: bool
    reason: str | None = None
    warning: str | None = None


def validate(code: object) -> UsccCheck:
    """Validate a USCC: length, character set, GB 32100 check and GB 11714 inner check.

    Parameters
    ----------
    code : object
        The candidate code; anything that is not an 18-character string is rejected.

    Returns
    -------
    UsccCheck
        ``valid`` with the failing check in ``reason``; pilot-era exceptions pass with a
        ``warning``.
    """
    if not isinstance(code, str) or len(code) != 18:
        return UsccCheck(False, "length: expected 18 characters")
    if not PATTERN.match(code):
        return UsccCheck(
            False, "charset: expected 2 symbols, 6 digits, 10 symbols from 0-9A-HJ-NPQRTUWXY"
        )
    if code in PILOT_EXCEPTIONS:
        return UsccCheck(True, warning="pilot-era code accepted without check character")
    if code[17] != check_char(code[:17]):
        return UsccCheck(False, f"check_char: expected {check_char(code[:17])}, got {code[17]}")
    if code[16] != org_check_char(code[8:16]):
        return UsccCheck(
            False, f"org_check_char: expected {org_check_char(code[8:16])}, got {code[16]}"
        )
    return UsccCheck(True)


def generate(rng: np.random.Generator, n: int, regions: list[str] | None = None) -> list[str]:
    """Generate ``n`` distinct valid enterprise USCCs (department 9, category 1).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (the caller seeds it, so output is deterministic).
    n : int
        How many codes.
    regions : list of str, optional
        Six-digit division codes to draw from; Shenzhen's districts by default.

    Returns
    -------
    list of str
        Valid, distinct codes.
    """
    regions = regions or sorted(set(SHENZHEN_DISTRICTS.values()))
    # Organisation-code bodies use digits and the letters GB 32100 allows ("MA" prefix is
    # what post-2015 registrations carry).
    body_alpha = np.array(list("0123456789ABCDEFGHJKLMNPQRTUWXY"))
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < n:
        m = n - len(codes)
        region_idx = rng.integers(0, len(regions), m)
        bodies = body_alpha[rng.integers(0, len(body_alpha), (m, 6))]
        for r, b in zip(region_idx, bodies, strict=True):
            body8 = "MA" + "".join(b)
            first17 = "91" + regions[r] + body8 + org_check_char(body8)
            code = first17 + check_char(first17)
            if code not in seen:
                seen.add(code)
                codes.append(code)
    return codes
