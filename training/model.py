"""The credit model: a LightGBM booster, its Platt calibration, score scale and master scale.

:class:`CreditModel` is what the service loads and what MLflow's pyfunc wraps. It turns a
frame of catalog features into PD, score, grade and supervision class, explains each PD with
TreeSHAP contributions in calibrated log-odds, and maps the largest adverse contributions to
reason codes with the catalog's texts.

The calibration is affine in the booster's raw margin, ``log_odds = a + b * margin``, so the
TreeSHAP contributions of the margin scaled by ``b`` (and the base value mapped by the same
affine map) add up exactly to the calibrated log-odds. The PD floor applies to the PD (and so to
the score and grade) but not to ``log_odds``, which stays the additive explanation target.

A saved model is a folder: ``booster.txt`` (LightGBM text model), ``model.json`` (features,
categories, calibration, scales, version, training window, metadata) and ``catalog.yaml``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

from training.manifest import ManifestError, probe_booster, verify_manifest, write_manifest
from training.scale import PD_FLOOR, MasterScale, ScoreScale

FORMAT_VERSION = 1
BOOSTER_FILE = "booster.txt"
MODEL_FILE = "model.json"
CATALOG_FILE = "catalog.yaml"


class ModelFileError(ValueError):
    """A model folder is missing a file or holds an unusable one."""


@dataclass
class FeatureInfo:
    """What the model needs to know about one input feature.

    Parameters
    ----------
    name : str
        Column name.
    kind : {"numeric", "category"}
        Numeric features are read as float64; categorical ones are coded by ``categories``.
    categories : list of str, optional
        The category levels seen in training (order = codes); unseen levels become missing.
    monotone : int
        LightGBM monotone constraint: +1 raises risk, -1 lowers it, 0 none.
    reason_en, reason_zh : str
        Reason-code texts shown when the feature pushes the PD up.
    """

    name: str
    kind: str = "numeric"
    categories: list[str] | None = None
    monotone: int = 0
    reason_en: str = ""
    reason_zh: str = ""


@dataclass
class CreditModel:
    """A calibrated, scaled and explainable LightGBM PD model.

    Parameters
    ----------
    booster : lightgbm.Booster
        Trained on the matrix of :meth:`matrix` (categoricals as integer codes).
    features : list of FeatureInfo
        Input features in booster order.
    calibration : dict
        ``{"intercept": a, "slope": b}``: calibrated log-odds ``a + b * margin``.
    score_scale : ScoreScale
    master_scale : MasterScale
    pd_floor : float
        PDs below it are raised to it.
    version : str
        Identifier of this trained model.
    metadata : dict
        Training window, data fingerprints, metrics and anything else to keep with the model.
    catalog_yaml : str, optional
        The catalog the model was trained with, saved as ``catalog.yaml``.
    linear : training.blend.Scorecard, optional
        A linear scorecard blended into the margin (table models chosen by inner CV);
        ``margin = (1 - w) * booster + w * scorecard``, explained term by term.
    """

    booster: lgb.Booster
    features: list[FeatureInfo]
    calibration: dict[str, float]
    score_scale: ScoreScale
    master_scale: MasterScale
    pd_floor: float = PD_FLOOR
    version: str = "0"
    metadata: dict[str, Any] = field(default_factory=dict)
    catalog_yaml: str | None = None
    linear: Any = None

    # ------------------------------------------------------------------ inputs
    @property
    def feature_names(self) -> list[str]:
        """Input feature names in model order."""
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features."""
        return [f.name for f in self.features if f.kind == "category"]

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """Select the model's features in order with the training dtypes and categories.

        Parameters
        ----------
        df : DataFrame
            Must hold every feature column (other columns are ignored).

        Returns
        -------
        DataFrame
            Numeric columns as float64, categorical ones as ``category`` with the training
            levels (unseen levels become missing).

        Raises
        ------
        ValueError
            Naming the missing column or the column whose values are not numeric.
        """
        missing = [n for n in self.feature_names if n not in df.columns]
        if missing:
            raise ValueError(
                f"input must have the model's feature columns; missing {missing[:10]}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            )
        out: dict[str, Any] = {}
        for f in self.features:
            col = df[f.name]
            if f.kind == "category":
                levels = f.categories or []
                values = col.astype(object)
                values = values.where(col.notna(), None).map(
                    lambda v: None if v is None else str(v)
                )
                # unseen levels become missing (as LightGBM treats unknown categories)
                values = values.where(values.isin(levels), None)
                out[f.name] = pd.Categorical(values, categories=levels)
            else:
                if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
                    converted = pd.to_numeric(col.astype(object), errors="coerce")
                    bad = converted.isna() & col.notna()
                    if bad.any():
                        raise ValueError(f"{f.name} must be numeric; got {col[bad].iloc[0]!r}")
                    col = converted
                try:
                    out[f.name] = col.astype("float64")
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{f.name} must be numeric; got {col.dtype}") from exc
        return pd.DataFrame(out, index=df.index)

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """Build the float64 matrix the booster reads (categoricals as codes, missing as NaN).

        Parameters
        ----------
        df : DataFrame
            Raw or prepared features.

        Returns
        -------
        ndarray of shape (n, k)
        """
        prepared = self.prepare(df)
        x = np.empty((len(prepared), len(self.features)), dtype=np.float64)
        for j, f in enumerate(self.features):
            if f.kind == "category":
                codes = prepared[f.name].cat.codes.to_numpy().astype(np.float64)
                codes[codes < 0] = np.nan
                x[:, j] = codes
            else:
                x[:, j] = prepared[f.name].to_numpy(dtype=np.float64, na_value=np.nan)
        return x

    # ------------------------------------------------------------------ one-row fast path
    def _row_codes(self) -> list[tuple[int, dict[str, float] | None]]:
        """Per feature (model order): its position and, for a categorical one, level -> code."""
        cached = self.__dict__.get("_fast_codes")
        if cached is None:
            cached = [
                (
                    j,
                    {str(c): float(k) for k, c in enumerate(f.categories or [])}
                    if f.kind == "category"
                    else None,
                )
                for j, f in enumerate(self.features)
            ]
            self.__dict__["_fast_codes"] = cached
        return cached

    def row_vector(self, values: Mapping[str, Any], out: np.ndarray | None = None) -> np.ndarray:
        """Build the booster input row of one feature dict, without a DataFrame.

        Codes categorical values with the model's own level list (unseen or missing levels
        become NaN, as :meth:`matrix` does) and reads numeric values as float64.

        Parameters
        ----------
        values : mapping
            Feature name -> value (at least the model's features; others are ignored).
        out : ndarray of shape (k,), optional
            Filled in place when given.

        Returns
        -------
        ndarray of shape (k,)

        Raises
        ------
        ValueError
            A feature is missing or a numeric one holds a non-numeric value.
        """
        x = np.empty(len(self.features), dtype=np.float64) if out is None else out
        for (j, codes), name in zip(self._row_codes(), self.feature_names_tuple, strict=True):
            try:
                v = values[name]
            except KeyError:
                raise ValueError(
                    f"input must have the model's feature columns; missing [{name!r}]"
                ) from None
            if codes is None:
                try:
                    x[j] = v  # numpy converts ints, floats, bools and NaN like float64 astype
                except (TypeError, ValueError):
                    x[j] = _numeric(name, v)
            elif v is None or v != v or v is pd.NA:
                x[j] = np.nan
            else:
                x[j] = codes.get(str(v), np.nan)
        return x

    def encode(self, name: str, value: Any) -> float:
        """One feature value as the booster reads it (category code, or float; NaN missing)."""
        position = self.__dict__.get("_fast_position")
        if position is None:
            position = {f.name: k for k, f in enumerate(self.features)}
            self.__dict__["_fast_position"] = position
        codes = self._row_codes()[position[name]][1]
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return math.nan
        if codes is not None:
            return codes.get(str(value), math.nan)
        return _numeric(name, value)

    @property
    def feature_names_tuple(self) -> tuple[str, ...]:
        """Input feature names in model order (cached tuple for the per-row path)."""
        cached = self.__dict__.get("_fast_names")
        if cached is None:
            cached = tuple(f.name for f in self.features)
            self.__dict__["_fast_names"] = cached
        return cached

    def score_row(self, x: np.ndarray | Mapping[str, Any]) -> dict[str, Any]:
        """Score one row: the same steps as :meth:`score` without building a DataFrame.

        Parameters
        ----------
        x : ndarray of shape (k,) or mapping
            A booster input row (see :meth:`row_vector`) or a feature dict.

        Returns
        -------
        dict
            ``pd``, ``log_odds``, ``score``, ``grade``, ``supervision_class`` as Python values;
            equal to :meth:`score` on the same row (to rounding).
        """
        row = self.row_vector(x) if isinstance(x, Mapping) else x
        margin = float(self.margin_matrix(row.reshape(1, -1), num_threads=1)[0])
        log_odds = self.calibration["intercept"] + self.calibration["slope"] * margin
        return self.outcome(log_odds)

    def outcome(self, log_odds: float) -> dict[str, Any]:
        """PD, score, grade and supervision class of one calibrated log-odds value.

        The scalar twin of :meth:`floor`, ``ScoreScale.score`` and ``MasterScale.grade``
        (plain ``math`` on one float; the bands are read once from the master scale).
        """
        bands = self.__dict__.get("_fast_bands")
        if bands is None:
            table = self.master_scale.to_list()
            bands = (
                [float(b["upper"]) for b in table],
                [(str(b["grade"]), str(b["supervision_class"])) for b in table],
            )
            self.__dict__["_fast_bands"] = bands
        pd_ = 1.0 / (1.0 + math.exp(-log_odds)) if log_odds > -700 else 0.0
        pd_ = min(max(pd_, self.pd_floor), 1.0 - 1e-12)
        uppers, labels = bands
        grade, supervision = labels[min(bisect.bisect_right(uppers, pd_), len(labels) - 1)]
        scale = self.score_scale
        return {
            "pd": pd_,
            "log_odds": log_odds,
            "score": scale.offset + scale.factor * math.log((1.0 - pd_) / pd_),
            "grade": grade,
            "supervision_class": supervision,
        }

    # ------------------------------------------------------------------ scoring
    def margin_matrix(self, x: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Raw margin of booster input rows (the one place the booster predicts a margin).

        Parameters
        ----------
        x : ndarray of shape (n, k)
            Rows as built by :meth:`matrix` or :meth:`row_vector`.
        num_threads : int
            LightGBM threads.
        """
        m = np.asarray(self.booster.predict(x, raw_score=True, num_threads=num_threads))
        if self.linear is None:
            return m
        # a blend with the scorecard adds its linear margin (weights chosen by inner CV)
        w = self.linear.weight
        return (1.0 - w) * m + w * self.linear.log_odds(x)

    def margin(self, df: pd.DataFrame, num_threads: int = 1) -> np.ndarray:
        """Raw booster margin (uncalibrated log-odds)."""
        return self.margin_matrix(self.matrix(df), num_threads=num_threads)

    def calibrate(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated log-odds of default from raw margins."""
        return self.calibration["intercept"] + self.calibration["slope"] * np.asarray(margin)

    def floor(self, log_odds: np.ndarray) -> np.ndarray:
        """PD from calibrated log-odds, floored at ``pd_floor``."""
        pd_ = 1.0 / (1.0 + np.exp(-np.asarray(log_odds, dtype=float)))
        return np.clip(pd_, self.pd_floor, 1.0 - 1e-12)

    def predict_pd(self, df: pd.DataFrame, num_threads: int = 1) -> np.ndarray:
        """Floored, calibrated 12-month PD of every row.

        Parameters
        ----------
        df : DataFrame
            Features (see :meth:`prepare`).
        num_threads : int
            LightGBM threads; 1 for per-request calls.

        Returns
        -------
        ndarray of shape (n,)
        """
        return self.floor(self.calibrate(self.margin(df, num_threads)))

    def score(self, df: pd.DataFrame, num_threads: int = 1) -> pd.DataFrame:
        """PD, calibrated log-odds, score, grade and supervision class of every row.

        Parameters
        ----------
        df : DataFrame
            Features (see :meth:`prepare`).
        num_threads : int
            LightGBM threads; 1 for per-request calls.

        Returns
        -------
        DataFrame
            Columns ``pd``, ``log_odds`` (calibrated, unfloored: what :meth:`explain` adds up
            to), ``score`` (from the floored PD), ``grade``, ``supervision_class``; same index
            as ``df``.
        """
        log_odds = self.calibrate(self.margin(df, num_threads))
        return self._frame(log_odds, df.index)

    def frame_from_log_odds(self, log_odds: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """Build the :meth:`score` frame from precomputed calibrated log-odds (no booster call)."""
        return self._frame(np.asarray(log_odds, dtype=np.float64), index)

    def _frame(self, log_odds: np.ndarray, index: pd.Index) -> pd.DataFrame:
        pd_ = self.floor(log_odds)
        grades = self.master_scale.grade(pd_)
        classes = [self.master_scale.supervision_class(g) for g in np.atleast_1d(grades)]
        return pd.DataFrame(
            {
                "pd": pd_,
                "log_odds": log_odds,
                "score": self.score_scale.score(pd_),
                "grade": np.atleast_1d(grades).astype(str),
                "supervision_class": classes,
            },
            index=index,
        )

    # ------------------------------------------------------------------ explanations
    def explain(self, df: pd.DataFrame, num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """TreeSHAP contributions in calibrated log-odds.

        Parameters
        ----------
        df : DataFrame
            Features (see :meth:`prepare`).
        num_threads : int
            LightGBM threads; 1 for per-request calls.

        Returns
        -------
        contrib : ndarray of shape (n, k)
            Contribution of each feature (model order) to the calibrated log-odds.
        base : ndarray of shape (n,)
            The calibrated base value; ``contrib.sum(1) + base`` equals ``log_odds``.
        """
        x = self.matrix(df)
        raw = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=num_threads))
        if self.linear is not None:
            w = self.linear.weight
            lin, lin_base = self.linear.contributions(x)
            raw = (1.0 - w) * raw
            raw[:, :-1] += w * lin
            raw[:, -1] += w * lin_base
        slope = self.calibration["slope"]
        contrib = raw[:, :-1] * slope
        base = self.calibration["intercept"] + slope * raw[:, -1]
        return contrib, base

    def reasons(
        self,
        df: pd.DataFrame,
        top: int = 4,
        num_threads: int = 1,
        contrib: np.ndarray | None = None,
    ) -> list[list[dict[str, Any]]]:
        """List the top adverse contributions of every row as reason codes.

        Parameters
        ----------
        df : DataFrame
            Features (see :meth:`prepare`).
        top : int
            At most this many reasons per row (DOMAIN.md §5.3: typically up to 4).
        num_threads : int
            LightGBM threads.
        contrib : ndarray, optional
            Contributions from :meth:`explain` on the same ``df``, when the caller has them
            already (SHAP is the expensive part; computing it twice doubles a snapshot load).

        Returns
        -------
        list of list of dict
            Per row, reasons in decreasing contribution, each with ``code``, ``feature``,
            ``value`` (as given, ``None`` when missing), ``contribution`` (> 0, calibrated
            log-odds), ``text_en``, ``text_zh``. Only features that raise the PD are listed.
        """
        if contrib is None:
            contrib, _ = self.explain(df, num_threads)
        values = self.prepare(df)
        out: list[list[dict[str, Any]]] = []
        for i in range(contrib.shape[0]):
            order = np.argsort(-contrib[i], kind="stable")
            row: list[dict[str, Any]] = []
            for j in order[:top]:
                c = float(contrib[i, j])
                if not c > 0:
                    break
                f = self.features[j]
                row.append(
                    {
                        "code": reason_code(j),
                        "feature": f.name,
                        "value": _plain(values.iat[i, j]),
                        "contribution": c,
                        "text_en": f.reason_en or f.name,
                        "text_zh": f.reason_zh or f.name,
                    }
                )
            out.append(row)
        return out

    def row_reasons(self, contrib: np.ndarray, x: np.ndarray, top: int = 4) -> list[dict[str, Any]]:
        """List the :meth:`reasons` of one row from its contributions and booster input row.

        Parameters
        ----------
        contrib : ndarray of shape (k,)
            The row's contributions (from :meth:`explain`).
        x : ndarray of shape (k,)
            The row as the booster reads it (:meth:`matrix` / :meth:`row_vector`); a reason's
            ``value`` is read back from it (a category code becomes its level).
        top : int
            At most this many reasons.

        Returns
        -------
        list of dict
            Equal to ``reasons(df)[i]`` for the row ``i`` of ``df`` these arrays came from.
        """
        order = np.argsort(-contrib, kind="stable")
        row: list[dict[str, Any]] = []
        for j in order[:top]:
            c = float(contrib[j])
            if not c > 0:
                break
            f = self.features[j]
            v = float(x[j])
            if math.isnan(v):
                value: Any = None
            elif f.kind == "category":
                value = (f.categories or [])[int(v)]
            else:
                value = v
            row.append(
                {
                    "code": reason_code(int(j)),
                    "feature": f.name,
                    "value": value,
                    "contribution": c,
                    "text_en": f.reason_en or f.name,
                    "text_zh": f.reason_zh or f.name,
                }
            )
        return row

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        """Everything but the booster and catalog, as saved in ``model.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "features": [asdict(f) for f in self.features],
            "calibration": dict(self.calibration),
            "score_scale": self.score_scale.to_dict(),
            "master_scale": self.master_scale.to_list(),
            "pd_floor": self.pd_floor,
            "metadata": self.metadata,
            "linear": None if self.linear is None else self.linear.to_json(),
        }

    def save(self, path: Path | str) -> Path:
        """Write ``booster.txt``, ``model.json`` and ``catalog.yaml`` into a folder.

        Parameters
        ----------
        path : Path or str
            Folder (created if needed; existing model files are overwritten).

        Returns
        -------
        Path
            The folder.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))
        (folder / MODEL_FILE).write_text(
            json.dumps(self.to_json(), indent=2, ensure_ascii=False, default=_json_default),
            encoding="utf-8",
        )
        catalog = self.catalog_yaml or yaml.safe_dump(
            {"features": [asdict(f) for f in self.features]}, allow_unicode=True, sort_keys=False
        )
        (folder / CATALOG_FILE).write_text(catalog, encoding="utf-8")
        write_manifest(folder)
        return folder

    @classmethod
    def load(cls, path: Path | str, isolated: bool = False) -> CreditModel:
        """Read a model folder written by :meth:`save`.

        The folder's manifest (``manifest.json``, SHA-256 of every file) is checked before any
        file is parsed.

        Parameters
        ----------
        path : Path or str
            The model folder.
        isolated : bool, default False
            Parse the booster in a child process first (:func:`training.manifest.probe_booster`),
            so a file that crashes LightGBM's parser cannot take this process down. The service
            loads this way.

        Raises
        ------
        ModelFileError
            When a file is missing, unreadable or does not match the manifest, naming it.
        """
        folder = Path(path)
        for name in (BOOSTER_FILE, MODEL_FILE, CATALOG_FILE):
            if not (folder / name).is_file():
                raise ModelFileError(f"model folder {folder} must contain {name}; it does not")
        try:
            verify_manifest(folder, required=(BOOSTER_FILE, MODEL_FILE, CATALOG_FILE))
            if isolated:
                probe_booster(folder / BOOSTER_FILE)
        except ManifestError as exc:
            raise ModelFileError(str(exc)) from exc
        try:
            data = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
            features = [FeatureInfo(**f) for f in data["features"]]
            calibration = {k: float(v) for k, v in data["calibration"].items()}
            score_scale = ScoreScale.from_dict(data["score_scale"])
            master_scale = MasterScale.from_list(data["master_scale"])
            linear = None
            if data.get("linear"):
                from training.blend import Scorecard

                linear = Scorecard.from_json(data["linear"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{folder / MODEL_FILE} is not a valid model file: {exc}") from exc
        try:
            booster = lgb.Booster(model_file=str(folder / BOOSTER_FILE))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            # LightGBM reads the file's tail (pandas categories) as UTF-8 in Python: a file cut
            # inside a character fails there rather than in the C++ parser.
            raise ModelFileError(f"{folder / BOOSTER_FILE} is not a LightGBM model: {exc}") from exc
        if booster.num_feature() != len(features):
            raise ModelFileError(
                f"{folder / BOOSTER_FILE} has {booster.num_feature()} features; "
                f"model.json lists {len(features)}"
            )
        return cls(
            booster=booster,
            features=features,
            calibration=calibration,
            score_scale=score_scale,
            master_scale=master_scale,
            pd_floor=float(data.get("pd_floor", PD_FLOOR)),
            version=str(data.get("version", "0")),
            metadata=data.get("metadata", {}),
            catalog_yaml=(folder / CATALOG_FILE).read_text(encoding="utf-8"),
            linear=linear,
        )


def reason_code(position: int) -> str:
    """Reason code of the feature at ``position`` in model order (``R001`` …)."""
    return f"R{position + 1:03d}"


def features_from_catalog(
    catalog: Any, names: Sequence[str], frame: pd.DataFrame
) -> list[FeatureInfo]:
    """Feature descriptions from the catalog, with categories as seen in ``frame``.

    Parameters
    ----------
    catalog : features.catalog.Catalog or None
        Supplies dtype, direction and reason texts; without it every non-numeric column is
        categorical, there are no monotone constraints and reason texts are the column names.
    names : sequence of str
        Feature columns in model order.
    frame : DataFrame
        Training rows (categories are collected from them).

    Returns
    -------
    list of FeatureInfo
    """
    out: list[FeatureInfo] = []
    for name in names:
        col = frame[name]
        spec = catalog[name] if catalog is not None and name in catalog.names else None
        if spec is not None:
            is_cat = spec.dtype == "category"
            monotone = {"increases_risk": 1, "decreases_risk": -1}.get(spec.direction, 0)
            reason_en, reason_zh = spec.reason_en or name, spec.reason_zh or name
        else:
            is_cat = not (
                pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)
            )
            monotone, reason_en, reason_zh = 0, name, name
        categories: list[str] | None = None
        if is_cat:
            monotone = 0
            if isinstance(col.dtype, pd.CategoricalDtype):
                levels = [str(c) for c in col.cat.categories]
            else:
                levels = sorted({str(v) for v in col.dropna().unique()})
            if spec is not None and getattr(spec, "categories", None):
                levels = [str(c) for c in spec.categories] + [
                    c for c in levels if c not in {str(s) for s in spec.categories}
                ]
            categories = levels
        out.append(
            FeatureInfo(
                name=name,
                kind="category" if is_cat else "numeric",
                categories=categories,
                monotone=monotone,
                reason_en=reason_en,
                reason_zh=reason_zh,
            )
        )
    return out


def _numeric(name: str, value: Any) -> float:
    """Read one numeric feature value as ``prepare`` does: missing -> NaN, else a number."""
    if value is None or value is pd.NA or value is pd.NaT:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric; got {value!r}") from None


def _plain(value: Any) -> Any:
    """Convert to a JSON-friendly Python value (None for missing)."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)
