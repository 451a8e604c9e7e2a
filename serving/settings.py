"""Settings of the service: one pydantic-settings class read from ``KUAXIN_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads from its environment.

    Every field can be set by an environment variable ``KUAXIN_<FIELD>`` (the MLflow tracking
    URI also by ``MLFLOW_TRACKING_URI``); the CLI overrides fields by keyword.
    """

    model_config = SettingsConfigDict(env_prefix="KUAXIN_", extra="ignore", frozen=True)

    database_url: str = Field(
        default="sqlite:///kuaxin.db",
        description="SQLAlchemy URL of the keys/consent/audit database",
    )
    model_dir: Path | None = Field(
        default=None,
        description="exported model package to serve; the registry champion when unset",
    )
    model_name: str | None = Field(
        default=None, description="registered model name (default: training.registry.MODEL_NAME)"
    )
    model_alias: str = Field(default="champion", description="registry alias to load")
    mlflow_tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        validation_alias=AliasChoices("KUAXIN_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI of the registry",
    )
    snapshot: Path | None = Field(
        default=None, description="feature snapshot Parquet file to serve"
    )
    buyer_grades: Path | None = Field(
        default=None,
        description="graded buyers Parquet (`kuaxin buyers score`); without it every buyer is unknown",
    )
    insurer: Path | None = Field(
        default=None, description="insurer parameters YAML (default: the shipped insurer.yaml)"
    )
    catalog: Path | None = Field(
        default=None,
        description="feature catalog YAML (default: the model's, else the packaged one)",
    )
    products: Path | None = Field(
        default=None, description="product catalog YAML (default: the shipped illustrative one)"
    )
    pricing: Path | None = Field(
        default=None, description="pricing parameters YAML (default: the shipped one)"
    )
    default_status: Path | None = Field(
        default=None,
        description="in-default rules YAML (default: features/config/default_status.yaml)",
    )
    migrate_on_start: bool = Field(default=True, description="apply Alembic migrations at start-up")
    load_on_start: bool = Field(default=True, description="load model and snapshot at start-up")
    batch_max: int = Field(default=5000, ge=1, description="most firms in one batch-score call")
    top_reasons: int = Field(default=4, ge=1, le=20, description="reasons returned with a score")
    recourse_max_steps: int = Field(
        default=40, ge=1, description="search depth of recourse (single-feature moves)"
    )
    recourse_beam: int = Field(default=12, ge=1, description="beam width of the recourse search")
