"""The raw platform tables of one simulated chunk, built from its latent process.

Each builder turns the :class:`~simulator.process.World` (health states, onsets, shocks)
into the rows a real platform would hold. Rows are produced firm by firm and month by month
(row-major ``numpy.nonzero`` order), so output order is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.tables import (
    CLAIM_STATUS,
    COURT_TYPES,
    CUSTOMS_CREDIT,
    CUSTOMS_MODES,
    DISTRICTS,
    FX_CHANNELS,
    FX_CLASSES,
    INDUSTRIES,
    MARKETPLACES,
    PENALTY_AUTHORITIES,
    PENALTY_REASONS,
    TABLES,
    TAX_GRADES,
)
from simulator.months import month_end, month_start, period_strings
from simulator.process import MAX_STORES, NEVER, World

#: pandas' default string dtype (Arrow-backed, NaN for missing), as ``dtype="str"`` gives.
_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _pair(value: Any) -> tuple[float, float]:
    """Return a configured ``[low, high]`` range as two floats (what ``uniform`` takes)."""
    low, high = value
    return float(low), float(high)


def take_str(values: np.ndarray, idx: np.ndarray) -> pd.Series:
    """Return ``values[idx]`` as a ``str`` Series, built in Arrow (no Python objects per row).

    Parameters
    ----------
    values : numpy.ndarray
        The distinct strings (e.g. the chunk's USCCs or the period labels).
    idx : numpy.ndarray
        Positions into ``values``, one per row.

    Returns
    -------
    pandas.Series
        The strings, dtype ``str``.
    """
    taken = pc.take(pa.array(values, type=pa.large_string()), pa.array(np.asarray(idx, np.int64)))
    return pd.Series(taken.to_pandas(types_mapper={pa.large_string(): _STR}.get))


def typed(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Order and cast columns to the table spec's logical types.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows with (at least) the spec's columns.
    table : str
        Table name in :data:`features.tables.TABLES`.

    Returns
    -------
    pandas.DataFrame
        Exactly the spec's columns, in order: strings as ``str``, dates as
        ``datetime64[ns]``, ints as ``int64``, floats as ``float64``, bools as ``bool``.
    """
    out = {}
    for col in TABLES[table].columns:
        if col.name in df:
            s = df[col.name]
        elif col.nullable:  # a nullable column the builder leaves empty (e.g. received_date)
            s = pd.Series([None] * len(df), dtype=object)
        else:
            raise KeyError(f"{table}: builder gave no column {col.name}")
        if col.dtype in ("str", "category"):
            out[col.name] = s if s.dtype == _STR else pd.Series(s, dtype="str")
        elif col.dtype == "date":
            out[col.name] = pd.Series(s).astype("datetime64[ns]")
        elif col.dtype == "int":
            out[col.name] = pd.Series(s).astype("int64")
        elif col.dtype == "float":
            out[col.name] = pd.Series(s).astype("float64")
        else:
            out[col.name] = pd.Series(s).astype("bool")
    return pd.DataFrame(out).reset_index(drop=True)


def _lagged(state: np.ndarray, lag: int) -> np.ndarray:
    """State ``lag`` months earlier; the current state where the firm was not live then."""
    if lag <= 0:
        return state
    out = np.concatenate([np.repeat(state[:, :1], lag, 1), state[:, :-lag]], axis=1)
    return np.where(out < 0, state, out)


class ChunkTables:
    """Build every raw table of one chunk.

    Parameters
    ----------
    w : World
        The chunk after the health chain has run.
    rng : numpy.random.Generator
        Random stream for the observation noise.
    """

    def __init__(self, w: World, rng: np.random.Generator) -> None:
        self.w = w
        self.rng = rng
        self.cfg: dict[str, Any] = w.cfg
        self.M = w.n_months
        self.t = np.arange(self.M)
        self.periods = period_strings(w.month0, self.M)
        self.ids = np.array([f"{w.first_firm + i:07d}" for i in range(w.n)], dtype=object)
        self._operations()

    # ------------------------------------------------------------------ latent observables
    def _operations(self) -> None:
        w, cfg, rng = self.w, self.cfg, self.rng
        hh = cfg["health"]
        fc = cfg["firms"]
        S = hh["n_states"]
        self.live = w.state >= 0
        self.obs = w.state.clip(0, S - 1)
        t = self.t[None, :]
        act = np.asarray(hh["activity"])[self.obs]
        act = np.where(t >= w.onset_m[:, None], act * hh["post_onset_activity"], act)
        act = np.where(t >= w.default_m[:, None], hh["defaulted_activity"], act)
        growth = np.clip(
            np.exp(w.growth[:, None] * t), 1 / fc["max_growth_factor"], fc["max_growth_factor"]
        )
        ramp = np.clip((t - w.reg_m[:, None] + 1) / fc["ramp_months"], 0.15, 1.0)
        self.act = act
        self.ramp = ramp
        # Bad times shrink every firm's trade by its exposure to the macro factor.
        cycle = np.exp(-cfg["macro"]["export_loading"] * w.factor)
        self.capacity = w.scale[:, None] * growth * ramp * act * cycle  # USD of monthly sales
        self.season = np.asarray(cfg["seasonality"]["exports"])[w.calendar_month(self.t) - 1]
        self._stores_status()
        oc = cfg["operations"]
        noise = np.exp(oc["export_noise_sd"] * rng.standard_normal((w.n, self.M)))
        dormant = rng.random((w.n, self.M)) < np.asarray(oc["dormant_prob"])[self.obs]
        self.export_base = np.where(dormant, 0.0, self.capacity * self.season[None, :] * noise)
        b2c_kept = 1 - w.b2c_frac[:, None] * self.lost_share
        # Shipments to a buyer continue a few months after it stops paying, then stop.
        stop = w.buyer_default_m[:, None, :] + cfg["buyers"]["stop_shipping_months"]
        self.ship = self.t[None, :, None] < stop
        to_buyer = self.export_base[:, :, None] * w.buyer_share[:, None, :]
        self.buyer_flow = np.where(self.ship & self.live[:, :, None], to_buyer, 0.0)
        self.exports = self.export_base * b2c_kept - (to_buyer * ~self.ship).sum(2)
        self.exports = np.where(self.live, np.maximum(self.exports, 0.0), 0.0)
        self._report_stops()

    def _report_stops(self) -> None:
        """Month each consent-based source stops for a firm that turned distressed (MNAR)."""
        w, rng, mc = self.w, self.rng, self.cfg["mnar"]
        S = self.cfg["health"]["n_states"]
        distressed = w.state == S - 1
        first = np.where(distressed.any(1), distressed.argmax(1), NEVER)
        lo, hi = mc["stop_after_months"]
        self.stops: dict[str, np.ndarray] = {}
        for source, p in mc["stop_prob"].items():
            stops = rng.random(w.n) < p
            after = rng.integers(lo, hi + 1, w.n)
            self.stops[source] = np.where(stops & (first < NEVER), first + after, NEVER)

    def reporting(self, source: str) -> np.ndarray:
        """Firm x month mask of the months a firm still reports ``source``."""
        stop = self.stops.get(source)
        if stop is None:
            return np.ones((self.w.n, self.M), bool)
        return self.t[None, :] < stop[:, None]

    def _stores_status(self) -> None:
        """Account status per store and month: 0 active, 1 warning, 2 suspended, -1 no row."""
        w, rng, sc = self.w, self.rng, self.cfg["stores"]
        n, M = w.n, self.M
        status = np.zeros((n, M, MAX_STORES), np.int8)
        remaining = np.zeros((n, MAX_STORES), np.int64)
        lag_state = _lagged(w.state, self.cfg["operations"]["refund_lag"]).clip(0)
        p_idio = np.asarray(sc["idiosyncratic_suspension"])
        p_warn = np.asarray(sc["warning_prob"])
        lo, hi = sc["idiosyncratic_suspension_months"]
        for t in range(M):
            u = rng.random((2, n, MAX_STORES))
            start = (remaining == 0) & (u[0] < p_idio[lag_state[:, t]][:, None])
            remaining = np.where(start, rng.integers(lo, hi + 1, (n, MAX_STORES)), remaining)
            idio = remaining > 0
            remaining = np.maximum(remaining - 1, 0)
            wave = (t >= w.store_wave_susp) & (t < w.store_wave_back)
            warn = u[1] < p_warn[lag_state[:, t]][:, None]
            s = np.where(wave | idio, 2, np.where(warn, 1, 0)).astype(np.int8)
            # Reinstated after the wave: a warning the month the store comes back.
            s = np.where(t == w.store_wave_back, np.maximum(s, 1), s)
            status[:, t, :] = s
        t3 = self.t[None, :, None]
        # A store never reinstated stops reporting six months after its suspension.
        closed = (w.store_wave_back[:, None, :] == NEVER) & (
            t3 >= w.store_wave_susp[:, None, :] + sc["closed_after_months"]
        )
        exists = (
            w.store_present[:, None, :]
            & (t3 >= w.store_open[:, None, :])
            & self.live[:, :, None]
            & ~closed
        )
        status = np.where(exists, status, -1)
        self.store_status = status
        self.lost_share = ((status == 2) * w.store_share[:, None, :]).sum(2)

    # ------------------------------------------------------------------ tables
    def firms(self) -> pd.DataFrame:
        """Build the registration record of each firm."""
        w, cfg, rng = self.w, self.cfg, self.rng
        nc = cfg["firms"]["names"]
        chars = np.array(list(nc["chars"]))
        pick = rng.integers(0, len(chars), (w.n, 2))
        word_choice = rng.random(w.n)
        names = []
        for i in range(w.n):
            words = nc["industry_words"][INDUSTRIES[w.industry[i]]]
            word = words[int(word_choice[i] * len(words))]
            names.append(
                f"{nc['prefix']}{chars[pick[i, 0]]}{chars[pick[i, 1]]}{word}{nc['suffix']}"
            )
        reg_date = month_start(w.month0 + w.reg_m) + (w.reg_day - 1).astype("timedelta64[D]")
        dereg_in = w.dereg_m < self.M
        dereg_day = rng.integers(1, 29, w.n)
        dereg = month_start(w.month0 + np.where(dereg_in, w.dereg_m, 0)) + (dereg_day - 1).astype(
            "timedelta64[D]"
        )
        dereg = np.where(dereg_in, dereg, np.datetime64("NaT"))
        modes = np.array(CUSTOMS_MODES, dtype=object)
        m0 = modes[w.modes[:, 0]]
        m1 = np.where(w.modes[:, 1] >= 0, modes[w.modes[:, 1].clip(0)], "")
        mode_str = [a if not b else ",".join(sorted((a, b))) for a, b in zip(m0, m1, strict=True)]
        cap = np.round(np.exp(w.log_cap) / 1e4) * 1e4
        mp = np.array(MARKETPLACES, dtype=object)
        main = np.where(w.main_mp >= 0, mp[w.main_mp.clip(0)], None)
        df = pd.DataFrame(
            {
                "usc_code": w.usc,
                "name": names,
                "district": np.array(DISTRICTS, dtype=object)[w.district],
                "industry": np.array(INDUSTRIES, dtype=object)[w.industry],
                "registration_date": reg_date,
                "registered_capital_cny": np.maximum(cap, 1e4),
                "customs_modes": mode_str,
                "main_marketplace": main,
                "own_brand": w.own_brand,
                "independent_site": w.independent_site,
                "high_tech": w.high_tech,
                "provincial_leader": w.provincial_leader,
                "deregistration_date": dereg,
            }
        )
        return typed(df, "firms")

    def tax(self) -> pd.DataFrame:
        """Yearly tax grade, tax paid, rebates and arrears (no grade in the registration year)."""
        w, cfg, rng = self.w, self.cfg, self.rng
        tc = cfg["tax"]
        first_year = w.month0 // 12 - 1
        last_abs = w.month0 + self.M - 1
        # The grade for year Y is published in April of Y+1: emit the years published by the end.
        last_year = (last_abs - 3) // 12 - 1
        cny = cfg["loans"]["cny_per_usd"]
        rebate_modes = [CUSTOMS_MODES.index(m) for m in tc["rebate_modes"]]
        rebate_share = (w.mode_share * np.isin(w.modes, rebate_modes)).sum(1)
        frames = []
        for year in range(first_year, last_year + 1):
            lo = year * 12 - w.month0
            hi = lo + 12
            reg_year = (w.month0 + w.reg_m) // 12
            alive_end = w.dereg_m >= hi  # still registered after the year's end
            ok = (reg_year + tc["first_grade_after_years"] <= year) & alive_end
            if lo < 0:
                # Before the window: the firm's state and sales at the first month.
                mean_state = w.chain_state[:, 0].clip(0).astype(float)
                sales = 12 * self.capacity[:, 0] * (self.season.mean() if self.M else 1.0)
                distressed = np.zeros(w.n, bool)
                ok &= w.reg_m < 0
            else:
                cols = slice(max(lo, 0), min(hi, self.M))
                st = w.state[:, cols].astype(float)
                st[st < 0] = np.nan
                valid = ~np.isnan(st).all(1)
                mean_state = np.where(valid, np.nanmean(np.where(valid[:, None], st, 0), 1), 0)
                sales = self.exports[:, cols].sum(1)
                distressed = (w.onset_m < hi) & (w.onset_m < NEVER)
            score = (
                tc["score_mean"]
                + tc["score_quality"] * w.quality
                + tc["score_state"] * mean_state
                + tc["score_sd"] * rng.standard_normal(w.n)
            )
            score = np.where(distressed, tc["distressed_score"], score)
            a_, b_, m_ = tc["grade_score_thresholds"]  # A, B and C-or-better cut-offs
            grade = np.select([score >= a_, score >= b_, score >= m_], [0, 1, 3], 4)
            age_end = hi - w.reg_m
            young = (age_end < tc["new_firm_years"] * 12) & (score >= b_)
            grade = np.where(young, 2, grade)
            sales_cny = sales * cny
            tax_paid = (
                sales_cny
                * (w.margin * tc["income_tax"] + tc["other_taxes_of_sales"])
                * rng.uniform(*_pair(tc["paid_noise"]), w.n)
            )
            rebate = (
                sales_cny
                * tc["rebate_rate"]
                * rebate_share
                * rng.uniform(*_pair(tc["rebate_noise"]), w.n)
            )
            big = sales > np.median(sales) if len(sales) else np.zeros(0, bool)
            rclass = np.select([(grade == 0) & big, grade <= 1, grade <= 3], [1, 2, 3], 4)
            state_idx = np.clip(np.round(mean_state).astype(int), 0, len(tc["arrears_prob"]) - 1)
            arrears_p = np.asarray(tc["arrears_prob"])[state_idx]
            arrears_p = np.where(distressed, tc["distressed_arrears_prob"], arrears_p)
            arrears = np.where(
                rng.random(w.n) < arrears_p,
                sales_cny * rng.uniform(*_pair(tc["arrears_share_of_sales"]), w.n),
                0.0,
            )
            idx = np.nonzero(ok)[0]
            frames.append(
                pd.DataFrame(
                    {
                        "firm": idx,
                        "tax_year": year,
                        "tax_grade": np.array(TAX_GRADES, dtype=object)[grade[idx]],
                        "tax_paid_cny": np.round(tax_paid[idx], 2),
                        "export_rebate_cny": np.round(rebate[idx], 2),
                        "rebate_class": rclass[idx],
                        "arrears_cny": np.round(arrears[idx], 2),
                    }
                )
            )
        df = (
            pd.concat(frames, ignore_index=True)
            .sort_values(["firm", "tax_year"], kind="stable")
            .reset_index(drop=True)
        )
        df["usc_code"] = take_str(w.usc, df["firm"].to_numpy())
        return typed(df, "tax")

    def social_insurance(self) -> pd.DataFrame:
        """Monthly insured headcount (lagging health) and contribution arrears."""
        w, cfg, rng = self.w, self.cfg, self.rng
        oc = cfg["operations"]
        lag_state = _lagged(w.state, oc["headcount_lag"]).clip(0)
        act = np.asarray(cfg["health"]["activity"])[lag_state]
        after = self.t[None, :] >= w.onset_m[:, None] + oc["headcount_lag"]
        act = np.where(after, act * oc["post_onset_headcount"], act)
        noise = np.exp(oc["headcount_noise_sd"] * rng.standard_normal((w.n, self.M)))
        growth = np.sqrt(self.capacity / np.maximum(self.act * w.scale[:, None], 1e-9))
        head = np.maximum(np.round(w.headcount0[:, None] * act**1.5 * growth * noise), 1)
        self.headcount = head
        p_arr = np.asarray(oc["si_arrears_prob"])[lag_state]
        arrears = np.where(
            rng.random((w.n, self.M)) < p_arr,
            head * oc["si_arrears_cny_per_head"] * rng.uniform(0.5, 2.0, (w.n, self.M)),
            0,
        )
        i, t = np.nonzero(self.live & self.reporting("social_insurance"))
        df = pd.DataFrame(
            {
                "usc_code": take_str(w.usc, i),
                "period": take_str(self.periods, t),
                "insured_headcount": np.minimum(head[i, t], 100_000).astype(np.int64),
                "arrears_cny": np.round(arrears[i, t], 2),
            }
        )
        return typed(df, "social_insurance")

    def utilities(self) -> pd.DataFrame:
        """Monthly electricity and water use and late payments (firms with utilities data)."""
        w, cfg, rng = self.w, self.cfg, self.rng
        oc = cfg["operations"]
        lag_state = _lagged(w.state, oc["utilities_lag"]).clip(0)
        season = np.asarray(cfg["seasonality"]["electricity"])[w.calendar_month(self.t) - 1]
        head = self.headcount if hasattr(self, "headcount") else w.headcount0[:, None]
        base = head * np.sqrt(self.act)
        kwh = base * oc["kwh_per_employee"] * season[None, :] * rng.lognormal(0, 0.1, base.shape)
        water = base * oc["water_per_employee"] * rng.lognormal(0, 0.15, base.shape)
        p_late = np.asarray(oc["late_utility_prob"])[lag_state]
        p_late = np.where(
            self.t[None, :] > w.onset_m[:, None], oc["post_onset_late_utility_prob"], p_late
        )
        late = rng.random(base.shape) < p_late
        i, t = np.nonzero(self.live & ~w.utilities_missing[:, None] & self.reporting("utilities"))
        df = pd.DataFrame(
            {
                "usc_code": take_str(w.usc, i),
                "period": take_str(self.periods, t),
                "electricity_kwh": np.round(kwh[i, t], 1),
                "water_m3": np.round(water[i, t], 1),
                "late_payment": late[i, t],
            }
        )
        return typed(df, "utilities")

    def customs_declarations(self) -> pd.DataFrame:
        """Monthly export declarations by mode and destination (Q4 peak, wave losses)."""
        w, cfg, rng = self.w, self.cfg, self.rng
        oc = cfg["operations"]
        # Value per firm x month x mode slot x destination slot; B2C modes lose the suspended
        # stores' sales. A row-major nonzero gives rows in (firm, month, mode, destination) order.
        mode_keep = np.where(
            w.mode_is_b2c[:, None, :], (1 - self.lost_share)[:, :, None], 1.0
        ).astype(np.float32)
        mode_val = (
            self.export_base.astype(np.float32)[:, :, None]
            * w.mode_share.astype(np.float32)[:, None, :]
            * mode_keep
        )
        del mode_keep
        present = (w.modes >= 0)[:, :, None] & w.dest_present[:, None, :]  # firm x mode x dest
        val = mode_val[:, :, :, None] * w.dest_share.astype(np.float32)[:, None, None, :]
        del mode_val
        # Buyer-mode flows stop a few months after the buyer stops paying.
        sold = w.mode_has_buyer[:, :, None] & (w.buyer >= 0)[:, None, :]  # firm x mode x dest
        val *= np.where(sold[:, None, :, :] & ~self.ship[:, :, None, :], 0, 1).astype(np.float32)
        mask = (val >= 1.0) & self.live[:, :, None, None] & present[:, None, :, :]
        i, t, j, d = np.nonzero(mask)
        del mask
        v = val[i, t, j, d].astype(np.float64) * rng.lognormal(0, 0.05, len(i))
        del val
        per_list = np.where(w.mode_is_b2c[i, j], oc["list_value_usd"], oc["b2b_declaration_usd"])
        returns = np.asarray(oc["returns_share"])[self.obs[i, t]]
        anomalies = np.asarray(oc["inspection_anomaly_rate"])[self.obs[i, t]]
        buyers = np.append(w.buyer_pool.ids, [None])
        b = np.where(sold[i, j, d], w.buyer[i, d], len(buyers) - 1)
        df = pd.DataFrame(
            {
                "usc_code": take_str(w.usc, i),
                "period": take_str(self.periods, t),
                "customs_mode": take_str(np.array(CUSTOMS_MODES, dtype=object), w.modes[i, j]),
                "destination_iso3": take_str(w.countries.iso3, w.dest[i, d]),
                "declared_value_usd": np.round(v, 2),
                "declaration_count": np.ceil(v / per_list).astype(np.int64),
                "returned_value_usd": np.round(v * returns * rng.uniform(0.5, 1.5, len(i)), 2),
                "inspection_anomalies": rng.poisson(anomalies),
                "buyer_id": take_str(buyers, b),
            }
        )
        return typed(df, "customs_declarations")

    def customs_credit(self) -> pd.DataFrame:
        """Build customs credit category events: the first rating and dishonest listings."""
        w, cfg, rng = self.w, self.cfg, self.rng
        cc = cfg["customs_credit"]
        n = w.n
        first = w.reg_m + cc["first_record_delay_months"]
        p_aeo = cc["aeo_prob"] * np.exp(
            cc["aeo_size_effect"] * w.z_cap + cc["aeo_quality_effect"] * w.quality
        )
        aeo = rng.random(n) < np.minimum(p_aeo, cc["aeo_max_prob"])
        cat = np.where(aeo, CUSTOMS_CREDIT.index("aeo"), CUSTOMS_CREDIT.index("general"))
        day1 = rng.integers(1, 29, n)
        lo_d, hi_d = cc["dishonest_after_months"]
        dishonest_m = w.default_m + rng.integers(lo_d, hi_d + 1, n)
        dis = (
            (w.default_m < NEVER)
            & (rng.random(n) < cfg["defaults"]["customs_dishonest_prob"])
            & (dishonest_m < np.minimum(w.dereg_m, self.M))
        )
        keep_first = (first < self.M) & (first < w.dereg_m)
        idx1 = np.nonzero(keep_first)[0]
        idx2 = np.nonzero(dis & keep_first)[0]
        firm = np.concatenate([idx1, idx2])
        month = np.concatenate([first[idx1], dishonest_m[idx2]])
        category = np.concatenate(
            [cat[idx1], np.full(len(idx2), CUSTOMS_CREDIT.index("dishonest"))]
        )
        day = np.concatenate([day1[idx1], rng.integers(1, 29, len(idx2))])
        order = np.lexsort((month, firm))
        firm, month, category, day = firm[order], month[order], category[order], day[order]
        date = month_start(w.month0 + month) + (day - 1).astype("timedelta64[D]")
        df = pd.DataFrame(
            {
                "usc_code": take_str(w.usc, firm),
                "effective_date": date,
                "category": np.array(CUSTOMS_CREDIT, dtype=object)[category],
            }
        )
        return typed(df, "customs_credit")

    def _fx_short(self) -> np.ndarray:
        """Share of what falls due that the firm does not bring home (firm x month)."""
        w, fx = self.w, self.cfg["fx"]
        short = (
            w.fx_shortfall[:, None]
            + fx["state_slope"] * np.maximum(self.obs - 1, 0)
            + fx["noise_sd"] * self.rng.standard_normal((w.n, self.M))
        )
        onset = self.t[None, :] >= w.onset_m[:, None]
        return np.clip(np.where(onset, short + fx["post_onset_shortfall"], short), 0, 1)

    def _fx_buyer_rows(self, short: np.ndarray, cls: np.ndarray) -> pd.DataFrame:
        """One bank receipt row per firm, month and buyer with something due that month."""
        w, b = self.w, self.w.buyer_pool
        frames = []
        for d in range(w.buyer.shape[1]):
            has = w.buyer[:, d] >= 0
            terms = np.where(has, b.terms[w.buyer[:, d].clip(0)], 1)
            # Due this month: the shipments made ``terms`` months earlier (the first months'
            # dues come from shipments before the window, taken as month 0's).
            src = np.clip(self.t[None, :] - terms[:, None], 0, self.M - 1)
            due = np.take_along_axis(self.buyer_flow[:, :, d], src, 1)
            i, t = np.nonzero(self.live & has[:, None] & (due >= 1.0))
            bb = w.buyer[i, d]
            paid = due[i, t] * b.pay_frac[bb, t] * (1 - short[i, t])
            frames.append(
                pd.DataFrame(
                    {
                        "firm": i,
                        "t": t,
                        "c": FX_CHANNELS.index("bank"),
                        "slot": d,
                        "buyer": bb,
                        "received_usd": np.round(paid, 2),
                        "expected_usd": np.round(due[i, t], 2),
                        "days_beyond_terms": np.minimum(b.days[bb, t], 3650.0),
                        "cls": cls[i, t],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def fx_receipts(self) -> pd.DataFrame:
        """Monthly money received from abroad: payouts and other flows by channel, and one row
        per paying buyer (short where the buyer pays late or not at all).
        """
        w, cfg, rng = self.w, self.cfg, self.rng
        fx = cfg["fx"]
        n = w.n
        short = self._fx_short()
        other = np.maximum(self.exports - self.buyer_flow.sum(2), 0.0)
        prev = np.concatenate([other[:, :1], other[:, :-1]], axis=1)
        received = prev * (1 - short)
        pi_share = np.where(
            w.has_stores, fx["payment_institution_share_b2c"], fx["payment_institution_share_b2b"]
        )
        main = np.where(rng.random(n) < pi_share, 1, 0)  # index into FX_CHANNELS
        second = rng.random(n) < fx["second_channel_prob"]
        split = np.where(second, rng.uniform(*_pair(fx["main_channel_share"]), n), 1.0)
        fx_class = np.select(
            [w.fx_shortfall > fx["class_c_shortfall"], w.fx_shortfall > fx["class_b_shortfall"]],
            [2, 1],
            0,
        )
        cls = np.where(
            (self.t[None, :] >= w.default_m[:, None]) & (fx_class[:, None] == 0),
            1,
            fx_class[:, None],
        )
        frames = [self._fx_buyer_rows(short, cls)]
        for c in range(2):
            ch = np.where(c == 0, main, 1 - main)
            share = np.where(c == 0, split, 1 - split)
            val = received * share[:, None]
            mask = self.live & (val >= 1.0) & ((c == 0) | second)[:, None]
            i, t = np.nonzero(mask)
            frames.append(
                pd.DataFrame(
                    {
                        "firm": i,
                        "t": t,
                        "c": ch[i],
                        "slot": -1,
                        "buyer": len(w.buyer_pool.ids),
                        "received_usd": np.round(val[i, t], 2),
                        "expected_usd": np.round(prev[i, t] * share[i], 2),
                        "days_beyond_terms": 0.0,
                        "cls": cls[i, t],
                    }
                )
            )
        df = (
            pd.concat(frames, ignore_index=True)
            .sort_values(["firm", "t", "c", "slot"], kind="stable")
            .reset_index(drop=True)
        )
        df["usc_code"] = take_str(w.usc, df["firm"].to_numpy())
        df["period"] = take_str(self.periods, df["t"].to_numpy())
        df["channel"] = take_str(np.array(FX_CHANNELS, dtype=object), df["c"].to_numpy())
        df["fx_class"] = take_str(np.array(FX_CLASSES, dtype=object), df["cls"].to_numpy())
        df["buyer_id"] = take_str(np.append(w.buyer_pool.ids, [None]), df["buyer"].to_numpy())
        return typed(df, "fx_receipts")

    def marketplace_stores(self) -> pd.DataFrame:
        """Monthly store performance: GMV, orders, refunds, rating, status, payout holds."""
        w, cfg, rng = self.w, self.cfg, self.rng
        sc = cfg["stores"]
        st = self.store_status
        i, t, k = np.nonzero((st >= 0) & self.reporting("marketplace_stores")[:, :, None])
        lag_state = _lagged(w.state, cfg["operations"]["refund_lag"]).clip(0)[i, t]
        status = st[i, t, k]
        b2c = self.export_base[i, t] * w.b2c_frac[i]
        gmv = b2c * w.store_share[i, k] * sc["gmv_per_declared_usd"] * rng.lognormal(0, 0.1, len(i))
        gmv = np.where(status == 2, 0.0, gmv)
        orders = np.round(gmv / w.order_value[i]).astype(np.int64)
        base = np.asarray([sc["refund_base"][x] for x in INDUSTRIES])[w.industry[i]]
        refund = (
            base * (1 + sc["refund_state_slope"] * (lag_state - 1)) * rng.lognormal(0, 0.2, len(i))
        )
        refund = np.where(orders > 0, np.clip(refund, 0, 0.9), 0.0)
        rating = np.clip(
            sc["rating_mean"]
            - sc["rating_state_slope"] * lag_state
            + sc["rating_sd"] * rng.standard_normal(len(i)),
            1,
            5,
        )
        age = t - w.store_open[i, k]
        rating = np.where(age < sc["unrated_months"], np.nan, np.round(rating, 2))
        typical = (
            self.capacity[i, t] * w.b2c_frac[i] * w.store_share[i, k] * sc["gmv_per_declared_usd"]
        )
        hold = np.select(
            [status == 2, status == 1],
            [typical * sc["payout_hold_months_suspended"], gmv * sc["payout_hold_share_warning"]],
            0.0,
        )
        # Identifiers per (firm, store slot) once; rows index into them.
        slot_ids = np.array(
            [
                [f"{MARKETPLACES[m][:2].upper()}{x}{kk}" for kk, m in enumerate(row)]
                for x, row in zip(self.ids, w.store_mp.clip(0), strict=True)
            ],
            dtype=object,
        ).reshape(-1)
        store_id = take_str(slot_ids, i * MAX_STORES + k)
        mp = take_str(np.array(MARKETPLACES, dtype=object), w.store_mp[i, k])
        df = pd.DataFrame(
            {
                "usc_code": take_str(w.usc, i),
                "period": take_str(self.periods, t),
                "marketplace": mp,
                "store_id": store_id,
                "gmv_usd": np.round(gmv, 2),
                "orders": orders,
                "refund_rate": np.round(refund, 4),
                "rating": rating,
                "account_status": take_str(
                    np.array(["active", "warning", "suspended"], dtype=object), status
                ),
                "payout_hold_usd": np.round(hold, 2),
            }
        )
        return typed(df, "marketplace_stores")

    def overseas_warehouses(self) -> pd.DataFrame:
        """Month-end overseas stock by country (stock piles up as a firm weakens)."""
        w, cfg, rng = self.w, self.cfg, self.rng
        wc = cfg["warehouses"]
        n = w.n
        countries = w.countries.index(wc["countries"])
        # The first warehouse sits in the firm's first destination if it has warehouses there.
        first_dest = w.dest[:, 0]
        c0 = np.where(np.isin(first_dest, countries), first_dest, countries[0])
        c1 = countries[rng.integers(0, len(countries), n)]
        two = (rng.random(n) < wc["second_prob"]) & (c1 != c0)
        s2 = wc["second_share"]
        cover = rng.uniform(wc["cover_months"][0], wc["cover_months"][1], n)
        stock = (
            self.capacity
            * cover[:, None]
            * (1 + wc["state_overstock"] * np.maximum(self.obs - 1, 0))
        )
        stock = stock * rng.lognormal(0, 0.1, stock.shape)
        frames = []
        for slot, (cc, share) in enumerate(
            [(c0, np.where(two, 1 - s2, 1.0)), (c1, np.where(two, s2, 0.0))]
        ):
            has = w.has_wh & (share > 0)
            first = w.reg_m[:, None] + wc["first_stock_after_months"]
            mask = self.live & has[:, None] & (self.t[None, :] >= first)
            mask &= self.reporting("overseas_warehouses")
            i, t = np.nonzero(mask)
            frames.append(
                pd.DataFrame(
                    {
                        "firm": i,
                        "t": t,
                        "s": slot,
                        "country_iso3": w.countries.iso3[cc[i]],
                        "stock_value_usd": np.round(stock[i, t] * share[i], 2),
                    }
                )
            )
        df = (
            pd.concat(frames, ignore_index=True)
            .sort_values(["firm", "t", "s"], kind="stable")
            .reset_index(drop=True)
        )
        df["usc_code"] = take_str(w.usc, df["firm"].to_numpy())
        df["period"] = take_str(self.periods, df["t"].to_numpy())
        return typed(df, "overseas_warehouses")

    def loans(self) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
        """Build rolling one-year loans and their monthly repayments.

        A firm with loans draws a new loan when the previous one matures, until the
        delinquency that ends in default. A missed payment shows 30 days past due, then 60
        if it rolls on, and clears (arrears paid, or the loan restructured) if it cures; from
        the default the loan is unpaid: 90, 120, ... days past due (30, 60, ... after a default
        without warning).

        Returns
        -------
        loans, repayments : pandas.DataFrame
            The two tables.
        loan_route : numpy.ndarray
            Per firm, whether its default shows as 90+ days past due.
        """
        w, cfg, rng = self.w, self.cfg, self.rng
        lc = cfg["loans"]
        term = lc["term_months"]
        M = self.M
        n = w.n
        L0 = w.first_loan_m
        # No new loan at or after onset, deregistration, or the window end.
        stop = np.minimum(np.minimum(w.onset_m, w.dereg_m), M)
        count = np.where(w.has_loans & (stop > L0), (stop - L0 - 1) // term + 1, 0)
        count = np.maximum(count, 0)
        firm = np.repeat(np.arange(n), count)
        j = np.arange(len(firm)) - np.repeat(np.cumsum(count) - count, count)
        start = L0[firm] + j * term
        # Only loans with repayment months in the window.
        onset = w.onset_m[firm]
        covers_onset = (onset > start) & (onset <= start + term)
        last = np.where(
            covers_onset,
            np.minimum(w.default_m[firm] + lc["rows_after_default_months"], w.dereg_m[firm] - 1),
            np.minimum(start + term, w.dereg_m[firm] - 1),
        )
        # A loan that matures in arrears stays on the books until it is current again.
        mature = np.clip(start + term, 0, M - 1)
        clear = self._next_current()[firm, mature]
        last = np.where(
            covers_onset, last, np.minimum(np.maximum(last, clear), w.dereg_m[firm] - 1)
        )
        last = np.minimum(last, M - 1)
        keep = last >= np.maximum(start + 1, 0)
        firm, j, start, last, covers_onset = (
            firm[keep],
            j[keep],
            start[keep],
            last[keep],
            covers_onset[keep],
        )
        loan_route = np.zeros(n, bool)
        loan_route[firm[covers_onset & (w.sudden[firm] == 0)]] = True
        cap0 = self.capacity[firm, np.clip(start, 0, M - 1)] / np.maximum(
            self.act[firm, np.clip(start, 0, M - 1)], 1e-9
        )
        principal = np.maximum(
            np.round(w.leverage[firm] * 12 * cap0 * lc["cny_per_usd"] / 1e4) * 1e4, 1e4
        )
        lender_of_firm = rng.integers(0, len(lc["lenders"]), n)
        product = rng.integers(0, len(lc["products"]), len(firm))
        loan_id = np.array(
            [f"L{x}{jj:02d}" for x, jj in zip(self.ids[firm], j, strict=True)], dtype=object
        )
        day = rng.integers(1, 29, len(firm))
        start_date = month_start(w.month0 + start) + (day - 1).astype("timedelta64[D]")
        maturity = month_start(w.month0 + start + term) + (day - 1).astype("timedelta64[D]")
        loans = pd.DataFrame(
            {
                "loan_id": loan_id,
                "usc_code": take_str(w.usc, firm),
                "lender": np.array(lc["lenders"], dtype=object)[lender_of_firm[firm]],
                "product": np.array(lc["products"], dtype=object)[product],
                "principal_cny": principal,
                "start_date": start_date,
                "maturity_date": maturity,
            }
        )
        reps = self._repayments(firm, start, last, principal, loan_id)
        return typed(loans, "loans"), typed(reps, "loan_repayments"), loan_route

    def _next_current(self) -> np.ndarray:
        """First month at or after each month with no arrears (firm x month; M if none)."""
        dq = self.w.dq
        out = np.full(dq.shape, self.M, np.int64)
        nxt = np.full(dq.shape[0], self.M, np.int64)
        for t in range(self.M - 1, -1, -1):
            nxt = np.where(dq[:, t] == 0, t, nxt)
            out[:, t] = nxt
        return out

    def _repayments(
        self,
        firm: np.ndarray,
        start: np.ndarray,
        last: np.ndarray,
        principal: np.ndarray,
        loan_id: np.ndarray,
    ) -> pd.DataFrame:
        """Monthly repayment rows of the loans (months ``start + 1 .. last``)."""
        w, rng, lc = self.w, self.rng, self.cfg["loans"]
        term = lc["term_months"]
        first = np.maximum(start + 1, 0)
        nrows = last - first + 1
        li = np.repeat(np.arange(len(firm)), nrows)
        month = first[li] + np.arange(len(li)) - np.repeat(np.cumsum(nrows) - nrows, nrows)
        f = firm[li]
        k = month - start[li]  # payment number 1..term (more when unpaid past maturity)
        P = principal[li]
        out_before = P * np.clip(1 - (k - 1) / term, 0, 1)
        interest = out_before * lc["annual_rate"] / 12
        due = np.where(k <= term, P / term + interest, 0.0)
        ons, dm = w.onset_m[f], w.default_m[f]
        in_default = month >= dm
        bucket = w.dq[f, month].astype(np.int64)
        prev_bucket = w.dq[f, np.maximum(month - 1, 0)].astype(np.int64) * (month > 0)
        delinquent = (bucket > 0) & ~in_default
        restructured = w.restructured[f, month] & ~in_default
        late = (rng.random(len(li)) < np.asarray(lc["late_prob"])[self.obs[f, month]]) & (due > 0)
        # A cure pays the missed instalments with this month's; a restructuring only this one.
        cure = (prev_bucket > 0) & (bucket == 0) & ~restructured & ~in_default
        late &= ~delinquent & ~in_default & ~restructured & ~cure
        past_default = np.where(w.sudden[f] > 0, 1, 3) + month - dm
        dpd = np.select(
            [in_default, delinquent, late],
            [30 * past_default, 30 * bucket, rng.integers(1, 30, len(li))],
            0,
        )
        paid = np.select(
            [in_default | delinquent, late, cure],
            [0.0, due * rng.uniform(0.0, 0.8, len(li)), due * (1 + prev_bucket)],
            due,
        )
        frozen = P * np.clip(1 - (ons - start[li] - 1) / term, 0, 1)
        outstanding = np.where(in_default, frozen, P * np.clip(1 - k / term, 0, 1))
        # The month a late payment is made good the principal still falls on schedule.
        reps = pd.DataFrame(
            {
                "loan_id": take_str(loan_id, li),
                "usc_code": take_str(w.usc, f),
                "period": take_str(self.periods, month),
                "due_cny": np.round(due, 2),
                "paid_cny": np.round(paid, 2),
                "days_past_due": np.minimum(dpd, 3650).astype(np.int64),
                "outstanding_cny": np.round(outstanding, 2),
                "restructured": restructured,
            }
        )
        return reps

    def court_records(self, loan_route: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        """Judgments, enforcement cases and dishonest listings; returns each firm's default date.

        Firms whose default does not show in a loan get an enforcement or dishonest-debtor
        record dated the default date; loan defaulters may get an enforcement case later.
        Judgments (which are not defaults) come before defaults and at random.
        """
        w, cfg, rng = self.w, self.cfg, self.rng
        dc = cfg["defaults"]
        n, M = w.n, self.M
        defaulted = w.default_m < M
        court_route = defaulted & ~loan_route
        day = rng.integers(2, 29, n)
        court_date = month_start(w.month0 + np.where(defaulted, w.default_m, 0)) + (day - 1).astype(
            "timedelta64[D]"
        )
        loan_date = month_end(w.month0 + np.where(defaulted, w.default_m, 0))
        default_date = np.where(court_route, court_date, loan_date)
        recs: list[
            tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []  # firm, month, day, type

        def add(mask: np.ndarray, month: np.ndarray, dday: np.ndarray, rtype: int) -> None:
            idx = np.nonzero(mask)[0]
            recs.append((idx, month[idx], dday[idx], np.full(len(idx), rtype)))

        enf = COURT_TYPES.index("enforcement")
        dis = COURT_TYPES.index("dishonest_debtor")
        jud = COURT_TYPES.index("judgment")
        listed = rng.random(n) < dc["dishonest_share_court_route"]
        add(court_route & ~listed, w.default_m, day, enf)
        add(court_route & listed, w.default_m, day, dis)
        later = w.default_m + rng.integers(
            dc["enforcement_delay_months"][0], dc["enforcement_delay_months"][1] + 1, n
        )
        ok_later = (later < np.minimum(M, w.dereg_m)) & defaulted
        add(
            loan_route
            & defaulted
            & ok_later
            & (rng.random(n) < dc["enforcement_after_loan_default"]),
            later,
            rng.integers(1, 29, n),
            enf,
        )
        add(
            court_route & ~listed & ok_later & (rng.random(n) < dc["dishonest_later_prob"]),
            later,
            rng.integers(1, 29, n),
            dis,
        )
        before = w.default_m - rng.integers(0, dc["judgment_before_months"] + 1, n)
        add(
            defaulted & (before >= 0) & (rng.random(n) < dc["judgment_before_default"]),
            before,
            rng.integers(1, 29, n),
            jud,
        )
        # Background judgments (commercial disputes), more often for weak firms.
        p_j = np.asarray(dc["judgment_rate"])[self.obs]
        ji, jt = np.nonzero(
            self.live & (rng.random((n, M)) < p_j) & (self.t[None, :] < w.default_m[:, None])
        )
        recs.append((ji, jt, rng.integers(1, 29, len(ji)), np.full(len(ji), jud)))
        firm = np.concatenate([r[0] for r in recs])
        month = np.concatenate([r[1] for r in recs])
        dday = np.concatenate([r[2] for r in recs])
        rtype = np.concatenate([r[3] for r in recs])
        order = np.lexsort((rtype, dday, month, firm))
        firm, month, dday, rtype = firm[order], month[order], dday[order], rtype[order]
        open_date = month_start(w.month0 + month) + (dday - 1).astype("timedelta64[D]")
        amount = (
            self.capacity[firm, np.clip(month, 0, M - 1)]
            * cfg["loans"]["cny_per_usd"]
            * rng.uniform(*_pair(dc["court_amount_multiple"]), len(firm))
        )
        closes = rng.random(len(firm)) < dc["close_prob"]
        close_m = month + rng.integers(
            dc["close_after_months"][0], dc["close_after_months"][1] + 1, len(firm)
        )
        closes &= close_m < M
        close_date = np.where(
            closes,
            month_start(w.month0 + np.where(closes, close_m, 0))
            + (dday - 1).astype("timedelta64[D]"),
            np.datetime64("NaT"),
        )
        seq = pd.Series(firm).groupby(firm).cumcount().to_numpy()
        case_id = np.array(
            [f"C{x}{s:03d}" for x, s in zip(self.ids[firm], seq, strict=True)], dtype=object
        )
        df = pd.DataFrame(
            {
                "case_id": case_id,
                "usc_code": take_str(w.usc, firm),
                "record_type": np.array(COURT_TYPES, dtype=object)[rtype],
                "amount_cny": np.round(np.maximum(amount, 1000.0), 2),
                "open_date": open_date,
                "close_date": close_date,
            }
        )
        return typed(df, "court_records"), np.where(defaulted, default_date, np.datetime64("NaT"))

    def admin_penalties(self) -> pd.DataFrame:
        """Administrative penalties, more frequent for low-quality and weak firms."""
        w, cfg, rng = self.w, self.cfg, self.rng
        pc = cfg["penalties"]
        n, M = w.n, self.M
        rate = pc["monthly_rate"] * np.exp(
            pc["quality_effect"] * w.quality[:, None] + pc["state_effect"] * self.obs
        )
        i, t = np.nonzero(self.live & (rng.random((n, M)) < rate))
        reasons = list(pc["reason_weights"])
        r = rng.choice(
            len(reasons),
            len(i),
            p=np.asarray(list(pc["reason_weights"].values())) / sum(pc["reason_weights"].values()),
        )
        reason = np.array(reasons, dtype=object)[r]
        authority = np.array([pc["authority"][x] for x in reasons], dtype=object)[r]
        assert set(authority) <= set(PENALTY_AUTHORITIES) and set(reason) <= set(PENALTY_REASONS)
        seq = pd.Series(i).groupby(i).cumcount().to_numpy()
        df = pd.DataFrame(
            {
                "penalty_id": [f"AP{x}{s:03d}" for x, s in zip(self.ids[i], seq, strict=True)],
                "usc_code": take_str(w.usc, i),
                "authority": authority,
                "reason": reason,
                "amount_cny": np.round(
                    np.exp(rng.normal(pc["amount_log_mean"], pc["amount_log_sd"], len(i))), -2
                ),
                "penalty_date": month_start(w.month0 + t)
                + rng.integers(0, 28, len(i)).astype("timedelta64[D]"),
            }
        )
        return typed(df, "admin_penalties")

    def _policies(self) -> dict[str, np.ndarray]:
        """Yearly policy terms of insured firms (firm, year number, start month, day, limits)."""
        w, cfg, rng = self.w, self.cfg, self.rng
        ic = cfg["insurance"]
        n, M = w.n, self.M
        P0 = w.reg_m + 12 + rng.integers(0, 24, n)
        stop = np.minimum(np.minimum(w.onset_m, w.dereg_m), M)
        count = np.where(w.insured & (stop > P0), (stop - P0 - 1) // 12 + 1, 0)
        firm = np.repeat(np.arange(n), count)
        j = np.arange(len(firm)) - np.repeat(np.cumsum(count) - count, count)
        start = P0[firm] + 12 * j
        keep = start + 12 > 0
        firm, j, start = firm[keep], j[keep], start[keep]
        day = rng.integers(1, 29, n)[firm]
        cap = self.capacity[firm, np.clip(start, 0, M - 1)]
        turnover = 12 * cap * ic["insured_share_of_sales"] * rng.uniform(0.7, 1.1, len(firm))
        ids = np.array([f"P{x}{jj:02d}" for x, jj in zip(self.ids[firm], j, strict=True)])
        return {
            "firm": firm,
            "start": start,
            "day": day,
            "turnover": turnover,
            "limit": turnover * ic["buyer_limit_share"],
            "policy_id": ids.astype(object),
        }

    def _claims(self, pol: dict[str, np.ndarray]) -> pd.DataFrame:
        """Claims: a buyer of an insured firm defaults while the firm's policy is in force.

        The loss is the insured share of the receivables that fall due from the default on:
        the shipments of the ``terms`` months before it and of the months the firm kept
        shipping after it, capped at the policy's buyer limits.
        """
        w, cfg, rng = self.w, self.cfg, self.rng
        cc, b = cfg["claims"], w.buyer_pool
        M = self.M
        cum = np.concatenate(
            [np.zeros((w.n, 1, self.buyer_flow.shape[2])), self.buyer_flow.cumsum(1)], 1
        )
        rows = []
        for d in range(w.buyer.shape[1]):
            f = pol["firm"]
            dm = w.buyer_default_m[f, d]
            hit = (dm >= pol["start"]) & (dm < pol["start"] + 12) & (dm < M)
            p = np.nonzero(hit)[0]
            f, dm = f[p], dm[p]
            bb = w.buyer[f, d]
            kind = b.state[bb, dm]
            wait = np.where(
                kind == 2,
                cc["notify_after_months"]["protracted"],
                cc["notify_after_months"]["insolvency"],
            )
            notified = dm + wait
            ok = notified < np.minimum(M, w.dereg_m[f])
            lo = np.clip(dm - b.terms[bb], 0, M)
            hi = np.clip(dm + cfg["buyers"]["stop_shipping_months"], 0, M)
            unpaid = cum[f, hi, d] - cum[f, lo, d]
            loss = np.minimum(unpaid * cfg["insurance"]["insured_share_of_sales"], pol["limit"][p])
            ok &= loss >= 1.0
            rows.append(
                pd.DataFrame(
                    {
                        "p": p[ok],
                        "firm": f[ok],
                        "buyer": bb[ok],
                        "notified": notified[ok],
                        "loss": loss[ok],
                        "slot": d,
                    }
                )
            )
        df = (
            pd.concat(rows, ignore_index=True)
            .sort_values(["firm", "notified", "slot"], kind="stable")
            .reset_index(drop=True)
        )
        k = len(df)
        decided = df["notified"].to_numpy() + rng.integers(
            cc["decision_after_months"][0], cc["decision_after_months"][1] + 1, k
        )
        declined = rng.random(k) < cc["decline_prob"]
        day = rng.integers(1, 29, (2, k))
        done = decided < M
        status = np.where(~done, 0, np.where(declined, 2, 1))
        df["paid_usd"] = np.where(
            status == 1, np.round(df["loss"].to_numpy() * cc["indemnity"], 2), 0.0
        )
        df["status"] = np.array(CLAIM_STATUS, dtype=object)[status]
        df["notified_date"] = month_start(w.month0 + df["notified"].to_numpy()) + (
            day[0] - 1
        ).astype("timedelta64[D]")
        dec = month_start(w.month0 + np.where(done, decided, 0)) + (day[1] - 1).astype(
            "timedelta64[D]"
        )
        df["decision_date"] = np.where(done, dec, np.datetime64("NaT"))
        seq = df.groupby("firm").cumcount().to_numpy()
        firm = df["firm"].to_numpy()
        df["claim_id"] = [f"CL{x}{s_:03d}" for x, s_ in zip(self.ids[firm], seq, strict=True)]
        df["policy_id"] = pol["policy_id"][df["p"].to_numpy()]
        df["usc_code"] = take_str(w.usc, firm)
        df["buyer_id"] = b.ids[df["buyer"].to_numpy()]
        df["loss_usd"] = np.round(df["loss"].to_numpy(), 2)
        return df.reset_index(drop=True)

    def insurance_policies(self) -> pd.DataFrame:
        """Yearly short-term export credit insurance policies of insured firms.

        ``claims_paid_usd`` is the sum of the policy's claims paid in the window.
        """
        w, cfg, rng = self.w, self.cfg, self.rng
        ic = cfg["insurance"]
        pol = self._policies()
        self.claims = self._claims(pol)
        paid = np.zeros(len(pol["firm"]))
        np.add.at(paid, self.claims["p"].to_numpy(), self.claims["paid_usd"].to_numpy())
        firm, start, day = pol["firm"], pol["start"], pol["day"]
        sd = month_start(w.month0 + start) + (day - 1).astype("timedelta64[D]")
        ed = month_start(w.month0 + start + 12) + (day - 2).astype("timedelta64[D]")
        insurer = rng.choice(len(ic["insurers"]), len(firm), p=np.asarray(ic["insurer_weights"]))
        df = pd.DataFrame(
            {
                "policy_id": pol["policy_id"],
                "usc_code": take_str(w.usc, firm),
                "insurer": np.array(ic["insurers"], dtype=object)[insurer],
                "start_date": sd,
                "end_date": ed,
                "insured_turnover_usd": np.round(pol["turnover"], 2),
                "buyer_limit_usd": np.round(pol["limit"], 2),
                "claims_paid_usd": np.round(paid, 2),
            }
        )
        return typed(df, "insurance_policies")

    def insurance_claims(self) -> pd.DataFrame:
        """Build the claims of the chunk (after :meth:`insurance_policies`)."""
        return typed(self.claims, "insurance_claims")

    def all_tables(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """Yield every raw table of the chunk in spec order, one at a time (to bound memory).

        After the last table, :attr:`default_date` holds each firm's default date (NaT if none).
        """
        yield "firms", self.firms()
        yield "tax", self.tax()
        yield "social_insurance", self.social_insurance()
        yield "utilities", self.utilities()
        yield "customs_declarations", self.customs_declarations()
        yield "customs_credit", self.customs_credit()
        yield "fx_receipts", self.fx_receipts()
        yield "marketplace_stores", self.marketplace_stores()
        yield "overseas_warehouses", self.overseas_warehouses()
        loans, repayments, loan_route = self.loans()
        yield "loans", loans
        del loans
        yield "loan_repayments", repayments
        del repayments
        court, self.default_date = self.court_records(loan_route)
        yield "court_records", court
        yield "admin_penalties", self.admin_penalties()
        yield "insurance_policies", self.insurance_policies()
        yield "insurance_claims", self.insurance_claims()
