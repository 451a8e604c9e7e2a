"""Tests of the platform simulator: arguments, determinism, table spec, realism, oracle, faults."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.feature_availability import SnapshotConfig
from features.io import part_files, read_table
from features.tables import LATE_CAPABLE, TABLES
from features.uscc import SHENZHEN_DISTRICTS, validate
from simulator.simulate import ORACLE_TABLES, WORLD_TABLES, SimulationError, load_config, simulate

PARQUET_DTYPES = {
    "str": "str",
    "category": "str",
    "date": "datetime64[ns]",
    "int": "int64",
    "float": "float64",
    "bool": "bool",
}


def _run(root: Path, **kw: object) -> tuple[Path, Path]:
    args = {"n_firms": 150, "seed": 3, "start": "2020-01", "end": "2021-06", "progress": False}
    args.update(kw)
    raw, oracle = root / "raw", root / "oracle"
    simulate(out_dir=raw, oracle_dir=oracle, **args)  # type: ignore[arg-type]
    return raw, oracle


def _hashes(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for f in sorted(root.rglob("*.parquet")):
            out[f"{root.name}/{f.relative_to(root)}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _clean(raw: Path, oracle: Path, name: str) -> pd.DataFrame:
    """A table without the injected faulty rows (what a perfect ingestion keeps)."""
    faults = read_table(oracle, "faults")
    parts = []
    for f in part_files(raw, name):
        df = pd.read_parquet(f)
        bad = faults.loc[faults["file"] == f"{name}/{f.name}", "_row"].to_numpy()
        parts.append(df[~np.isin(np.arange(len(df)), bad)])
    return pd.concat(parts, ignore_index=True)


def _derived_defaults(raw: Path, oracle: Path) -> pd.Series:
    """Default date per firm as the label builder derives it from clean data."""
    rep = _clean(raw, oracle, "loan_repayments")
    late = rep[rep["days_past_due"] >= 90]
    dpd = (
        (pd.to_datetime(late["period"] + "-01") + pd.offsets.MonthEnd(0))
        .groupby(late["usc_code"])
        .min()
    )
    court = _clean(raw, oracle, "court_records")
    court = court[court["record_type"].isin(["enforcement", "dishonest_debtor"])]
    first = court.groupby("usc_code")["open_date"].min()
    return pd.concat([dpd, first], axis=1).min(axis=1)


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"start": "2021-05", "end": "2021-01"}, "end"),
        ({"start": "2021/01"}, "start"),
        ({"end": "2021-13"}, "end"),
        ({"n_firms": 0}, "n_firms"),
        ({"seed": -1}, "seed"),
        ({"fault_rate": 0.9}, "fault_rate"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments_raise_simulation_error(tmp_path: Path, kw: dict, word: str) -> None:
    with pytest.raises(SimulationError, match=word):
        _run(tmp_path, **kw)
    assert not (tmp_path / "raw").exists()


# ---------------------------------------------------------------- determinism
def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    kw = {"fault_rate": 0.02, "chunk_size": 80}
    a = _hashes(*_run(tmp_path / "a", **kw))
    b = _hashes(*_run(tmp_path / "b", **kw))
    # Two chunks of every firm table and of true_pd, defaults; one part of the world tables
    # and oracles; faults: the world part plus one per chunk.
    chunked = len(TABLES) - len(WORLD_TABLES) + 2
    assert len(a) == 2 * chunked + len(WORLD_TABLES) + 3 + (len(ORACLE_TABLES) - 3)
    assert a == b
    c = _hashes(*_run(tmp_path / "c", seed=4, **kw))
    assert c.keys() == a.keys()
    assert all(c[k] != a[k] for k in a if "/firms/" in k or "true_pd" in k)


def test_summary_counts_match_files(tmp_path: Path) -> None:
    raw, oracle = tmp_path / "raw", tmp_path / "oracle"
    s = simulate(150, 3, "2020-01", "2021-06", raw, oracle, fault_rate=0.01, progress=False)
    assert {"message", "rows", "n_defaults", "default_rate_yearly"} <= s.keys()
    for name in TABLES:
        assert s["rows"][name] == len(read_table(raw, name))
    assert s["n_defaults"] == len(read_table(oracle, "defaults"))
    assert s["oracle_rows"] == len(read_table(oracle, "true_pd"))


# ---------------------------------------------------------------- table spec
@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_has_the_spec_columns_and_types(sim_dirs: tuple[Path, Path], name: str) -> None:
    raw, _ = sim_dirs
    files = part_files(raw, name)
    assert files, name
    df = pd.read_parquet(files[0])
    spec = TABLES[name]
    assert list(df.columns) == spec.column_names
    for col in spec.columns:
        assert str(df[col.name].dtype) == PARQUET_DTYPES[col.dtype], (name, col.name)
    assert len(df) > 0


def test_oracle_tables_have_their_columns(sim_dirs: tuple[Path, Path]) -> None:
    _, oracle = sim_dirs
    tp = read_table(oracle, "true_pd")
    assert list(tp.columns) == ["usc_code", "as_of", "pd_12m"]
    assert str(tp["as_of"].dtype) == "datetime64[ns]"
    assert (tp["as_of"].dt.day == 1).all()
    assert tp["pd_12m"].between(0, 1).all()
    d = read_table(oracle, "defaults")
    assert list(d.columns) == ["usc_code", "default_date", "kind"]
    assert d["usc_code"].is_unique
    assert set(d["kind"]) <= {"credit", *load_config()["sudden"]["causes"]}
    # Delinquency can cure, so no PD is certain; a firm 60 days past due at the start of a
    # month defaults in it with the 60->90 roll rate at least.
    assert (tp["pd_12m"] < 1.0).all()
    rep = _clean(*sim_dirs, "loan_repayments")
    at60 = rep[rep["days_past_due"].between(60, 89)]
    nxt = (pd.to_datetime(at60["period"] + "-01") + pd.DateOffset(months=1)).rename("as_of")
    pd60 = pd.DataFrame({"usc_code": at60["usc_code"], "as_of": nxt}).merge(tp)
    assert len(pd60) > 0
    assert (pd60["pd_12m"] >= load_config()["delinquency"]["roll_60_90"] - 1e-6).all()
    # No oracle row after a firm's default.
    after = tp["as_of"] >= tp["usc_code"].map(d.set_index("usc_code")["default_date"])
    assert not after.any()


def _row_problems(df: pd.DataFrame, name: str, firms: set[str]) -> pd.Series:
    """Per row, whether it breaks the table spec (types aside), a key, the firm reference or
    arrived after its publication lag."""
    bad = pd.Series(False, index=df.index)
    for col in TABLES[name].columns:
        s = df[col.name]
        if not col.nullable:
            bad |= s.isna()
        if col.ge is not None:
            bad |= s < col.ge
        if col.le is not None:
            bad |= s > col.le
        if col.allowed is not None:
            bad |= s.notna() & ~s.isin(col.allowed)
        if col.regex is not None:
            bad |= s.notna() & ~s.astype(str).str.match(col.regex)
    if "usc_code" in df:
        valid = {c: validate(c).valid for c in df["usc_code"].unique()}
        bad |= ~df["usc_code"].map(valid).astype(bool)
        if name != "firms":
            bad |= ~df["usc_code"].isin(firms)
    if name in LATE_CAPABLE:
        due = pd.to_datetime(df["period"], format="%Y-%m", errors="coerce") + pd.offsets.MonthEnd(0)
        lag = pd.Timedelta(days=SnapshotConfig.load().lag(name))
        bad |= (df["received_date"] > due + lag).fillna(False)
    bad |= df.duplicated(keep="first")
    bad |= df.duplicated(subset=list(TABLES[name].key), keep=False) & ~bad
    return bad


def test_clean_rows_are_valid_and_faulty_rows_are_exactly_the_ground_truth(
    sim_dirs: tuple[Path, Path],
) -> None:
    raw, oracle = sim_dirs
    faults = read_table(oracle, "faults")
    firms = set(_clean(raw, oracle, "firms")["usc_code"])
    for name in TABLES:
        for f in part_files(raw, name):
            df = pd.read_parquet(f)
            truth = faults[faults["file"] == f"{name}/{f.name}"]
            flagged = np.isin(np.arange(len(df)), truth["_row"].to_numpy())
            problems = _row_problems(df, name, firms).to_numpy()
            # A fault copy that only breaks a key (e.g. a negative amount) is flagged through
            # the key check on both rows; compare on rows outside the ground truth.
            assert not problems[~flagged & ~_key_twin(df, name, flagged)].any(), name
            assert _row_problems(df[~flagged], name, firms).sum() == 0, name
            assert problems[flagged].all(), name


def _key_twin(df: pd.DataFrame, name: str, flagged: np.ndarray) -> np.ndarray:
    key = list(TABLES[name].key)
    faulty_keys = df.loc[flagged, key].drop_duplicates()
    return df[key].merge(faulty_keys, how="left", indicator=True)["_merge"].eq("both").to_numpy()


def test_each_fault_is_what_the_ground_truth_says(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    faults = read_table(oracle, "faults")
    firms = set(read_table(raw, "firms")["usc_code"])
    for (name, file), group in faults.groupby(["table", "file"]):
        df = pd.read_parquet(raw / file)
        spec = {c.name: c for c in TABLES[name].columns}
        for r in group.itertuples():
            row = df.iloc[r._3]
            if r.fault == "duplicate":
                assert row.equals(df.iloc[r._3 - 1])
                continue
            if r.fault == "late_arrival":
                end = pd.Timestamp(row["period"] + "-01") + pd.offsets.MonthEnd(0)
                lag = SnapshotConfig.load().lag(name)
                assert row["received_date"] > end + pd.Timedelta(days=lag)
                assert name in LATE_CAPABLE
                continue
            assert pd.isna(row.get("received_date"))
            assert not row.equals(df.iloc[r._3 - 1])
            if r.fault == "uscc_check":
                reason = validate(row["usc_code"]).reason
                assert reason is not None and reason.startswith(("check_char", "org_check"))
            elif r.fault == "uscc_length":
                assert len(row["usc_code"]) != 18
            elif r.fault == "unknown_firm":
                assert validate(row["usc_code"]).valid and row["usc_code"] not in firms
            elif r.fault == "negative_amount":
                assert row[r.column] < 0
            elif r.fault == "bad_period":
                assert not re.match(str(spec["period"].regex), row["period"])
            elif r.fault == "out_of_range":
                c = spec[r.column]
                v = row[r.column]
                assert (c.allowed and v not in c.allowed) or (c.le is not None and v > c.le)
            else:
                pytest.fail(f"unknown fault kind {r.fault}")


def test_fault_kinds_and_rate(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    faults = read_table(oracle, "faults")
    mix = load_config()["faults"]["mix"]
    assert set(faults["fault"]) == set(mix)
    total = sum(len(read_table(raw, name)) for name in TABLES)
    # A late row is the fault itself, not an extra copy.
    extra = int((faults["fault"] != "late_arrival").sum())
    rate = len(faults) / (total - extra)
    assert 0.008 < rate < 0.012
    share = faults["fault"].value_counts(normalize=True)
    for kind, w in mix.items():
        assert share[kind] == pytest.approx(w / sum(mix.values()), abs=0.04), kind
    for name in ["customs_declarations", "fx_receipts", "social_insurance"]:
        n = (faults["table"] == name).sum()
        assert n / len(read_table(raw, name)) == pytest.approx(0.01, rel=0.25)


# ---------------------------------------------------------------- realism
def test_firms_have_valid_shenzhen_codes_and_chinese_names(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    firms = _clean(raw, oracle, "firms")
    assert firms["usc_code"].is_unique
    assert firms["usc_code"].map(lambda c: validate(c).valid).all()
    region = firms["usc_code"].str[2:8]
    assert (region == firms["district"].map(SHENZHEN_DISTRICTS)).all()
    assert firms["name"].str.match(r"^深圳市.+有限公司$").all()
    assert firms["name"].nunique() > 0.8 * len(firms)


def test_missing_sources_occur(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    firms = set(_clean(raw, oracle, "firms")["usc_code"])
    for name, lo, hi in [
        ("utilities", 0.6, 0.95),
        ("marketplace_stores", 0.3, 0.8),
        ("loans", 0.3, 0.8),
        ("tax", 0.6, 0.99),
        ("overseas_warehouses", 0.15, 0.7),
        ("insurance_policies", 0.05, 0.5),
    ]:
        share = len(set(_clean(raw, oracle, name)["usc_code"]) & firms) / len(firms)
        assert lo < share < hi, (name, share)
    f = _clean(raw, oracle, "firms")
    pure_b2b = ~f["customs_modes"].str.contains("9610|1210")
    assert f.loc[pure_b2b, "main_marketplace"].isna().all()
    assert f.loc[~pure_b2b, "main_marketplace"].notna().all()


def test_yearly_default_rate_is_plausible(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    firms = _clean(raw, oracle, "firms")
    d = read_table(oracle, "defaults").set_index("usc_code")["default_date"]
    firms["dd"] = firms["usc_code"].map(d)
    rates = []
    for year in range(2019, 2025):
        y0, y1 = pd.Timestamp(year, 1, 1), pd.Timestamp(year + 1, 1, 1)
        at_risk = (
            (firms["registration_date"] < y0)
            & ~(firms["deregistration_date"] < y0)
            & ~(firms["dd"] <= y0)
        )
        rates.append(((firms["dd"] > y0) & (firms["dd"] <= y1) & at_risk).sum() / at_risk.sum())
    assert 0.01 < np.mean(rates) < 0.08
    assert all(0.005 < r < 0.12 for r in rates)


def test_oracle_defaults_agree_with_what_the_data_shows(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    derived = _derived_defaults(raw, oracle)
    truth = read_table(oracle, "defaults").set_index("usc_code")["default_date"]
    assert len(truth) > 20
    pd.testing.assert_series_equal(
        derived.sort_index(), truth.sort_index(), check_names=False, check_index_type=False
    )


def test_defaulters_deteriorate_before_default(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    d = read_table(oracle, "defaults")
    util = _clean(raw, oracle, "utilities")
    util["month"] = pd.to_datetime(util["period"] + "-01")
    x = util.merge(d, on="usc_code", how="left")
    gap = (x["default_date"] - x["month"]).dt.days
    before = x[(gap > 90) & (gap < 365)]
    never = x[x["default_date"].isna()]
    assert before["late_payment"].mean() > 2 * never["late_payment"].mean()


def test_q4_peak_in_customs_exports_and_gmv(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    cd = _clean(raw, oracle, "customs_declarations")
    total = cd.groupby("period")["declared_value_usd"].sum()
    q4 = total.index.str[5:7].isin(["10", "11", "12"])
    assert total[q4].mean() > 1.1 * total[~q4].mean()
    stores = _clean(raw, oracle, "marketplace_stores")
    gmv = stores.groupby("period")["gmv_usd"].sum()
    q4 = gmv.index.str[5:7].isin(["10", "11", "12"])
    assert gmv[q4].mean() > 1.1 * gmv[~q4].mean()


def test_suspension_wave_hits_concentrated_firms(sim_dirs: tuple[Path, Path]) -> None:
    raw, oracle = sim_dirs
    wave = load_config()["wave"]
    stores = _clean(raw, oracle, "marketplace_stores")
    pre = stores[stores["period"] < wave["start"]]
    gmv = pre.groupby(["usc_code", "marketplace"])["gmv_usd"].sum().unstack(fill_value=0.0)
    share = gmv[wave["marketplace"]] / gmv.sum(axis=1)
    conc, other = share.index[share >= 0.6], share.index[share < 0.6]
    in_wave = stores[stores["period"].between(wave["start"], wave["end"])]
    suspended = in_wave.groupby("usc_code")["account_status"].apply(
        lambda s: (s == "suspended").mean()
    )
    assert suspended.reindex(conc).mean() > 3 * suspended.reindex(other).mean()
    # The oracle knows about the suspensions once they happened: higher PD afterwards ...
    tp = read_table(oracle, "true_pd")
    after = tp[tp["as_of"] == pd.Timestamp(wave["end"] + "-01") + pd.DateOffset(months=1)]
    pd_by = after.set_index("usc_code")["pd_12m"]
    assert pd_by.reindex(conc).mean() > 1.3 * pd_by.reindex(other).mean()
    # ... and the concentrated firms default more in the two years after the wave.
    d = read_table(oracle, "defaults")
    t0 = pd.Timestamp(wave["end"] + "-01") + pd.DateOffset(months=1)
    later = set(
        d.loc[
            (d["default_date"] > t0) & (d["default_date"] <= t0 + pd.DateOffset(years=2)),
            "usc_code",
        ]
    )
    live = set(pd_by.index)
    rate = [np.mean([c in later for c in set(g) & live]) for g in (conc, other)]
    assert rate[0] > rate[1]


@pytest.mark.parametrize(
    ("path", "value", "word"),
    [
        (("delinquency", "roll_30_60"), 1.4, r"delinquency\.roll_30_60: .*less than or equal"),
        (("macro", "rho"), 1.0, r"macro\.rho: "),
        (("buyers", "size_weights"), {"small": 1.0}, r"buyers: .*size_weights must name"),
        (("sudden", "share_of_defaults"), 1.0, r"sudden\.share_of_defaults: "),
        (("mnar", "stop_prob"), {"no_such_table": 0.5}, r"mnar: .*stop_prob: unknown table"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_field(
    tmp_path: Path, path: tuple[str, str], value: object, word: str
) -> None:
    import copy

    cfg = copy.deepcopy(load_config())
    cfg[path[0]][path[1]] = value
    with pytest.raises(SimulationError, match=word):
        simulate(
            n_firms=5,
            seed=1,
            start="2020-01",
            end="2020-06",
            out_dir=tmp_path / "r",
            oracle_dir=tmp_path / "o",
            progress=False,
            config=cfg,
        )
