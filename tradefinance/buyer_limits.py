"""Buyer credit limits: the insurer's recommended limit per buyer, and exporters' limit requests.

A buyer credit limit is the most the insurer holds on one buyer at any time, summed over every
insured exporter that sells to it (DOMAIN.md §1.3, §7.3). The recommended limit is::

    base(country category) x limit share(buyer grade) x size multiplier(size band)

(``pricing.yaml`` ``insurance.buyer_limit_base_usd`` and ``buyer_grades``; ``insurer.yaml``
``limits``), then capped by the appetite: the per-buyer ceiling, the expected-loss budget
(``limit x pd x lgd <= budget``) and the headroom left under the country ceiling by the
insurer's exposure on the country's other buyers. It is zero for a buyer above the refusal PD
or in a declined country category. Every step that binds is a reason.

An exporter's request is granted in full, reduced to what is still free on the buyer (the limit
less the other exporters' approved limits), or refused; so the approved limits on a buyer never
add up to more than its limit. When a buyer's grade falls, :meth:`LimitBook.review` cuts the
approved limits pro rata to the new limit (future shipments; shipped goods stay covered).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from features.texts import text
from tradefinance.insurer_config import InsurerConfig, load_insurer_config
from tradefinance.pricing import PricingConfig, load_pricing_config

Source = Literal["platform", "caller"]


@dataclass(frozen=True)
class BuyerRisk:
    """What the insurer knows of a buyer at an as-of date."""

    buyer_id: str
    country_iso3: str
    size_band: str
    grade: str
    pd: float
    as_of: str | None = None
    source: Source = "platform"
    sector: str | None = None


@dataclass(frozen=True)
class Reason:
    """One step of a limit decision, in both languages (texts ``ins_reason_<code>``)."""

    code: str
    value: float | str | None
    message_en: str
    message_zh: str

    @classmethod
    def make(cls, code: str, value: float | str | None = None, **fields: Any) -> Reason:
        """Render the reason's texts from the catalog (a :class:`Label` field is translated)."""
        key = f"ins_reason_{code}"

        def filled(lang: str) -> dict[str, Any]:
            return {k: text(v.key, lang) if isinstance(v, Label) else v for k, v in fields.items()}

        return cls(code, value, text(key, "en", **filled("en")), text(key, "zh", **filled("zh")))


@dataclass(frozen=True)
class Label:
    """A field of a reason that is itself a catalog text (e.g. a size band's name)."""

    key: str


@dataclass
class LimitRecommendation:
    """The recommended limit on a buyer and what is still free under it."""

    buyer_id: str
    grade: str
    pd: float
    country_category: str
    limit_usd: float
    exposure_usd: float
    available_usd: float
    as_of: str | None
    source: Source
    reasons: list[Reason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        out = asdict(self)
        out["reasons"] = [asdict(r) for r in self.reasons]
        return out


def grade_of_pd(pd: float, cfg: InsurerConfig | None = None) -> str:
    """Buyer master-scale grade of a 12-month PD (the first grade whose upper bound holds it)."""
    c = cfg or load_insurer_config()
    if not 0 <= pd <= 1 or math.isnan(pd):
        raise ValueError(f"pd must be in [0, 1]; got {pd}")
    return next(g for g in c.buyer_grades if pd <= c.buyer_scale[g].pd_upper)


def _round_down(x: float, step: float) -> float:
    return max(math.floor(x / step) * step, 0.0)


def recommend_limit(
    buyer: BuyerRisk,
    country_category: str,
    *,
    buyer_exposure_usd: float = 0.0,
    country_exposure_usd: float = 0.0,
    cfg: InsurerConfig | None = None,
    pricing: PricingConfig | None = None,
) -> LimitRecommendation:
    """Recommended limit on a buyer, with the reasons for it.

    Parameters
    ----------
    buyer : BuyerRisk
    country_category : str
        OECD category of the buyer's country (``"HI"``, ``"0"``..``"7"``).
    buyer_exposure_usd : float
        The insurer's current aggregate (approved limits over all exporters) on this buyer.
    country_exposure_usd : float
        The insurer's aggregate on the country's *other* buyers.
    cfg, pricing : optional
        The shipped configurations when omitted.

    Returns
    -------
    LimitRecommendation
    """
    c = cfg or load_insurer_config()
    p = (pricing or load_pricing_config()).insurance
    lim = c.limits
    reasons: list[Reason] = []
    out = LimitRecommendation(
        buyer.buyer_id,
        buyer.grade,
        buyer.pd,
        country_category,
        0.0,
        buyer_exposure_usd,
        0.0,
        buyer.as_of,
        buyer.source,
        reasons,
    )
    if country_category in p.declined_categories or country_category not in p.buyer_limit_base_usd:
        reasons.append(Reason.make("country_declined", country_category, category=country_category))
        return out
    if buyer.pd > lim.refuse_pd:
        reasons.append(
            Reason.make("pd_refused", buyer.pd, pd=f"{buyer.pd:.1%}", cut=f"{lim.refuse_pd:.1%}")
        )
        return out
    base = p.buyer_limit_base_usd[country_category]
    cat = Label("ins_category_hi") if country_category == "HI" else country_category
    reasons.append(Reason.make("base", base, category=cat, usd=f"{base:,.0f}"))
    share = p.buyer_grades[buyer.grade].limit_share
    size = buyer.size_band if buyer.size_band in lim.size_multiplier else "unknown"
    mult = lim.size_multiplier[size]
    amount = base * share * mult
    reasons.append(Reason.make("grade", share, grade=buyer.grade, share=f"{share:.0%}"))
    reasons.append(Reason.make("size", mult, size=Label(f"ins_size_{size}"), factor=f"{mult:g}"))
    caps = [
        ("cap_buyer", lim.appetite.max_buyer_limit_usd),
        (
            "cap_expected_loss",
            lim.appetite.max_buyer_expected_loss_usd / (buyer.pd * c.portfolio.lgd),
        ),
        ("cap_country", max(lim.appetite.max_country_exposure_usd - country_exposure_usd, 0.0)),
    ]
    for code, cap in caps:
        if cap < amount:
            amount = cap
            reasons.append(Reason.make(code, cap, usd=f"{cap:,.0f}"))
    out.limit_usd = _round_down(amount, lim.round_usd)
    out.available_usd = max(out.limit_usd - buyer_exposure_usd, 0.0)
    if buyer_exposure_usd > out.limit_usd:
        reasons.append(
            Reason.make("over_limit", buyer_exposure_usd, usd=f"{buyer_exposure_usd:,.0f}")
        )
    return out


@dataclass
class LimitDecision:
    """The answer to an exporter's limit request on a buyer."""

    usc_code: str
    buyer_id: str
    decision: Literal["granted", "reduced", "refused"]
    requested_usd: float
    granted_usd: float
    recommendation: LimitRecommendation
    reason: Reason

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "usc_code": self.usc_code,
            "buyer_id": self.buyer_id,
            "decision": self.decision,
            "requested_usd": self.requested_usd,
            "granted_usd": self.granted_usd,
            "reason": asdict(self.reason),
            "recommendation": self.recommendation.as_dict(),
        }


class LimitBook:
    """Approved limits per (exporter, buyer): the insurer's aggregate exposure on each buyer.

    Parameters
    ----------
    approved : iterable of (usc_code, buyer_id, country_iso3, limit_usd), optional
        Limits already approved.
    """

    def __init__(self, approved: Iterable[tuple[str, str, str, float]] = ()) -> None:
        self._limits: dict[tuple[str, str], float] = {}
        self._country: dict[str, str] = {}
        for usc, buyer, country, amount in approved:
            self._limits[(usc, buyer)] = float(amount)
            self._country[buyer] = country

    def approved(self, usc_code: str, buyer_id: str) -> float:
        """Return the exporter's approved limit on the buyer (0 when none)."""
        return self._limits.get((usc_code, buyer_id), 0.0)

    def aggregate(self, buyer_id: str, excluding: str | None = None) -> float:
        """Sum of approved limits on the buyer over exporters (less one exporter's, if named)."""
        return sum(v for (u, b), v in self._limits.items() if b == buyer_id and u != excluding)

    def country_aggregate(self, country_iso3: str, excluding_buyer: str) -> float:
        """Sum of approved limits on the country's buyers other than ``excluding_buyer``."""
        return sum(
            v
            for (_, b), v in self._limits.items()
            if b != excluding_buyer and self._country.get(b) == country_iso3
        )

    def items(self) -> list[tuple[str, str, str, float]]:
        """Every approved limit as ``(usc_code, buyer_id, country_iso3, limit_usd)``."""
        return [(u, b, self._country[b], v) for (u, b), v in sorted(self._limits.items())]

    def recommend(
        self,
        buyer: BuyerRisk,
        country_category: str,
        cfg: InsurerConfig | None = None,
        pricing: PricingConfig | None = None,
    ) -> LimitRecommendation:
        """Return the buyer's recommended limit given this book's exposure."""
        return recommend_limit(
            buyer,
            country_category,
            buyer_exposure_usd=self.aggregate(buyer.buyer_id),
            country_exposure_usd=self.country_aggregate(buyer.country_iso3, buyer.buyer_id),
            cfg=cfg,
            pricing=pricing,
        )

    def request(
        self,
        usc_code: str,
        buyer: BuyerRisk,
        amount_usd: float,
        country_category: str,
        cfg: InsurerConfig | None = None,
        pricing: PricingConfig | None = None,
    ) -> LimitDecision:
        """Decide an exporter's request for a limit of ``amount_usd`` on a buyer, and book it.

        The request replaces the exporter's earlier limit on the buyer. What is free is the
        recommended limit less the other exporters' approved limits, rounded down.
        """
        if not amount_usd > 0:
            raise ValueError(f"amount_usd must be > 0; got {amount_usd}")
        c = cfg or load_insurer_config()
        rec = self.recommend(buyer, country_category, c, pricing)
        others = self.aggregate(buyer.buyer_id, excluding=usc_code)
        free = _round_down(max(rec.limit_usd - others, 0.0), c.limits.round_usd)
        decision: Literal["granted", "reduced", "refused"]
        if rec.limit_usd <= 0:
            decision, granted = "refused", 0.0
            reason = rec.reasons[-1] if rec.reasons else Reason.make("no_limit")
        elif amount_usd <= free:
            decision, granted = "granted", float(amount_usd)
            reason = Reason.make("granted", granted, usd=f"{granted:,.0f}")
        elif free >= c.limits.min_grant_usd:
            decision, granted = "reduced", free
            reason = Reason.make(
                "reduced",
                free,
                usd=f"{free:,.0f}",
                limit=f"{rec.limit_usd:,.0f}",
                others=f"{others:,.0f}",
            )
        else:
            decision, granted = "refused", 0.0
            reason = Reason.make(
                "full", free, limit=f"{rec.limit_usd:,.0f}", others=f"{others:,.0f}"
            )
        if granted > 0:
            self._limits[(usc_code, buyer.buyer_id)] = granted
            self._country[buyer.buyer_id] = buyer.country_iso3
        else:
            self._limits.pop((usc_code, buyer.buyer_id), None)
        rec.exposure_usd = self.aggregate(buyer.buyer_id)
        rec.available_usd = max(rec.limit_usd - rec.exposure_usd, 0.0)
        return LimitDecision(
            usc_code, buyer.buyer_id, decision, float(amount_usd), granted, rec, reason
        )

    def review(
        self,
        buyer: BuyerRisk,
        country_category: str,
        cfg: InsurerConfig | None = None,
        pricing: PricingConfig | None = None,
    ) -> LimitRecommendation:
        """Re-grade a buyer: cut its approved limits pro rata when they exceed the new limit."""
        c = cfg or load_insurer_config()
        rec = recommend_limit(
            buyer,
            country_category,
            buyer_exposure_usd=0.0,
            country_exposure_usd=self.country_aggregate(buyer.country_iso3, buyer.buyer_id),
            cfg=c,
            pricing=pricing,
        )
        total = self.aggregate(buyer.buyer_id)
        if total > rec.limit_usd:
            scale = rec.limit_usd / total
            for key in [k for k in self._limits if k[1] == buyer.buyer_id]:
                cut = _round_down(self._limits[key] * scale, c.limits.round_usd)
                if cut > 0:
                    self._limits[key] = cut
                else:
                    del self._limits[key]
            rec.reasons.append(
                Reason.make("cut", total, usd=f"{total:,.0f}", limit=f"{rec.limit_usd:,.0f}")
            )
        rec.exposure_usd = self.aggregate(buyer.buyer_id)
        rec.available_usd = max(rec.limit_usd - rec.exposure_usd, 0.0)
        return rec
