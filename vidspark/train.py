"""Train stage: join labels to features of the train videos and fit a logistic regression."""
from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Mapping

from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.schemas import MODELS

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot produce a meaningful model from the data at hand."""


def training_set(features: DataFrame, labels: DataFrame, videos: DataFrame) -> DataFrame:
    """Labelled features of the train videos: (video, second, features, weights, label as double)."""
    train_videos = videos.where((F.col("status") == "ok") & F.col("role").contains("train"))
    return (features
            .join(train_videos.select("video"), "video", "left_semi")
            .join(labels.select("video", "second", "label"), ["video", "second"], "inner")
            .select("video", "second", "features", "weights",
                    F.col("label").cast("double").alias("label")))


def estimator(config: Mapping) -> LogisticRegression:
    t = config["train"]
    return LogisticRegression(featuresCol="features", labelCol="label",
                              maxIter=int(t["max_iter"]), regParam=float(t["reg_param"]),
                              elasticNetParam=float(t["elastic_net_param"]))


def fit(data: DataFrame, config: Mapping) -> tuple[LogisticRegressionModel, dict]:
    """Fit on ``data``; fails clearly when there is nothing to learn from."""
    counts = {int(r.label): r["count"] for r in data.groupBy("label").count().collect()}
    total = sum(counts.values())
    if total == 0:
        raise TrainingError("no labelled frames: no label matches a featurized frame of a train "
                            "video (check input.labels and input.train_videos)")
    if len(counts) < 2:
        only = next(iter(counts))
        raise TrainingError(f"all {total} labelled frames have label {only}: logistic regression "
                            "needs both classes (0 and 1)")
    model = estimator(config).fit(data)
    return model, {"rows": total, "positives": counts.get(1, 0), "negatives": counts.get(0, 0),
                   "videos": data.select("video").distinct().count()}


def latest_model(spark: SparkSession, config: Mapping):
    """The newest row of the ``models`` table, or None."""
    rows = (storage.read(spark, config, "models").orderBy(F.col("created_at").desc())
            .limit(1).collect())
    return rows[0] if rows else None


def fingerprint(data: DataFrame, params: Mapping) -> str:
    """Identifies the labelled training rows (keys, labels, weights) and the parameters."""
    row = data.agg(F.count(F.lit(1)).alias("n"),
                   F.bit_xor(F.xxhash64("video", "second", "label", "weights")).alias("h")).first()
    return f"n={row.n}:h={row.h or 0}:{json.dumps(dict(params), sort_keys=True)}"


def _params(config: Mapping) -> dict:
    lr = estimator(config)
    return {"maxIter": lr.getMaxIter(), "regParam": lr.getRegParam(),
            "elasticNetParam": lr.getElasticNetParam()}


def run(spark: SparkSession, config: Mapping) -> dict:
    """Fit a model on the current labels and features, save it, record it in ``models``.

    When neither the labelled training rows nor the parameters changed since the latest model,
    that model is kept (so an idle night does not re-score everything)."""
    data = training_set(storage.read(spark, config, "features"),
                        storage.read(spark, config, "labels"),
                        storage.read(spark, config, "videos")).cache()
    try:
        params = _params(config)
        data_fp = fingerprint(data, params)
        latest = latest_model(spark, config)
        if latest is not None and latest.data_fingerprint == data_fp:
            log.info("train: training data and parameters unchanged; keeping model %s",
                     latest.model_id)
            return {"read": latest.train_rows, "written": 0, "skipped": 1, "quarantined": 0,
                    "rows": latest.train_rows, "positives": latest.positives,
                    "videos": latest.train_videos, "model_id": latest.model_id,
                    "path": latest.path, "refit": False}
        weights = sorted(r.weights for r in data.select("weights").distinct().collect())
        model, counts = fit(data, config)
    finally:
        data.unpersist()
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    model_id = f"lr-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    path = storage.model_path(config, model_id)
    model.write().overwrite().save(path)
    row = {"model_id": model_id, "path": path, "created_at": now, "weights": ",".join(weights),
           "params": json.dumps(params, sort_keys=True), "train_rows": counts["rows"],
           "positives": counts["positives"], "train_videos": counts["videos"],
           "data_fingerprint": data_fp}
    storage.append(spark, config, "models", spark.createDataFrame([row], MODELS))
    log.info("train: model %s on %d labelled frames (%d positive) of %d videos", model_id,
             counts["rows"], counts["positives"], counts["videos"])
    return dict(counts, read=counts["rows"], written=1, skipped=0, quarantined=0,
                model_id=model_id, path=path, refit=True)
