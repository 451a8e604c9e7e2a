"""USCC (GB 32100-2015) validation and generation."""

from __future__ import annotations

import numpy as np
import pytest

from features import uscc

#: Codes DOMAIN.md section 4 verified by hand and with python-stdnum.
VALID = ["91110000600037341L", "91230184MA1BUFLT44", "92371000MA3MXH0E3W", "91350100M000100Y43"]


@pytest.mark.parametrize("code", VALID)
def test_published_codes_pass(code: str) -> None:
    result = uscc.validate(code)
    assert result.valid and result.reason is None and result.warning is None


def test_check_character_worked_example() -> None:
    # DOMAIN.md: weighted sum 538, 538 mod 31 = 11, 31 - 11 = 20 -> "L".
    values = [uscc.ALPHABET.index(c) for c in "91110000600037341"]
    total = sum(v * w for v, w in zip(values, uscc.WEIGHTS, strict=True))
    assert total == 538
    assert uscc.check_char("91110000600037341") == "L"
    assert uscc.WEIGHTS == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


@pytest.mark.parametrize("code", VALID)
def test_every_single_substitution_is_rejected(code: str) -> None:
    # 31 is prime and no weight is 0 mod 31, so changing one symbol's value by d (0 < d < 31)
    # moves the weighted sum by d * w != 0 (mod 31): the final check catches every single
    # substitution, including those inside the organisation code (positions 9-17).
    accepted = []
    for pos in range(18):
        for sym in uscc.ALPHABET:
            if sym == code[pos]:
                continue
            bad = code[:pos] + sym + code[pos + 1 :]
            result = uscc.validate(bad)
            if result.valid:
                accepted.append(bad)
            elif pos in range(2, 8) and not sym.isdigit():
                assert str(result.reason).startswith("charset"), bad
            else:
                assert str(result.reason).startswith("check_char"), (bad, result.reason)
    assert accepted == []


def test_substitution_changes_weighted_sum() -> None:
    # The arithmetic behind the test above, checked directly for every weight and delta.
    for w in uscc.WEIGHTS:
        assert all((d * w) % 31 != 0 for d in range(1, 31))


@pytest.mark.parametrize("code", sorted(uscc.PILOT_EXCEPTIONS))
def test_pilot_era_exceptions_accepted_with_warning(code: str) -> None:
    # They fail the standard check character (DOMAIN.md section 4 caveat) ...
    assert uscc.check_char(code[:17]) != code[17]
    result = uscc.validate(code)
    # ... but are legally valid: accepted, flagged.
    assert result.valid
    assert result.warning and "pilot" in result.warning


def test_inner_organisation_code_check() -> None:
    # A code whose final character is right but whose GB 11714 character (pos. 17) is wrong.
    good = VALID[1]
    wrong_org = next(c for c in "0123456789X" if c != good[16])
    first17 = good[:16] + wrong_org
    code = first17 + uscc.check_char(first17)
    result = uscc.validate(code)
    assert not result.valid
    assert result.reason == f"org_check_char: expected {good[16]}, got {wrong_org}"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91110000600037341", "length"),
        ("91110000600037341LL", "length"),
        ("", "length"),
        (None, "length"),
        (911100006000373410, "length"),
        ("91110000600037341l", "charset"),  # lower case
        ("9111000060003734IL", "charset"),  # I is not in the 31-symbol set
        ("911100O0600037341L", "charset"),  # letter in the division code
        ("91110000600037341-", "charset"),
    ],
)
def test_wrong_length_or_charset_rejected_with_reason(code: object, reason: str) -> None:
    result = uscc.validate(code)
    assert not result.valid
    assert str(result.reason).split(":")[0] == reason


def test_check_char_failure_names_expected_and_got() -> None:
    result = uscc.validate("91110000600037341K")
    assert result.reason == "check_char: expected L, got K"


def test_generate_yields_valid_distinct_deterministic_codes() -> None:
    codes = uscc.generate(np.random.default_rng(0), 2000)
    assert len(codes) == 2000 == len(set(codes))
    assert all(uscc.validate(c).valid and uscc.validate(c).warning is None for c in codes)
    assert {c[2:8] for c in codes} <= set(uscc.SHENZHEN_DISTRICTS.values())
    assert codes == uscc.generate(np.random.default_rng(0), 2000)
    assert codes != uscc.generate(np.random.default_rng(1), 2000)


def test_generate_respects_regions() -> None:
    codes = uscc.generate(np.random.default_rng(0), 50, regions=["110000"])
    assert {c[2:8] for c in codes} == {"110000"}
    assert all(uscc.validate(c).valid for c in codes)
