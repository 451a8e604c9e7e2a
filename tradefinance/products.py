"""The product catalog: bank financing and export-credit-insurance products, validated on load.

The shipped catalog ``tradefinance/config/products.yaml`` is illustrative (DOMAIN.md §1-§2); a
deployment loads its own with :func:`load_products`. A product that breaks the schema is
reported as ``product '<id>': <field>: <what was expected>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradefinance.pricing import PaymentTerms

FINANCING_KINDS: tuple[str, ...] = (
    "credit_loan",
    "order_financing",
    "platform_receivable_financing",
    "overseas_warehouse_financing",
    "tax_rebate_financing",
    "policy_financing",
    "export_factoring",
)
INSURANCE_KINDS: tuple[str, ...] = ("export_credit_insurance", "upstream_purchase_cover")
ProductKind = Literal[
    "credit_loan",
    "order_financing",
    "platform_receivable_financing",
    "overseas_warehouse_financing",
    "tax_rebate_financing",
    "policy_financing",
    "export_factoring",
    "export_credit_insurance",
    "upstream_purchase_cover",
]
#: Model outputs a rule may use besides catalog features.
MODEL_FIELDS: tuple[str, ...] = ("pd", "score", "grade", "supervision_class")
#: Flag of a firm in default at the as-of date (features/config/default_status.yaml). Not a rule
#: field: every product implicitly requires it to be false (see tradefinance.matching.default_trace).
IN_DEFAULT_FIELD = "in_default"
RuleOp = Literal[">=", "<=", ">", "<", "==", "!=", "in", "not_in"]
LimitBasis = Literal["exports_monthly", "exports_annual", "gmv_monthly", "overseas_stock"]
PolicyTag = Literal[4, 11, 17, 18, 19]
SubsidyName = Literal["premium", "policy_financing_interest"]


class ProductCatalogError(ValueError):
    """A product catalog that cannot be used; the message names the product and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(_Strict):
    """Who offers the product."""

    name_en: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    fictional: bool


class AmountRange(_Strict):
    """Amount range in CNY."""

    min_cny: float = Field(gt=0)
    max_cny: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AmountRange:
        if self.min_cny > self.max_cny:
            raise ValueError(f"min_cny must be <= max_cny; got {self.min_cny} > {self.max_cny}")
        return self


class TenorRange(_Strict):
    """Tenor range in months."""

    min_months: int = Field(ge=1)
    max_months: int = Field(ge=1, le=120)

    @model_validator(mode="after")
    def _ordered(self) -> TenorRange:
        if self.min_months > self.max_months:
            raise ValueError(
                f"min_months must be <= max_months; got {self.min_months} > {self.max_months}"
            )
        return self


class LimitSpec(_Strict):
    """Limit sizing: ``basis x multiple``, scaled down with PD."""

    basis: LimitBasis
    multiple: float = Field(gt=0)


class LoanPricing(_Strict):
    """Rate range and unsecured LGD of a financing product."""

    rate_min: float = Field(ge=0, lt=1)
    rate_max: float = Field(gt=0, lt=1)
    lgd: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> LoanPricing:
        if self.rate_min > self.rate_max:
            raise ValueError(f"rate_min must be <= rate_max; got {self.rate_min} > {self.rate_max}")
        return self


class FixedShipment(_Strict):
    """A shipment fixed by the product (upstream purchase cover: the buyer is the firm)."""

    buyer_country: str
    terms: PaymentTerms
    credit_days: int = Field(gt=0)


class InsuranceSpec(_Strict):
    """Cover terms of an insurance product."""

    cover_default: float = Field(gt=0, le=1)
    cover_max: float = Field(gt=0, le=1)
    product_factor: float = Field(gt=0)
    max_credit_days: int = Field(gt=0)
    shipment: FixedShipment | None = None
    buyer_grade_from_exporter: dict[str, str] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> InsuranceSpec:
        if self.cover_default > self.cover_max:
            raise ValueError(
                f"cover_default must be <= cover_max; got {self.cover_default} > {self.cover_max}"
            )
        if (self.shipment is None) != (self.buyer_grade_from_exporter is None):
            raise ValueError("shipment and buyer_grade_from_exporter go together")
        return self


class Rule(_Strict):
    """One eligibility rule: ``field op value``.

    ``if_missing`` decides a rule whose field is missing for the firm (``fail`` by default).
    ``bundle: true`` marks a rule an assigned insurance policy satisfies (``insured == 1``).
    """

    field: str = Field(min_length=1)
    op: RuleOp
    value: Any
    if_missing: Literal["fail", "pass"] = "fail"
    bundle: bool = False

    @model_validator(mode="after")
    def _value_shape(self) -> Rule:
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"value must be a non-empty list for op {self.op!r}")
        elif isinstance(self.value, list | dict):
            raise ValueError(f"value must be a scalar for op {self.op!r}; got {self.value!r}")
        if self.field == "grade" and self.op in (">", "<"):
            raise ValueError("grade rules use >=, <=, ==, !=, in or not_in")
        return self

    @property
    def text(self) -> str:
        """Human-readable form, e.g. ``grade >= BB``."""
        value = ", ".join(map(str, self.value)) if isinstance(self.value, list) else self.value
        if self.op in ("in", "not_in"):
            value = "{" + str(value) + "}"
        return f"{self.field} {self.op.replace('_', ' ')} {value}"


class Product(_Strict):
    """A financing or insurance product."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_en: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    provider: Provider
    kind: ProductKind
    purposes: list[str] = Field(min_length=1)
    amount: AmountRange | None = None
    tenor: TenorRange | None = None
    advance_rate: float | None = Field(default=None, gt=0, le=1)
    limit: LimitSpec
    pricing: LoanPricing | None = None
    insurance: InsuranceSpec | None = None
    policy_assignment: bool = False
    rules: list[Rule] = Field(default_factory=list)
    policy_tags: list[PolicyTag] = Field(min_length=1)
    subsidies: list[SubsidyName] = Field(default_factory=list)
    source: str = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> Product:
        if self.is_insurance:
            if self.insurance is None:
                raise ValueError(f"insurance: required for kind {self.kind!r}")
            if self.pricing is not None:
                raise ValueError(f"pricing: not allowed for kind {self.kind!r}")
        else:
            for name in ("amount", "tenor", "pricing"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: required for kind {self.kind!r}")
            if self.insurance is not None:
                raise ValueError(f"insurance: not allowed for kind {self.kind!r}")
        if any(r.bundle for r in self.rules) and not self.policy_assignment:
            raise ValueError("rules: a bundle rule needs policy_assignment: true")
        return self

    @property
    def is_insurance(self) -> bool:
        """Whether this is an insurance product (not a loan)."""
        return self.kind in INSURANCE_KINDS

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for the products endpoint."""
        data = self.model_dump(mode="json")
        data["rules"] = [{**r.model_dump(mode="json"), "text": r.text} for r in self.rules]
        return data


class ProductCatalog:
    """Validated products, in file order.

    Parameters
    ----------
    products : list of Product
    version : str
    """

    def __init__(self, products: list[Product], version: str = "") -> None:
        ids = [p.id for p in products]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ProductCatalogError(f"product ids must be unique; duplicated {dupes}")
        self.products = list(products)
        self.version = version
        self._by_id = {p.id: p for p in products}

    def __getitem__(self, product_id: str) -> Product:
        try:
            return self._by_id[product_id]
        except KeyError:
            raise KeyError(
                f"unknown product {product_id!r}; known: {sorted(self._by_id)}"
            ) from None

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._by_id

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    def __len__(self) -> int:
        return len(self.products)

    @property
    def financing(self) -> list[Product]:
        """The loan / financing products."""
        return [p for p in self.products if not p.is_insurance]

    @property
    def insurance(self) -> list[Product]:
        """The insurance products."""
        return [p for p in self.products if p.is_insurance]

    @property
    def purposes(self) -> list[str]:
        """Every financing purpose some financing product serves, sorted (a need's vocabulary)."""
        return sorted({purpose for p in self.financing for purpose in p.purposes})

    def rule_fields(self) -> set[str]:
        """Every field a rule reads."""
        return {r.field for p in self.products for r in p.rules}


def _loc(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))


def catalog_from_dict(
    data: Any,
    *,
    known_fields: Iterable[str] | None = None,
    grades: Iterable[str] | None = None,
    origin: str = "products",
) -> ProductCatalog:
    """Validate a parsed catalog.

    Parameters
    ----------
    data : Any
        Parsed YAML: ``{version, products: [...]}``.
    known_fields : iterable of str, optional
        Feature names rules may use (the feature catalog's names); unchecked when omitted.
        Model outputs (:data:`MODEL_FIELDS`) are always allowed.
    grades : iterable of str, optional
        Master-scale grades; grade rule values and grade mappings are checked against them.
    origin : str
        Name used in error messages (the file).

    Returns
    -------
    ProductCatalog

    Raises
    ------
    ProductCatalogError
        Naming the product and field that are wrong and what was expected.
    """
    if not isinstance(data, dict) or not isinstance(data.get("products"), list):
        raise ProductCatalogError(f"{origin}: expected a mapping with a 'products' list")
    unknown_top = set(data) - {"version", "products"}
    if unknown_top:
        raise ProductCatalogError(f"{origin}: unknown top-level keys {sorted(unknown_top)}")
    allowed = None if known_fields is None else set(known_fields) | set(MODEL_FIELDS)
    grade_list = None if grades is None else list(grades)
    products = []
    for i, raw in enumerate(data["products"]):
        pid = raw.get("id", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        try:
            product = Product.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = _loc(first) or "(product)"
            raise ProductCatalogError(
                f"{origin}: product {pid!r}: {where}: {first['msg']}"
            ) from None
        for j, rule in enumerate(product.rules):
            if allowed is not None and rule.field not in allowed:
                raise ProductCatalogError(
                    f"{origin}: product {pid!r}: rules.{j}.field: unknown field {rule.field!r}; "
                    "expected a feature-catalog name or one of " + ", ".join(MODEL_FIELDS)
                )
            if rule.field == "grade" and grade_list is not None:
                values = rule.value if isinstance(rule.value, list) else [rule.value]
                bad = [v for v in values if v not in grade_list]
                if bad:
                    raise ProductCatalogError(
                        f"{origin}: product {pid!r}: rules.{j}.value: grade {bad} not on the "
                        f"master scale {grade_list}"
                    )
        mapping = product.insurance.buyer_grade_from_exporter if product.insurance else None
        if mapping is not None and grade_list is not None:
            missing = [g for g in grade_list if g not in mapping]
            if missing:
                raise ProductCatalogError(
                    f"{origin}: product {pid!r}: insurance.buyer_grade_from_exporter: "
                    f"missing grades {missing}"
                )
        products.append(product)
    try:
        return ProductCatalog(products, version=str(data.get("version", "")))
    except ProductCatalogError as exc:
        raise ProductCatalogError(f"{origin}: {exc}") from None


def load_products(
    path: str | Path | None = None,
    *,
    known_fields: Iterable[str] | None = None,
    grades: Iterable[str] | None = None,
) -> ProductCatalog:
    """Load and validate a product catalog file.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; the shipped ``tradefinance/config/products.yaml`` when omitted.
    known_fields, grades : iterable of str, optional
        See :func:`catalog_from_dict`.

    Returns
    -------
    ProductCatalog
    """
    if path is None:
        text = _shipped_text()
        origin = "tradefinance/config/products.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ProductCatalogError(f"{path}: cannot read product catalog: {exc}") from None
        origin = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProductCatalogError(f"{origin}: not valid YAML: {exc}") from None
    return catalog_from_dict(data, known_fields=known_fields, grades=grades, origin=origin)


@lru_cache(maxsize=1)
def _shipped_text() -> str:
    return (Path(__file__).parent / "config" / "products.yaml").read_text(encoding="utf-8")
