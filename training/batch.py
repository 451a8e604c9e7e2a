"""Batch scoring of a feature snapshot: PD, score, grade, supervision class and top reasons.

Two paths give the same rows: :func:`score_batch` scores in chunks in this process;
:func:`score_batch_dask` maps the same :func:`score_frame` over the partitions of a Dask
dataframe on a ``dask.distributed`` cluster, with the model sent to every worker once.
Every output column is a function of its own row only (LightGBM predicts and explains row by
row; the model's categories are fixed), so chunking and partitioning do not change it.

``kuaxin score-batch SNAPSHOT (--model-dir DIR | --champion) --out FILE`` is the command.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer
from tqdm import tqdm

from features.default_status import (
    DefaultStatus,
    default_flags,
    load_default_status,
    serve_default,
)

if TYPE_CHECKING:
    from distributed import Client

    from training.model import CreditModel

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def shipped_default_status() -> DefaultStatus:
    """Read the in-default rules the service also reads, once per process.

    ``KUAXIN_DEFAULT_STATUS`` (the service's setting) names another file; the shipped
    ``features/config/default_status.yaml`` otherwise.
    """
    return load_default_status(os.environ.get("KUAXIN_DEFAULT_STATUS") or None)


#: Key columns copied from the snapshot to the output when present.
KEY_COLUMNS = ("usc_code", "as_of")
#: Score columns of ``CreditModel.score``.
SCORE_COLUMNS = ("pd", "log_odds", "score", "grade", "supervision_class")
#: Columns of the in-default rule (``features.default_status``), as the service serves them.
DEFAULT_COLUMNS = ("in_default", "model_pd", "model_grade")
#: Reasons per row by default (DOMAIN.md §5.3: up to four reason codes).
DEFAULT_TOP = 4
#: Output formats by file suffix.
WRITERS = (".parquet", ".csv")


def output_columns(top: int = DEFAULT_TOP) -> list[str]:
    """Columns of a scored batch, in order.

    Parameters
    ----------
    top : int
        Reasons per row.

    Returns
    -------
    list of str
        Keys, scores, ``model_version``, then ``reason_<k>_code``, ``reason_<k>_feature`` and
        ``reason_<k>_contribution`` for ``k = 1..top``.
    """
    cols = [*KEY_COLUMNS, *SCORE_COLUMNS, *DEFAULT_COLUMNS, "model_version"]
    for k in range(1, top + 1):
        cols += [f"reason_{k}_code", f"reason_{k}_feature", f"reason_{k}_contribution"]
    return cols


def empty_output(top: int = DEFAULT_TOP) -> pd.DataFrame:
    """Return a zero-row scored batch with the output dtypes (Dask's ``meta``)."""
    dtypes: dict[str, Any] = {
        "usc_code": "str",
        "as_of": "datetime64[ns]",
        "pd": "float64",
        "log_odds": "float64",
        "score": "float64",
        "grade": "str",
        "supervision_class": "str",
        "in_default": "bool",
        "model_pd": "float64",
        "model_grade": "str",
        "model_version": "str",
    }
    for k in range(1, top + 1):
        dtypes[f"reason_{k}_code"] = "str"
        dtypes[f"reason_{k}_feature"] = "str"
        dtypes[f"reason_{k}_contribution"] = "float64"
    return pd.DataFrame({c: pd.Series(dtype=dtypes[c]) for c in output_columns(top)})


def score_frame(
    model: CreditModel,
    frame: pd.DataFrame,
    top: int = DEFAULT_TOP,
    status: DefaultStatus | None = None,
) -> pd.DataFrame:
    """Score and explain the rows of one frame.

    A firm in default at its as-of date (the one rule, ``features.default_status``) gets what
    the service answers for it: grade and class ``D``, PD 1, no score; the model's PD and grade
    stay in ``model_pd`` and ``model_grade``.

    Parameters
    ----------
    model : CreditModel
        The model.
    frame : pandas.DataFrame
        Snapshot rows: ``usc_code``, ``as_of`` and the model's features.
    top : int
        Reasons per row (features that raise the PD, largest first; missing when fewer).
    status : DefaultStatus, optional
        The in-default rules; the shipped ``features/config/default_status.yaml`` by default.

    Returns
    -------
    pandas.DataFrame
        :func:`output_columns`, one row per input row, on a fresh 0..n-1 index.
    """
    missing = [c for c in KEY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"snapshot must have the columns {list(KEY_COLUMNS)}; missing {missing}")
    rows = frame.reset_index(drop=True)
    status = status if status is not None else shipped_default_status()
    flagged, _ = default_flags(rows, status)
    scores = serve_default(model.score(rows), flagged, status)
    reasons = model.reasons(rows, top=top)
    out: dict[str, Any] = {
        "usc_code": rows["usc_code"].astype("str").to_numpy(),
        "as_of": pd.to_datetime(rows["as_of"]).astype("datetime64[ns]").to_numpy(),
    }
    for col in (*SCORE_COLUMNS, *DEFAULT_COLUMNS):
        out[col] = scores[col].to_numpy()
    out["model_version"] = np.full(len(rows), str(model.version), dtype=object)
    for k in range(top):
        got = [r[k] if len(r) > k else None for r in reasons]
        out[f"reason_{k + 1}_code"] = [g["code"] if g else None for g in got]
        out[f"reason_{k + 1}_feature"] = [g["feature"] if g else None for g in got]
        out[f"reason_{k + 1}_contribution"] = np.array(
            [g["contribution"] if g else np.nan for g in got], dtype=np.float64
        )
    result = pd.DataFrame(out)
    meta = empty_output(top)
    return result.astype(meta.dtypes.to_dict())


def score_batch(
    model: CreditModel,
    snapshot: pd.DataFrame,
    chunk_size: int = 10_000,
    top: int = DEFAULT_TOP,
    progress: bool = False,
) -> pd.DataFrame:
    """Score a snapshot in chunks in this process.

    Parameters
    ----------
    model : CreditModel
        The model.
    snapshot : pandas.DataFrame
        Rows to score (``usc_code``, ``as_of`` and the model's features).
    chunk_size : int
        Rows per chunk (bounds the memory of the SHAP matrix).
    top : int
        Reasons per row.
    progress : bool
        Show a progress bar over rows.

    Returns
    -------
    pandas.DataFrame
        :func:`output_columns`, rows in the snapshot's order.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    parts = []
    with tqdm(total=len(snapshot), desc="scoring", unit="row", disable=not progress) as bar:
        for start in range(0, len(snapshot), chunk_size):
            chunk = snapshot.iloc[start : start + chunk_size]
            parts.append(score_frame(model, chunk, top))
            bar.update(len(chunk))
    if not parts:
        return score_frame(model, snapshot, top)
    return pd.concat(parts, ignore_index=True)


def score_file(
    model: CreditModel,
    path: str | Path,
    chunk_size: int = 10_000,
    top: int = DEFAULT_TOP,
    progress: bool = False,
) -> pd.DataFrame:
    """Score a snapshot Parquet file read in chunks of rows (the input is never whole in memory).

    Parameters
    ----------
    model : CreditModel
        The model.
    path : str or Path
        Snapshot Parquet file.
    chunk_size : int
        Rows read and scored at a time.
    top : int
        Reasons per row.
    progress : bool
        Show a progress bar over rows.

    Returns
    -------
    pandas.DataFrame
        As :func:`score_batch` on the whole file.
    """
    import pyarrow.parquet as pq

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    needed = [*KEY_COLUMNS, *model.feature_names]
    parquet = pq.ParquetFile(path)
    have = set(parquet.schema_arrow.names)
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(
            f"snapshot {path} must have the columns usc_code, as_of and the model's features; "
            f"missing {missing[:10]}"
        )
    parts = []
    with tqdm(
        total=parquet.metadata.num_rows, desc="scoring", unit="row", disable=not progress
    ) as bar:
        for batch in parquet.iter_batches(batch_size=chunk_size, columns=needed):
            parts.append(score_frame(model, batch.to_pandas(), top))
            bar.update(batch.num_rows)
    if not parts:
        return empty_output(top)
    return pd.concat(parts, ignore_index=True)


def score_batch_dask(
    model: CreditModel,
    snapshot: pd.DataFrame | str | Path,
    client: Client,
    npartitions: int | None = None,
    top: int = DEFAULT_TOP,
    progress: bool = False,
) -> pd.DataFrame:
    """Score a snapshot partition by partition on a Dask cluster; equal to :func:`score_batch`.

    Parameters
    ----------
    model : CreditModel
        The model; scattered to every worker once (``broadcast=True``).
    snapshot : pandas.DataFrame or str or Path
        Rows to score, or a snapshot Parquet file the workers read themselves.
    client : distributed.Client
        The cluster.
    npartitions : int, optional
        Partitions (default: two per worker thread, so a slow worker does not hold the tail).
    top : int
        Reasons per row.
    progress : bool
        Show a progress bar over partitions.

    Returns
    -------
    pandas.DataFrame
        :func:`output_columns`, rows in the snapshot's order.
    """
    import dask.dataframe as dd
    from distributed import as_completed

    parts = npartitions or max(1, 2 * sum(client.nthreads().values()))
    if parts < 1:
        raise ValueError(f"npartitions must be >= 1; got {parts}")
    if isinstance(snapshot, pd.DataFrame):
        # scatter the pieces rather than embed the frame in the task graph
        bounds = np.linspace(0, len(snapshot), parts + 1).astype(int)
        pieces = [snapshot.iloc[a:b] for a, b in itertools.pairwise(bounds)]
        ddf = dd.from_delayed(client.scatter(pieces), meta=snapshot.iloc[:0], verify_meta=False)
    else:
        ddf = dd.read_parquet(str(snapshot)).repartition(npartitions=parts)
    model_future = client.scatter(model, broadcast=True, hash=False)
    scored = ddf.map_partitions(
        _score_partition, model_future, top, meta=empty_output(top), align_dataframes=False
    )
    futures = client.compute(scored.to_delayed())
    try:
        for _ in tqdm(
            as_completed(futures),
            total=len(futures),
            desc="scoring",
            unit="part",
            disable=not progress,
        ):
            pass
        frames = client.gather(futures)
    finally:
        for f in futures:
            f.release()
        model_future.release()
    non_empty = [f for f in frames if len(f)] or [empty_output(top)]
    return pd.concat(non_empty, ignore_index=True)


def explain_frame(model: CreditModel, frame: pd.DataFrame, num_threads: int = 1) -> pd.DataFrame:
    """Calibrated log-odds, base value and every SHAP contribution of the rows of one frame.

    Returns
    -------
    pandas.DataFrame
        ``log_odds``, ``base`` and ``c_0`` .. ``c_{k-1}`` (model feature order), float64, on a
        fresh 0..n-1 index. What a served snapshot keeps of the model's work per firm.
    """
    rows = frame.reset_index(drop=True)
    x = model.matrix(rows)
    contrib, base = model.explain(rows, num_threads=num_threads)
    out = pd.DataFrame(contrib, columns=[f"c_{j}" for j in range(contrib.shape[1])])
    out.insert(0, "base", base)
    out.insert(0, "log_odds", model.calibrate(model.margin_matrix(x, num_threads=num_threads)))
    return out


def explain_batch(
    model: CreditModel,
    snapshot: pd.DataFrame,
    chunk_size: int = 10_000,
    client: Client | None = None,
    progress: bool | None = False,
    num_threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-odds, SHAP contributions and base values of a whole snapshot, in chunks or on Dask.

    Parameters
    ----------
    model : CreditModel
    snapshot : pandas.DataFrame
        Rows with the model's features.
    chunk_size : int
        Rows per chunk (and per Dask partition).
    client : distributed.Client, optional
        Map :func:`explain_frame` over partitions on this cluster instead of in this process.
    progress : bool or None
        Show a progress bar; None shows it only when stderr is a terminal (service start-up).
    num_threads : int
        LightGBM threads in this process (0: all); Dask workers use one each.

    Returns
    -------
    tuple of ndarray
        ``log_odds`` (n,), ``contrib`` (n, k), ``base`` (n,), rows in the snapshot's order.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    k = len(model.features)
    if client is not None:
        import dask.dataframe as dd

        parts = max(1, -(-len(snapshot) // chunk_size))
        bounds = np.linspace(0, len(snapshot), parts + 1).astype(int)
        pieces = [snapshot.iloc[a:b] for a, b in itertools.pairwise(bounds)]
        ddf = dd.from_delayed(client.scatter(pieces), meta=snapshot.iloc[:0], verify_meta=False)
        model_future = client.scatter(model, broadcast=True, hash=False)
        # all columns at once: assigning k columns one by one fragments the frame
        columns = ["log_odds", "base", *(f"c_{j}" for j in range(k))]
        meta = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        try:
            frames = client.gather(
                client.compute(
                    ddf.map_partitions(
                        _explain_partition, model_future, meta=meta, align_dataframes=False
                    ).to_delayed()
                )
            )
        finally:
            model_future.release()
        out = pd.concat([f for f in frames if len(f)] or [meta], ignore_index=True)
    else:
        parts_out = []
        # tqdm's disable=None: a bar on a terminal only, so service logs stay clean
        hide = None if progress is None else not progress
        with tqdm(total=len(snapshot), desc="explaining", unit="row", disable=hide) as bar:
            for start in range(0, len(snapshot), chunk_size):
                chunk = snapshot.iloc[start : start + chunk_size]
                parts_out.append(explain_frame(model, chunk, num_threads))
                bar.update(len(chunk))
        out = (
            pd.concat(parts_out, ignore_index=True)
            if parts_out
            else explain_frame(model, snapshot, num_threads)
        )
    contrib = out[[f"c_{j}" for j in range(k)]].to_numpy(np.float64)
    return out["log_odds"].to_numpy(np.float64), contrib, out["base"].to_numpy(np.float64)


def _explain_partition(frame: pd.DataFrame, model: CreditModel) -> pd.DataFrame:
    return explain_frame(model, frame)


def train_booster_dask(
    client: Client,
    model: CreditModel,
    frame: pd.DataFrame,
    labels: np.ndarray | pd.Series,
    params: dict[str, Any],
    rounds: int,
    seed: int = 0,
    npartitions: int | None = None,
) -> Any:
    """Train the model's LightGBM booster on a Dask cluster with ``lightgbm.dask``.

    The rows are prepared exactly as for the single-machine booster (``model.matrix``), split
    into row blocks spread over the workers, and trained with the same parameters
    (``training.train.lgb_params``: objective, monotone constraints, categorical handling)
    for ``rounds`` rounds. LightGBM's distributed data-parallel learner builds histograms per
    worker and merges them, so the trees are close to, not identical with, the single-machine
    ones (bin boundaries are found per worker); compare AUCs, not predictions.

    Parameters
    ----------
    client : distributed.Client
        The cluster.
    model : CreditModel
        Gives the features (order, categories, monotone constraints) and the preparation.
    frame : pandas.DataFrame
        Training rows with the model's features.
    labels : array-like of 0/1
        Default labels of ``frame``.
    params : dict
        LightGBM parameters (e.g. the chosen search parameters); ``rounds`` may be among them.
    rounds : int
        Boosting rounds.
    seed : int
        Random seed.
    npartitions : int, optional
        Row blocks (default: one per worker thread).

    Returns
    -------
    lightgbm.Booster
        The trained booster, on the client.
    """
    import dask.array as da
    from lightgbm.dask import DaskLGBMClassifier

    from training.train import lgb_params

    x = model.matrix(frame)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(x):
        raise ValueError(f"labels must have one value per row ({len(x)}); got {len(y)}")
    parts = npartitions or max(1, sum(client.nthreads().values()))
    block = -(-len(x) // parts)
    full = lgb_params(model.features, {k: v for k, v in params.items() if k != "rounds"}, seed, 1)
    for key in ("num_threads", "verbosity"):  # set through the estimator's own arguments
        full.pop(key, None)
    clf = DaskLGBMClassifier(client=client, n_estimators=int(rounds), verbose=-1, **full)
    cats = [j for j, f in enumerate(model.features) if f.kind == "category"]
    with warnings.catch_warnings():
        # the sklearn wrapper always passes n_jobs; lightgbm.dask sets threads per worker itself
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        clf.fit(
            da.from_array(x, chunks=(block, x.shape[1])),
            da.from_array(y, chunks=(block,)),
            feature_name=model.feature_names,
            categorical_feature=cats or "auto",
        )
    return clf.booster_


def _score_partition(frame: pd.DataFrame, model: CreditModel, top: int) -> pd.DataFrame:
    """Score one Dask partition (runs on a worker)."""
    return score_frame(model, frame, top)


def write_scores(scores: pd.DataFrame, out: str | Path) -> Path:
    """Write scores as Parquet or CSV by the file's suffix.

    Parameters
    ----------
    scores : pandas.DataFrame
        Output of :func:`score_batch`.
    out : str or Path
        ``.parquet`` or ``.csv`` file (parent folders are created).

    Returns
    -------
    Path
        The file written.
    """
    path = Path(out)
    if path.suffix.lower() not in WRITERS:
        raise ValueError(f"--out must end in one of {list(WRITERS)}; got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        scores.to_csv(path, index=False)
    else:
        scores.to_parquet(path, index=False)
    return path


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    """Add ``kuaxin score-batch`` to the app.

    Parameters
    ----------
    app : typer.Typer
        The top-level app.
    """

    @app.command("score-batch")
    def score_batch_cmd(
        snapshot: Annotated[Path, typer.Argument(help="Snapshot Parquet from `kuaxin features`.")],
        out: Annotated[Path, typer.Option(help="Scores file (.parquet or .csv).")],
        model_dir: Annotated[
            Path | None, typer.Option(help="Model folder (booster.txt, model.json, catalog.yaml).")
        ] = None,
        champion: Annotated[
            bool, typer.Option("--champion", help="Use the registry's champion model.")
        ] = False,
        tracking_uri: Annotated[
            str | None, typer.Option(help="MLflow tracking URI for --champion.")
        ] = None,
        workers: Annotated[
            int, typer.Option(min=0, help="Dask worker processes (0: score in this process).")
        ] = 0,
        chunk_size: Annotated[
            int, typer.Option(min=1, help="Rows per chunk in this process.")
        ] = 10_000,
        top: Annotated[int, typer.Option(min=0, help="Reasons per row.")] = DEFAULT_TOP,
    ) -> None:
        """Score every row of a snapshot: PD, score, grade, supervision class, top reasons."""
        from training.model import CreditModel, ModelFileError

        if (model_dir is None) == (not champion):
            _fail("give exactly one of --model-dir DIR or --champion")
        if out.suffix.lower() not in WRITERS:
            _fail(f"--out must end in one of {list(WRITERS)}; got {out.name!r}")
        if not snapshot.is_file():
            _fail(f"snapshot {snapshot} must be a Parquet file; it does not exist")
        t0 = time.perf_counter()
        try:
            if model_dir is not None:
                model = CreditModel.load(model_dir)
            else:
                from training.registry import GateError, load_champion

                try:
                    model = load_champion(tracking_uri=tracking_uri)
                except GateError as exc:
                    _fail(str(exc))
                    return
            if workers:
                from features.distributed import local_client

                with local_client(workers) as client:
                    scores = score_batch_dask(model, snapshot, client, top=top, progress=True)
            else:
                scores = score_file(model, snapshot, chunk_size, top, progress=True)
            path = write_scores(scores, out)
        except (ModelFileError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
            return
        typer.echo(
            f"scored {len(scores):,} rows with model {model.version} in "
            f"{time.perf_counter() - t0:.1f} s → {path}"
        )
