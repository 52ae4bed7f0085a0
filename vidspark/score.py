"""Score stage: apply the champion model to features of the score videos and write ``predictions``."""
from __future__ import annotations

import logging
from typing import Mapping

from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark import segments, storage, tracking, train

log = logging.getLogger(__name__)


class NoChampionError(RuntimeError):
    """There is no model to score with."""


def with_predictions(features: DataFrame, model, model_id: str, version: int) -> DataFrame:
    """(video, second, frame_name, features) -> the ``predictions`` columns. ``prediction`` uses
    the threshold stored in the model."""
    return (model.transform(features)
            .select("video", "second", "frame_name",
                    vector_to_array("probability")[1].alias("prob_suspicious"),
                    F.col("prediction").cast("int").alias("prediction"),
                    F.lit(model_id).alias("model_id"),
                    F.current_timestamp().alias("scored_at"),
                    F.lit(version).cast("long").alias("model_version")))


def run(spark: SparkSession, config: Mapping) -> dict:
    """Score features of score videos that have no prediction from the champion version."""
    name = tracking.model_name(config)
    champion = tracking.champion(config)
    if champion is None:
        raise NoChampionError(f"score: registered model '{name}' has no version with the alias "
                              f"'{tracking.CHAMPION}' at {tracking.tracking_uri(config)}; run the "
                              "train stage first (or promote a version by hand)")
    weights = (champion.tags or {}).get("weights")
    if not weights:
        raise NoChampionError(f"score: {name} version {champion.version} has no 'weights' tag, so "
                              "the features it expects are unknown; tag it or train with vidspark")
    version = int(champion.version)
    model_id = f"{name}/{version}"
    train.sync_models_table(spark, config)  # the alias may have been moved by hand
    videos = storage.read(spark, config, "videos").where(
        (F.col("status") == "ok") & F.col("role").contains("score"))
    done = (storage.read(spark, config, "predictions").where(F.col("model_id") == model_id)
            .select("video", "second"))
    # Only features computed with the weights the model was trained on are comparable.
    features = storage.read(spark, config, "features").where(F.col("weights") == weights)
    # The keys to score, fixed before the write (which adds this night's rows to ``done``).
    todo = (features.select("video", "second")
            .join(videos.select("video"), "video", "left_semi")
            .join(done, ["video", "second"], "left_anti")
            .join(storage.read(spark, config, "frames").select("video", "second", "frame_name"),
                  ["video", "second"], "inner")
            .localCheckpoint())
    skipped = done.count()
    n = todo.count()
    if n:  # the model is loaded only when there is something to score
        model = tracking.load_spark_model(config, version)
        scored = with_predictions(features.join(todo, ["video", "second"], "inner"),
                                  model, model_id, version)
        storage.upsert(spark, config, "predictions", scored)
    rescored = [r.video for r in todo.select("video").distinct().collect()] if n else []
    found = segments.refresh(spark, config, rescored)
    log.info("score: %d frames scored with %s version %d (champion)", n, name, version)
    return {"read": n, "written": n, "skipped": skipped, "quarantined": 0,
            "scored": n, "model_id": model_id, "model_version": version,
            "segments": found, "segment_videos": len(rescored)}
