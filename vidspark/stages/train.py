"""Train stage: a tracked, validated classifier chosen among feature sets and model families.

1. The labelled seconds of the train videos get the feature groups of every configured feature
   set (``vidspark.stages.feature_sets``) and are split into grouped folds by ``train.group_by``:
   every camera (or video) lies in exactly one fold, so no fold validates on a camera it
   trained on (a split that shares a camera measures scene memory, not detection).
2. Every feature set x every candidate of every model family (``train.models``: Spark MLlib
   random forest, gradient-boosted trees, logistic regression) is a Spark ML ``Pipeline``
   (PCA of the embedding where the set has ``appearance``, ``VectorAssembler``, classifier),
   fit on each grouped fold's complement, ``train.parallelism`` fits at a time, and scored by
   its out-of-fold predictions (mean over folds, as Spark's ``CrossValidator`` scores); each is
   a nested MLflow run.
3. The best candidate's out-of-fold predictions give the metrics, the operating threshold and the
   plots; it is refit on all labelled data with that threshold and logged (``mlflow.spark``) and
   registered with its feature set. It takes the ``champion`` alias only when it beats the
   champion on the champion's own validation data (same seconds, labels and folds), or when
   there is no comparable champion.
4. The ``models`` table mirrors the registry's versions for SQL.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline
from pyspark.ml.classification import (GBTClassifier, LogisticRegression,
                                       RandomForestClassifier)
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config, MODEL_FAMILIES
from vidspark.errors import VidsparkError
from vidspark.media import motion
from vidspark.stages import evaluation, feature_sets
from vidspark.stages.pca import EigenPCA
from vidspark.storage import models, runs, tracking
from vidspark.storage.schemas import REVIEW_SOURCE

log = logging.getLogger(__name__)

WEIGHT_COL = "class_weight"
ROWS_PER_PARTITION = 2000            # labelled seconds per partition while fitting
VALIDATION_FILE = tracking.VALIDATION_FILE
# Spark's parameter names, for MLflow and the models table
_SPARK_PARAM = {"max_iter": "maxIter", "reg_param": "regParam",
                "elastic_net_param": "elasticNetParam", "max_depth": "maxDepth",
                "step_size": "stepSize", "num_trees": "numTrees",
                "min_instances_per_node": "minInstancesPerNode"}


class TrainingError(VidsparkError, RuntimeError):
    """Training cannot produce a meaningful model from the data at hand."""


def labelled_keys(labels: DataFrame, videos: DataFrame) -> DataFrame:
    """(video, second, label, source) of the labels training may use: imported labels of train
    videos, and reviewers' verdicts (``review:`` sources) of every video, score videos included:
    a rejected false positive of tonight's ranking is a negative example tomorrow."""
    ok = videos.where(F.col("status") == "ok").select("video", "role")
    return (labels.join(ok, "video", "inner")
            .where(F.col("role").contains("train") | F.col("source").startswith(REVIEW_SOURCE))
            .select("video", "second", "label", "source"))


def embedding_weights(spark: SparkSession, config: Config, keys: DataFrame) -> str:
    """The one weights identity of the embeddings of the labelled seconds ``keys``."""
    found = sorted(r.weights for r in storage.read(spark, config, "features")
                   .join(keys.select("video", "second"), ["video", "second"], "left_semi")
                   .select("weights").distinct().collect())
    if len(found) > 1:
        raise TrainingError(f"labelled frames carry features of {len(found)} weights "
                            f"({', '.join(found)}); featurize them with one")
    if not found:
        raise TrainingError("no labelled frame has InceptionV3 features, which the feature sets "
                            f"{', '.join(config.train.feature_sets)} need: run the "
                            "featurize stage")
    return found[0]


def training_set(spark: SparkSession, config: Config, groups, weights: Optional[str] = None,
                 keys: Optional[DataFrame] = None, anomaly_score: bool = True) -> DataFrame:
    """Labelled seconds with their feature groups: (video, second, camera, a vector column per
    group, anomaly_score (null with ``anomaly_score=False``, unless a group needs it), label as
    double, source)."""
    if keys is None:
        keys = labelled_keys(storage.read(spark, config, "labels"),
                             storage.read(spark, config, "videos"))
    assembled = feature_sets.assemble(spark, config, groups, weights=weights,
                                      videos=keys.select("video").distinct(),
                                      anomaly_score=anomaly_score)
    return (assembled.join(keys, ["video", "second"], "inner")
            .select("video", "second", "camera", *groups, "anomaly_score",
                    F.col("label").cast("double").alias("label"), "source"))


# --- folds, candidates, class weights -----------------------------------------------------------

def _order_key(group: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def assign_folds(per_group: pd.DataFrame, folds: int, seed: int, unit: str = "video") -> dict:
    """{group: fold} from per-group counts (columns group, positives, negatives); a group is a
    camera or a video (``unit``, for messages).

    Groups with positives are dealt first, largest first (ties in a seeded order), each to the
    fold with the fewest positives so far; then the groups that hold only negatives (many
    cameras see only one class), each to the fold with the fewest negatives. So every fold gets
    positives and the classes are spread evenly even when groups differ in size. Raises
    ``TrainingError`` when some fold would lack a class."""
    with_pos = per_group[per_group.positives > 0]
    if len(per_group) < folds or len(with_pos) < folds:
        raise TrainingError(
            f"train.folds={folds} needs at least {folds} labelled train {unit}s with positive "
            f"labels (each {unit} lies in one fold); found {len(per_group)} labelled {unit}s, "
            f"{len(with_pos)} with positives. Label more {unit}s, lower train.folds"
            + (" or set train.group_by: video" if unit == "camera" else ""))
    positives, negatives = np.zeros(folds), np.zeros(folds)
    assignment = {}
    rows = sorted(per_group.itertuples(index=False),
                  key=lambda r: (r.positives == 0, -(r.positives if r.positives else r.negatives),
                                 _order_key(r.group, seed)))
    for r in rows:
        if r.positives > 0:
            f = int(np.lexsort((np.arange(folds), positives + negatives, positives))[0])
        else:
            f = int(np.lexsort((np.arange(folds), positives + negatives, negatives))[0])
        assignment[r.group] = f
        positives[f] += r.positives
        negatives[f] += r.negatives
    if (negatives == 0).any():
        raise TrainingError(f"train.folds={folds}: some fold has no negative labels; label "
                            f"negative seconds in more {unit}s or lower train.folds")
    return assignment


def candidates(config: Config) -> list[dict]:
    """Every feature set x every combination of each model family's grid lists (stable order):
    ``{"feature_set": ..., "model": family, <grid key>: value, ...}``."""
    t = config.train
    out = []
    for name in t.feature_sets:
        for family in t.models:
            keys = MODEL_FAMILIES[family]
            grid = t.grid(family)
            for combo in itertools.product(*(grid[k] for k in keys)):
                out.append({"feature_set": name, "model": family, **dict(zip(keys, combo))})
    return out


def _classifier(candidate: Mapping, seed: int):
    family = candidate["model"]
    common = {"featuresCol": "features", "labelCol": "label"}   # probabilities in "probability"
    if family == "logistic_regression":
        return LogisticRegression(**common, maxIter=candidate["max_iter"],
                                  regParam=candidate["reg_param"],
                                  elasticNetParam=candidate["elastic_net_param"],
                                  weightCol=WEIGHT_COL if candidate["class_weighting"] else "")
    if family == "gbt":
        return GBTClassifier(**common, maxIter=candidate["max_iter"],
                             maxDepth=candidate["max_depth"], stepSize=candidate["step_size"],
                             seed=seed)
    return RandomForestClassifier(**common, numTrees=candidate["num_trees"],
                                  maxDepth=candidate["max_depth"],
                                  minInstancesPerNode=candidate["min_instances_per_node"],
                                  seed=seed)


def stages(candidate: Mapping, config: Config) -> list:
    """The Spark ML stages of a candidate: PCA of the embedding (``appearance``), one assembled
    ``features`` vector of its groups, its classifier."""
    groups = feature_sets.feature_set(candidate["feature_set"]).groups
    out, inputs = [], []
    k = int(config.features.pca_components)
    for group in groups:
        if group == "appearance" and k:
            out.append(EigenPCA(k=k, inputCol="appearance", outputCol="appearance_pca"))
            inputs.append("appearance_pca")
        else:
            inputs.append(group)
    out.append(VectorAssembler(inputCols=inputs, outputCol="features"))
    out.append(_classifier(candidate, int(config.train.seed)))
    return out


def pipeline(candidate: Mapping, config: Config) -> Pipeline:
    return Pipeline(stages=stages(candidate, config))


def set_threshold(model, threshold: float) -> None:
    """Store the operating threshold in the fitted pipeline's classifier, so its ``prediction``
    is ``probability of class 1 > threshold``."""
    classifier = model.stages[-1]
    if hasattr(classifier, "setThreshold"):
        classifier.setThreshold(threshold)
    else:   # trees: class 1 wins when p1 / t > p0 / (1 - t), i.e. when p1 > t
        classifier.setThresholds([1.0 - threshold, threshold])


def with_class_weights(data: DataFrame) -> DataFrame:
    """Adds ``class_weight`` = n / (2 * n_class): both classes weigh the same in total."""
    counts = {int(r.label): r["count"] for r in data.groupBy("label").count().collect()}
    n = sum(counts.values())
    w = {c: n / (2.0 * k) for c, k in counts.items()}
    return data.withColumn(WEIGHT_COL, F.when(F.col("label") == 1, w.get(1, 1.0))
                           .otherwise(w.get(0, 1.0)))


def with_probability(df: DataFrame) -> DataFrame:
    """Adds ``prob``: the probability of class 1 of a fitted model's output."""
    return df.withColumn("prob", vector_to_array("probability")[1])


def group_column(config: Config) -> str:
    return config.train.group_by


# --- fingerprint -----------------------------------------------------------------------------

def summarize(data: DataFrame) -> dict:
    """What training needs to know of the labelled rows, in one Spark job: ``rows``, ``hash`` (of
    keys and labels), ``positives``, ``negatives``, ``videos``, ``cameras``, ``review_labels``."""
    row = data.agg(F.count(F.lit(1)).alias("rows"),
                   F.bit_xor(F.xxhash64("video", "second", "label")).alias("hash"),
                   F.sum(F.when(F.col("label") == 1, 1).otherwise(0)).alias("positives"),
                   F.sum(F.when(F.col("label") == 1, 0).otherwise(1)).alias("negatives"),
                   F.countDistinct("video").alias("videos"),
                   F.countDistinct("camera").alias("cameras"),
                   F.sum(F.col("source").startswith(REVIEW_SOURCE).cast("int")).alias("review_labels")
                   ).first()
    return {k: (row[k] or 0) for k in row.asDict()}


def fingerprint(data: DataFrame, config: Config, inputs: Mapping,
                summary: Optional[dict] = None) -> str:
    """Identifies the labelled training rows (keys, labels), the identities of their features
    (``inputs``: weights, motion version) and the train and feature settings."""
    summary = summary if summary is not None else summarize(data)
    plain = config.to_dict()
    settings = json.dumps({"train": plain["train"], "features": plain["features"],
                           "inputs": dict(inputs), "model": tracking.model_name(config)},
                          sort_keys=True)
    return (f"n={summary['rows']}:h={summary['hash']}:"
            f"{hashlib.sha256(settings.encode()).hexdigest()[:16]}")


# --- cross-validation -----------------------------------------------------------------------

@dataclass
class Validation:
    """What grouped cross-validation found."""
    folds: dict                       # {group (camera or video): fold}
    candidates: list                  # candidate dicts, grid order
    table: pd.DataFrame               # one row per candidate: params and metrics
    best: int                         # index of the best candidate
    oof: pd.DataFrame                 # best candidate: video, camera, second, label, fold, prob, source
    metrics: dict = field(default_factory=dict)
    threshold: dict = field(default_factory=dict)
    per_video_ap: dict = field(default_factory=dict)
    sub_models: list = field(default_factory=list)   # [fold][candidate] fitted pipelines
    group_by: str = "video"
    best_model: object = None         # the best candidate refit on all the labelled rows


def _fold_metrics(oof: pd.DataFrame, k: int) -> dict:
    """Means over folds of the areas and of precision at k, and the pooled areas."""
    per_fold = [(evaluation.area_under_pr(g.label, g.prob), evaluation.area_under_roc(g.label, g.prob),
                 evaluation.precision_at_k(g.label, g.prob, k)) for _, g in oof.groupby("fold")]
    pr, roc, pak = (np.array(x) for x in zip(*per_fold))
    return {"areaUnderPR": float(np.nanmean(pr)), "areaUnderPR_std": float(np.nanstd(pr)),
            "areaUnderROC": float(np.nanmean(roc)), "areaUnderROC_std": float(np.nanstd(roc)),
            "precision_at_k": float(np.nanmean(pak)),
            "pooled_areaUnderPR": evaluation.area_under_pr(oof.label, oof.prob),
            "pooled_areaUnderROC": evaluation.area_under_roc(oof.label, oof.prob)}


def _out_of_fold(dataset: DataFrame, sub_models, folds: int, n_candidates: int) -> pd.DataFrame:
    """Out-of-fold predictions of every candidate, collected once (a row per labelled second and
    candidate): each fold's model predicts the fold it did not train on."""
    parts = []
    for f in range(folds):
        validation = dataset.where(F.col("fold") == f)
        for c in range(n_candidates):
            parts.append(with_probability(sub_models[f][c].transform(validation))
                         .select(F.lit(c).alias("candidate"), "video", "camera", "second",
                                 "label", "fold", "prob", "source"))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union.toPandas()


def folds_of(spark: SparkSession, data: DataFrame, config: Config) -> dict:
    """{group: fold} of the labelled ``data`` (see ``assign_folds``)."""
    t = config.train
    unit = group_column(config)
    per_group = (data.groupBy(F.col(unit).alias("group"))
                 .agg(F.sum("label").alias("positives"), F.sum(1 - F.col("label")).alias("negatives"))
                 .toPandas())
    return assign_folds(per_group, t.folds, t.seed, unit)


def fit_all(spark: SparkSession, jobs: list, parallelism: int) -> list:
    """Fit ``jobs`` (pairs of a Spark ML estimator and its training DataFrame), ``parallelism``
    at a time in threads sharing the SparkContext; the fitted models, in order. Small fits are
    chains of small Spark jobs (one per tree level or optimizer step), so fits side by side keep
    the cores busy between each other's jobs."""
    from multiprocessing.pool import ThreadPool

    from pyspark.util import inheritable_thread_target

    run = inheritable_thread_target(spark)(lambda job: job[0].fit(job[1]))
    if parallelism <= 1 or len(jobs) <= 1:
        return [run(job) for job in jobs]
    with ThreadPool(min(parallelism, len(jobs))) as pool:
        return pool.map(run, jobs)


def _partitions(spark: SparkSession, n_rows: int) -> int:
    """Partitions for fitting on ``n_rows`` labelled seconds: few, as every optimizer iteration
    or tree level is a Spark job over them."""
    return max(1, min(spark.sparkContext.defaultParallelism, n_rows // ROWS_PER_PARTITION))


def cross_validate(spark: SparkSession, data: DataFrame, config: Config,
                   grid: Optional[list] = None) -> Validation:
    """Grouped k-fold cross-validation of every candidate (``grid``, by default
    ``candidates(config)``); ``data`` is ``training_set`` output with every group they use.

    Every (fold, candidate) pipeline is fit on the other folds' rows, ``train.parallelism`` at a
    time; each fold's model predicts its fold, and a candidate's metric is the mean over folds
    (what Spark's ``CrossValidator`` computes, without its per-fold caching and checks). The best
    candidate is refit on all rows (``best_model``); a lone candidate's refit runs beside the
    folds."""
    t = config.train
    unit = group_column(config)
    folds = folds_of(spark, data, config)
    fold_df = spark.createDataFrame(list(folds.items()), f"{unit} string, fold int")
    partitions = _partitions(spark, data.count())
    dataset = (with_class_weights(data).join(F.broadcast(fold_df), unit)
               .repartition(partitions).cache())
    grid = grid if grid is not None else candidates(config)
    n_folds = int(t.folds)
    try:
        jobs = [(pipeline(cand, config), dataset.where(F.col("fold") != f))
                for f in range(n_folds) for cand in grid]
        if len(grid) == 1:
            jobs.append((pipeline(grid[0], config), dataset))
        fitted = fit_all(spark, jobs, int(t.parallelism))
        sub_models = [fitted[f * len(grid):(f + 1) * len(grid)] for f in range(n_folds)]
        oof_all = _out_of_fold(dataset, sub_models, n_folds, len(grid))
        table = pd.DataFrame([{**cand, **_fold_metrics(oof_all[oof_all.candidate == c],
                                                        t.precision_at_k)}
                              for c, cand in enumerate(grid)])
        best = int(np.nanargmax(table[t.metric].to_numpy(dtype=float)))
        best_model = (fitted[-1] if len(grid) == 1
                      else pipeline(grid[best], config).fit(dataset))
    finally:
        dataset.unpersist()
    oof = oof_all[oof_all.candidate == best].drop(columns="candidate").reset_index(drop=True)
    result = Validation(folds=folds, candidates=grid, table=table, best=best, oof=oof,
                        sub_models=sub_models, group_by=unit, best_model=best_model)
    result.metrics = _fold_metrics(oof, t.precision_at_k)
    result.threshold = evaluation.choose_threshold(oof.label, oof.prob, t.threshold,
                                                   t.threshold_target)
    if not result.threshold["reached"]:
        log.warning("train: no threshold reaches %s %.2f on the validation folds; using the best "
                    "reachable (%s %.3f)", t.threshold, t.threshold_target, t.threshold,
                    result.threshold[t.threshold])
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
                     candidate: Mapping, inputs: Mapping, config: Config) -> tuple[float | None, int]:
    """Metric of ``candidate`` trained on ``data`` and validated on the reference seconds (video,
    second, label, fold), fold by fold: each fold's model is fit without that fold's videos and,
    when folds group by camera, without their cameras. Returns (mean metric over usable folds or
    None, seconds used)."""
    metric = config.train.metric
    groups = feature_sets.feature_set(candidate["feature_set"]).groups
    keys = spark.createDataFrame(reference[["video", "second", "label", "fold"]].astype(
        {"second": int, "label": float, "fold": int}))
    ref = (feature_sets.assemble(spark, config, groups, weights=inputs.get("weights"),
                                 videos=keys.select("video").distinct(), anomaly_score=False)
           .join(keys, ["video", "second"], "inner").cache())
    values, used, jobs = [], 0, []
    try:
        ref.count()   # materialised once, not by each of the fits side by side
        partitions = _partitions(spark, data.count())
        validations = []
        for f in sorted(reference.fold.unique()):
            validation = ref.where(F.col("fold") == int(f))
            held = validation.select("video", "camera").distinct()
            train_part = data.join(held.select("video"), "video", "left_anti")
            if group_column(config) == "camera":
                train_part = train_part.join(held.select("camera"), "camera", "left_anti")
            validations.append(validation)
            # cached: a fit reads its input several times (metadata, splits, then the trees)
            jobs.append((pipeline(candidate, config),
                         with_class_weights(train_part).repartition(partitions).cache()))
        fitted = fit_all(spark, jobs, int(config.train.parallelism))
        for model, validation in zip(fitted, validations):
            got = with_probability(model.transform(validation)).select("label", "prob").toPandas()
            if got.label.nunique() < 2:
                continue
            used += len(got)
            values.append(evaluation.area(metric, got.label, got.prob))
    finally:
        for _, part in jobs:
            part.unpersist()
        ref.unpersist()
    return (float(np.mean(values)) if values else None), used


def _reference(config: Config, version) -> pd.DataFrame | None:
    """The champion's out-of-fold validation predictions (None when its run has none)."""
    try:
        return tracking.validation_frame(version)
    except Exception as exc:  # an artifact store that lost it, or a hand-registered model
        log.warning("train: champion version %s has no %s (%s)", version.version, VALIDATION_FILE, exc)
        return None


def decide(spark: SparkSession, data: DataFrame, candidate: Mapping, inputs: Mapping,
           config: Config) -> tuple[bool, str]:
    """Should the new model take the champion alias? (yes/no, the reason in words)."""
    mode = config.train.promote
    if mode != "auto":
        return mode == "always", f"train.promote={mode}"
    current = tracking.champion(config)
    if current is None:
        return True, "no champion yet"
    why = models.unusable_inputs(current.tags or {}, inputs)
    if why is not None:
        return True, (f"champion version {current.version} was trained on {why}, which scoring "
                      "can no longer use")
    reference = _reference(config, current)
    if reference is None:
        return True, f"champion version {current.version} has no validation data to compare on"
    metric = config.train.metric
    folds = [g for _, g in reference.groupby("fold") if g.label.nunique() == 2]
    champion_value = (float(np.mean([evaluation.area(metric, g.label, g.prob) for g in folds]))
                      if folds else None)
    value, used = _cross_fit_score(spark, data, reference, candidate, inputs, config)
    if value is None or champion_value is None:
        return True, (f"champion version {current.version}'s validation seconds are no longer "
                      "featurized with both classes; nothing to compare on")
    where = (f"on champion version {current.version}'s validation data "
             f"({used} seconds, {reference.fold.nunique()} grouped folds)")
    if value > champion_value:
        return True, f"{metric} {value:.4f} beats the champion's {champion_value:.4f} {where}"
    return False, f"{metric} {value:.4f} does not beat the champion's {champion_value:.4f} {where}"


# --- logging to MLflow ------------------------------------------------------------------------

def spark_params(candidate: Mapping) -> dict:
    """A candidate's parameters under Spark's names (plus feature_set and model)."""
    return {_SPARK_PARAM.get(k, k): v for k, v in candidate.items()}


def _importances(model, candidate: Mapping, config: Config) -> Optional[pd.DataFrame]:
    """Feature importances of a fitted tree pipeline (None for logistic regression)."""
    classifier = model.stages[-1]
    if not hasattr(classifier, "featureImportances"):
        return None
    names = []
    k = int(config.features.pca_components)
    for group in feature_sets.feature_set(candidate["feature_set"]).groups:
        if group == "appearance" and k:
            names += [f"appearance_pc{i}" for i in range(k)]
        else:
            names += feature_sets.feature_names(group)
    values = classifier.featureImportances.toArray()
    return (pd.DataFrame({"feature": names[:len(values)], "importance": values})
            .sort_values("importance", ascending=False))


def _log_validation(result: Validation, config: Config, data_info: Mapping) -> None:
    import mlflow

    t = config.train
    best = result.candidates[result.best]
    for i, cand in enumerate(result.candidates):
        row = result.table.iloc[i]
        with mlflow.start_run(run_name=f"candidate-{i}", nested=True):
            mlflow.log_params(spark_params(cand))
            mlflow.log_metrics({k: float(row[k]) for k in
                                ("areaUnderPR", "areaUnderPR_std", "areaUnderROC",
                                 "areaUnderROC_std", "precision_at_k", "pooled_areaUnderPR",
                                 "pooled_areaUnderROC")})
            mlflow.set_tag("vidspark.best", str(i == result.best).lower())
    mlflow.log_params({**spark_params(best), "folds": t.folds, "group_by": t.group_by,
                       "seed": t.seed, "metric": t.metric,
                       "precision_at_k.k": t.precision_at_k,
                       "threshold.strategy": t.threshold,
                       "threshold.target": t.threshold_target,
                       "candidates": len(result.candidates), **data_info})
    mlflow.log_metrics(result.metrics)
    mlflow.log_dict(config.to_dict(), "config.yaml")   # the whole validated configuration
    mlflow.log_dict(result.per_video_ap, "validation/per_video_ap.json")
    mlflow.log_dict({"threshold": result.threshold, "group_by": result.group_by,
                     "folds": result.folds}, "validation/threshold_and_folds.json")
    mlflow.log_text(result.table.to_csv(index=False), "validation/candidates.csv")
    mlflow.log_text(result.oof.to_csv(index=False), VALIDATION_FILE)
    for name, fig in evaluation.figures(result.oof, result.threshold["threshold"]).items():
        mlflow.log_figure(fig, f"plots/{name}")


def _same_data_version(config: Config, data_fp: str):
    for v in tracking.versions(config):
        if models.version_tags(v).get("data_fingerprint") == data_fp:
            return v
    return None


def _still_registered(config: Config, last: dict) -> bool:
    """Whether the model version a train run kept or registered is still in the registry and a
    champion is named (a tracking server's registry can change without vidspark)."""
    try:
        found = {str(v.version) for v in tracking.versions(config)}
        return str(last.get("model_version")) in found and tracking.champion(config) is not None
    except Exception as exc:  # noqa: BLE001 - unreachable or refusing: train as usual
        log.warning("train: cannot check the registry (%s); training as usual", exc)
        return False


def current_inputs(spark: SparkSession, config: Config, keys: DataFrame) -> dict:
    """The identities of the features training uses: ``weights`` of the embeddings (only when a
    feature set needs them, else ``none``) and ``motion_version``."""
    needs = any(feature_sets.feature_set(n).needs_embeddings for n in config.train.feature_sets)
    return {"weights": embedding_weights(spark, config, keys) if needs else models.NO_EMBEDDINGS,
            "motion_version": motion.configured_identity(config)}


def run(spark: SparkSession, config: Config) -> dict:
    """Cross-validate the sweep, log to MLflow, register the refit best model, decide the champion.

    When neither the labelled training rows nor the settings changed since a registered version,
    that version is kept (an idle night does not train, register or re-score); when nothing
    training reads changed since the last train run (table versions and settings), its model is
    kept without even assembling the training rows."""
    plain = config.to_dict()
    settings = hashlib.sha256(json.dumps(
        {"train": plain["train"], "features": plain["features"], "tracking": plain["tracking"]},
        sort_keys=True, default=str).encode()).hexdigest()[:16]

    def read_now():
        # The registry it writes, as its database file is now (a server: None, asked below).
        return runs.inputs_of(spark, config, ("labels", "videos", "features", "motion"),
                              settings=settings, motion=motion.configured_identity(config),
                              tracking=[tracking.tracking_uri(config), tracking.model_name(config)],
                              registry=tracking.registry_stamp(config))

    start = read_now()
    last = runs.unchanged_since(spark, config, "train", start)
    if last is not None and last.get("model_id") and (
            start["registry"] is not None or _still_registered(config, last)):
        log.info("train: labelled rows, features and settings unchanged since run %s; keeping "
                 "model %s", last["run_id"], last["model_id"])
        return {"read": 0, "written": 0, "skipped": 1, "quarantined": 0,
                **{k: last.get(k) for k in ("rows", "positives", "videos", "model_id",
                                            "model_version", "feature_set")},
                "refit": False, "champion": None, "inputs": last["inputs"],
                "unchanged_since": last["run_id"]}
    import mlflow
    import mlflow.spark
    import pyspark

    tracking.setup(config)
    name = tracking.model_name(config)
    keys = labelled_keys(storage.read(spark, config, "labels"),
                         storage.read(spark, config, "videos")).cache()
    data = None
    try:
        counts = {int(r.label): r["count"] for r in keys.groupBy("label").count().collect()}
        total = sum(counts.values())
        if total == 0:
            raise TrainingError("no labelled frames: no label matches a frame of a train video "
                                "(check input.labels and input.train_videos)")
        inputs = current_inputs(spark, config, keys)
        groups = feature_sets.union_groups(config.train.feature_sets)
        weights = None if inputs["weights"] == models.NO_EMBEDDINGS else inputs["weights"]
        data = training_set(spark, config, groups, weights, keys, anomaly_score=False).cache()
        summary = summarize(data)
        data_fp = fingerprint(data, config, inputs, summary)
        same = _same_data_version(config, data_fp)
        if same is not None:
            tags = models.version_tags(same)
            log.info("train: training data and settings unchanged; keeping model %s version %s",
                     name, same.version)
            models.sync_models_table(spark, config)
            rows = int(tags.get("train_rows", 0))
            return {"read": rows, "written": 0, "skipped": 1, "quarantined": 0, "rows": rows,
                    "positives": int(tags.get("positives", 0)),
                    "videos": int(tags.get("train_videos", 0)),
                    "model_id": f"{name}/{same.version}", "model_version": int(same.version),
                    "feature_set": tags.get("feature_set"), "refit": False, "champion": None,
                    "inputs": runs.settle(start, read_now())}
        counts = {k: v for k, v in ((1, summary["positives"]), (0, summary["negatives"])) if v}
        total = summary["rows"]
        if total == 0:
            raise TrainingError("no labelled frames: no label matches a featurized frame of a "
                                "train video (check input.labels and input.train_videos)")
        if len(counts) < 2:
            raise TrainingError(f"all {total} labelled frames have label {next(iter(counts))}: "
                                "a classifier needs both classes (0 and 1)")
        n_videos, n_cameras = summary["videos"], summary["cameras"]
        data_info = {"data.videos": n_videos, "data.cameras": n_cameras,
                     "data.positives": counts.get(1, 0), "data.negatives": counts.get(0, 0),
                     "data.weights": inputs["weights"], "data.motion_version": inputs["motion_version"],
                     "data.feature_sets": ",".join(config.train.feature_sets),
                     "data.features_version": storage.table_version(spark, config, "features"),
                     "data.motion_table_version": storage.table_version(spark, config, "motion"),
                     "data.labels_version": storage.table_version(spark, config, "labels"),
                     "data.review_labels": summary["review_labels"]}
        with mlflow.start_run(run_name="train") as active:
            result = cross_validate(spark, data, config)
            best = result.candidates[result.best]
            _log_validation(result, config, data_info)
            # cross_validate refit the best candidate on all the rows (with their class weights;
            # the fold column is not a feature): no second fit.
            model = result.best_model
            set_threshold(model, result.threshold["threshold"])
            importances = _importances(model, best, config)
            if importances is not None:
                mlflow.log_text(importances.to_csv(index=False), "validation/feature_importances.csv")
            promote, reason = decide(spark, data, best, inputs, config)
            info = mlflow.spark.log_model(model, "model",
                                          pip_requirements=[f"pyspark=={pyspark.__version__}"])
            best_groups = feature_sets.feature_set(best["feature_set"])
            # Registered with its tags in one call: a version never exists without them.
            tags = {"weights": inputs["weights"] if best_groups.needs_embeddings else models.NO_EMBEDDINGS,
                    "motion_version": inputs["motion_version"],
                    "feature_set": best["feature_set"], "model_type": best["model"],
                    "threshold": result.threshold["threshold"],
                    "data_fingerprint": data_fp, "train_rows": total,
                    "positives": counts.get(1, 0), "train_videos": n_videos,
                    "params": json.dumps(spark_params(best), sort_keys=True),
                    "areaUnderPR": result.metrics["areaUnderPR"],
                    "areaUnderROC": result.metrics["areaUnderROC"], "decision": reason}
            said = io.StringIO()   # MLflow prints two lines: kept for the debug log
            try:
                with contextlib.redirect_stderr(said):
                    registered = mlflow.register_model(info.model_uri, name,
                                                       tags={k: str(v) for k, v in tags.items()})
            finally:
                log.debug("train: MLflow said: %s", said.getvalue().strip())
            version = int(registered.version)
            mlflow.set_tags({"vidspark.model_version": version, "vidspark.champion": promote,
                             "vidspark.decision": reason, "vidspark.feature_set": best["feature_set"],
                             "vidspark.model_type": best["model"]})
            if promote:
                tracking.promote(config, version)
                log.info("train: %s version %s is the champion: %s", name, version, reason)
            else:
                log.warning("train: %s version %s stays a candidate: %s", name, version, reason)
            run_id = active.info.run_id
    finally:
        keys.unpersist()
        if data is not None:
            data.unpersist()
    models.sync_models_table(spark, config)
    m = result.metrics
    log.info("train: %s-grouped %d-fold CV over %d candidates: best %s, areaUnderPR %.3f, "
             "areaUnderROC %.3f, threshold %.3f (precision %.2f, recall %.2f)",
             result.group_by, config.train.folds, len(result.candidates), spark_params(best),
             m["areaUnderPR"], m["areaUnderROC"], m["threshold"], m["precision"], m["recall"])
    return {"read": total, "written": 1, "skipped": 0, "quarantined": 0, "rows": total,
            "positives": counts.get(1, 0), "videos": n_videos, "cameras": n_cameras,
            "model_id": f"{name}/{version}", "model_version": version, "refit": True,
            "champion": promote, "decision": reason, "run_id": run_id,
            "areaUnderPR": m["areaUnderPR"], "areaUnderROC": m["areaUnderROC"],
            "threshold": m["threshold"], "feature_set": best["feature_set"],
            "model_type": best["model"], "best_params": spark_params(best),
            "inputs": runs.settle(start, read_now())}
