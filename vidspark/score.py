"""Score stage: apply the latest model to features of the score videos and write ``predictions``."""
from __future__ import annotations

import logging
from typing import Mapping

from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.train import latest_model

log = logging.getLogger(__name__)


def with_predictions(features: DataFrame, model: LogisticRegressionModel, model_id: str) -> DataFrame:
    """(video, second, features) -> (video, second, prob_suspicious, prediction, model_id, scored_at)."""
    return (model.transform(features)
            .select("video", "second",
                    vector_to_array("probability")[1].alias("prob_suspicious"),
                    F.col("prediction").cast("int").alias("prediction"),
                    F.lit(model_id).alias("model_id"),
                    F.current_timestamp().alias("scored_at")))


def run(spark: SparkSession, config: Mapping) -> dict:
    """Score features of score videos that have no prediction from the current model."""
    latest = latest_model(spark, config)
    if latest is None:
        raise RuntimeError("score: no trained model under storage.root; run the train stage first")
    model = LogisticRegressionModel.load(latest.path)
    videos = storage.read(spark, config, "videos").where(
        (F.col("status") == "ok") & F.col("role").contains("score"))
    done = (storage.read(spark, config, "predictions").where(F.col("model_id") == latest.model_id)
            .select("video", "second"))
    # Only features computed with the weights the model was trained on are comparable.
    todo = (storage.read(spark, config, "features")
            .where(F.col("weights") == latest.weights)
            .join(videos.select("video"), "video", "left_semi")
            .join(done, ["video", "second"], "left_anti"))
    scored = (with_predictions(todo, model, latest.model_id)
              .join(storage.read(spark, config, "frames").select("video", "second", "frame_name"),
                    ["video", "second"], "inner")
              .localCheckpoint())
    n = scored.count()
    if n:
        storage.upsert(spark, config, "predictions", scored)
    log.info("score: %d frames scored with model %s", n, latest.model_id)
    return {"read": n, "written": n, "skipped": done.count(), "quarantined": 0,
            "scored": n, "model_id": latest.model_id}
