"""The model configuration (``training/config/model.yaml``) as pydantic models, checked on load.

:func:`training.scale.load_config` validates the YAML with :class:`ModelConfig` and returns it
as a plain dict (the shape every caller reads), so a typo in a key or a value of the wrong kind
fails at load with the key's path instead of deep inside a training run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Range = tuple[float, float]


class ScoreScaleConfig(_Strict):
    """Points-to-double-odds scaling."""

    base_score: float
    base_odds: float = Field(gt=0)
    pdo: float = Field(gt=0)


class Band(_Strict):
    """One master-scale band."""

    grade: str
    upper: float = Field(gt=0, le=1)
    supervision_class: str


class SplitConfig(_Strict):
    """Time-ordered split shares."""

    test_share: float = Field(gt=0, lt=1)
    validation_share: float = Field(gt=0, lt=1)
    refit_on_validation: bool = False


class SearchConfig(_Strict):
    """Search budget and space; the table section overrides it key by key."""

    trials: int = Field(ge=0)
    seed: int
    startup_trials: int = Field(ge=0)
    early_stopping_rounds: int = Field(gt=0)
    max_rounds: int = Field(gt=0)
    learning_rate: Range
    num_leaves: Range
    min_child_samples: Range
    feature_fraction: Range
    bagging_fraction: Range
    lambda_l2: Range
    min_split_gain: Range
    cat_smooth: Range

    @model_validator(mode="after")
    def _ranges_ordered(self) -> SearchConfig:
        for name, value in self:
            if isinstance(value, tuple) and not value[0] <= value[1]:
                raise ValueError(f"search.{name} must be [low, high] with low <= high")
        return self


class Candidate(_Strict):
    """A documented LightGBM configuration always tried by the table search."""

    why: str
    params: dict[str, float | int | bool] = Field(default_factory=dict)
    #: fixed number of rounds (no early stopping), as for LightGBM's defaults
    rounds: int | None = None


class TableConfig(_Strict):
    """The generic table path (``kuaxin train --table``)."""

    folds: int = Field(ge=2)
    seed: int
    nested: bool
    trials: int = Field(ge=0)
    budget_seconds: float | None = Field(default=None, gt=0)
    inner_folds: int = Field(ge=2)
    workers: int = Field(ge=0)
    bagging_seeds: int = Field(ge=1)
    ensemble_steps: int = Field(ge=1)
    ensemble_start: Literal["defaults", "best"] = "defaults"
    blend_weights: list[float]
    prune_warmup_rounds: int = Field(ge=1)
    candidates: dict[str, Candidate]
    search: dict[str, Any] = Field(default_factory=dict)
    min_class_rows: int = Field(ge=1)
    max_category_levels: int = Field(ge=2)

    @model_validator(mode="after")
    def _defaults_first(self) -> TableConfig:
        if "defaults" not in self.candidates:
            raise ValueError("table.candidates must include 'defaults' (LightGBM's defaults)")
        if any(not 0 <= w < 1 for w in self.blend_weights) or 0.0 not in self.blend_weights:
            raise ValueError("table.blend_weights must lie in [0, 1) and include 0.0")
        return self


class ChallengerConfig(_Strict):
    """The logistic challenger."""

    C: float = Field(gt=0)
    max_iter: int = Field(gt=0)


class ReportConfig(BaseModel):
    """The evaluation report."""

    # open to new keys: the report grows sections (e.g. per-year metrics) of its own
    model_config = ConfigDict(extra="allow")
    calibration_bins: int = Field(ge=2)
    psi_bins: int = Field(ge=2)
    min_segment_rows: int = Field(ge=1)
    min_segment_defaults: int = Field(ge=1)
    sample_firms: int = Field(ge=0)
    dependence_top: int = Field(ge=0)
    shap_rows: int = Field(ge=1)
    segments: dict[str, dict[str, Any]] = Field(default_factory=dict)


class GateConfig(_Strict):
    """The promotion gate."""

    min_auc: float = Field(ge=0, le=1)
    max_ece: float = Field(ge=0)
    max_auc_drop: float = Field(ge=0)
    max_ece_rise: float = Field(ge=0)


class RegistryConfig(_Strict):
    """The MLflow registry names."""

    model_name: str
    experiment: str
    default_tracking_uri: str


class CalibrationConfig(BaseModel):
    """``calibration`` section of ``training/config/model.yaml``."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["point_in_time", "through_the_cycle"] = "point_in_time"
    #: bound on the TTC intercept shift in log-odds (a larger one means a data problem)
    max_shift: float = Field(default=3.0, gt=0)


class CycleConfig(BaseModel):
    """``cycle`` section of ``training/config/model.yaml``: per-year report settings."""

    model_config = ConfigDict(extra="forbid")

    calibration_bins: int = Field(default=10, ge=2)
    #: years with fewer rows or defaults get no AUC / ECE (too noisy to read)
    min_year_rows: int = Field(default=50, ge=1)
    min_year_defaults: int = Field(default=3, ge=1)


class ModelConfig(_Strict):
    """The whole of ``training/config/model.yaml``."""

    score_scale: ScoreScaleConfig
    pd_floor: float = Field(gt=0, lt=1)
    master_scale: list[Band] = Field(min_length=1)
    split: SplitConfig
    search: SearchConfig
    table: TableConfig
    challenger: ChallengerConfig
    report: ReportConfig
    gate: GateConfig
    registry: RegistryConfig
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    cycle: CycleConfig = Field(default_factory=CycleConfig)


def validate_config(raw: dict[str, Any], source: str = "model.yaml") -> dict[str, Any]:
    """Validate a parsed configuration and return it as a plain dict.

    Raises
    ------
    ValueError
        Naming the file and every offending key path.
    """
    from pydantic import ValidationError

    try:
        model = ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise ValueError(f"{source} is not a valid model configuration: {problems}") from exc
    out = model.model_dump()
    # ranges stay lists, as YAML gave them
    for section in ("search",):
        for k, v in out[section].items():
            if isinstance(v, tuple):
                out[section][k] = list(v)
    return out
