"""Short-term export credit insurance quotes: country risk, premium, limits, subsidy, declines.

A quote takes a firm (its features and grade), a buyer country, the buyer's grade, payment terms
(L/C, D/P, D/A, O/A), credit days, an amount and a cover percentage, and returns the premium rate
with each component (:func:`tradefinance.pricing.premium_rate`), the premium, the buyer credit limit,
the maximum liability, the municipal subsidy and the net premium -- or a decline with its
reasons (an exporter in default, OECD category 7, a dishonest-listed firm, terms beyond the
maximum, cover above the product's, the firm failing the product's rules).
"""

from __future__ import annotations

import csv
import importlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features.labels import country_name, percent, value_label
from features.texts import LANGS, text
from tradefinance.pricing import (
    CountryTableRef,
    PaymentTerms,
    PricingConfig,
    load_pricing_config,
    premium_rate,
)
from tradefinance.products import IN_DEFAULT_FIELD, Product, ProductCatalog
from tradefinance.rules import TraceRow, evaluate_rules, in_default, is_missing


class CountryTableError(ValueError):
    """A country-risk table that cannot be used."""


@dataclass(frozen=True)
class Country:
    """One country's OECD risk classification."""

    iso3: str
    name: str
    crc: int | None
    high_income_unclassified: bool

    @property
    def category(self) -> str:
        """Pricing key: ``"HI"`` for unclassified high-income countries, else the CRC digit."""
        if self.high_income_unclassified:
            return "HI"
        return str(self.crc)


class CountryTable:
    """OECD Country Risk Classification, looked up by ISO3 code or name.

    Parameters
    ----------
    countries : list of Country
    as_of : str
        Date of the classification.
    """

    def __init__(self, countries: list[Country], as_of: str = "") -> None:
        self.countries = list(countries)
        self.as_of = as_of
        self._index: dict[str, Country] = {}
        for c in countries:
            self._index[c.iso3.upper()] = c
            self._index[c.name.upper()] = c

    def __len__(self) -> int:
        return len(self.countries)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code.strip().upper() in self._index

    def lookup(self, code: str) -> Country:
        """Return the country for an ISO3 code or an exact name (case-insensitive)."""
        try:
            return self._index[code.strip().upper()]
        except KeyError:
            raise KeyError(
                f"buyer_country must be an ISO3 code or name in the OECD table; got {code!r}"
            ) from None

    @classmethod
    def from_csv_text(
        cls, text: str, as_of: str = "", origin: str = "country table"
    ) -> CountryTable:
        """Parse the OECD CSV (``country, iso3, crc_as_parsed, notes``).

        A note ``(6)`` marks high-income OECD / euro-area countries that are not classified
        (priced at market rates; category 0 in the table but kept apart, DOMAIN.md §1.5).
        """
        reader = csv.DictReader(io.StringIO(text))
        need = {"country", "iso3", "crc_as_parsed"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise CountryTableError(
                f"{origin}: expected columns {sorted(need)}; got {reader.fieldnames}"
            )
        countries = []
        for n, rec in enumerate(reader, start=2):
            raw = (rec.get("crc_as_parsed") or "").strip()
            try:
                crc = int(raw) if raw else None
            except ValueError:
                raise CountryTableError(
                    f"{origin}: line {n}: crc_as_parsed must be 0-7 or empty; got {raw!r}"
                ) from None
            if crc is not None and not 0 <= crc <= 7:
                raise CountryTableError(f"{origin}: line {n}: crc_as_parsed must be 0-7; got {crc}")
            hi = "(6)" in (rec.get("notes") or "")
            if crc is None and not hi:
                continue  # neither classified nor high-income: no basis to price
            countries.append(
                Country(
                    iso3=rec["iso3"].strip().upper(),
                    name=rec["country"].strip(),
                    crc=crc,
                    high_income_unclassified=hi,
                )
            )
        if not countries:
            raise CountryTableError(f"{origin}: no countries")
        return cls(countries, as_of=as_of)


def load_country_table(
    path: str | Path | None = None, ref: CountryTableRef | None = None
) -> CountryTable:
    """Load the OECD country table (the CSV ``features`` ships, unless a path is given)."""
    if path is not None:
        return CountryTable.from_csv_text(Path(path).read_text(encoding="utf-8"), origin=str(path))
    r = ref or load_pricing_config().insurance.country_table
    return _shipped_table(r.module, r.resource, r.as_of)


@lru_cache(maxsize=4)
def _shipped_table(module: str, resource: str, as_of: str) -> CountryTable:
    origin = Path(str(importlib.import_module(module).__file__)).parent
    res = origin / resource
    if not res.is_file():
        raise CountryTableError(
            f"country table {res} is missing; set insurance.country_table in "
            "tradefinance/config/pricing.yaml or pass a path"
        )
    return CountryTable.from_csv_text(res.read_text(encoding="utf-8"), as_of=as_of, origin=str(res))


class QuoteRequest(BaseModel):
    """What an insurer (or the firm) asks a quote for.

    A known platform buyer (``buyer_id``) brings its own country and grade. A product with a
    fixed shipment (upstream purchase cover: the buyer is the firm itself) sets buyer country,
    terms, credit days and buyer grade; they may be omitted, and a value that differs from the
    product's is refused rather than replaced.
    """

    model_config = ConfigDict(extra="forbid")

    product_id: str | None = Field(
        default=None, description="insurance product id; pricing.yaml's default when omitted"
    )
    buyer_id: str | None = Field(
        default=None,
        max_length=40,
        description="platform buyer id; when known its platform grade and country are used",
    )
    buyer_country: str | None = Field(
        default=None, min_length=2, max_length=60, description="ISO3 code or name"
    )
    buyer_grade: str | None = Field(
        default=None,
        description="caller's buyer grade A/B/C/D/unknown (unknown buyers only; default unknown)",
    )
    terms: PaymentTerms | None = Field(default=None, description="L/C, D/P, D/A or O/A")
    credit_days: int | None = Field(default=None, ge=0, le=720, description="credit period, days")
    amount_usd: float = Field(gt=0, le=1e10, description="shipment / insured turnover, USD")
    cover: float | None = Field(
        default=None, gt=0, le=1, description="indemnity share; the product's default when omitted"
    )


class QuoteInputError(ValueError):
    """A quote request the product does not allow (``field``, ``message``, ``expected``)."""

    def __init__(self, field: str, message: str, expected: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.expected = expected


@dataclass(frozen=True)
class PlatformBuyer:
    """The platform's grade of a known buyer (from the buyer grade model) and its limit."""

    buyer_id: str
    country_iso3: str
    grade: str
    pd: float
    as_of: str
    source: str
    limit_usd: float | None = None


@dataclass
class Decline:
    """One reason cover is declined: a code, its parameters, and its texts from the catalog."""

    code: str
    message_en: str
    message_zh: str
    params: dict[str, Any] = field(default_factory=dict)


def decline(code: str, **params: Any) -> Decline:
    """Build a decline with the catalog texts ``decline.<code>`` filled from ``params``.

    Parameters that need words per language (a country, a rule) are given as
    ``{"zh": ..., "en": ...}`` and picked per language; ``params`` keeps the codes.
    """
    fields = {
        lang: {k: (v[lang] if isinstance(v, dict) else v) for k, v in params.items()}
        for lang in ("zh", "en")
    }
    plain_params = {k: v for k, v in params.items() if not isinstance(v, dict)}
    return Decline(
        code,
        text(f"decline.{code}", "en", **fields["en"]),
        text(f"decline.{code}", "zh", **fields["zh"]),
        plain_params,
    )


@dataclass
class Quote:
    """A quote or a decline."""

    product_id: str
    decision: str  # "quoted" | "declined"
    buyer_country: str
    country_category: str | None
    terms: str
    credit_days: int
    cover: float
    amount_usd: float
    buyer_id: str | None = None
    buyer_grade: str | None = None
    # "platform" (the platform's buyer grade), "caller" (an unknown buyer: the caller's grade)
    # or "product" (upstream purchase cover: the exporter's own grade maps to a buyer grade).
    buyer_grade_source: str | None = None
    buyer_grade_as_of: str | None = None
    buyer_pd: float | None = None
    # Where the buyer grade came from: {code, message_en, message_zh} (texts ins_note_*).
    notes: list[dict[str, str]] = field(default_factory=list)
    rate: float | None = None
    components: list[dict[str, Any]] = field(default_factory=list)
    buyer_credit_limit_usd: float | None = None
    insured_amount_usd: float | None = None
    uninsured_amount_usd: float | None = None
    premium_usd: float | None = None
    max_liability_usd: float | None = None
    subsidy_share: float | None = None
    subsidy_usd: float | None = None
    net_premium_usd: float | None = None
    declines: list[Decline] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["declines"] = [d.__dict__ for d in self.declines]
        return out


def subsidy_share(product: Product, exports_12m_usd: float | None, pricing: PricingConfig) -> float:
    """Share of the premium the municipality pays for this firm and product."""
    if "premium" not in product.subsidies:
        return 0.0
    s = pricing.subsidies.premium
    if exports_12m_usd is not None and exports_12m_usd <= s.exports_threshold_usd:
        return s.share
    return s.share_above_threshold


def _shipment(
    product: Product,
    request: QuoteRequest,
    row: Mapping[str, Any],
    buyer: PlatformBuyer | None,
    table: CountryTable,
) -> tuple[str, str, int, str, str]:
    """Return buyer country, terms, credit days, buyer grade and where the grade came from.

    Raises
    ------
    QuoteInputError
        A field the product fixes was sent with another value, or a field an ordinary
        product needs is missing.
    """
    spec = product.insurance
    assert spec is not None
    fixed = spec.shipment
    if fixed is not None:
        # Upstream purchase cover: the "buyer" is the firm itself; a firm in default has no
        # performing grade to map (it is declined).
        grade = (spec.buyer_grade_from_exporter or {}).get(str(row["grade"]), "unknown")
        wanted = {
            "buyer_country": table.lookup(fixed.buyer_country).iso3,
            "terms": fixed.terms,
            "credit_days": fixed.credit_days,
            "buyer_grade": grade,
        }
        for name, value in wanted.items():
            given = getattr(request, name)
            if name == "buyer_country" and given is not None and given in table:
                given = table.lookup(given).iso3
            if given is not None and given != value:
                raise QuoteInputError(
                    name,
                    f"product {product.id!r} fixes {name} to {value!r} (the buyer is the firm "
                    f"itself); got {given!r}",
                    f"{value!r} or omitted",
                )
        return fixed.buyer_country, fixed.terms, fixed.credit_days, grade, "product"
    needed = ("terms", "credit_days") if buyer is not None else _EXPECTED
    for name in needed:
        if getattr(request, name) is None:
            raise QuoteInputError(name, "is required for this product", _EXPECTED[name])
    assert request.terms is not None and request.credit_days is not None
    if buyer is not None:
        return buyer.country_iso3, request.terms, request.credit_days, buyer.grade, "platform"
    assert request.buyer_country is not None
    grade = request.buyer_grade if request.buyer_grade is not None else "unknown"
    return request.buyer_country, request.terms, request.credit_days, grade, "caller"


_EXPECTED = {
    "buyer_country": "an ISO3 code or name of the OECD table (GET /v1/countries)",
    "terms": "one of L/C, D/P, D/A, O/A",
    "credit_days": "days, 0-720",
}


def _declines(
    *,
    row: Mapping[str, Any],
    country: Country,
    credit_days: int,
    cover: float,
    spec: Any,
    p: Any,
    trace: Sequence[TraceRow],
    limit_usd: float | None = None,
) -> list[Decline]:
    """Every reason to decline cover (empty when the shipment can be quoted)."""
    out = []
    if limit_usd is not None and limit_usd <= 0:
        out.append(decline("buyer_limit"))
    if in_default(row):
        out.append(decline("in_default"))
    if country.category in p.declined_categories or country.category not in p.country_base_rate:
        out.append(
            decline(
                "country_category",
                iso3=country.iso3,
                category=country.category,
                country={lang: country_name(country.iso3, lang, country.name) for lang in LANGS},
            )
        )
    dishonest = row.get("dishonest_listed")
    if dishonest is not None and not is_missing(dishonest) and float(dishonest) >= 1:
        out.append(decline("dishonest_listed"))
    max_days = min(spec.max_credit_days, p.max_credit_days)
    if credit_days > max_days:
        out.append(decline("credit_days", credit_days=credit_days, max_days=max_days))
    if cover > spec.cover_max or cover < p.min_cover:
        out.append(
            decline(
                "cover",
                cover=percent(cover),
                min_cover=percent(p.min_cover),
                max_cover=percent(spec.cover_max),
            )
        )
    for t in trace:
        if not t.passed and t.field not in ("dishonest_listed", IN_DEFAULT_FIELD):
            out.append(
                decline(
                    "eligibility",
                    field_name=t.field,
                    rule={lang: t.text(lang) for lang in LANGS},
                    actual={lang: value_label(t.field, t.actual, lang) for lang in LANGS},
                )
            )
    return out


def _note(code: str, **fields: str) -> dict[str, str]:
    key = f"ins_note_{code}"

    def filled(lang: str) -> dict[str, str]:
        # An unrated buyer's grade code reads as words, not as "unknown" in a Chinese text.
        if fields.get("grade") == "unknown":
            return {**fields, "grade": text("buyer_grade_unknown", lang)}
        return fields

    return {
        "code": code,
        "message_en": text(key, "en", **filled("en")),
        "message_zh": text(key, "zh", **filled("zh")),
    }


def _note_buyer(
    q: Quote, request: QuoteRequest, buyer: PlatformBuyer | None, limit_usd: float | None
) -> float | None:
    """Say where the buyer grade came from; return the buyer limit to use (None: the table's)."""
    if q.buyer_grade_source == "platform" and buyer is not None:
        q.buyer_grade_as_of, q.buyer_pd = buyer.as_of, buyer.pd
        q.notes.append(_note("platform", grade=buyer.grade, source=buyer.source, as_of=buyer.as_of))
        return buyer.limit_usd if limit_usd is None else limit_usd
    if q.buyer_grade_source == "caller":
        code = "unknown_buyer" if request.buyer_id else "no_buyer_id"
        q.notes.append(_note(code, grade=str(q.buyer_grade)))
    return limit_usd


def _price(
    q: Quote, row: Mapping[str, Any], product: Product, cfg: PricingConfig, limit: float | None
) -> None:
    """Fill the premium, limits and subsidy of a quote that is not declined."""
    p, spec = cfg.insurance, product.insurance
    assert spec is not None and q.country_category is not None and q.buyer_grade is not None
    pr = premium_rate(
        country_category=q.country_category,
        buyer_grade=q.buyer_grade,
        terms=q.terms,
        credit_days=q.credit_days,
        cover=q.cover,
        exporter_grade=str(row["grade"]),
        product_factor=spec.product_factor,
        params=p,
    )
    if limit is None:
        limit = (
            p.buyer_limit_base_usd[q.country_category] * p.buyer_grades[q.buyer_grade].limit_share
        )
    insured = min(q.amount_usd, limit)
    premium = max(pr.rate * insured, p.minimum_premium_usd)
    exports = row.get("exports_12m_usd")
    share = subsidy_share(
        product, None if exports is None or is_missing(exports) else float(exports), cfg
    )
    q.decision = "quoted"
    q.rate = pr.rate
    q.components = [c.__dict__ for c in pr.components]
    q.buyer_credit_limit_usd = limit
    q.insured_amount_usd = insured
    q.uninsured_amount_usd = q.amount_usd - insured
    q.premium_usd = premium
    q.max_liability_usd = max(premium * p.max_liability_premium_multiple, limit * q.cover)
    q.subsidy_share = share
    q.subsidy_usd = premium * share
    q.net_premium_usd = premium - q.subsidy_usd


def quote(
    *,
    row: Mapping[str, Any],
    request: QuoteRequest,
    product: Product | None = None,
    catalog: ProductCatalog | None = None,
    grades: Sequence[str],
    pricing: PricingConfig | None = None,
    countries: CountryTable | None = None,
    trace: list[TraceRow] | None = None,
    buyer: PlatformBuyer | None = None,
    limit_usd: float | None = None,
) -> Quote:
    """Price short-term export credit cover for a firm's shipment, or decline it.

    Parameters
    ----------
    row : mapping
        The exporter's features and model outputs (``grade``, ``dishonest_listed``,
        ``exports_12m_usd``...).
    request : QuoteRequest
    product : Product, optional
        The insurance product; looked up in ``catalog`` by ``request.product_id`` otherwise.
    catalog : ProductCatalog, optional
    grades : sequence of str
        Master-scale grades, best first.
    pricing : PricingConfig, optional
    countries : CountryTable, optional
    trace : list of TraceRow, optional
        The product's rules already evaluated for this firm.
    buyer : PlatformBuyer, optional
        The platform's grade of ``request.buyer_id`` when the buyer is known: its grade,
        country and limit are used and the caller's ``buyer_grade`` is ignored.
    limit_usd : float, optional
        The buyer credit limit still free for this shipment (a shipment plan's earlier
        shipments to the same buyer use part of it); overrides the buyer's and the table's.

    Returns
    -------
    Quote

    Raises
    ------
    KeyError
        Unknown product or buyer country.
    QuoteInputError
        A shipment field the product fixes sent with another value, or a needed one missing.
    ValueError
        A non-insurance product, an unknown buyer grade.
    """
    cfg = pricing or load_pricing_config()
    p = cfg.insurance
    if product is None:
        if catalog is None:
            raise ValueError("quote needs a product or a catalog")
        product = catalog[request.product_id or p.default_product]
    if product.insurance is None:
        raise ValueError(
            f"product_id must be an insurance product; {product.id!r} is {product.kind}"
        )
    table = countries if countries is not None else load_country_table(ref=p.country_table)
    country_code, terms, credit_days, buyer_grade, source = _shipment(
        product, request, row, buyer, table
    )
    if buyer_grade not in p.buyer_grades:
        raise ValueError(
            f"buyer_grade must be one of {sorted(p.buyer_grades)}; got {buyer_grade!r}"
        )
    country = table.lookup(country_code)
    cover = product.insurance.cover_default if request.cover is None else request.cover
    q = Quote(
        product.id,
        "declined",
        country.iso3,
        country.category,
        terms,
        credit_days,
        cover,
        request.amount_usd,
        buyer_id=request.buyer_id,
        buyer_grade=buyer_grade,
        buyer_grade_source=source,
    )
    limit_usd = _note_buyer(q, request, buyer, limit_usd)
    trace = trace if trace is not None else evaluate_rules(product.rules, row, grades)
    q.trace = [t.as_dict() for t in trace]
    q.declines = _declines(
        row=row,
        country=country,
        credit_days=credit_days,
        cover=cover,
        spec=product.insurance,
        p=p,
        trace=trace,
        limit_usd=limit_usd,
    )
    if not q.declines:
        _price(q, row, product, cfg, limit_usd)
    return q
