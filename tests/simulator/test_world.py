"""The world is hard to model: a business cycle, cures, defaults without warning, overseas
buyers that stop paying, reporting that stops before distress.

One moderately sized, fault-free world (built once per session, about half a minute) carries
most checks; the oracle's calibration in a normal period uses its own window after the
scripted episodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.io import read_table
from simulator.simulate import load_config, simulate, simulate_latent

CYCLE = {"n_firms": 3000, "seed": 21, "start": "2019-01", "end": "2025-12"}


@pytest.fixture(scope="session")
def cycle_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Raw tables, oracle and summary of a 3,000-firm world over 2019-2025 (no faults)."""
    root = tmp_path_factory.mktemp("cycle")
    summary = simulate(out_dir=root / "raw", oracle_dir=root / "oracle", progress=False, **CYCLE)
    return root / "raw", root / "oracle", summary


def _month_end(period: pd.Series) -> pd.Series:
    return pd.to_datetime(period + "-01") + pd.offsets.MonthEnd(0)


# ---------------------------------------------------------------- the cycle
def test_worst_year_defaults_at_least_1_8_times_the_best(cycle_world) -> None:
    rates = pd.Series(cycle_world[2]["default_rate_by_year"])
    assert len(rates) == 7
    assert rates.max() >= 1.8 * rates.min(), rates
    # a plausible SME range: every year between 1 % and 10 %, the mean 2-6 %
    assert rates.between(0.01, 0.10).all(), rates
    assert 0.02 < rates.mean() < 0.06, rates
    # the worst year is one of the scripted episodes' years
    assert rates.idxmax() in {"2020", "2021", "2022", "2023"}, rates


def test_macro_oracle_and_indicators_follow_the_episodes(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    macro = read_table(oracle, "macro")
    assert list(macro.columns) == ["period", "factor", "episode"]
    episodes = load_config()["macro"]["episodes"]
    assert set(macro["episode"].dropna()) == {e["name"] for e in episodes}
    m = macro.set_index("period")["factor"]
    in_episode = macro.set_index("period")["episode"].notna()
    assert m[in_episode].mean() > m[~in_episode].mean() + 0.5
    assert m.loc["2020-05"] > 1.0
    ind = read_table(raw, "macro_indicators").set_index("period")
    assert len(ind) == len(macro)
    # bad times: new export orders below 50, freight up in the 2021 squeeze
    assert ind.loc["2020-04", "export_orders_pmi"] < 48
    assert ind.loc["2021-10", "freight_cost_index"] > 1.5 * ind.loc["2019-06", "freight_cost_index"]


def test_trade_moves_with_the_cycle(cycle_world) -> None:
    raw, _, _ = cycle_world
    cd = read_table(raw, "customs_declarations")
    total = np.log(cd.groupby("period")["declared_value_usd"].sum())
    # without trend and season, trade falls when the macro factor rises
    t = np.arange(len(total))
    month = total.index.str[5:7]
    resid = total - np.polyval(np.polyfit(t, total.to_numpy(), 1), t)
    resid = resid - resid.groupby(month).transform("mean")
    factor = read_table(cycle_world[1], "macro").set_index("period")["factor"]
    rho = np.corrcoef(resid.to_numpy(), factor.reindex(total.index).to_numpy())[0, 1]
    assert rho < -0.3, rho


def test_oracle_does_not_foresee_the_shock(cycle_world) -> None:
    _, oracle, _ = cycle_world
    tp = read_table(oracle, "true_pd")
    d = read_table(oracle, "defaults").set_index("usc_code")["default_date"]
    rows = tp[tp["as_of"].between("2019-07-01", "2020-01-01")]
    dd = rows["usc_code"].map(d)
    y = (dd >= rows["as_of"]) & (dd < rows["as_of"] + pd.DateOffset(months=12))
    # the outcome windows run into the 2020 shock: realised defaults well above the oracle
    assert y.mean() > 1.3 * rows["pd_12m"].mean(), (y.mean(), rows["pd_12m"].mean())


@pytest.fixture(scope="module")
def calm_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fault-free world after every scripted episode and the suspension wave."""
    root = tmp_path_factory.mktemp("calm")
    simulate(
        n_firms=3000,
        seed=5,
        start="2024-01",
        end="2026-12",
        out_dir=root / "raw",
        oracle_dir=root / "oracle",
        progress=False,
    )
    return root / "raw", root / "oracle"


def test_oracle_is_calibrated_by_decile_in_a_normal_period(calm_world) -> None:
    _, oracle = calm_world
    tp = read_table(oracle, "true_pd")
    tp = tp[tp["as_of"] <= pd.Timestamp("2025-12-01")]  # full 12-month outcome window
    d = read_table(oracle, "defaults").set_index("usc_code")["default_date"]
    dd = tp["usc_code"].map(d)
    y = ((dd >= tp["as_of"]) & (dd < tp["as_of"] + pd.DateOffset(months=12))).astype(float)
    decile = pd.qcut(tp["pd_12m"].rank(method="first"), 10, labels=False)
    g = pd.DataFrame({"p": tp["pd_12m"], "y": y, "dec": decile}).groupby("dec")
    p, obs, n = g["p"].mean(), g["y"].mean(), g["y"].size()
    # Rows of one firm in consecutive months share outcomes: about 12 rows per independent one.
    se = np.sqrt(p * (1 - p) / (n / 12))
    assert (np.abs(p - obs) <= 4 * se + 0.003).all(), pd.DataFrame({"p": p, "obs": obs, "se": se})
    assert p.iloc[-1] > 20 * p.iloc[0]
    assert obs.iloc[-1] > 10 * max(obs.iloc[:3].mean(), 1e-4)


# ---------------------------------------------------------------- delinquency and cures
def _loan_pairs(raw: Path) -> pd.DataFrame:
    rep = read_table(raw, "loan_repayments").sort_values(["loan_id", "period"])
    nxt = rep.groupby("loan_id").shift(-1)
    month = pd.PeriodIndex(rep["period"], freq="M")
    nxt_month = pd.PeriodIndex(nxt["period"].fillna("1900-01"), freq="M")
    ok = np.asarray((nxt_month - month).map(lambda x: x.n)) == 1
    return pd.DataFrame({"dpd": rep["days_past_due"], "next": nxt["days_past_due"]})[ok]


def test_roll_rates_match_the_configuration_on_a_large_world() -> None:
    # 20,000 firms over seven years, latent chain only: tens of thousands of 30-dpd months
    w = simulate_latent(20_000, 9, "2019-01", "2025-12")
    cfg = load_config()["delinquency"]
    now, nxt = w.dq[:, :-1], w.dq[:, 1:]
    roll30 = ((now == 1) & (nxt == 2)).sum() / (now == 1).sum()
    roll60 = ((now == 2) & (nxt == 3)).sum() / (now == 2).sum()
    assert (now == 2).sum() > 2000
    assert abs(roll30 - cfg["roll_30_60"]) <= 0.05, roll30
    assert abs(roll60 - cfg["roll_60_90"]) <= 0.05, roll60
    # the rest cure: a firm at 30 or 60 days is current the next month or rolls on
    assert ((nxt[now == 1] == 0) | (nxt[now == 1] == 2)).all()
    assert ((nxt[now == 2] == 0) | (nxt[now == 2] == 3)).all()


def test_loan_data_show_the_rolls_and_cures(cycle_world) -> None:
    pairs = _loan_pairs(cycle_world[0])
    cfg = load_config()["delinquency"]
    at30 = pairs[pairs["dpd"].between(30, 59)]
    at60 = pairs[pairs["dpd"].between(60, 89)]
    assert len(at30) > 500 and len(at60) > 200
    # the same rates in the lenders' reports (a smaller sample: within 4 standard errors)
    for rows, rate, up in ((at30, cfg["roll_30_60"], 60), (at60, cfg["roll_60_90"], 90)):
        seen = (rows["next"] >= up).mean()
        assert abs(seen - rate) <= 4 * np.sqrt(rate * (1 - rate) / len(rows)), seen
    assert ((at30["next"] == 0) | (at30["next"] >= 60)).all()
    assert ((at60["next"] == 0) | (at60["next"] >= 90)).all()


def test_many_firms_cure_and_some_loans_are_restructured(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    rep = read_table(raw, "loan_repayments")
    d = read_table(oracle, "defaults")
    reached = rep.groupby("usc_code")["days_past_due"].max()
    cured_only = reached[(reached >= 30) & (reached < 90)].index.difference(d["usc_code"])
    assert len(cured_only) > 100  # the old world had 5 of 2,450 such firms
    restructured = rep[rep["restructured"]]
    assert len(restructured) > 10
    # a restructuring resets the arrears and is not a default
    assert (restructured["days_past_due"] == 0).all()


# ---------------------------------------------------------------- defaults without warning
def test_share_of_defaults_without_warning(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    sc = load_config()["sudden"]
    d = read_table(oracle, "defaults")
    sudden = d["kind"] != "credit"
    assert set(d.loc[sudden, "kind"]) <= set(sc["causes"])
    assert abs(sudden.mean() - sc["share_of_defaults"]) <= 0.04, sudden.mean()
    # no warning: no 30+ days past due in the 3 months before, and a low oracle PD
    rep = read_table(raw, "loan_repayments").merge(d, on="usc_code")
    end = _month_end(rep["period"])
    soon = end >= rep["default_date"] - pd.DateOffset(months=3)
    before = rep[(end < rep["default_date"]) & soon]
    late = before.groupby("usc_code")["days_past_due"].max()
    kinds = d.set_index("usc_code")["kind"]
    assert (late[kinds.reindex(late.index) != "credit"] < 30).all()
    assert (late[kinds.reindex(late.index) == "credit"] >= 30).all()
    tp = read_table(oracle, "true_pd").merge(d, on="usc_code")
    last = tp[tp["as_of"] <= tp["default_date"]].sort_values("as_of").groupby("usc_code").last()
    median = last.groupby(last["kind"] == "credit")["pd_12m"].median()
    assert median[False] < 0.2 * median[True], median


# ---------------------------------------------------------------- overseas buyers
def test_buyers_are_shared_and_their_ids_valid(cycle_world) -> None:
    raw, _, _ = cycle_world
    buyers = read_table(raw, "buyers")
    assert buyers["buyer_id"].is_unique
    assert (buyers["buyer_id"].str[2:5] == buyers["country_iso3"]).all()
    cd = read_table(raw, "customs_declarations")
    named = cd[cd["buyer_id"].notna()]
    assert set(named["customs_mode"]) <= set(load_config()["buyers"]["modes"])
    assert set(named["buyer_id"]) <= set(buyers["buyer_id"])
    exporters = named.groupby("buyer_id")["usc_code"].nunique()
    assert (exporters >= 3).sum() > 20  # several exporters share a buyer
    # a buyer's country is the declaration's destination
    country = named["buyer_id"].str[2:5]
    assert (country == named["destination_iso3"]).all()


def test_buyer_defaults_follow_country_risk(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    from features.tables import REFERENCE_DIR

    buyers = read_table(raw, "buyers")
    crc = pd.read_csv(REFERENCE_DIR / load_config()["country_risk_file"]).set_index("iso3")
    buyers["crc"] = buyers["country_iso3"].map(crc["crc_as_parsed"])
    bd = read_table(oracle, "buyer_defaults")
    assert set(bd["kind"]) <= {"protracted", "insolvency"}
    buyers["defaulted"] = buyers["buyer_id"].isin(bd["buyer_id"])
    rate = buyers.groupby(buyers["crc"] >= 4)["defaulted"].mean()
    assert rate[True] > 1.5 * rate[False], rate
    bp = read_table(oracle, "buyer_pd")
    assert bp["pd_12m"].between(0, 1).all()
    assert (
        bp.merge(bd, on="buyer_id", how="left")
        .pipe(lambda x: x[x["default_date"].notna()])
        .pipe(lambda x: (x["as_of"] <= x["default_date"]).all())
    )


def test_a_buyer_that_stops_paying_shows_at_every_exporter(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    bd = read_table(oracle, "buyer_defaults")
    fx = read_table(raw, "fx_receipts")
    fx = fx[fx["buyer_id"].notna()].merge(bd, on="buyer_id")
    fx["end"] = _month_end(fx["period"])
    after = fx[fx["end"] >= fx["default_date"]]
    assert after["buyer_id"].nunique() > 20
    # every exporter that was owed money by the buyer after its default got nothing from it
    per = after.groupby(["buyer_id", "usc_code"]).agg(
        received=("received_usd", "sum"), expected=("expected_usd", "sum")
    )
    assert (per["received"] == 0).all() and (per["expected"] > 0).all()
    assert (after["days_beyond_terms"] >= 30).all()
    shared = per.reset_index().groupby("buyer_id")["usc_code"].nunique()
    assert (shared >= 2).sum() > 5  # the same buyer's default reaches several firms
    # before its default the buyer paid something in most months
    before = fx[fx["end"] < fx["default_date"] - pd.DateOffset(months=4)]
    assert (before["received_usd"] > 0).mean() > 0.8


def test_insured_exporters_of_a_defaulted_buyer_claim(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    cfg = load_config()
    bd = read_table(oracle, "buyer_defaults")
    claims = read_table(raw, "insurance_claims")
    pol = read_table(raw, "insurance_policies")
    firms = read_table(raw, "firms").set_index("usc_code")
    assert set(claims["status"]) <= {"pending", "paid", "declined"}
    assert set(claims["buyer_id"]) <= set(bd["buyer_id"])
    fx = read_table(raw, "fx_receipts")
    owed = fx[fx["buyer_id"].notna()][["usc_code", "buyer_id"]].drop_duplicates()
    exposure = owed.merge(bd, on="buyer_id").merge(pol, on="usc_code")
    covered = exposure[
        (exposure["start_date"] <= exposure["default_date"])
        & (exposure["default_date"] <= exposure["end_date"])
    ]
    wait = max(cfg["claims"]["notify_after_months"].values())
    window_end = pd.Timestamp(CYCLE["end"] + "-01") - pd.DateOffset(months=wait + 1)
    dereg = covered["usc_code"].map(firms["deregistration_date"])
    expect = covered[
        (covered["default_date"] < window_end)
        & ~(dereg <= covered["default_date"] + pd.DateOffset(months=wait + 1))
    ]
    assert len(expect) > 5
    got = set(zip(claims["usc_code"], claims["buyer_id"], strict=True))
    missing = [k for k in zip(expect["usc_code"], expect["buyer_id"], strict=True) if k not in got]
    assert not missing, missing[:5]
    # claims are notified after the default, decided later, and paid ones pay the indemnity
    c = claims.merge(bd, on="buyer_id")
    assert (c["notified_date"] > c["default_date"]).all()
    decided = c[c["decision_date"].notna()]
    assert (decided["decision_date"] > decided["notified_date"]).all()
    paid = claims[claims["status"] == "paid"]
    assert np.allclose(paid["paid_usd"], paid["loss_usd"] * cfg["claims"]["indemnity"], atol=0.02)
    assert (claims.loc[claims["status"] != "paid", "paid_usd"] == 0).all()


# ---------------------------------------------------------------- missing not at random
def test_distressed_firms_stop_reporting_earlier(cycle_world) -> None:
    raw, oracle, _ = cycle_world
    d = read_table(oracle, "defaults")
    credit = d[d["kind"] == "credit"].set_index("usc_code")["default_date"]
    util = read_table(raw, "utilities")
    last = _month_end(util.groupby("usc_code")["period"].max())
    firms = read_table(raw, "firms").set_index("usc_code")
    gone = firms["deregistration_date"].fillna(pd.Timestamp("2100-01-01"))
    # a defaulter that stopped reporting: its last utility month is before its default;
    # a firm that never defaulted stops only when it leaves (window end or deregistration)
    has = credit.index.intersection(last.index)
    stop_d = last[has] < credit[has] - pd.DateOffset(months=1)
    healthy = last.index.difference(d["usc_code"])
    horizon = gone.reindex(healthy).clip(upper=pd.Timestamp(CYCLE["end"] + "-01"))
    stop_h = last.reindex(healthy) < horizon - pd.DateOffset(months=2)
    assert stop_d.mean() > 0.15, stop_d.mean()
    # (firms that never defaulted include ones that were distressed for a while and stopped)
    assert stop_d.mean() > 2.5 * stop_h.mean(), (stop_d.mean(), stop_h.mean())
