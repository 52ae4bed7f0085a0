"""Score stage: apply the champion model to the score videos' seconds and write ``predictions``.

Every prediction row carries two rankings: ``prob_suspicious``, the champion's probability (for
every camera: the model was trained on labelled cameras and scores the others with behaviour
features; how well that transfers to unseen cameras is what ``make eval`` measures, with whole
cameras held out), and ``anomaly_score``, a label-free score of how much more activity the
second shows than is usual for its own camera (``vidspark.stages.feature_sets``).
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config
from vidspark.errors import PrerequisiteError
from vidspark.media import motion
from vidspark.stages import feature_sets, segments
from vidspark.storage import models, runs, tracking

log = logging.getLogger(__name__)


class NoChampionError(PrerequisiteError, RuntimeError):
    """There is no model to score with."""


def with_predictions(features: DataFrame, model, model_id: str, version: int,
                     feature_set: str) -> DataFrame:
    """(video, second, camera, frame_name, anomaly_score, the model's input columns) -> the
    ``predictions`` columns. ``prediction`` uses the threshold stored in the model."""
    return (model.transform(features)
            .select("video", "second", "frame_name",
                    vector_to_array("probability")[1].alias("prob_suspicious"),
                    F.col("prediction").cast("int").alias("prediction"),
                    F.lit(model_id).alias("model_id"),
                    F.current_timestamp().alias("scored_at"),
                    F.lit(version).cast("long").alias("model_version"),
                    "camera", F.lit(feature_set).alias("feature_set"), "anomaly_score"))


def require_champion(config: Config):
    """The champion model version; NoChampionError naming what to do when there is none."""
    champion = tracking.champion(config)
    if champion is None:
        raise NoChampionError(f"score: registered model '{tracking.model_name(config)}' has no "
                              f"version with the alias '{tracking.CHAMPION}' at "
                              f"{tracking.tracking_uri(config)}: run the train job first "
                              "(vidspark train), or promote a version by hand")
    return champion


def _unchanged(last: dict) -> dict:
    """The report of a score stage with nothing to do: no new seconds, the same champion and
    settings as run ``last``."""
    log.info("score: 0 seconds scored (no new seconds, the same champion %s, since run %s)",
             last.get("model_id"), last["run_id"])
    return {"read": 0, "written": 0, "skipped": 0, "quarantined": 0, "scored": 0,
            **{k: last.get(k) for k in ("model_id", "model_version", "feature_set")},
            "segments": 0, "segment_videos": 0, "inputs": last["inputs"],
            "unchanged_since": last["run_id"]}


def _todo(spark: SparkSession, config: Config, groups, weights: str,
           model_id: str) -> DataFrame:
    """(video, second, frame_name, _replaces) of the seconds of score videos that have what the
    model needs (motion of today's settings: every second has, once extracted; embeddings of
    its weights when its groups read them) and no prediction of ``model_id``; ``_replaces``:
    another model's prediction of the second is stored. Computed (a local checkpoint) before
    the write, which adds this night's rows to the predictions."""
    videos = storage.read(spark, config, "videos").where(
        (F.col("status") == "ok") & F.col("role").contains("score")).select("video")
    available = feature_sets.motion_rows(spark, config).select("video", "second")
    if "appearance" in groups or "change" in groups:
        embedded = (storage.read(spark, config, "features").where(F.col("weights") == weights)
                    .select("video", "second"))
        available = available.join(embedded, ["video", "second"], "inner")
    stored = (storage.read(spark, config, "predictions")
              .select("video", "second", (F.col("model_id") == model_id).alias("_ours")))
    return (available.join(videos, "video", "left_semi")
            .join(stored, ["video", "second"], "left")
            .where(~F.coalesce("_ours", F.lit(False)))
            .join(storage.read(spark, config, "frames").select("video", "second", "frame_name"),
                  ["video", "second"], "inner")
            .select("video", "second", "frame_name", F.col("_ours").isNotNull().alias("_replaces"))
            .localCheckpoint())


def run(spark: SparkSession, config: Config) -> dict:
    """Score the seconds of score videos that have no prediction from the champion version;
    nothing at all when nothing it reads changed since its last run (table versions, the
    registry, the settings)."""
    name = tracking.model_name(config)
    plain = config.to_dict()
    registry = tracking.registry_stamp(config)      # None: a tracking server, asked below

    def read_now(model_id=None):
        return runs.inputs_of(spark, config,
                              ("videos", "frames", "motion", "features", "predictions"),
                              registry=registry or model_id,
                              motion=motion.configured_identity(config),
                              settings=[plain["features"], plain["segments"], plain["tracking"],
                                        tracking.tracking_uri(config)])

    start = read_now()
    if registry is not None:
        last = runs.unchanged_since(spark, config, "score", start)
        if last is not None:
            return _unchanged(last)
    champion = require_champion(config)
    tags = champion.tags or {}
    weights = tags.get("weights")
    if not weights:
        raise NoChampionError(f"score: {name} version {champion.version} has no 'weights' tag, so "
                              "the features it expects are unknown; tag it or train with vidspark")
    legacy = "feature_set" not in tags        # trained by an older vidspark on raw embeddings
    groups = models.model_groups(tags)
    feature_set = tags.get("feature_set", "appearance")
    inputs = {"weights": weights, "motion_version": motion.configured_identity(config)}
    why = models.unusable_inputs(tags, inputs)
    if why is not None:
        raise NoChampionError(f"score: {name} version {champion.version} was trained on {why}, "
                              "which the stored features no longer match; train again")
    version = int(champion.version)
    model_id = f"{name}/{version}"
    if registry is None:
        start = read_now(model_id)
        last = runs.unchanged_since(spark, config, "score", start)
        if last is not None:
            return _unchanged(last)
    # Spark runs jobs of several threads at once: the models table's sync (the alias may have
    # been moved by hand), the count of seconds already scored and the model's loading (once
    # per application; used when there is something to score) overlap the jobs that find and
    # assemble the seconds to score, most of whose cost is latency, not work, at a night's size.
    with ThreadPoolExecutor(3, thread_name_prefix="vidspark-score") as pool:
        model = pool.submit(tracking.load_spark_model, config, version)
        synced = pool.submit(models.sync_models_table, spark, config)
        already = pool.submit(lambda: storage.read(spark, config, "predictions")
                              .where(F.col("model_id") == model_id).count())
        todo = _todo(spark, config, groups, weights, model_id)
        counts = todo.agg(F.count(F.lit(1)).alias("n"),
                          F.count_if("_replaces").alias("replacing")).first()
        n = counts["n"]
        skipped = already.result()    # counted before the write below adds to it
        if n:
            assembled = feature_sets.assemble(
                spark, config, groups, weights=None if weights == models.NO_EMBEDDINGS else weights,
                videos=todo.select("video").distinct())
            if legacy:
                assembled = assembled.withColumnRenamed("appearance", "features")
            # Computed once and small: the model's plan stays short (its analysis over the
            # assembly's plan took seconds), and the write reads its source once.
            rows = assembled.join(todo.drop("_replaces"), ["video", "second"],
                                  "inner").localCheckpoint()
            scored = with_predictions(rows, model.result(), model_id, version,
                                      feature_set).localCheckpoint()
            # The segments first, from the predictions as they will be: a job stopped between
            # the two commits leaves the seconds unscored, so the next run scores them and
            # replaces the segments (the other way round, their segments would never come).
            rescored = [r.video for r in todo.select("video").distinct().collect()]
            after = (storage.read(spark, config, "predictions")
                     .where(F.col("video").isin(rescored))
                     .join(todo.select("video", "second"), ["video", "second"], "left_anti")
                     .unionByName(scored))
            found = segments.refresh(spark, config, rescored, after)
            if counts["replacing"]:   # seconds another model scored: their rows are replaced
                storage.upsert(spark, config, "predictions", scored)
            else:                     # new keys only (the store's lock keeps them new)
                storage.append(spark, config, "predictions", scored)
        else:
            rescored, found = [], 0
        synced.result()
    log.info("score: %d seconds scored with %s version %d (champion, feature set %s)", n, name,
             version, feature_set)
    return {"read": n, "written": n, "skipped": skipped, "quarantined": 0,
            "scored": n, "model_id": model_id, "model_version": version,
            "feature_set": feature_set, "segments": found, "segment_videos": len(rescored),
            "inputs": runs.settle(start, read_now(model_id), ("predictions",))}
