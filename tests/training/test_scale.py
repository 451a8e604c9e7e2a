import numpy as np
import pytest

from training.scale import PD_FLOOR, MasterScale, ScoreScale, default_scales, load_config


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="pdo must be > 0"):
        ScoreScale(600, 50, 0)
    with pytest.raises(ValueError, match="base_odds must be > 0"):
        ScoreScale(600, -1, 20)
    with pytest.raises(ValueError, match="pd must be in"):
        ScoreScale().score(0.0)
    with pytest.raises(ValueError, match="increasing"):
        MasterScale(
            [
                {"grade": "A", "upper": 0.5, "supervision_class": "A"},
                {"grade": "B", "upper": 0.2, "supervision_class": "B"},
            ]
        )
    with pytest.raises(ValueError, match="last band"):
        MasterScale([{"grade": "A", "upper": 0.5, "supervision_class": "A"}])
    with pytest.raises(ValueError, match="grade must be one of"):
        default_scales()[1].supervision_class("ZZZ")


def test_pdo_scaling_matches_domain_example():
    # DOMAIN.md §5.2: base 600 at 50:1, PDO 20 → factor 28.854, offset 487.12;
    # PD 1 % → 620, 2 % → 599, 4 % → 579, 8 % → 558, 16 % → 535.
    s = ScoreScale(600, 50, 20)
    assert s.factor == pytest.approx(28.8539, rel=1e-4)
    assert s.offset == pytest.approx(487.12, abs=0.01)
    got = s.score(np.array([0.01, 0.02, 0.04, 0.08, 0.16]))
    assert np.round(got).tolist() == [620, 599, 579, 558, 535]
    assert s.score(1 / 51) == pytest.approx(600.0, rel=1e-12)
    # doubling the odds adds exactly PDO points
    assert s.score(1 / 101) - s.score(1 / 51) == pytest.approx(20.0, rel=1e-9)


def test_score_round_trips():
    s = ScoreScale(600, 50, 20)
    pds = np.geomspace(PD_FLOOR, 0.99, 200)
    np.testing.assert_allclose(s.pd(s.score(pds)), pds, rtol=1e-10)
    assert ScoreScale.from_dict(s.to_dict()) == s
    log_odds = np.log(pds / (1 - pds))
    np.testing.assert_allclose(s.score_from_log_odds(log_odds), s.score(pds), rtol=1e-12)


def test_master_scale_bands_grades_and_classes():
    cfg = load_config()
    _, ms, floor = default_scales(cfg)
    assert floor == PD_FLOOR == 0.0005
    assert 8 <= len(ms.bands) <= 12
    assert {b.supervision_class for b in ms.bands} == {"A", "B", "C", "D"}
    for b in ms.bands:
        assert ms.grade(b.lower) == b.grade
        assert ms.grade(np.nextafter(b.upper, 0)) == b.grade
    # worse PD never gives a better grade
    grades = ms.grade(np.geomspace(1e-5, 1.0, 500))
    ranks = [ms.rank(g) for g in grades]
    assert ranks == sorted(ranks)
    classes = [ms.supervision_class(g) for g in ms.grades]
    assert classes == sorted(classes)
    assert MasterScale.from_list(ms.to_list()) == ms
    with pytest.raises(ValueError, match="pd must be in"):
        ms.grade(np.nan)
