"""The rule engine both matching and insurance use: trace rows, scalar and vectorised evaluation.

A product's eligibility rules (``tradefinance.products.Rule``) are evaluated either for one firm
(:func:`evaluate_rules`, one :class:`TraceRow` per rule with the firm's value) or for a whole
snapshot at once (:func:`rule_mask`, :func:`eligible_mask`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.labels import rule_text, value_label
from features.values import is_missing, plain
from tradefinance.products import IN_DEFAULT_FIELD, MODEL_FIELDS, Product, Rule

__all__ = [
    "TraceRow",
    "default_trace",
    "eligible_mask",
    "evaluate_rules",
    "failed_counts",
    "in_default",
    "is_missing",
    "rule_mask",
    "rule_passes",
]

_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


# ---------------------------------------------------------------------------------------------
# Rule engine
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRow:
    """The evaluation of one rule for one firm."""

    rule: str
    field: str
    op: str
    required: Any
    actual: Any
    passed: bool
    source: Literal["firm", "model", "need", "bundle"]

    def text(self, lang: str) -> str:
        """Say the rule as a sentence in ``lang`` (from the text and feature catalogs)."""
        return rule_text(self.field, self.op, self.required, lang)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``pass`` rather than ``passed``), with the rule and value as sentences."""
        return {
            "rule": self.rule,
            "text_zh": self.text("zh"),
            "text_en": self.text("en"),
            "actual_zh": value_label(self.field, self.actual, "zh"),
            "actual_en": value_label(self.field, self.actual, "en"),
            "field": self.field,
            "op": self.op,
            "required": self.required,
            "actual": self.actual,
            "pass": self.passed,
            "source": self.source,
        }


def _token(value: Any) -> str:
    """Canonical string for set membership: 1, 1.0 and True compare as "1"."""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | float | np.integer | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def rule_passes(rule: Rule, actual: Any, grades: Sequence[str]) -> bool:
    """Whether ``actual`` satisfies ``rule``.

    Parameters
    ----------
    rule : Rule
    actual : Any
        The firm's value of ``rule.field``.
    grades : sequence of str
        Master-scale grades, best first: ``grade >= BB`` means BB or better.

    Returns
    -------
    bool
    """
    if is_missing(actual):
        return rule.if_missing == "pass"
    if rule.op in ("in", "not_in"):
        inside = _token(actual) in {_token(v) for v in rule.value}
        return inside if rule.op == "in" else not inside
    if rule.field == "grade":
        if rule.op in ("==", "!="):
            return (str(actual) == str(rule.value)) == (rule.op == "==")
        rank = {g: i for i, g in enumerate(grades)}
        if str(actual) not in rank:
            raise ValueError(f"grade must be one of {list(grades)}; got {actual!r}")
        # A better grade has a smaller rank: "grade >= BB" is rank(actual) <= rank(BB).
        return _NUMERIC_OPS[rule.op](rank[str(rule.value)], rank[str(actual)])
    if isinstance(rule.value, str) or isinstance(actual, str):
        if rule.op not in ("==", "!="):
            raise ValueError(f"rule {rule.text!r}: cannot compare text with {rule.op}")
        return (_token(actual) == _token(rule.value)) == (rule.op == "==")
    return _NUMERIC_OPS[rule.op](float(actual), float(rule.value))


def in_default(row: Mapping[str, Any]) -> bool:
    """Whether the firm's row is flagged in default at the as-of date."""
    value = row.get(IN_DEFAULT_FIELD)
    return value is not None and not is_missing(value) and bool(value)


def default_trace(row: Mapping[str, Any]) -> list[TraceRow]:
    """Return the failed ``not in default`` row for a firm in default (none when performing)."""
    if not in_default(row):
        return []
    return [
        TraceRow(
            rule="not in default",
            field=IN_DEFAULT_FIELD,
            op="==",
            required="no",
            actual="yes",
            passed=False,
            source="model",
        )
    ]


def evaluate_rules(
    rules: Sequence[Rule],
    row: Mapping[str, Any],
    grades: Sequence[str],
    *,
    overrides: Mapping[str, Any] | None = None,
) -> list[TraceRow]:
    """Evaluate rules over one firm, one trace row each, in rule order.

    Parameters
    ----------
    rules : sequence of Rule
    row : mapping
        The firm's features and model outputs.
    grades : sequence of str
        Master-scale grades, best first.
    overrides : mapping, optional
        Values that replace the firm's (e.g. ``{"insured": 1}`` when a policy is assigned);
        their rows are marked ``source="bundle"``.

    Returns
    -------
    list of TraceRow
        For a firm in default, led by the failed :func:`default_trace` row.
    """
    out = default_trace(row)
    for rule in rules:
        bundled = overrides is not None and rule.field in overrides
        actual = overrides[rule.field] if bundled else row.get(rule.field)  # type: ignore[index]
        source: Literal["firm", "model", "need", "bundle"] = (
            "bundle" if bundled else "model" if rule.field in MODEL_FIELDS else "firm"
        )
        out.append(
            TraceRow(
                rule=rule.text,
                field=rule.field,
                op=rule.op,
                required=rule.value,
                actual=plain(actual),
                passed=rule_passes(rule, actual, grades),
                source=source,
            )
        )
    return out


def rule_mask(rule: Rule, frame: pd.DataFrame, grades: Sequence[str]) -> pd.Series:
    """Vectorised :func:`rule_passes` over a frame of firms (same results, row by row).

    Parameters
    ----------
    rule : Rule
    frame : DataFrame
        One row per firm with the rule's field as a column.
    grades : sequence of str

    Returns
    -------
    Series of bool
    """
    if rule.field not in frame.columns:
        raise KeyError(f"rule {rule.text!r}: column {rule.field!r} not in the frame")
    col = frame[rule.field]
    fast = _array_mask(rule, col, grades)
    if fast is not None:
        return pd.Series(fast, index=frame.index)
    missing = col.isna()
    if rule.op in ("in", "not_in"):
        tokens = col.map(lambda v: None if is_missing(v) else _token(v))
        inside = tokens.isin({_token(v) for v in rule.value})
        ok = inside if rule.op == "in" else ~inside
    elif isinstance(rule.value, str):  # (the grade's comparisons all take the array path)
        eq = col.map(lambda v: None if is_missing(v) else _token(v)) == _token(rule.value)
        ok = eq if rule.op == "==" else ~eq
    else:
        ok = _NUMERIC_OPS[rule.op](
            pd.to_numeric(col, errors="coerce").astype(float), float(rule.value)
        )
    ok = ok.fillna(False).astype(bool)
    return ok.where(~missing, rule.if_missing == "pass").astype(bool)


def _array_mask(rule: Rule, col: pd.Series, grades: Sequence[str]) -> np.ndarray | None:
    """:func:`rule_mask` on plain arrays for a numeric column or the grade; None otherwise.

    The common cases of many candidate rows (recourse) without pandas' per-call overhead:
    a numeric comparison on a numeric column, and any comparison of the grade.
    """
    if rule.op in ("in", "not_in"):
        return None
    passes_missing = rule.if_missing == "pass"
    if rule.field == "grade" and isinstance(col.dtype, pd.CategoricalDtype):
        # Evaluate each category once, then look the rows up by their codes.
        per_level = np.array(
            [_grade_passes(rule, str(g), grades) for g in col.cat.categories], dtype=bool
        )
        codes = col.cat.codes.to_numpy()
        return np.where(codes >= 0, per_level[codes], passes_missing)
    if rule.field == "grade":
        values = col.to_numpy(dtype=object)
        present = np.fromiter((not is_missing(v) for v in values), bool, len(values))
        if rule.op in ("==", "!="):
            target = str(rule.value)
            eq = np.fromiter((str(v) == target for v in values), bool, len(values))
            ok = eq if rule.op == "==" else ~eq
        else:
            ranks = {g: float(i) for i, g in enumerate(grades)}
            actual = np.fromiter(
                (ranks.get(str(v), np.nan) for v in values), np.float64, len(values)
            )
            # A better grade has a smaller rank: "grade >= BB" is rank(BB) >= rank(actual).
            ok = np.asarray(_NUMERIC_OPS[rule.op](float(ranks[str(rule.value)]), actual))
        return np.where(present, ok, passes_missing)
    if isinstance(rule.value, str) or not pd.api.types.is_numeric_dtype(col.dtype):
        return None
    x = col.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.asarray(_NUMERIC_OPS[rule.op](x, float(rule.value)))
    return np.where(np.isnan(x), passes_missing, ok)


def _grade_passes(rule: Rule, grade: str, grades: Sequence[str]) -> bool:
    """:func:`rule_passes` of a present grade; an unknown one fails (as in :func:`rule_mask`)."""
    try:
        return rule_passes(rule, grade, grades)
    except ValueError:
        return False


def eligible_mask(
    product: Product,
    frame: pd.DataFrame,
    grades: Sequence[str],
    *,
    overrides: Mapping[str, Any] | None = None,
) -> pd.Series:
    """Whether each firm passes every firm/model rule of a product (no need checks).

    A firm in default (an ``in_default`` column, when the frame has one) never passes.
    """
    ok = pd.Series(True, index=frame.index)
    if IN_DEFAULT_FIELD in frame.columns:
        ok &= ~frame[IN_DEFAULT_FIELD].fillna(False).astype(bool)
    for rule in product.rules:
        if overrides is not None and rule.field in overrides:
            ok &= rule_passes(rule, overrides[rule.field], grades)
        else:
            ok &= rule_mask(rule, frame, grades)
    return ok


def failed_counts(
    rules: Sequence[Rule],
    frame: pd.DataFrame,
    row: Mapping[str, Any],
    grades: Sequence[str],
) -> np.ndarray:
    """Rules each candidate row fails: columns of ``frame`` first, the firm's ``row`` otherwise.

    The vectorised count of failed :func:`evaluate_rules` rows for a frame of variants of one
    firm (e.g. recourse candidates: the moved features and the model outputs as columns, every
    other field the firm's own value).

    Parameters
    ----------
    rules : sequence of Rule
    frame : DataFrame
        One row per candidate.
    row : mapping
        The firm's values of the fields the frame lacks.
    grades : sequence of str

    Returns
    -------
    ndarray of int, shape (len(frame),)
        Includes the failed ``not in default`` row when the firm is in default.
    """
    fails = np.full(len(frame), len(default_trace(row)), dtype=np.int64)
    for rule in rules:
        if rule.field in frame.columns:
            fails += ~rule_mask(rule, frame, grades).to_numpy(dtype=bool)
        elif not rule_passes(rule, row.get(rule.field), grades):
            fails += 1
    return fails
