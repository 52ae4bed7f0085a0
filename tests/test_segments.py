"""Segments: flagged seconds merged with window functions; refresh per video; the SQL views."""
import datetime as dt

import pytest

from vidspark import storage
from vidspark.stages import segments
from vidspark.storage.schemas import TABLES
from tests.conftest import make_config


def _flagged(spark, rows):
    """rows: (video, second, prob) of flagged seconds."""
    return spark.createDataFrame(
        [(v, s, p, f"{v}frame{s:04d}.jpg", "m/1", 1) for v, s, p in rows],
        "video string, second int, prob_suspicious double, frame_name string, model_id string, "
        "model_version long")


def _spans(df):
    return sorted((r.video, r.start_second, r.end_second) for r in df.collect())


def test_gaps_up_to_the_limit_are_bridged(spark):
    rows = [("a", s, 0.6) for s in (1, 2, 4, 8)]
    assert _spans(segments.merge(_flagged(spark, rows), 1, 1)) == [("a", 1, 4), ("a", 8, 8)]
    assert _spans(segments.merge(_flagged(spark, rows), 0, 1)) == [("a", 1, 2), ("a", 4, 4), ("a", 8, 8)]
    assert _spans(segments.merge(_flagged(spark, rows), 3, 1)) == [("a", 1, 8)]
    seg = segments.merge(_flagged(spark, rows), 1, 1).orderBy("start_second").first()
    assert (seg.seconds, seg.flagged_seconds) == (4, 3)          # the gap second counts in `seconds`


def test_single_seconds_and_the_minimum_length(spark):
    rows = [("a", 0, 0.9), ("a", 5, 0.7), ("a", 6, 0.8)]
    assert _spans(segments.merge(_flagged(spark, rows), 0, 1)) == [("a", 0, 0), ("a", 5, 6)]
    assert _spans(segments.merge(_flagged(spark, rows), 0, 2)) == [("a", 5, 6)]
    assert _spans(segments.merge(_flagged(spark, rows), 0, 3)) == []


def test_segments_at_the_start_and_end_and_per_video(spark):
    rows = [("a", 0, 0.6), ("a", 1, 0.7), ("a", 9, 0.8), ("b", 9, 0.9), ("b", 0, 0.5)]
    assert _spans(segments.merge(_flagged(spark, rows), 1, 1)) == [
        ("a", 0, 1), ("a", 9, 9), ("b", 0, 0), ("b", 9, 9)]


def test_peak_ties_go_to_the_earliest_second_and_figures(spark):
    rows = [("a", 3, 0.8), ("a", 4, 0.5), ("a", 5, 0.8)]
    seg = segments.merge(_flagged(spark, rows), 0, 1).first()
    assert (seg.peak_second, seg.peak_frame_name, seg.peak_prob) == (3, "aframe0003.jpg", 0.8)
    assert seg.mean_prob == pytest.approx(0.7)
    assert (seg.model_id, seg.model_version) == ("m/1", 1)
    again = segments.merge(_flagged(spark, list(reversed(rows))), 0, 1).first()
    assert again.segment_id == seg.segment_id and len(seg.segment_id) == 16


def test_refresh_replaces_the_segments_of_rescored_videos_and_the_views(spark, tmp_path):
    config = make_config(tmp_path, "segments.max_gap_seconds=1")
    storage.register_tables(spark, config)
    now = dt.datetime(2026, 11, 22, 2, 0)

    def predictions(video, flags):
        return [(video, s, f"{video.split('/')[-1]}frame{s:04d}.jpg", 0.9 if f else 0.1, f, "m/1", now, 1,
                 video.split("/")[0], "motion", None)
                for s, f in enumerate(flags)]

    rows = predictions("cam1/night", [0, 1, 1, 0, 1, 0, 0]) + predictions("cam2/day", [1, 0, 0, 0])
    storage.upsert(spark, config, "predictions", spark.createDataFrame(rows, TABLES["predictions"]))
    assert segments.refresh(spark, config, ["cam1/night", "cam2/day"]) == 2
    assert _spans(storage.read(spark, config, "segments")) == [("cam1/night", 1, 4), ("cam2/day", 0, 0)]
    # cam2/day re-scored with nothing flagged: its segment goes, cam1's stays
    storage.upsert(spark, config, "predictions",
                   spark.createDataFrame(predictions("cam2/day", [0, 0, 0, 0]), TABLES["predictions"]))
    assert segments.refresh(spark, config, ["cam2/day"]) == 0
    assert _spans(storage.read(spark, config, "segments")) == [("cam1/night", 1, 4)]
    # the views answer by name
    assert [r.video for r in spark.sql("SELECT video FROM segments_tonight").collect()] == ["cam1/night"]
    per_video = {r.video: r for r in spark.sql("SELECT * FROM video_suspicious_seconds").collect()}
    assert (per_video["cam1/night"].flagged_seconds, per_video["cam1/night"].segments) == (3, 1)
    assert (per_video["cam2/day"].scored_seconds, per_video["cam2/day"].segments) == (4, 0)
    videos = [{"video": v, "path": f"/in/{v}.mpg", "role": "score", "status": "ok", "processed_at": now,
               "camera": v.split("/")[0]} for v in ("cam1/night", "cam2/day")]
    storage.upsert(spark, config, "videos", spark.createDataFrame(
        [{f: row.get(f) for f in TABLES["videos"].fieldNames()} for row in videos], TABLES["videos"]))
    counts = {r.camera: (r.day, r.videos, r.segments, r.flagged_seconds)
              for r in spark.sql("SELECT * FROM camera_daily_counts").collect()}
    assert counts == {"cam1": (now.date(), 1, 1, 3), "cam2": (now.date(), 1, 0, 0)}
