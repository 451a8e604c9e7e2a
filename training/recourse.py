"""Recourse: the smallest plausible changes to actionable features that reach a goal.

The search moves only actionable catalog features, only in the direction that lowers risk by
the catalog (``increases_risk`` features go down, ``decreases_risk`` ones go up), within the
catalog bounds and in multiples of the catalog ``step``. Cost is the sum over changed features
of ``|change| / scale`` (scale: the population spread of the feature when given, else ten
steps) plus a small charge per changed feature, so fewer and smaller changes win. A beam search
over single-feature moves finds a plan, a pruning pass walks each change back as far as the
goal allows, and the final vector is scored again to confirm the goal (``reached``).

``goal`` is any predicate over the scored row (features plus ``pd``, ``log_odds``, ``score``,
``grade``, ``supervision_class``): reaching a grade (:func:`grade_goal`) or passing a
product's eligibility rules.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.values import is_missing, plain

if TYPE_CHECKING:
    from features.catalog import Catalog, FeatureSpec
    from training.model import CreditModel

Goal = Callable[[Mapping[str, Any]], bool]
#: A goal over a frame of scored candidates (one bool per row), the vectorised twin of a Goal.
GoalMask = Callable[[pd.DataFrame], np.ndarray]
#: Rules each scored candidate of a frame fails (0: the goal is met), one int per row.
FailureCount = Callable[[pd.DataFrame], np.ndarray]
SCORE_COLUMNS = ("pd", "log_odds", "score", "grade", "supervision_class")
#: The shipped search settings.
CONFIG_PATH = Path(__file__).parent / "config" / "recourse.yaml"


class RecourseConfig(BaseModel):
    """Costs, moves and limits of the recourse search (``training/config/recourse.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_feature_cost: float = Field(ge=0)
    scale_fractions: tuple[float, ...] = Field(min_length=1)
    bound_reach: float = Field(ge=0)
    max_features: int = Field(ge=1)
    max_steps: int = Field(ge=1)
    beam: int = Field(ge=1)
    prune_rounds: int = Field(ge=0)
    prune_fractions: tuple[float, ...]
    time_budget_s: float = Field(gt=0)
    failure_weight: float = Field(gt=0)
    match_budget_s: float = Field(gt=0)
    match_products: int = Field(ge=0)
    match_memo_size: int = Field(ge=0)


@lru_cache(maxsize=8)
def load_recourse_config(path: str | None = None) -> RecourseConfig:
    """Read and validate the recourse settings (the shipped file when ``path`` is None).

    Raises
    ------
    pydantic.ValidationError
        Naming the field that is wrong.
    """
    with open(path or CONFIG_PATH, encoding="utf-8") as fh:
        return RecourseConfig.model_validate(yaml.safe_load(fh))


class ChangeError(ValueError):
    """A requested feature change is not allowed; ``expected`` says what would be."""

    def __init__(self, feature: str, message: str, expected: str) -> None:
        super().__init__(f"{feature}: {message}")
        self.feature = feature
        self.message = message
        self.expected = expected


@dataclass(frozen=True)
class PlannedChange:
    """One feature change of a plan."""

    feature: str
    before: Any
    after: Any
    cost: float


@dataclass(frozen=True)
class RecoursePlan:
    """Result of :func:`find_recourse`.

    Attributes
    ----------
    reached : bool
        Whether the changed vector, scored again, meets the goal.
    already_met : bool
        The unchanged row meets the goal (no changes needed).
    changes : list of PlannedChange
    cost : float
        Normalised cost of the changes.
    before, after : dict
        Scored rows (``pd``, ``log_odds``, ``score``, ``grade``, ``supervision_class``).
    features : dict
        The changed feature vector (feature -> value).
    evaluated : int
        Candidate vectors scored.
    """

    reached: bool
    already_met: bool
    changes: list[PlannedChange]
    cost: float
    before: dict[str, Any]
    after: dict[str, Any]
    features: dict[str, Any] = field(repr=False)
    evaluated: int = 0


def grade_goal(model: CreditModel, target: str) -> Goal:
    """Goal: the grade is ``target`` or better on the model's master scale.

    Raises
    ------
    ValueError
        ``target`` is not a grade of the scale.
    """
    scale = model.master_scale
    limit = scale.rank(target)
    return lambda row: scale.rank(str(row["grade"])) <= limit


def check_change(spec: FeatureSpec, value: Any) -> Any:
    """Validate and coerce a requested value of one actionable feature.

    Parameters
    ----------
    spec : FeatureSpec
        The feature's catalog entry.
    value : Any
        Requested value (JSON scalar).

    Returns
    -------
    Any
        The value in the feature's type (float, int, bool as 0/1 int, or category string).

    Raises
    ------
    ChangeError
        Not actionable, wrong type, outside the bounds, or not a known category.
    """
    if not spec.actionable:
        raise ChangeError(spec.name, "is not actionable", "an actionable catalog feature")
    if spec.dtype == "category":
        cats = [str(c) for c in spec.categories or []]
        if not isinstance(value, str) or value not in cats:
            raise ChangeError(spec.name, f"got {value!r}", f"one of {', '.join(cats)}")
        return value
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ChangeError(spec.name, f"got {value!r}", f"a finite {spec.dtype}")
    if spec.dtype in ("int", "bool") and float(value) != int(value):
        raise ChangeError(spec.name, f"got {value!r}", f"a whole number ({spec.dtype})")
    lower = -math.inf if spec.lower is None else spec.lower
    upper = math.inf if spec.upper is None else spec.upper
    if not lower <= value <= upper:
        raise ChangeError(
            spec.name, f"{value!r} is out of bounds", f"between {lower:g} and {upper:g}"
        )
    return int(value) if spec.dtype in ("int", "bool") else float(value)


def feature_scales(snapshot: pd.DataFrame, catalog: Catalog) -> dict[str, float]:
    """Measure the population spread of each numeric actionable feature (IQR, else std).

    Used to normalise change costs, so a change of one spread costs 1 on every feature.
    """
    scales: dict[str, float] = {}
    for name in catalog.actionable:
        if name not in snapshot.columns or catalog[name].dtype == "category":
            continue
        col = pd.to_numeric(snapshot[name], errors="coerce").astype(float).dropna()
        if col.empty:
            continue
        spread = float(col.quantile(0.75) - col.quantile(0.25))
        if not spread > 0:
            spread = float(col.std()) if len(col) > 1 else 0.0
        if spread > 0 and math.isfinite(spread):
            scales[name] = spread
    return scales


@dataclass
class _Move:
    feature: str
    sign: int
    step: float
    lower: float
    upper: float
    scale: float
    integer: bool
    #: Signed moves tried from any value: one step and the configured fractions of the scale.
    deltas: tuple[float, ...] = ()


def _moves(
    model: CreditModel,
    catalog: Catalog,
    row: Mapping[str, Any],
    scales: Mapping[str, float],
    features: Sequence[str] | None,
    fractions: Sequence[float],
) -> list[_Move]:
    names = set(model.feature_names)
    chosen = features if features is not None else catalog.actionable
    moves = []
    for name in chosen:
        if name not in catalog or name not in names:
            continue
        spec = catalog[name]
        sign = {"increases_risk": -1, "decreases_risk": 1}.get(spec.direction, 0)
        if not spec.actionable or spec.dtype == "category" or sign == 0:
            continue  # no catalog direction: no plausible "better" way to move it
        if is_missing(row.get(name)):
            continue
        integer = spec.dtype in ("int", "bool")
        step = float(spec.step) if spec.step else (1.0 if integer else 0.0)
        scale = float(scales.get(name) or 0.0) or (10 * step if step else 1.0)
        if not step:
            step = scale / 20
        moves.append(
            _Move(
                feature=name,
                sign=sign,
                step=step,
                lower=-math.inf if spec.lower is None else float(spec.lower),
                upper=math.inf if spec.upper is None else float(spec.upper),
                scale=scale,
                integer=integer,
                deltas=tuple(sign * d for d in {step} | {q * scale for q in fractions}),
            )
        )
    return moves


def _snap(move: _Move, origin: float, value: float, beyond: bool = False) -> float:
    # Whole steps away from the original value, inside the bounds; with ``beyond`` the whole
    # steps reach at least ``value`` in the move's direction (a threshold must be met).
    ratio = (value - origin) / move.step
    towards = math.ceil if move.sign > 0 else math.floor
    steps = towards(ratio) if beyond else round(ratio)
    out = min(max(origin + steps * move.step, move.lower), move.upper)
    return float(round(out)) if move.integer else out


def _cost(
    changes: Mapping[str, float],
    origin: Mapping[str, float],
    moves: Mapping[str, _Move],
    per_feature: float,
) -> float:
    return sum(
        abs(v - origin[f]) / moves[f].scale + per_feature
        for f, v in changes.items()
        if v != origin[f]
    )


class _RowView(Mapping[str, Any]):
    """A scored candidate row without copying: changes, then scores, then the base row."""

    __slots__ = ("_base", "_changes", "_scores")

    def __init__(
        self, base: Mapping[str, Any], changes: Mapping[str, Any], scores: Mapping[str, Any]
    ) -> None:
        self._base, self._changes, self._scores = base, changes, scores

    def __getitem__(self, key: str) -> Any:
        if key in self._changes:
            return self._changes[key]
        if key in self._scores:
            return self._scores[key]
        return self._base[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._base
        yield from (k for k in self._scores if k not in self._base)

    def __len__(self) -> int:
        return len(set(self._base) | set(self._scores))


def score_matrix(
    model: CreditModel,
    x: np.ndarray | None,
    *,
    margin: np.ndarray | None = None,
    columns: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Score rows of the booster's input matrix (see ``CreditModel.matrix``) with one thread.

    The same steps as ``CreditModel.score`` without rebuilding a DataFrame per call: raw
    margin, calibration, floor, score scale and master scale.

    Parameters
    ----------
    model : CreditModel
    x : ndarray of shape (n, k) or None
        Booster input rows; not read when ``margin`` is given.
    margin : ndarray of shape (n,), optional
        Raw margins already known (e.g. from a :class:`MarginCache`).
    columns : mapping, optional
        Further columns of the frame (e.g. the moved features), added in the same construction.

    Returns
    -------
    DataFrame
        ``pd``, ``log_odds``, ``score``, ``grade``, ``supervision_class`` (then ``columns``).
    """
    if margin is None:
        assert x is not None
        margin = model.margin_matrix(x, num_threads=1)
    log_odds = model.calibrate(margin)
    pd_ = model.floor(log_odds)
    bands = _Bands.of(model)
    codes = model.master_scale.grade_codes(np.atleast_1d(pd_))
    return pd.DataFrame(
        {
            "pd": pd_,
            "log_odds": log_odds,
            "score": model.score_scale.score(pd_),
            "grade": pd.Categorical.from_codes(codes, dtype=bands.grades, validate=False),
            "supervision_class": pd.Categorical.from_codes(
                bands.class_of[codes], dtype=bands.classes, validate=False
            ),
            **(columns or {}),
        },
        copy=False,
    )


@dataclass(frozen=True)
class _Bands:
    """The master scale's grades and classes as categories, for :func:`score_matrix`.

    With ``MasterScale.grade_codes`` the frame holds category codes: no per-row string objects.
    """

    grades: pd.CategoricalDtype
    classes: pd.CategoricalDtype
    class_of: np.ndarray

    @staticmethod
    def of(model: CreditModel) -> _Bands:
        scale = model.master_scale
        return _bands(tuple((g, scale.supervision_class(g)) for g in scale.grades))


@lru_cache(maxsize=32)
def _bands(key: tuple[tuple[str, str], ...]) -> _Bands:
    classes = sorted({c for _, c in key})
    return _Bands(
        grades=pd.CategoricalDtype([g for g, _ in key]),
        classes=pd.CategoricalDtype(classes),
        class_of=np.array([classes.index(c) for _, c in key], dtype=np.int64),
    )


class MarginCache:
    """Raw booster margins of variants of one firm's row, keyed by their changes.

    Shared by the searches of one firm (e.g. the products of one ``/matches`` call): a variant
    met by several searches (the first round of single moves is the same for every goal) is
    scored once. Only variants not seen before reach the booster, in one call per batch.

    Parameters
    ----------
    model : CreditModel
    base : mapping
        The firm's features (at least the model's).
    """

    def __init__(self, model: CreditModel, base: Mapping[str, Any]) -> None:
        self.model = model
        self.x0 = model.row_vector(base).reshape(1, -1)
        self.column = {name: j for j, name in enumerate(model.feature_names)}
        self.known: dict[frozenset, float] = {}
        #: Rows the booster scored (cache misses) and rows answered from the cache.
        self.scored = 0
        self.reused = 0

    def margins(
        self, candidates: Sequence[Mapping[str, float]], keys: Sequence[frozenset] | None = None
    ) -> np.ndarray:
        """Raw margin of each candidate (feature -> value changes against the base row)."""
        keys = keys if keys is not None else [frozenset(c.items()) for c in candidates]
        out = np.empty(len(candidates), dtype=np.float64)
        missing = []
        for i, key in enumerate(keys):
            got = self.known.get(key)
            if got is None:
                missing.append(i)
            else:
                out[i] = got
        self.reused += len(candidates) - len(missing)
        if missing:
            x = np.repeat(self.x0, len(missing), axis=0)
            for r, i in enumerate(missing):
                for f, v in candidates[i].items():
                    x[r, self.column[f]] = v
            fresh = self.model.margin_matrix(x, num_threads=1)
            out[missing] = fresh
            for i, m in zip(missing, fresh.tolist(), strict=True):
                self.known[keys[i]] = m
            self.scored += len(missing)
        return out


def find_recourse(
    model: CreditModel,
    catalog: Catalog,
    row: Mapping[str, Any] | pd.Series,
    goal: Goal,
    *,
    scales: Mapping[str, float] | None = None,
    features: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    targets: Mapping[str, Sequence[float]] | None = None,
    max_features: int | None = None,
    max_steps: int | None = None,
    beam: int | None = None,
    progress: Callable[[pd.DataFrame], np.ndarray] | None = None,
    goal_mask: GoalMask | None = None,
    failures: FailureCount | None = None,
    config: RecourseConfig | None = None,
    cache: MarginCache | None = None,
    deadline: float | None = None,
) -> RecoursePlan:
    """Search the cheapest plausible changes of actionable features that meet ``goal``.

    Parameters
    ----------
    model : CreditModel
        Scores candidate vectors (PD, score, grade).
    catalog : Catalog
        Actionability, direction, bounds and steps.
    row : mapping or Series
        The firm's features (at least the model's); other keys are passed on to ``goal``.
    goal : callable
        Predicate over a scored row (a mapping of features, other row keys and the score
        columns ``pd``, ``log_odds``, ``score``, ``grade``, ``supervision_class``).
    scales : mapping, optional
        Spread of each feature for the cost (see :func:`feature_scales`); ten steps otherwise.
    features : sequence of str, optional
        Only move these (still actionable and directed); all actionable ones by default.
    keep : sequence of str
        Features always searched even when they do not move the PD (e.g. a product rule's
        own feature); the others are narrowed to the ``max_features`` that lower it most.
    targets : mapping, optional
        Values worth a move of their own per feature (e.g. the thresholds of a product's rules):
        tried from every plan whose value has not reached them yet in the feature's favourable
        direction, snapped to whole steps at or beyond them.
    max_features, max_steps, beam : int, optional
        Features searched after the first round, most single-feature moves in a plan (search
        depth) and partial plans kept per depth; default from ``config``.
    progress : callable, optional
        Lower is closer to the goal, over a frame of scored candidates (score columns plus
        the moved features); the calibrated log-odds by default.
    goal_mask : callable, optional
        ``goal`` over that whole frame at once (one bool per row); used during the search
        instead of calling ``goal`` per candidate. The final plan is still checked by ``goal``.
    failures : callable, optional
        Rules each candidate of that frame fails (e.g. ``tradefinance.rules.failed_counts``),
        computed once per batch: the goal is met with no failure and the progress is the
        failures times ``failure_weight`` plus the log-odds. Replaces ``goal_mask`` and
        ``progress``.
    config : RecourseConfig, optional
        Costs, moves and limits (default: ``training/config/recourse.yaml``); the search stops
        after ``time_budget_s`` with the best plan found so far.
    cache : MarginCache, optional
        Margins of this firm's variants shared with other searches of the same row (built
        for ``row`` by the caller); a private one otherwise.
    deadline : float, optional
        ``time.monotonic()`` past which the search returns its best plan, when earlier than
        ``time_budget_s`` from now (a caller's budget over several searches).

    Returns
    -------
    RecoursePlan
        ``reached`` is the outcome of the final vector re-scored through the one-row path
        ``CreditModel.score_row`` (equal to ``CreditModel.score`` to 1e-12,
        ``tests/training/test_fast_path.py``); when the goal cannot be met the plan holds the
        changes with the best progress found.
    """
    cfg = config or load_recourse_config()
    checked: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None
    if failures is not None:
        weight = cfg.failure_weight

        def checked(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
            fails = np.asarray(failures(frame))
            return fails == 0, fails * weight + frame["log_odds"].to_numpy()

    search = _Search(model, row, goal, cfg, progress, goal_mask, checked, cache, deadline)
    if search.already_met:
        before = search.before
        return RecoursePlan(True, True, [], 0.0, before, before, dict(search.base), 1)
    search.moves = {
        m.feature: m
        for m in _moves(model, catalog, search.base, scales or {}, features, cfg.scale_fractions)
    }
    search.origin = {f: float(search.base[f]) for f in search.moves}
    search.targets = {f: tuple(v) for f, v in (targets or {}).items() if f in search.moves}
    plan = search.run(
        cfg.max_steps if max_steps is None else max_steps,
        cfg.beam if beam is None else beam,
        cfg.max_features if max_features is None else max_features,
        keep,
    )
    return search.finish(plan)


class _Search:
    """State of one beam search: the firm, its moves, the evaluator and the best plans."""

    def __init__(
        self,
        model: CreditModel,
        row: Mapping[str, Any] | pd.Series,
        goal: Goal,
        cfg: RecourseConfig,
        progress: Callable[[pd.DataFrame], np.ndarray] | None,
        goal_mask: GoalMask | None,
        checked: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None,
        cache: MarginCache | None,
        deadline: float | None,
    ) -> None:
        if isinstance(row, pd.Series):
            row = row.to_dict()
        self.model, self.goal, self.cfg, self.goal_mask = model, goal, cfg, goal_mask
        self.checked = checked
        own = time.monotonic() + cfg.time_budget_s
        self.deadline = own if deadline is None else min(own, deadline)
        self.base = {name: row[name] for name in model.feature_names}
        self.context = dict(row)
        self.progress = progress or (lambda f: f["log_odds"].to_numpy())
        self.cache = cache if cache is not None else MarginCache(model, self.base)
        scored0 = score_matrix(model, self.cache.x0)
        self.before = {c: plain(scored0[c].iat[0]) for c in SCORE_COLUMNS}
        self.already_met = bool(goal(_RowView(self.context, {}, self.before)))
        self.p0 = float(self.judge([{}], scored0)[1][0])
        self.moves: dict[str, _Move] = {}
        self.origin: dict[str, float] = {}
        self.targets: dict[str, tuple[float, ...]] = {}
        self.evaluated = 1

    def cost(self, changes: Mapping[str, float]) -> float:
        return _cost(changes, self.origin, self.moves, self.cfg.per_feature_cost)

    def evaluate(
        self, candidates: list[dict[str, float]], keys: Sequence[frozenset] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score candidates in one booster call: which meet the goal, and their progress.

        Only candidates the firm's :class:`MarginCache` has not seen reach the booster; the
        frame of score columns and moved features is built once.
        """
        margin = self.cache.margins(candidates, keys)
        changed = {f for c in candidates for f in c}
        moved = {
            f: np.fromiter((c.get(f, self.origin[f]) for c in candidates), float, len(candidates))
            for f in changed
        }
        scored = score_matrix(self.model, None, margin=margin, columns=moved)
        self.evaluated += len(candidates)
        return self.judge(candidates, scored)

    def judge(
        self, candidates: list[dict[str, float]], scored: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which scored candidates meet the goal, and their progress (lower is closer)."""
        if self.checked is not None:
            met, prog = self.checked(scored)
            return np.asarray(met, dtype=bool), np.asarray(prog, dtype=float)
        if self.goal_mask is not None:
            met = np.asarray(self.goal_mask(scored), dtype=bool)
        else:
            records = scored[list(SCORE_COLUMNS)].to_dict("records")
            met = np.array(
                [
                    bool(self.goal(_RowView(self.context, c, r)))
                    for c, r in zip(candidates, records, strict=True)
                ]
            )
        return met, np.asarray(self.progress(scored), dtype=float)

    def term(self, feature: str, value: float) -> float:
        """Cost of one changed feature (the summand of :func:`_cost`)."""
        m = self.moves[feature]
        return abs(value - self.origin[feature]) / m.scale + self.cfg.per_feature_cost

    def expand(
        self, state: dict[str, float], limit: float = math.inf
    ) -> list[tuple[dict[str, float], frozenset, float]]:
        """Every plan one move away from ``state`` costing less than ``limit``, with its key
        and its cost.

        The cost sums the same terms in the same order as :meth:`cost` (equal to the bit),
        reusing the terms of ``state``; it is known before the plan is built, so plans that
        cannot beat ``limit`` (the best plan found) are never built.
        """
        out = []
        terms = [self.term(g, v) for g, v in state.items()]
        where = {g: i for i, g in enumerate(state)}
        per_feature = self.cfg.per_feature_cost
        for f, m in self.moves.items():
            origin = self.origin[f]
            current = state.get(f, origin)
            targets = {current + d for d in m.deltas}
            # Straight to the favourable bound (clear arrears, no overdue days) when in reach.
            bound = m.lower if m.sign < 0 else m.upper
            if math.isfinite(bound) and abs(bound - current) <= self.cfg.bound_reach * m.scale:
                targets.add(bound)
            at = where.get(f)
            values = {_snap(m, origin, t) for t in targets}
            values.update(
                _snap(m, origin, t, beyond=True)
                for t in self.targets.get(f, ())
                if (t - current) * m.sign > 0
            )
            for value in values:
                if value == current:
                    continue
                term = abs(value - origin) / m.scale + per_feature
                if at is None:
                    cost = sum([*terms, term])
                else:
                    changed = terms.copy()
                    changed[at] = term
                    cost = sum(changed)
                if cost < limit:
                    cand = {**state, f: value}
                    out.append((cand, frozenset(cand.items()), cost))
        return out

    def narrow(
        self,
        candidates: list[dict[str, float]],
        met: np.ndarray,
        prog: np.ndarray,
        costs: np.ndarray,
        max_features: int,
        keep: Sequence[str],
    ) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray, np.ndarray]:
        """After the first round keep the features whose single moves help most per cost."""
        ratio: dict[str, float] = {}
        for c, p, ok, k in zip(candidates, prog, met, costs, strict=True):
            (f,) = c
            ratio[f] = max(ratio.get(f, 0.0), (self.p0 - p) / k + (1e6 if ok else 0.0))
        ranked = [f for f in sorted(ratio, key=lambda f: -ratio[f]) if ratio[f] > 0]
        if not ranked:  # no single move helps: keep searching all of them
            return candidates, met, prog, costs
        chosen = set(ranked[:max_features]) | {f for f in keep if f in self.moves}
        self.moves = {f: m for f, m in self.moves.items() if f in chosen}
        mask = np.array([all(f in self.moves for f in c) for c in candidates])
        kept = [c for c, ok in zip(candidates, mask, strict=True) if ok]
        return kept, met[mask], prog[mask], costs[mask]

    def run(
        self, max_steps: int, beam: int, max_features: int, keep: Sequence[str]
    ) -> dict[str, float]:
        """Beam search; return the cheapest plan meeting the goal, else the most progress.

        Once a plan is found, candidates costing as much or more are dropped before they are
        scored: they can neither beat it nor be expanded (a move only adds cost).
        """
        best: dict[str, float] | None = None
        best_cost = math.inf
        best_progress: tuple[float, float, dict[str, float]] = (self.p0, 0.0, {})
        frontier: list[dict[str, float]] = [{}]
        seen: set[frozenset] = {frozenset()}
        for depth in range(max_steps):
            candidates, keys, cost_list = [], [], []
            for state in frontier:
                for cand, key, k in self.expand(state, best_cost):
                    if key not in seen:
                        seen.add(key)
                        candidates.append(cand)
                        keys.append(key)
                        cost_list.append(k)
            if not candidates:
                break
            met, prog = self.evaluate(candidates, keys)
            costs = np.array(cost_list)
            if depth == 0:
                candidates, met, prog, costs = self.narrow(
                    candidates, met, prog, costs, max_features, keep
                )
            for hit in np.flatnonzero(met):
                if costs[hit] < best_cost:
                    best, best_cost = candidates[hit], float(costs[hit])
            for c, p, k in zip(candidates, prog, costs, strict=True):
                if (p, k) < best_progress[:2]:
                    best_progress = (float(p), float(k), c)
            open_ = [i for i in range(len(candidates)) if not met[i] and costs[i] < best_cost]
            if not open_ or time.monotonic() > self.deadline:
                break
            frontier = [candidates[i] for i in _beam(open_, prog, costs, self.p0, beam)]
        if best is None:
            return best_progress[2]
        return self.prune(best)

    def prune(self, plan: dict[str, float]) -> dict[str, float]:
        """Walk changes back towards the original values while the goal still holds."""
        current = dict(plan)
        for _ in range(self.cfg.prune_rounds):
            candidates = []
            for f, v in current.items():
                m, o = self.moves[f], self.origin[f]
                for q in self.cfg.prune_fractions:
                    back = _snap(m, o, o + q * (v - o))
                    if back != v:
                        cand = dict(current)
                        if back == o:
                            del cand[f]
                        else:
                            cand[f] = back
                        candidates.append(cand)
            if not candidates:
                break
            met, _ = self.evaluate(candidates)
            ok = [c for c, good in zip(candidates, met, strict=True) if good]
            if not ok:
                break
            cheapest = min(ok, key=self.cost)
            if self.cost(cheapest) >= self.cost(current):
                break
            current = cheapest
        return current

    def finish(self, plan: dict[str, float]) -> RecoursePlan:
        """Re-score the final vector through the model's one-row path and describe it."""
        base, moves = self.base, self.moves
        final = {**base, **{f: (int(v) if moves[f].integer else v) for f, v in plan.items()}}
        after = {c: plain(v) for c, v in self.model.score_row(final).items()}
        reached = bool(self.goal(_RowView(self.context, final, after)))
        changes = [
            PlannedChange(
                feature=f,
                before=plain(base[f]),
                after=plain(final[f]),
                cost=abs(v - self.origin[f]) / moves[f].scale + self.cfg.per_feature_cost,
            )
            for f, v in plan.items()
            if v != self.origin[f]
        ]
        changes.sort(key=lambda c: -c.cost)
        return RecoursePlan(
            reached=reached,
            already_met=False,
            changes=changes,
            cost=float(sum(c.cost for c in changes)),
            before=self.before,
            after=after,
            features={k: plain(v) for k, v in final.items()},
            evaluated=self.evaluated,
        )


def _beam(open_: list[int], prog: np.ndarray, costs: np.ndarray, p0: float, beam: int) -> list[int]:
    """Half the beam by progress, half by progress per unit cost."""
    by_prog = sorted(open_, key=lambda i: prog[i])
    by_ratio = sorted(open_, key=lambda i: -(p0 - prog[i]) / costs[i])
    keep_idx: list[int] = []
    for i in [int(x) for pair in zip(by_prog, by_ratio, strict=False) for x in pair]:
        if i not in keep_idx:
            keep_idx.append(i)
        if len(keep_idx) >= beam:
            break
    return keep_idx
