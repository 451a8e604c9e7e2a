"""Labels on small hand-built firm histories, and the shape of the shared training set."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pit_world import conform
from typer.testing import CliRunner

from features import io, uscc
from features.dataset import as_of_dates, build_dataset, default_events
from features.snapshot import ID_COLUMNS, default_catalog
from kuaxin.cli import app

CODES = uscc.generate(np.random.default_rng(42), 8)
F = dict(
    zip(
        ["loan_in", "court_edge", "court_after", "dereg", "judgment", "dpd89", "young", "both"],
        CODES,
        strict=True,
    )
)
AS_OF = [date(2020, 1, 1), date(2020, 4, 1), date(2020, 7, 1), date(2020, 10, 1), date(2021, 7, 1)]


def _firms() -> pd.DataFrame:
    rows = []
    for key, code in F.items():
        rows.append(
            {
                "usc_code": code,
                "name": f"深圳市{key}有限公司",
                "district": "nanshan",
                "industry": "toys",
                "registration_date": pd.Timestamp("2020-05-01" if key == "young" else "2016-01-01"),
                "registered_capital_cny": 1e6,
                "customs_modes": "9610",
                "main_marketplace": "amazon",
                "own_brand": False,
                "independent_site": False,
                "high_tech": False,
                "provincial_leader": False,
                "deregistration_date": pd.Timestamp("2020-09-30") if key == "dereg" else pd.NaT,
            }
        )
    return conform("firms", pd.DataFrame(rows))


def _repayments() -> pd.DataFrame:
    def row(firm: str, period: str, dpd: int) -> dict:
        return {
            "loan_id": f"L-{firm}",
            "usc_code": F[firm],
            "period": period,
            "due_cny": 1e4,
            "paid_cny": 0.0 if dpd else 1e4,
            "days_past_due": dpd,
            "outstanding_cny": 1e5,
        }

    return conform(
        "loan_repayments",
        pd.DataFrame(
            [
                row("loan_in", "2021-03", 30),
                row("loan_in", "2021-05", 90),  # default on 2021-05-31
                row("loan_in", "2021-06", 120),
                row("dpd89", "2021-01", 89),  # never reaches 90: no default
                row("both", "2021-02", 95),  # 2021-02-28, later than its court default
            ]
        ),
    )


def _courts() -> pd.DataFrame:
    def row(firm: str, kind: str, opened: str) -> dict:
        return {
            "case_id": f"C-{firm}-{kind}",
            "usc_code": F[firm],
            "record_type": kind,
            "amount_cny": 1e5,
            "open_date": pd.Timestamp(opened),
            "close_date": pd.NaT,
        }

    return conform(
        "court_records",
        pd.DataFrame(
            [
                row(
                    "court_edge", "enforcement", "2021-07-01"
                ),  # exactly T + 12 months of 2020-07-01
                row("court_after", "dishonest_debtor", "2021-07-02"),  # one day after it
                row("judgment", "judgment", "2020-08-01"),  # a judgment is not a default
                row("both", "dishonest_debtor", "2020-12-15"),
            ]
        ),
    )


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return {"firms": _firms(), "loan_repayments": _repayments(), "court_records": _courts()}


@pytest.fixture(scope="module")
def labelled(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [build_dataset(tables, d, d, every="quarter") for d in AS_OF]
    return pd.concat(frames, ignore_index=True)


def _label(labelled: pd.DataFrame, firm: str, as_of: date) -> int | None:
    hit = labelled[(labelled["usc_code"] == F[firm]) & (labelled["as_of"] == pd.Timestamp(as_of))]
    assert len(hit) <= 1
    return None if hit.empty else int(hit["label"].iloc[0])


def test_default_events_take_the_earliest_event(tables: dict[str, pd.DataFrame]) -> None:
    events = default_events(tables).set_index("usc_code")["default_date"]
    assert events[F["loan_in"]] == pd.Timestamp("2021-05-31")
    assert events[F["court_edge"]] == pd.Timestamp("2021-07-01")
    assert events[F["both"]] == pd.Timestamp("2020-12-15")
    assert F["judgment"] not in events and F["dpd89"] not in events
    assert events.dtype == "datetime64[ns]"


@pytest.mark.parametrize(
    ("firm", "as_of", "expected"),
    [
        ("loan_in", date(2020, 4, 1), 0),  # default 2021-05-31 is after 2021-04-01
        ("loan_in", date(2020, 7, 1), 1),  # inside (2020-07-01, 2021-07-01]
        ("loan_in", date(2021, 7, 1), None),  # already in default: no row
        ("court_edge", date(2020, 7, 1), 1),  # default exactly at T + 12 months counts
        ("court_edge", date(2020, 4, 1), 0),
        ("court_edge", date(2021, 7, 1), None),  # default on the as-of date: already in default
        ("court_after", date(2020, 7, 1), 0),  # one day outside the window
        ("court_after", date(2020, 10, 1), 1),
        ("dereg", date(2020, 7, 1), 0),
        ("dereg", date(2020, 10, 1), None),  # deregistered before T
        ("judgment", date(2020, 7, 1), 0),
        ("dpd89", date(2020, 7, 1), 0),
        ("young", date(2020, 4, 1), None),  # not yet registered
        ("young", date(2020, 7, 1), 0),
        ("both", date(2020, 1, 1), 1),
        ("both", date(2021, 7, 1), None),
    ],
)
def test_labels_on_hand_built_histories(
    labelled: pd.DataFrame, firm: str, as_of: date, expected: int | None
) -> None:
    assert _label(labelled, firm, as_of) == expected


def test_default_date_is_kept_only_for_positive_labels(labelled: pd.DataFrame) -> None:
    pos = labelled[labelled["label"] == 1]
    assert pos["default_date"].notna().all()
    assert labelled.loc[labelled["label"] == 0, "default_date"].isna().all()
    row = pos[(pos["usc_code"] == F["loan_in"])].iloc[0]
    assert row["default_date"] == pd.Timestamp("2021-05-31")


def test_columns_and_types(labelled: pd.DataFrame) -> None:
    cat = default_catalog()
    assert list(labelled.columns) == [
        "usc_code",
        "as_of",
        "label",
        "default_date",
        "name",
        *cat.names,
    ]
    assert labelled["label"].dtype == np.int64
    assert labelled["as_of"].dtype == "datetime64[ns]"
    assert labelled["default_date"].dtype == "datetime64[ns]"
    for name in cat.categorical:
        assert list(labelled[name].cat.categories) == cat[name].categories


def test_as_of_dates() -> None:
    assert as_of_dates(date(2020, 1, 31), date(2020, 7, 31), "quarter") == [
        date(2020, 1, 31),
        date(2020, 4, 30),
        date(2020, 7, 31),
    ]
    assert len(as_of_dates(date(2020, 1, 1), date(2020, 12, 1), "month")) == 12
    with pytest.raises(ValueError, match="every"):
        as_of_dates(date(2020, 1, 1), date(2020, 2, 1), "week")
    with pytest.raises(ValueError, match="end"):
        as_of_dates(date(2020, 2, 1), date(2020, 1, 1))


def test_cli_writes_the_dataset(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    for name, df in tables.items():
        io.write_table(df, clean, name)
    out = tmp_path / "train.parquet"
    result = CliRunner().invoke(
        app,
        ["dataset", str(clean), "--from", "2020-01-01", "--to", "2020-12-31", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    back = pd.read_parquet(out)
    assert sorted(back["as_of"].unique()) == [
        pd.Timestamp(d) for d in ("2020-01-01", "2020-04-01", "2020-07-01", "2020-10-01")
    ]
    # loan_in (07, 10), court_edge (07, 10), court_after (10), both (01, 04, 07, 10)
    assert back["label"].sum() == 9
    bad = CliRunner().invoke(
        app, ["dataset", str(clean), "--from", "2020-13-01", "--to", "2020-12-31"]
    )
    assert bad.exit_code != 0 and "--from" in bad.output


def test_shared_training_set(
    train_dataset: pd.DataFrame, clean_tables: dict[str, pd.DataFrame]
) -> None:
    assert set(train_dataset["label"].unique()) == {0, 1}
    assert list(train_dataset.columns[:5]) == ["usc_code", "as_of", "label", "default_date", "name"]
    assert not train_dataset.duplicated(["usc_code", "as_of"]).any()
    # no row for a firm already in default, and every positive's default is inside its window
    events = default_events(clean_tables).set_index("usc_code")["default_date"]
    dd = train_dataset["usc_code"].map(events)
    assert not (dd <= train_dataset["as_of"]).any()
    horizon = train_dataset["as_of"] + pd.DateOffset(months=12)
    inside = (dd > train_dataset["as_of"]) & (dd <= horizon)
    assert (inside == (train_dataset["label"] == 1)).all()
    assert train_dataset["as_of"].dt.month.isin([1, 4, 7, 10]).all()
    assert set(ID_COLUMNS) <= set(train_dataset.columns)
