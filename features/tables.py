"""The raw platform tables: one specification each, shared by the simulator, the
contracts (``features.contracts``), ingestion and the feature builder.

Most tables are keyed by the firm's USCC (``usc_code``, :attr:`TableSpec.firm_keyed`); the
reference tables ``buyers`` (overseas buyers, keyed by ``buyer_id``) and ``macro_indicators``
(one row per month) are not. ``references`` names each foreign key (``usc_code`` ->
``firms.usc_code``, ``buyer_id`` -> ``buyers.buyer_id``...); a nullable foreign key is checked
only where it has a value. ``date_column`` is the column that, plus the source's publication
lag (``features/config/availability.yaml``), says when a row became known to the platform.
Monthly tables carry ``period`` as ``YYYY-MM``; the monthly feeds that can arrive late carry
``received_date`` (see :data:`LATE_CAPABLE`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["static", "monthly", "yearly", "event"]
Dtype = Literal["str", "int", "float", "bool", "date", "category"]

INDUSTRIES = (
    "consumer_electronics",
    "eyewear",
    "apparel",
    "furniture",
    "jewellery",
    "watches",
    "home_goods",
    "toys",
    "other",
)
DISTRICTS = (
    "futian",
    "luohu",
    "nanshan",
    "baoan",
    "longgang",
    "yantian",
    "longhua",
    "pingshan",
    "guangming",
    "dapeng",
)
MARKETPLACES = ("amazon", "aliexpress", "temu", "shein", "shopee", "tiktok", "ebay", "walmart")
CUSTOMS_MODES = ("9610", "9710", "9810", "1210", "0110")
TAX_GRADES = ("A", "B", "M", "C", "D")
FX_CLASSES = ("A", "B", "C")
CUSTOMS_CREDIT = ("aeo", "general", "dishonest")
ACCOUNT_STATUS = ("active", "warning", "suspended")
COURT_TYPES = ("judgment", "enforcement", "dishonest_debtor")
PENALTY_REASONS = ("product_quality", "ip_infringement", "customs", "tax", "other")
PENALTY_AUTHORITIES = ("samr", "customs", "tax", "ip_office")
FX_CHANNELS = ("bank", "payment_institution")
LOAN_PRODUCTS = (
    "credit_loan",
    "order_financing",
    "receivable_financing",
    "warehouse_financing",
    "rebate_financing",
    "policy_financing",
    "working_capital",
)
BUYER_SIZES = ("small", "medium", "large")
BUYER_SECTORS = ("retail_chain", "wholesaler", "distributor", "importer", "ecommerce_retailer")
CLAIM_STATUS = ("pending", "paid", "declined")
#: Buyer identifier: ``BY`` + ISO 3166 alpha-3 of the buyer's country + 6 digits.
BUYER_ID_REGEX = r"^BY[A-Z]{3}\d{6}$"
#: Shared reference tables (the OECD country-risk list) used by pricing and the simulator.
REFERENCE_DIR = Path(__file__).parent / "config"

PERIOD_REGEX = r"^\d{4}-(0[1-9]|1[0-2])$"


@dataclass(frozen=True)
class Column:
    """One column of a raw table.

    Attributes
    ----------
    name : str
        Column name.
    dtype : {"str", "int", "float", "bool", "date", "category"}
        Logical type; ``date`` is a calendar date (datetime64 in Parquet), ``category`` a
        string restricted to ``allowed``.
    description : str
        What the column holds (used to generate the README table).
    nullable : bool
        Whether missing values are allowed.
    ge, le : float, optional
        Inclusive bounds.
    allowed : tuple of str, optional
        Allowed values for ``category`` columns.
    regex : str, optional
        Pattern a ``str`` column must match.
    """

    name: str
    dtype: Dtype
    description: str
    nullable: bool = False
    ge: float | None = None
    le: float | None = None
    allowed: tuple[str, ...] | None = None
    regex: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """A raw table: its columns, primary key and the date that drives availability.

    Attributes
    ----------
    name : str
        Table name (also the folder name under a raw or clean directory).
    kind : {"static", "monthly", "yearly", "event"}
        Grain of the table.
    description : str
        What the table holds.
    columns : tuple of Column
        Columns in order.
    key : tuple of str
        Columns that identify a row uniquely.
    date_column : str or None
        Column giving the row's reference date (``period`` for monthly tables).
    references : dict
        Foreign keys, column -> ``table.column``; ``usc_code`` must exist in ``firms``.
    """

    name: str
    kind: Kind
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    date_column: str | None
    references: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def firm_keyed(self) -> bool:
        """Whether each row belongs to one firm (the table has a ``usc_code`` column)."""
        return "usc_code" in self.column_names

    def column(self, name: str) -> Column:
        """Return the column called ``name`` (KeyError when the table has none)."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")


def _usc(desc: str = "Unified Social Credit Code of the firm (GB 32100-2015)") -> Column:
    return Column("usc_code", "str", desc)


def _period() -> Column:
    return Column("period", "str", "calendar month YYYY-MM", regex=PERIOD_REGEX)


def _received() -> Column:
    return Column(
        "received_date",
        "date",
        "date the row reached the platform when after the source's publication lag "
        "(late arrival; such rows are quarantined); null when it arrived in time",
        nullable=True,
    )


def _buyer(desc: str) -> Column:
    return Column("buyer_id", "str", desc, nullable=True, regex=BUYER_ID_REGEX)


_FIRM_REF = {"usc_code": "firms.usc_code"}
_FIRM_BUYER_REF = {"usc_code": "firms.usc_code", "buyer_id": "buyers.buyer_id"}

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        TableSpec(
            "firms",
            "static",
            "Registration record of each cross-border e-commerce firm",
            (
                _usc(),
                Column("name", "str", "registered Chinese name"),
                Column(
                    "district", "category", "Shenzhen district of registration", allowed=DISTRICTS
                ),
                Column("industry", "category", "main product cluster", allowed=INDUSTRIES),
                Column("registration_date", "date", "date of business registration"),
                Column("registered_capital_cny", "float", "registered capital, CNY", ge=0),
                Column(
                    "customs_modes",
                    "str",
                    "comma-separated customs supervision modes used",
                    regex=r"^(9610|9710|9810|1210|0110)(,(9610|9710|9810|1210|0110))*$",
                ),
                Column(
                    "main_marketplace",
                    "category",
                    "marketplace with the most sales",
                    nullable=True,
                    allowed=MARKETPLACES,
                ),
                Column("own_brand", "bool", "sells under its own registered brand"),
                Column("independent_site", "bool", "runs an independent online shop"),
                Column("high_tech", "bool", "national high-tech enterprise label"),
                Column("provincial_leader", "bool", "provincial CBEC leading-enterprise label"),
                Column(
                    "deregistration_date", "date", "date the firm was deregistered", nullable=True
                ),
            ),
            key=("usc_code",),
            date_column="registration_date",
        ),
        TableSpec(
            "buyers",
            "static",
            "Overseas buyers of the platform's exporters (a reference table; several firms share a buyer)",
            (
                Column(
                    "buyer_id", "str", "buyer identifier BY + ISO3 + 6 digits", regex=BUYER_ID_REGEX
                ),
                Column("name", "str", "buyer's registered name"),
                Column(
                    "country_iso3", "str", "buyer's country ISO 3166 alpha-3", regex=r"^[A-Z]{3}$"
                ),
                Column("size_band", "category", "small / medium / large", allowed=BUYER_SIZES),
                Column("sector", "category", "buyer's trade sector", allowed=BUYER_SECTORS),
            ),
            key=("buyer_id",),
            date_column=None,
        ),
        TableSpec(
            "tax",
            "yearly",
            "Yearly tax credit grade, tax paid and export rebates (grade for year Y published April Y+1)",
            (
                _usc(),
                Column("tax_year", "int", "tax year", ge=2000, le=2100),
                Column("tax_grade", "category", "tax credit grade A/B/M/C/D", allowed=TAX_GRADES),
                Column("tax_paid_cny", "float", "tax paid in the year, CNY", ge=0),
                Column("export_rebate_cny", "float", "export VAT rebate received, CNY", ge=0),
                Column(
                    "rebate_class",
                    "int",
                    "export-enterprise rebate management class 1-4",
                    ge=1,
                    le=4,
                ),
                Column("arrears_cny", "float", "tax arrears at year end, CNY", ge=0),
            ),
            key=("usc_code", "tax_year"),
            date_column="tax_year",
            references=_FIRM_REF,
        ),
        TableSpec(
            "social_insurance",
            "monthly",
            "Monthly social-insurance contributions",
            (
                _usc(),
                _period(),
                Column(
                    "insured_headcount", "int", "employees insured this month", ge=0, le=100_000
                ),
                Column("arrears_cny", "float", "contribution arrears, CNY", ge=0),
                _received(),
            ),
            key=("usc_code", "period"),
            date_column="period",
            references=_FIRM_REF,
        ),
        TableSpec(
            "utilities",
            "monthly",
            "Monthly electricity and water use",
            (
                _usc(),
                _period(),
                Column("electricity_kwh", "float", "electricity used, kWh", ge=0),
                Column("water_m3", "float", "water used, cubic metres", ge=0),
                Column("late_payment", "bool", "the utility bill was paid late"),
                _received(),
            ),
            key=("usc_code", "period"),
            date_column="period",
            references=_FIRM_REF,
        ),
        TableSpec(
            "customs_declarations",
            "monthly",
            "Monthly export declarations by customs mode and destination",
            (
                _usc(),
                _period(),
                Column(
                    "customs_mode", "category", "customs supervision mode", allowed=CUSTOMS_MODES
                ),
                Column(
                    "destination_iso3",
                    "str",
                    "destination country ISO 3166 alpha-3",
                    regex=r"^[A-Z]{3}$",
                ),
                Column("declared_value_usd", "float", "declared export value, USD", ge=0),
                Column(
                    "declaration_count",
                    "int",
                    "number of declarations (or consolidated lists)",
                    ge=0,
                ),
                Column("returned_value_usd", "float", "value of returned goods, USD", ge=0),
                Column("inspection_anomalies", "int", "inspections with anomalies", ge=0),
                _buyer(
                    "overseas buyer of the goods (B2B modes 9710/0110); null for B2C parcels "
                    "and exports to the firm's own overseas warehouse"
                ),
                _received(),
            ),
            key=("usc_code", "period", "customs_mode", "destination_iso3"),
            date_column="period",
            references=_FIRM_BUYER_REF,
        ),
        TableSpec(
            "customs_credit",
            "event",
            "Customs enterprise credit category changes (Order 251)",
            (
                _usc(),
                Column("effective_date", "date", "date the category took effect"),
                Column("category", "category", "AEO / general / dishonest", allowed=CUSTOMS_CREDIT),
            ),
            key=("usc_code", "effective_date"),
            date_column="effective_date",
            references=_FIRM_REF,
        ),
        TableSpec(
            "fx_receipts",
            "monthly",
            "Monthly foreign-exchange receipts from abroad, by channel and paying buyer",
            (
                _usc(),
                _period(),
                Column(
                    "channel",
                    "category",
                    "bank or licensed payment institution",
                    allowed=FX_CHANNELS,
                ),
                Column("received_usd", "float", "money received from abroad, USD", ge=0),
                Column("fx_class", "category", "SAFE goods-trade class A/B/C", allowed=FX_CLASSES),
                _buyer("overseas buyer that paid; null for marketplace payouts and other flows"),
                Column(
                    "expected_usd",
                    "float",
                    "amount due this month under the payment terms (from that buyer; for "
                    "payouts: last month's sales)",
                    ge=0,
                ),
                Column(
                    "days_beyond_terms",
                    "float",
                    "value-weighted days the payment came after its due date (0 when on time; "
                    "the due date when nothing was paid)",
                    ge=0,
                    le=3650,
                ),
                _received(),
            ),
            key=("usc_code", "period", "channel", "buyer_id"),
            date_column="period",
            references=_FIRM_BUYER_REF,
        ),
        TableSpec(
            "marketplace_stores",
            "monthly",
            "Monthly marketplace store performance, one row per store",
            (
                _usc(),
                _period(),
                Column("marketplace", "category", "marketplace", allowed=MARKETPLACES),
                Column("store_id", "str", "store identifier"),
                Column("gmv_usd", "float", "gross merchandise value, USD", ge=0),
                Column("orders", "int", "orders", ge=0),
                Column("refund_rate", "float", "share of orders refunded", ge=0, le=1),
                Column("rating", "float", "store rating 1-5", ge=1, le=5, nullable=True),
                Column(
                    "account_status",
                    "category",
                    "active / warning / suspended",
                    allowed=ACCOUNT_STATUS,
                ),
                Column(
                    "payout_hold_usd", "float", "payouts withheld by the marketplace, USD", ge=0
                ),
                _received(),
            ),
            key=("usc_code", "period", "store_id"),
            date_column="period",
            references=_FIRM_REF,
        ),
        TableSpec(
            "overseas_warehouses",
            "monthly",
            "Month-end stock held in overseas warehouses, by country",
            (
                _usc(),
                _period(),
                Column("country_iso3", "str", "warehouse country ISO alpha-3", regex=r"^[A-Z]{3}$"),
                Column("stock_value_usd", "float", "stock value at month end, USD", ge=0),
                _received(),
            ),
            key=("usc_code", "period", "country_iso3"),
            date_column="period",
            references=_FIRM_REF,
        ),
        TableSpec(
            "loans",
            "event",
            "Loans granted to the firm",
            (
                Column("loan_id", "str", "loan identifier"),
                _usc(),
                Column("lender", "str", "lending institution"),
                Column("product", "category", "loan product type", allowed=LOAN_PRODUCTS),
                Column("principal_cny", "float", "principal, CNY", ge=0),
                Column("start_date", "date", "drawdown date"),
                Column("maturity_date", "date", "contractual maturity"),
            ),
            key=("loan_id",),
            date_column="start_date",
            references=_FIRM_REF,
        ),
        TableSpec(
            "loan_repayments",
            "monthly",
            "Monthly repayment status of each loan",
            (
                Column("loan_id", "str", "loan identifier"),
                _usc(),
                _period(),
                Column("due_cny", "float", "amount due this month, CNY", ge=0),
                Column("paid_cny", "float", "amount paid this month, CNY", ge=0),
                Column("days_past_due", "int", "days past due at month end", ge=0, le=3650),
                Column("outstanding_cny", "float", "principal outstanding at month end, CNY", ge=0),
                Column(
                    "restructured",
                    "bool",
                    "the loan was restructured this month (arrears rescheduled, days past due "
                    "reset); not a default under features/config/default_status.yaml",
                ),
            ),
            key=("loan_id", "period"),
            date_column="period",
            references={"usc_code": "firms.usc_code", "loan_id": "loans.loan_id"},
        ),
        TableSpec(
            "court_records",
            "event",
            "Court judgments, enforcement cases and dishonest judgment-debtor listings",
            (
                Column("case_id", "str", "case identifier"),
                _usc(),
                Column(
                    "record_type",
                    "category",
                    "judgment / enforcement / dishonest_debtor",
                    allowed=COURT_TYPES,
                ),
                Column("amount_cny", "float", "amount at stake, CNY", ge=0),
                Column("open_date", "date", "date filed or listed"),
                Column("close_date", "date", "date closed or delisted", nullable=True),
            ),
            key=("case_id",),
            date_column="open_date",
            references=_FIRM_REF,
        ),
        TableSpec(
            "admin_penalties",
            "event",
            "Administrative penalties",
            (
                Column("penalty_id", "str", "penalty identifier"),
                _usc(),
                Column("authority", "category", "issuing authority", allowed=PENALTY_AUTHORITIES),
                Column("reason", "category", "reason for the penalty", allowed=PENALTY_REASONS),
                Column("amount_cny", "float", "fine, CNY", ge=0),
                Column("penalty_date", "date", "date of the decision"),
            ),
            key=("penalty_id",),
            date_column="penalty_date",
            references=_FIRM_REF,
        ),
        TableSpec(
            "insurance_policies",
            "event",
            "Short-term export credit insurance policies (one row per policy year)",
            (
                Column("policy_id", "str", "policy identifier"),
                _usc(),
                Column("insurer", "str", "insurer"),
                Column("start_date", "date", "cover start"),
                Column("end_date", "date", "cover end"),
                Column("insured_turnover_usd", "float", "declared insured turnover, USD", ge=0),
                Column(
                    "buyer_limit_usd", "float", "sum of approved buyer credit limits, USD", ge=0
                ),
                Column(
                    "claims_paid_usd",
                    "float",
                    "claims paid to the firm under the policy, USD",
                    ge=0,
                ),
            ),
            key=("policy_id",),
            date_column="start_date",
            references=_FIRM_REF,
        ),
        TableSpec(
            "insurance_claims",
            "event",
            "Export credit insurance claims: a buyer did not pay an insured shipment",
            (
                Column("claim_id", "str", "claim identifier"),
                Column("policy_id", "str", "policy the shipment was insured under"),
                _usc(),
                Column("buyer_id", "str", "buyer that did not pay", regex=BUYER_ID_REGEX),
                Column("notified_date", "date", "date the exporter notified the loss"),
                Column("loss_usd", "float", "unpaid insured receivables claimed, USD", ge=0),
                Column("paid_usd", "float", "indemnity paid, USD (0 unless paid)", ge=0),
                Column(
                    "decision_date",
                    "date",
                    "date the insurer decided (null while pending)",
                    nullable=True,
                ),
                Column("status", "category", "pending / paid / declined", allowed=CLAIM_STATUS),
            ),
            key=("claim_id",),
            date_column="notified_date",
            references={
                "usc_code": "firms.usc_code",
                "buyer_id": "buyers.buyer_id",
                "policy_id": "insurance_policies.policy_id",
            },
        ),
        TableSpec(
            "macro_indicators",
            "monthly",
            "Published monthly indicators of the export economy (not firm-level)",
            (
                _period(),
                Column(
                    "export_orders_pmi",
                    "float",
                    "new export orders purchasing managers' index (50 = no change)",
                    ge=0,
                    le=100,
                ),
                Column(
                    "freight_cost_index", "float", "container freight cost index (2019 = 100)", ge=0
                ),
                Column(
                    "western_demand_index",
                    "float",
                    "consumer demand in the main Western markets (2019 = 100)",
                    ge=0,
                ),
            ),
            key=("period",),
            date_column="period",
        ),
    ]
}

#: Monthly firm feeds whose rows can reach the platform after their publication lag.
LATE_CAPABLE = tuple(
    name
    for name, spec in TABLES.items()
    if spec.kind == "monthly" and "received_date" in spec.column_names
)
