"""Train stage: a tracked, validated logistic regression.

1. The labelled features of the train videos are split into grouped folds: every video lies in
   exactly one fold, so no fold validates on frames of a video it trained on.
2. A parameter grid from ``train.*`` is evaluated with Spark's ``CrossValidator`` (``foldCol``,
   ``parallelism``); every candidate is a nested MLflow run.
3. The best candidate's out-of-fold predictions give the metrics, the operating threshold and the
   plots; it is refit on all labelled data with that threshold and logged (``mlflow.spark``) and
   registered. It takes the ``champion`` alias only when it beats the champion on the champion's
   own validation data (same seconds, labels and folds), or when there is no comparable champion.
4. The ``models`` table mirrors the registry's versions for SQL.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.ml.tuning import CrossValidator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark import evaluation, storage, tracking
from vidspark.config import GRID_KEYS
from vidspark.review import REVIEW_SOURCE
from vidspark.schemas import MODELS

log = logging.getLogger(__name__)

WEIGHT_COL = "class_weight"
ROWS_PER_PARTITION = 2000            # labelled seconds per partition while fitting
VALIDATION_FILE = tracking.VALIDATION_FILE
_SPARK_PARAM = {"max_iter": "maxIter", "reg_param": "regParam",
                "elastic_net_param": "elasticNetParam"}


class TrainingError(RuntimeError):
    """Training cannot produce a meaningful model from the data at hand."""


def training_set(features: DataFrame, labels: DataFrame, videos: DataFrame) -> DataFrame:
    """Labelled features: (video, second, features, weights, label as double, source).

    Imported labels count for train videos; reviewers' verdicts (labels whose source starts with
    ``review:``) count for every video, score videos included: a rejected false positive of
    tonight's ranking is a negative example tomorrow."""
    ok = videos.where(F.col("status") == "ok").select("video", "role")
    usable = (labels.join(ok, "video", "inner")
              .where(F.col("role").contains("train")
                     | F.col("source").startswith(REVIEW_SOURCE))
              .select("video", "second", "label", "source"))
    return (features
            .join(usable, ["video", "second"], "inner")
            .select("video", "second", "features", "weights",
                    F.col("label").cast("double").alias("label"), "source"))


# --- folds, candidates, class weights -----------------------------------------------------------

def _order_key(video: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{video}".encode()).hexdigest()


def assign_folds(per_video: pd.DataFrame, folds: int, seed: int) -> dict:
    """{video: fold} from per-video counts (columns video, positives, negatives).

    Videos with positives are dealt round-robin in a seeded order, then the others, so every
    fold gets positives and about the same number of videos. Raises ``TrainingError`` when some
    fold would lack a class."""
    with_pos = per_video[per_video.positives > 0]
    if len(per_video) < folds or len(with_pos) < folds:
        raise TrainingError(
            f"train.folds={folds} needs at least {folds} labelled train videos with positive "
            f"labels (each video lies in one fold); found {len(per_video)} labelled videos, "
            f"{len(with_pos)} with positives. Label more videos or lower train.folds")
    ordered = (sorted(with_pos.video, key=lambda v: _order_key(v, seed))
               + sorted(per_video[per_video.positives == 0].video, key=lambda v: _order_key(v, seed)))
    assignment = {video: i % folds for i, video in enumerate(ordered)}
    negatives = per_video.assign(fold=per_video.video.map(assignment)).groupby("fold").negatives.sum()
    if (negatives.reindex(range(folds), fill_value=0) == 0).any():
        raise TrainingError(f"train.folds={folds}: some fold has no negative labels; label "
                            "negative seconds in more videos or lower train.folds")
    return assignment


def candidates(config: Mapping) -> list[dict]:
    """Every combination of the grid lists in ``train.*`` (in a stable order)."""
    t = config["train"]
    lists = [t[k] if isinstance(t[k], list) else [t[k]] for k in GRID_KEYS]
    return [dict(zip(GRID_KEYS, combo)) for combo in itertools.product(*lists)]


def estimator() -> LogisticRegression:
    return LogisticRegression(featuresCol="features", labelCol="label",
                              probabilityCol="probability")


def param_map(lr: LogisticRegression, candidate: Mapping) -> dict:
    params = {getattr(lr, _SPARK_PARAM[k]): candidate[k] for k in _SPARK_PARAM}
    params[lr.weightCol] = WEIGHT_COL if candidate["class_weighting"] else ""
    return params


def with_class_weights(data: DataFrame) -> DataFrame:
    """Adds ``class_weight`` = n / (2 * n_class): both classes weigh the same in total."""
    counts = {int(r.label): r["count"] for r in data.groupBy("label").count().collect()}
    n = sum(counts.values())
    w = {c: n / (2.0 * k) for c, k in counts.items()}
    return data.withColumn(WEIGHT_COL, F.when(F.col("label") == 1, w.get(1, 1.0))
                           .otherwise(w.get(0, 1.0)))


def _prob(df: DataFrame) -> DataFrame:
    return df.withColumn("prob", vector_to_array("probability")[1])


# --- fingerprint -----------------------------------------------------------------------------

def fingerprint(data: DataFrame, config: Mapping) -> str:
    """Identifies the labelled training rows (keys, labels, weights) and the train settings."""
    row = data.agg(F.count(F.lit(1)).alias("n"),
                   F.bit_xor(F.xxhash64("video", "second", "label", "weights")).alias("h")).first()
    settings = json.dumps({"train": dict(config["train"]), "model": tracking.model_name(config)},
                          sort_keys=True)
    return f"n={row.n}:h={row.h or 0}:{hashlib.sha256(settings.encode()).hexdigest()[:16]}"


# --- cross-validation -----------------------------------------------------------------------

@dataclass
class Validation:
    """What grouped cross-validation found."""
    folds: dict                       # {video: fold}
    candidates: list                  # candidate dicts, grid order
    table: pd.DataFrame               # one row per candidate: params and metrics
    best: int                         # index of the best candidate
    oof: pd.DataFrame                 # best candidate: video, second, label, fold, prob, source
    metrics: dict = field(default_factory=dict)
    threshold: dict = field(default_factory=dict)
    per_video_ap: dict = field(default_factory=dict)
    sub_models: list = field(default_factory=list)   # [fold][candidate] fitted models


def _fold_metrics(oof: pd.DataFrame, k: int) -> dict:
    """Means over folds of the areas and of precision at k."""
    per_fold = [(evaluation.area_under_pr(g.label, g.prob), evaluation.area_under_roc(g.label, g.prob),
                 evaluation.precision_at_k(g.label, g.prob, k)) for _, g in oof.groupby("fold")]
    pr, roc, pak = (np.array(x) for x in zip(*per_fold))
    return {"areaUnderPR": float(pr.mean()), "areaUnderPR_std": float(pr.std()),
            "areaUnderROC": float(roc.mean()), "areaUnderROC_std": float(roc.std()),
            "precision_at_k": float(pak.mean())}


def _out_of_fold(dataset: DataFrame, sub_models, folds: int, n_candidates: int) -> pd.DataFrame:
    """Out-of-fold predictions of every candidate, collected once (a row per labelled second and
    candidate): each fold's model predicts the fold it did not train on."""
    parts = []
    for f in range(folds):
        validation = dataset.where(F.col("fold") == f)
        for c in range(n_candidates):
            parts.append(_prob(sub_models[f][c].transform(validation))
                         .select(F.lit(c).alias("candidate"), "video", "second", "label", "fold", "prob",
                                 "source"))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union.toPandas()


def cross_validate(spark: SparkSession, data: DataFrame, config: Mapping) -> Validation:
    """Grouped k-fold cross-validation of every candidate; ``data`` is ``training_set`` output."""
    t = config["train"]
    per_video = (data.groupBy("video")
                 .agg(F.sum("label").alias("positives"), F.sum(1 - F.col("label")).alias("negatives"))
                 .toPandas())
    folds = assign_folds(per_video, t["folds"], t["seed"])
    fold_df = spark.createDataFrame(list(folds.items()), "video string, fold int")
    # Every optimizer iteration is a Spark job over the data: small labelled sets in few
    # partitions cost less in job overhead, and candidates fit side by side use the cores.
    n_rows = int(per_video.positives.sum() + per_video.negatives.sum())
    partitions = max(1, min(spark.sparkContext.defaultParallelism, n_rows // ROWS_PER_PARTITION))
    dataset = (with_class_weights(data).join(F.broadcast(fold_df), "video")
               .repartition(partitions).cache())
    lr = estimator()
    grid = candidates(config)
    cv = CrossValidator(estimator=lr, estimatorParamMaps=[param_map(lr, c) for c in grid],
                        evaluator=BinaryClassificationEvaluator(rawPredictionCol="probability",
                                                               metricName=t["metric"]),
                        numFolds=t["folds"], foldCol="fold", parallelism=t["parallelism"],
                        collectSubModels=True)
    try:
        cv_model = cv.fit(dataset)
        sub_models = cv_model.subModels
        oof_all = _out_of_fold(dataset, sub_models, t["folds"], len(grid))
    finally:
        dataset.unpersist()
    rows = []
    for c, cand in enumerate(grid):
        m = _fold_metrics(oof_all[oof_all.candidate == c], t["precision_at_k"])
        m[f"spark_{t['metric']}"] = float(cv_model.avgMetrics[c])
        rows.append({**cand, **m})
    table = pd.DataFrame(rows)
    best = int(np.argmax(cv_model.avgMetrics))
    oof = oof_all[oof_all.candidate == best].drop(columns="candidate").reset_index(drop=True)
    result = Validation(folds=folds, candidates=grid, table=table, best=best, oof=oof,
                        sub_models=sub_models)
    result.metrics = _fold_metrics(oof, t["precision_at_k"])
    result.threshold = evaluation.choose_threshold(oof.label, oof.prob, t["threshold"],
                                                   t["threshold_target"])
    if not result.threshold["reached"]:
        log.warning("train: no threshold reaches %s %.2f on the validation folds; using the best "
                    "reachable (%s %.3f)", t["threshold"], t["threshold_target"], t["threshold"],
                    result.threshold[t["threshold"]])
    cm = evaluation.confusion(oof.label, oof.prob, result.threshold["threshold"])
    result.metrics.update({"threshold": result.threshold["threshold"],
                           "precision": result.threshold["precision"],
                           "recall": result.threshold["recall"], "f1": result.threshold["f1"],
                           **{f"confusion_{k}": float(v) for k, v in cm.items()}})
    result.per_video_ap = evaluation.per_video_ap(oof)
    if result.per_video_ap:
        result.metrics["per_video_ap_mean"] = float(np.mean(list(result.per_video_ap.values())))
    return result


# --- the champion -------------------------------------------------------------------------

def _cross_fit_score(spark: SparkSession, data: DataFrame, reference: pd.DataFrame,
                     candidate: Mapping, weights: str, config: Mapping) -> tuple[float | None, int]:
    """Metric of ``candidate`` trained on ``data`` and validated on the reference seconds (video,
    second, label, fold; features of ``weights``), fold by fold: each fold's model is fit without
    that fold's videos. Returns (mean metric over usable folds or None, seconds used)."""
    metric = config["train"]["metric"]
    features = (storage.read(spark, config, "features").where(F.col("weights") == weights)
                .select("video", "second", "features"))
    ref = spark.createDataFrame(reference[["video", "second", "label", "fold"]].astype(
        {"second": int, "label": float, "fold": int}))
    ref = ref.join(features, ["video", "second"], "inner").cache()
    values, used = [], 0
    try:
        lr = estimator()
        for f in sorted(reference.fold.unique()):
            validation = ref.where(F.col("fold") == int(f))
            held_out = validation.select("video").distinct()
            train_part = with_class_weights(data.join(held_out, "video", "left_anti"))
            model = lr.copy(param_map(lr, candidate)).fit(train_part)
            got = _prob(model.transform(validation)).select("label", "prob").toPandas()
            if got.label.nunique() < 2:
                continue
            used += len(got)
            values.append(evaluation.area(metric, got.label, got.prob))
    finally:
        ref.unpersist()
    return (float(np.mean(values)) if values else None), used


def _reference(config: Mapping, version) -> pd.DataFrame | None:
    """The champion's out-of-fold validation predictions (None when its run has none)."""
    try:
        return tracking.validation_frame(version)
    except Exception as exc:  # an artifact store that lost it, or a hand-registered model
        log.warning("train: champion version %s has no %s (%s)", version.version, VALIDATION_FILE, exc)
        return None


def decide(spark: SparkSession, data: DataFrame, candidate: Mapping, weights: str,
           config: Mapping) -> tuple[bool, str]:
    """Should the new model take the champion alias? (yes/no, the reason in words)."""
    mode = config["train"]["promote"]
    if mode != "auto":
        return mode == "always", f"train.promote={mode}"
    current = tracking.champion(config)
    if current is None:
        return True, "no champion yet"
    if current.tags.get("weights") != weights:
        return True, (f"champion version {current.version} was trained on other features "
                      f"({current.tags.get('weights')}), which scoring can no longer use")
    reference = _reference(config, current)
    if reference is None:
        return True, f"champion version {current.version} has no validation data to compare on"
    metric = config["train"]["metric"]
    folds = [g for _, g in reference.groupby("fold") if g.label.nunique() == 2]
    champion_value = (float(np.mean([evaluation.area(metric, g.label, g.prob) for g in folds]))
                      if folds else None)
    value, used = _cross_fit_score(spark, data, reference, candidate, weights, config)
    if value is None or champion_value is None:
        return True, (f"champion version {current.version}'s validation seconds are no longer "
                      "featurized with both classes; nothing to compare on")
    where = (f"on champion version {current.version}'s validation data "
             f"({used} seconds, {reference.fold.nunique()} grouped folds)")
    if value > champion_value:
        return True, f"{metric} {value:.4f} beats the champion's {champion_value:.4f} {where}"
    return False, f"{metric} {value:.4f} does not beat the champion's {champion_value:.4f} {where}"


# --- logging to MLflow ------------------------------------------------------------------------

def _spark_params(candidate: Mapping) -> dict:
    return {_SPARK_PARAM.get(k, k): v for k, v in candidate.items()}


def _log_validation(result: Validation, config: Mapping, data_info: Mapping) -> None:
    import mlflow

    t = config["train"]
    best = result.candidates[result.best]
    for i, cand in enumerate(result.candidates):
        row = result.table.iloc[i]
        with mlflow.start_run(run_name=f"candidate-{i}", nested=True):
            mlflow.log_params(_spark_params(cand))
            mlflow.log_metrics({k: float(row[k]) for k in
                                ("areaUnderPR", "areaUnderPR_std", "areaUnderROC",
                                 "areaUnderROC_std", "precision_at_k")})
            mlflow.set_tag("vidspark.best", str(i == result.best).lower())
    mlflow.log_params({**_spark_params(best), "folds": t["folds"], "seed": t["seed"],
                       "metric": t["metric"], "precision_at_k.k": t["precision_at_k"],
                       "threshold.strategy": t["threshold"],
                       "threshold.target": t["threshold_target"],
                       "candidates": len(result.candidates), **data_info})
    mlflow.log_metrics(result.metrics)
    mlflow.log_dict(result.per_video_ap, "validation/per_video_ap.json")
    mlflow.log_dict({"threshold": result.threshold, "folds": result.folds},
                    "validation/threshold_and_folds.json")
    mlflow.log_text(result.table.to_csv(index=False), "validation/candidates.csv")
    mlflow.log_text(result.oof.to_csv(index=False), VALIDATION_FILE)
    for name, fig in evaluation.figures(result.oof, result.threshold["threshold"]).items():
        mlflow.log_figure(fig, f"plots/{name}")


def _version_tags(version) -> dict:
    return dict(version.tags or {})


def sync_models_table(spark: SparkSession, config: Mapping) -> None:
    """Write the registry's versions of the model into the ``models`` table (when a version is new
    there or the champion alias moved since the last sync)."""
    champ = tracking.champion(config)
    rows = []
    for v in tracking.versions(config):
        tags = _version_tags(v)
        if "data_fingerprint" not in tags:
            continue  # registered by hand or by another tool: not ours to describe
        rows.append({
            "model_id": f"{v.name}/{v.version}", "path": f"models:/{v.name}/{v.version}",
            "created_at": dt.datetime.fromtimestamp(v.creation_timestamp / 1000, dt.timezone.utc)
            .replace(tzinfo=None),
            "weights": tags.get("weights", ""), "params": tags.get("params", "{}"),
            "train_rows": int(tags.get("train_rows", 0)), "positives": int(tags.get("positives", 0)),
            "train_videos": int(tags.get("train_videos", 0)),
            "data_fingerprint": tags["data_fingerprint"], "model_name": v.name,
            "model_version": int(v.version), "run_id": v.run_id,
            "threshold": float(tags.get("threshold", "nan")),
            "area_under_pr": float(tags.get("areaUnderPR", "nan")),
            "area_under_roc": float(tags.get("areaUnderROC", "nan")),
            "champion": champ is not None and champ.version == v.version,
            "decision": tags.get("decision")})
    have = {(r.model_id, r.champion) for r in
            storage.read(spark, config, "models").select("model_id", "champion").collect()}
    if {(r["model_id"], r["champion"]) for r in rows} - have:   # new versions, or the alias moved
        storage.upsert(spark, config, "models", spark.createDataFrame(rows, MODELS))


def _same_data_version(config: Mapping, data_fp: str):
    for v in tracking.versions(config):
        if _version_tags(v).get("data_fingerprint") == data_fp:
            return v
    return None


def run(spark: SparkSession, config: Mapping) -> dict:
    """Cross-validate the grid, log to MLflow, register the refit best model, decide the champion.

    When neither the labelled training rows nor the train settings changed since a registered
    version, that version is kept (an idle night does not train, register or re-score)."""
    import mlflow
    import mlflow.spark
    import pyspark

    tracking.setup(config)
    name = tracking.model_name(config)
    data = training_set(storage.read(spark, config, "features"),
                        storage.read(spark, config, "labels"),
                        storage.read(spark, config, "videos")).cache()
    try:
        data_fp = fingerprint(data, config)
        same = _same_data_version(config, data_fp)
        if same is not None:
            tags = _version_tags(same)
            log.info("train: training data and settings unchanged; keeping model %s version %s",
                     name, same.version)
            sync_models_table(spark, config)
            rows = int(tags.get("train_rows", 0))
            return {"read": rows, "written": 0, "skipped": 1, "quarantined": 0, "rows": rows,
                    "positives": int(tags.get("positives", 0)),
                    "videos": int(tags.get("train_videos", 0)),
                    "model_id": f"{name}/{same.version}", "model_version": int(same.version),
                    "refit": False, "champion": None}
        counts = {int(r.label): r["count"] for r in data.groupBy("label").count().collect()}
        total = sum(counts.values())
        if total == 0:
            raise TrainingError("no labelled frames: no label matches a featurized frame of a "
                                "train video (check input.labels and input.train_videos)")
        if len(counts) < 2:
            raise TrainingError(f"all {total} labelled frames have label {next(iter(counts))}: "
                                "logistic regression needs both classes (0 and 1)")
        weights = sorted(r.weights for r in data.select("weights").distinct().collect())
        if len(weights) != 1:
            raise TrainingError(f"labelled frames carry features of {len(weights)} weights "
                                f"({', '.join(weights)}); featurize them with one")
        weights = weights[0]
        n_videos = data.select("video").distinct().count()
        data_info = {"data.videos": n_videos, "data.positives": counts.get(1, 0),
                     "data.negatives": counts.get(0, 0), "data.weights": weights,
                     "data.features_version": storage.table_version(spark, config, "features"),
                     "data.labels_version": storage.table_version(spark, config, "labels"),
                     "data.review_labels": data.where(
                         F.col("source").startswith(REVIEW_SOURCE)).count()}
        with mlflow.start_run(run_name="train") as active:
            result = cross_validate(spark, data, config)
            best = result.candidates[result.best]
            _log_validation(result, config, data_info)
            lr = estimator()
            model = lr.copy(param_map(lr, best)).fit(with_class_weights(data))
            model.setThreshold(result.threshold["threshold"])
            promote, reason = decide(spark, data, best, weights, config)
            info = mlflow.spark.log_model(model, "model",
                                          pip_requirements=[f"pyspark=={pyspark.__version__}"])
            # Registered with its tags in one call: a version never exists without them.
            tags = {"weights": weights, "threshold": result.threshold["threshold"],
                    "data_fingerprint": data_fp, "train_rows": total,
                    "positives": counts.get(1, 0), "train_videos": n_videos,
                    "params": json.dumps(_spark_params(best), sort_keys=True),
                    "areaUnderPR": result.metrics["areaUnderPR"],
                    "areaUnderROC": result.metrics["areaUnderROC"], "decision": reason}
            registered = mlflow.register_model(info.model_uri, name,
                                               tags={k: str(v) for k, v in tags.items()})
            version = int(registered.version)
            mlflow.set_tags({"vidspark.model_version": version, "vidspark.champion": promote,
                             "vidspark.decision": reason})
            if promote:
                tracking.promote(config, version)
                log.info("train: %s version %s is the champion: %s", name, version, reason)
            else:
                log.warning("train: %s version %s stays a candidate: %s", name, version, reason)
            run_id = active.info.run_id
    finally:
        data.unpersist()
    sync_models_table(spark, config)
    m = result.metrics
    log.info("train: grouped %d-fold CV over %d candidates: best %s, areaUnderPR %.3f, "
             "areaUnderROC %.3f, threshold %.3f (precision %.2f, recall %.2f)",
             config["train"]["folds"], len(result.candidates), _spark_params(best),
             m["areaUnderPR"], m["areaUnderROC"], m["threshold"], m["precision"], m["recall"])
    return {"read": total, "written": 1, "skipped": 0, "quarantined": 0, "rows": total,
            "positives": counts.get(1, 0), "videos": n_videos, "model_id": f"{name}/{version}",
            "model_version": version, "refit": True, "champion": promote, "decision": reason,
            "run_id": run_id, "areaUnderPR": m["areaUnderPR"], "areaUnderROC": m["areaUnderROC"],
            "threshold": m["threshold"], "best_params": _spark_params(best)}
