"""Suspicious segments: consecutive flagged seconds of one video merged into one moment to review.

Flagged seconds (``prediction = 1``) of a video belong to one segment while the gap between two of
them is at most ``segments.max_gap_seconds`` unflagged seconds; segments shorter than
``segments.min_seconds`` (end - start + 1) are dropped. Computed with window functions over the
``predictions`` table, per video, on the executors.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from vidspark import storage

log = logging.getLogger(__name__)

# SQL views over the tables, created with the tables in every session (see README "SQL").
VIEWS = {
    # segments of the latest scoring run (the night's new or re-scored videos: one refresh
    # writes one computed_at), best first
    "segments_tonight": """
        SELECT * FROM segments
        WHERE computed_at = (SELECT max(computed_at) FROM segments)
        ORDER BY peak_prob DESC, video, start_second""",
    # segments still to look at: best first, with their latest verdict; a segment whose latest
    # verdict is `rejected` is hidden (its id names the model version, so a new version's
    # segments of the same moment are shown again)
    "segments_to_review": """
        SELECT s.*, r.verdict, r.reviewer, r.reviewed_at
        FROM segments s
        LEFT JOIN (SELECT segment_id, verdict, reviewer, reviewed_at FROM (
                     SELECT *, row_number() OVER (PARTITION BY segment_id
                                                  ORDER BY reviewed_at DESC, review_id) AS n
                     FROM reviews WHERE segment_id IS NOT NULL) WHERE n = 1) r
          ON s.segment_id = r.segment_id
        WHERE r.verdict IS NULL OR r.verdict <> 'rejected'
        ORDER BY s.peak_prob DESC, s.video, s.start_second""",
    # per video: scored and flagged seconds, segments, peak
    "video_suspicious_seconds": """
        SELECT p.video, count(*) AS scored_seconds, sum(p.prediction) AS flagged_seconds,
               round(avg(p.prediction), 4) AS flagged_share, max(p.prob_suspicious) AS peak_prob,
               coalesce(max(s.segments), 0) AS segments
        FROM predictions p
        LEFT JOIN (SELECT video, count(*) AS segments FROM segments GROUP BY video) s
          ON p.video = s.video
        GROUP BY p.video""",
    # per camera (videos.camera, see input.camera) and day the videos arrived
    "camera_daily_counts": """
        SELECT v.camera AS camera,
               to_date(v.processed_at) AS day,
               count(DISTINCT v.video) AS videos,
               count(s.segment_id) AS segments,
               coalesce(sum(s.flagged_seconds), 0) AS flagged_seconds
        FROM videos v LEFT JOIN segments s ON v.video = s.video
        WHERE v.status = 'ok' AND v.role LIKE '%score%'
        GROUP BY 1, 2""",
    # the label-free ranking: per camera, its seconds by how much more activity they show than is
    # usual for that camera; `camera_labelled` says whether any labelled second comes from it
    "camera_anomalies": """
        SELECT p.camera, p.video, p.second, p.frame_name, p.anomaly_score,
               rank() OVER (PARTITION BY p.camera ORDER BY p.anomaly_score DESC NULLS LAST)
                 AS camera_rank,
               p.prob_suspicious, p.prediction, p.model_id,
               coalesce(l.labelled, false) AS camera_labelled
        FROM predictions p
        LEFT JOIN (SELECT DISTINCT v.camera, true AS labelled
                   FROM labels lb JOIN videos v ON lb.video = v.video) l
          ON p.camera = l.camera
        WHERE p.anomaly_score IS NOT NULL""",
}


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


def refresh(spark: SparkSession, config: Mapping, videos: Sequence[str]) -> int:
    """Recompute the segments of ``videos`` from their predictions; returns how many there are."""
    if not videos:
        return 0
    s = config["segments"]
    flagged = (storage.read(spark, config, "predictions")
               .where(F.col("video").isin(list(videos)) & (F.col("prediction") == 1)))
    found = merge(flagged, s["max_gap_seconds"], s["min_seconds"]).localCheckpoint()
    storage.replace_videos(spark, config, "segments", found, videos)
    n = found.count()
    log.info("segments: %d segments in %d re-scored videos", n, len(videos))
    return n
