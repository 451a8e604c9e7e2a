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
    model_roots: list[Path] = Field(
        default_factory=list,
        description="folders an admin may reload model packages from (default: model_dir's folder)",
    )
    snapshot_roots: list[Path] = Field(
        default_factory=list,
        description="folders an admin may reload snapshots from (default: snapshot's folder)",
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
    applications: Path | None = Field(
        default=None,
        description="applications settings YAML: consent, service level, owners, codes "
        "(default: tradefinance/config/applications.yaml)",
    )
    default_status: Path | None = Field(
        default=None,
        description="in-default rules YAML (default: features/config/default_status.yaml)",
    )
    db_statement_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="longest database statement (PostgreSQL)"
    )
    db_lock_timeout_s: float = Field(
        default=2.0, gt=0, le=600, description="longest wait for a database lock (both databases)"
    )
    db_connect_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="longest wait for a database connection"
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=1 << 30, description="largest request body (413 above)"
    )
    auth_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="seconds a checked key and consent are reused in a worker (0: read every "
        "time); a revocation in another process takes effect within this",
    )
    rate_limits_enabled: bool = Field(default=True, description="apply the rate limits below")
    rate_limit_client: str = Field(
        default="300/second", description="requests per client address (limits notation)"
    )
    rate_limit_key: str = Field(
        default="100/second", description="requests per API key (limits notation)"
    )
    rate_limit_auth_failures: str = Field(
        default="20/minute", description="refused keys (401) per client before 429"
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="limits storage URI (memory://: per process; redis://...: shared)",
    )
    ready_failure_window_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="a failed audit write keeps readiness false this long",
    )
    migrate_on_start: bool = Field(default=True, description="apply Alembic migrations at start-up")
    load_on_start: bool = Field(default=True, description="load model and snapshot at start-up")
    batch_max: int = Field(default=5000, ge=1, description="most firms in one batch-score call")
    top_reasons: int = Field(default=4, ge=1, le=20, description="reasons returned with a score")
    precompute: bool = Field(
        default=True,
        description="read (or write) the scores and explanations of a (model, snapshot) from "
        "a precomputed folder every worker maps, instead of computing them per process",
    )
    precompute_dir: Path | None = Field(
        default=None,
        description="folder of precomputed scores (default: .kuaxin-precomputed beside the "
        "snapshot)",
    )
    dask_scheduler: str | None = Field(
        default=None, description="Dask scheduler address that computes a missing precomputed file"
    )
    audit_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="seconds an audit batch may wait for the chain's head row before the "
        "requests in it fail with 503",
    )
    audit_linger_ms: float = Field(
        default=3.0,
        ge=0,
        le=50,
        description="milliseconds a busy audit writer may wait for a fuller batch (0: never); "
        "fewer commits per request when several workers share the database",
    )
    recourse_max_steps: int = Field(
        default=40, ge=1, description="search depth of recourse (single-feature moves)"
    )
    recourse_beam: int = Field(default=12, ge=1, description="beam width of the recourse search")
