"""The feature catalog: one entry per model feature, the single source of truth.

Every feature the snapshot builder writes is described here: source table, logical dtype, unit,
Chinese and English description and adverse-reason text, expected monotone direction, whether
the firm can act on it, plausible bounds and the smallest meaningful change. LightGBM's monotone
constraints, the reason codes, recourse and the data tests are all derived from it.

The catalog lives in ``features/config/catalog.yaml``; :func:`load_catalog` reads and validates
it (unknown keys, bad directions, unknown source tables and duplicate names are refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from features.tables import TABLES

#: Where the shipped catalog lives.
CATALOG_PATH = Path(__file__).parent / "config" / "catalog.yaml"

Direction = Literal["increases_risk", "decreases_risk", "none"]
FeatureDtype = Literal["float", "int", "bool", "category"]

#: Monotone-constraint sign of each direction (LightGBM convention: +1 = output rises with x).
DIRECTION_SIGN: dict[str, int] = {"increases_risk": 1, "decreases_risk": -1, "none": 0}


class CatalogError(ValueError):
    """The catalog file is unreadable or an entry breaks the catalog's rules."""


class FeatureSpec(BaseModel):
    """One feature of the catalog.

    Attributes
    ----------
    name : str
        Column name in snapshots and training sets.
    family : str
        Feature family (firm, tax, social_insurance, utilities, customs, fx, marketplace,
        warehouse, loans, courts, penalties, insurance).
    source : str
        Source table, or several joined by ``+`` for features combining tables.
    dtype : {"float", "int", "bool", "category"}
        Logical type. Snapshots store every non-category feature as float64 (NaN = the
        source is missing for the firm); ``int`` and ``bool`` say the values are whole
        numbers or 0/1.
    unit : str
        Unit of the value (``CNY``, ``USD``, ``months``, ``share``, ``count``, ``0/1``...).
    description_en, description_zh : str
        What the feature measures.
    reason_en, reason_zh : str
        Adverse-reason text shown when the feature pushes the risk up.
    direction : {"increases_risk", "decreases_risk", "none"}
        Expected monotone effect of a larger value on default risk.
    actionable : bool
        Whether the firm can change it by its own conduct (used by recourse).
    lower, upper : float or None
        Plausible bounds (data tests; recourse stays inside them). Quotient features (unit
        ``ratio`` or ``CV``) are winsorised to them by the snapshot builder.
    categories : list of str or None
        The fixed category set of a category feature.
    step : float or None
        Smallest meaningful change (recourse moves in multiples of it).
    note : str
        Caveats, including why the simulated data's univariate default rates disagree with
        ``direction`` when they do.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: str
    source: str
    dtype: FeatureDtype
    unit: str
    description_en: str
    description_zh: str
    reason_en: str
    reason_zh: str
    direction: Direction
    actionable: bool
    lower: float | None = None
    upper: float | None = None
    categories: list[str] | None = None
    step: float | None = None
    note: str = ""

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier() or value != value.lower():
            raise ValueError(f"name must be a lower-case identifier; got {value!r}")
        return value

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        unknown = [t for t in value.split("+") if t not in TABLES]
        if unknown:
            raise ValueError(f"source must name tables of features.tables; got {unknown}")
        return value

    @field_validator("description_en", "description_zh", "reason_en", "reason_zh")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.dtype == "category":
            if not self.categories:
                raise ValueError(f"{self.name}: a category feature needs its categories")
            if self.direction != "none":
                raise ValueError(f"{self.name}: a category feature cannot be monotone")
        elif self.categories is not None:
            raise ValueError(f"{self.name}: only category features have categories")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"{self.name}: lower {self.lower} > upper {self.upper}")
        if self.dtype == "bool" and (self.lower, self.upper) != (0.0, 1.0):
            raise ValueError(f"{self.name}: a bool feature has bounds 0 and 1")
        return self

    @property
    def sign(self) -> int:
        """Monotone-constraint sign: +1 raises risk, -1 lowers it, 0 none."""
        return DIRECTION_SIGN[self.direction]


class Catalog:
    """The ordered collection of :class:`FeatureSpec`.

    Parameters
    ----------
    features : list of FeatureSpec
        Features in snapshot column order; names must be unique.
    """

    def __init__(self, features: list[FeatureSpec]) -> None:
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CatalogError(f"feature names must be unique; duplicated: {dupes}")
        self.features: list[FeatureSpec] = list(features)
        self._by_name = {f.name: f for f in self.features}

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"feature {name!r} is not in the catalog") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self.features)

    def __len__(self) -> int:
        return len(self.features)

    @cached_property
    def names(self) -> list[str]:
        """Feature names in catalog (= column) order."""
        return [f.name for f in self.features]

    @cached_property
    def categorical(self) -> list[str]:
        """Names of the category features."""
        return [f.name for f in self.features if f.dtype == "category"]

    @cached_property
    def numeric(self) -> list[str]:
        """Names of the non-category features (stored as float64)."""
        return [f.name for f in self.features if f.dtype != "category"]

    @cached_property
    def actionable(self) -> list[str]:
        """Names of the features a firm can change by its own conduct."""
        return [f.name for f in self.features if f.actionable]

    def monotone_constraints(self, names: list[str] | None = None) -> list[int]:
        """LightGBM monotone constraints for ``names`` (default: every feature).

        Parameters
        ----------
        names : list of str, optional
            Model features in model order.

        Returns
        -------
        list of int
            +1 where a larger value raises risk, -1 where it lowers it, 0 otherwise.
        """
        return [self[n].sign for n in (names if names is not None else self.names)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (the YAML document)."""
        return {
            "features": [f.model_dump(exclude_defaults=False) for f in self.features],
        }

    def to_yaml(self) -> str:
        """Serialise to YAML that :func:`load_catalog` reads back to an equal catalog."""
        return yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False, width=100)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Catalog) and self.features == other.features

    def __hash__(self) -> int:
        return hash(tuple(self.names))

    def __repr__(self) -> str:
        return f"Catalog({len(self)} features)"


def catalog_from_dict(data: Any, origin: str = "catalog") -> Catalog:
    """Validate a plain-data catalog (the parsed YAML document).

    Parameters
    ----------
    data : Any
        Mapping with a ``features`` list of feature mappings.
    origin : str
        Name used in error messages (the file).

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        Naming the entry and field at fault.
    """
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise CatalogError(f"{origin}: must be a mapping with a 'features' list")
    specs = []
    for i, entry in enumerate(data["features"]):
        label = entry.get("name", f"#{i}") if isinstance(entry, dict) else f"#{i}"
        try:
            specs.append(FeatureSpec.model_validate(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise CatalogError(f"{origin}: feature {label}: {problems}") from None
    return Catalog(specs)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog YAML file.

    Parameters
    ----------
    path : str or Path, optional
        Catalog file; the shipped ``features/config/catalog.yaml`` by default.

    Returns
    -------
    Catalog
    """
    file = Path(path) if path is not None else CATALOG_PATH
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{file}: cannot read the catalog: {exc}") from exc
    return catalog_from_dict(data, origin=str(file))


#: Significance level of the univariate direction check.
DIRECTION_CHECK_ALPHA = 0.01


def direction_check(
    dataset: Any, catalog: Catalog | None = None, label: str = "label", bins: int = 10
) -> Any:
    """Compare each monotone feature's catalog direction with the data's default rates.

    For every feature with a direction, the rows where it is present are ranked against the
    label (Spearman correlation, with its p-value) and cut into up to ``bins`` quantile bins
    whose default rates are reported from the lowest to the highest bin.

    Parameters
    ----------
    dataset : pandas.DataFrame
        A training set (``features.dataset.build_dataset``).
    catalog : Catalog, optional
        The catalog (default: the shipped one).
    label : str
        The 0/1 outcome column.
    bins : int
        Quantile bins for the reported default rates.

    Returns
    -------
    pandas.DataFrame
        ``feature``, ``direction``, ``n``, ``rho``, ``p_value``, ``rates`` (default rate per bin),
        ``observed`` (``increases_risk`` / ``decreases_risk`` / ``flat`` — significant at
        ``DIRECTION_CHECK_ALPHA`` or not — or ``constant``) and ``agrees`` (False only when
        the data significantly contradicts the catalog).
    """
    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    catalog = catalog or load_catalog()
    rows = []
    for spec in catalog:
        if spec.direction == "none" or spec.name not in dataset:
            continue
        sub = dataset[[spec.name, label]].dropna()
        x, y = sub[spec.name].to_numpy(np.float64), sub[label].to_numpy(np.float64)
        if len(sub) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
            rows.append(
                {
                    "feature": spec.name,
                    "direction": spec.direction,
                    "n": len(sub),
                    "rho": np.nan,
                    "p_value": np.nan,
                    "rates": [],
                    "observed": "constant",
                    "agrees": True,
                }
            )
            continue
        rho, p_value = spearmanr(x, y)
        ranks = pd.Series(x).rank(method="average")
        cut = pd.qcut(ranks, q=min(bins, int(np.unique(x).size)), duplicates="drop", labels=False)
        rates = pd.Series(y).groupby(cut.to_numpy()).mean().round(4).tolist()
        if p_value < DIRECTION_CHECK_ALPHA:
            observed = "increases_risk" if rho > 0 else "decreases_risk"
        else:
            observed = "flat"
        agrees = observed in ("flat", spec.direction)
        rows.append(
            {
                "feature": spec.name,
                "direction": spec.direction,
                "n": len(sub),
                "rho": float(rho),
                "p_value": float(p_value),
                "rates": rates,
                "observed": observed,
                "agrees": agrees,
            }
        )
    return pd.DataFrame(rows)
