"""Suspicious segments: consecutive flagged seconds of one video merged into one moment to review.

Flagged seconds (``prediction = 1``) of a video belong to one segment while the gap between two of
them is at most ``segments.max_gap_seconds`` unflagged seconds; segments shorter than
``segments.min_seconds`` (end - start + 1) are dropped. Computed with window functions over the
``predictions`` table, per video, on the executors.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config

log = logging.getLogger(__name__)


def merge(flagged: DataFrame, max_gap: int, min_seconds: int) -> DataFrame:
    """Segments of ``flagged`` rows (video, second, prob_suspicious, frame_name, model_id,
    model_version; only flagged seconds). Ties of the peak go to the earliest second."""
    by_video = Window.partitionBy("video").orderBy("second")
    gap = F.col("second") - F.lag("second").over(by_video) - 1
    numbered = (flagged
                .withColumn("starts", F.when(gap.isNull() | (gap > max_gap), 1).otherwise(0))
                .withColumn("segment_no", F.sum("starts").over(
                    by_video.rowsBetween(Window.unboundedPreceding, Window.currentRow))))
    peak = F.struct(F.col("prob_suspicious"), (-F.col("second")).alias("earlier"))
    segments = (numbered.groupBy("video", "segment_no")
                .agg(F.min("second").alias("start_second"), F.max("second").alias("end_second"),
                     F.count(F.lit(1)).alias("flagged_seconds"),
                     F.max("prob_suspicious").alias("peak_prob"),
                     F.avg("prob_suspicious").alias("mean_prob"),
                     F.max_by("second", peak).alias("peak_second"),
                     F.max_by("frame_name", peak).alias("peak_frame_name"),
                     F.max("model_id").alias("model_id"),
                     F.max("model_version").alias("model_version"))
                .withColumn("seconds", F.col("end_second") - F.col("start_second") + 1)
                .where(F.col("seconds") >= min_seconds))
    return segments.select(
        F.substring(F.sha2(F.concat_ws("|", "video", F.col("start_second").cast("string"),
                                       "model_id"), 256), 1, 16).alias("segment_id"),
        "video", "start_second", "end_second", "seconds", "flagged_seconds", "peak_prob",
        "mean_prob", "peak_second", "peak_frame_name", "model_id", "model_version",
        F.current_timestamp().alias("computed_at"))


def refresh(spark: SparkSession, config: Config, videos: Sequence[str],
            predictions: Optional[DataFrame] = None) -> int:
    """Recompute the segments of ``videos`` from their predictions (``predictions``: those
    rows as they are about to be stored, when the caller writes them after the segments; by
    default the table's); returns how many there are."""
    if not videos:
        return 0
    s = config.segments
    if predictions is None:
        predictions = storage.read(spark, config, "predictions")
    flagged = predictions.where(F.col("video").isin(list(videos)) & (F.col("prediction") == 1))
    found = merge(flagged, s.max_gap_seconds, s.min_seconds).localCheckpoint()
    n = found.count()
    stored = (storage.read(spark, config, "segments").where(F.col("video").isin(list(videos)))
              .limit(1).count())
    if stored:    # their rows are replaced in one commit
        storage.replace_videos(spark, config, "segments", found, videos)
    elif n:       # videos scored for the first time (most nights): new rows only
        storage.append(spark, config, "segments", found)
    log.info("segments: %d segments in %d re-scored videos", n, len(videos))
    return n
