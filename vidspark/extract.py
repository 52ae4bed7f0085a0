"""Extract stage: discover video files, hash and probe them, decode one frame per second.

All per-file work runs in Spark tasks (``mapInPandas``): hashing and probing one task per file,
decoding one task per time range, a long video being split into ranges of
``extract.split_seconds`` so it does not serialise the job. Files that cannot be used become
``videos`` rows with status ``quarantined`` and the reason; the stage goes on with the rest.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from vidspark import storage, video as V

log = logging.getLogger(__name__)

QUARANTINED = "quarantined"
OK = "ok"

_CANDIDATES = T.StructType([
    T.StructField("video", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("role", T.StringType()),
])

_PROBED = T.StructType(_CANDIDATES.fields + [
    T.StructField("size", T.LongType()),
    T.StructField("content_hash", T.StringType()),
    T.StructField("fps", T.DoubleType()),
    T.StructField("width", T.IntegerType()),
    T.StructField("height", T.IntegerType()),
    T.StructField("header_frame_count", T.LongType()),
    T.StructField("first_ts_ms", T.DoubleType()),
    T.StructField("error", T.StringType()),
])

_RANGES = T.StructType([
    T.StructField("video", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("range_start", T.IntegerType()),
    T.StructField("range_end", T.IntegerType()),    # null: open-ended
    T.StructField("first_ts_ms", T.DoubleType()),
    T.StructField("fps", T.DoubleType()),
])

# Output of the decode tasks: frame rows (kind 'frame') and one bookkeeping row per range.
_DECODED = T.StructType([
    T.StructField("kind", T.StringType()),
    T.StructField("video", T.StringType()),
    T.StructField("second", T.IntegerType()),
    T.StructField("ts_ms", T.DoubleType()),
    T.StructField("frame_name", T.StringType()),
    T.StructField("jpeg", T.BinaryType()),
    T.StructField("width", T.IntegerType()),
    T.StructField("height", T.IntegerType()),
    T.StructField("decoded", T.LongType()),
    T.StructField("last_ts_ms", T.DoubleType()),
    T.StructField("error", T.StringType()),
])


@dataclass
class ExtractResult:
    discovered: int
    new: int
    skipped: int
    ok: int
    quarantined: int
    frames: int
    duplicates: list


# ---------------------------------------------------------------- discovery (driver, listing only)

def video_name(path: str, folder: str) -> str:
    """The ``video`` key: the path relative to its input folder, without extension."""
    rel = os.path.relpath(path, folder)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def discover(config: Mapping) -> tuple[list[dict], list[str]]:
    """List video files under the train and score folders.

    Returns (candidates, problems). A file present in both folders (same path) is one candidate
    with role ``train+score``. Two different files that map to the same ``video`` name (``a.mpg``
    and ``a.avi``, or the same relative name in both folders) cannot both be stored: the first in
    sorted order is kept and the other is reported in ``problems``.
    """
    exts = {"." + e.lower().lstrip(".") for e in config["input"]["extensions"]}
    found: dict[str, dict] = {}
    problems: list[str] = []
    for role in ("train", "score"):
        folder = config["input"][f"{role}_videos"]
        if not folder:
            continue
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"input.{role}_videos: folder not found: {folder}")
        paths = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            paths += [os.path.join(dirpath, f) for f in sorted(filenames)
                      if os.path.splitext(f)[1].lower() in exts and not f.startswith(".")]
        for path in paths:
            name = video_name(path, folder)
            prev = found.get(name)
            if prev is None:
                found[name] = {"video": name, "path": os.path.abspath(path), "role": role}
            elif prev["path"] == os.path.abspath(path):
                prev["role"] = "train+score"
            else:
                problems.append(f"{path} ignored: video name '{name}' is already taken by {prev['path']}")
    for p in problems:
        log.warning(p)
    return list(found.values()), problems


# ---------------------------------------------------------------- per-task functions (executors)

_PANDAS_DTYPES = {T.IntegerType: "Int32", T.LongType: "Int64", T.DoubleType: "float64"}


def _pandas(rows: list[dict], schema: T.StructType) -> pd.DataFrame:
    """Rows -> pandas with nullable dtypes Arrow converts exactly (an all-None string column
    would otherwise become float64 NaN)."""
    df = pd.DataFrame(rows, columns=schema.fieldNames())
    for f in schema.fields:
        dtype = _PANDAS_DTYPES.get(type(f.dataType), object)
        if dtype is object:
            df[f.name] = df[f.name].astype(object).where(df[f.name].notna(), None)
        else:
            df[f.name] = df[f.name].astype(dtype)
    return df


def _probe_partitions(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for batch in batches:
        rows = []
        for rec in batch.to_dict("records"):
            out = dict(rec, size=None, content_hash=None, fps=None, width=None, height=None,
                       header_frame_count=None, first_ts_ms=None, error=None)
            try:
                out["size"], out["content_hash"] = V.file_digest(rec["path"])
                p = V.probe(rec["path"])
                out.update(fps=p.fps, width=p.width, height=p.height,
                           header_frame_count=p.header_frame_count, first_ts_ms=p.first_ts_ms)
            except V.VideoError as exc:
                out["error"] = str(exc)
            except Exception as exc:  # an unexpected decoder failure quarantines, never stops the job
                out["error"] = f"probe failed: {type(exc).__name__}: {exc}"
            rows.append(out)
        yield _pandas(rows, _PROBED)


def _decode_partitions_fn(jpeg_quality: int, seek_margin: float):
    def decode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for rec in batch.to_dict("records"):
                yield _decode_range(rec, jpeg_quality, seek_margin)
    return decode


def _decode_range(rec: dict, jpeg_quality: int, seek_margin: float) -> pd.DataFrame:
    end = None if pd.isna(rec["range_end"]) else int(rec["range_end"])
    stats = V.RangeStats()
    rows = []
    error = None
    try:
        for second, ts_ms, frame in V.sample_seconds(
                rec["path"], start=int(rec["range_start"]), end=end,
                first_ts_ms=float(rec["first_ts_ms"]), fps=float(rec["fps"] or 0),
                seek_margin=seek_margin, stats=stats):
            h, w = frame.shape[:2]
            rows.append({"kind": "frame", "video": rec["video"], "second": second, "ts_ms": ts_ms,
                         "frame_name": V.frame_name(rec["path"], second),
                         "jpeg": V.encode_jpeg(frame, jpeg_quality), "width": w, "height": h})
    except V.VideoError as exc:
        error = str(exc)
    except Exception as exc:
        error = f"decoding failed: {type(exc).__name__}: {exc}"
    if stats.restarted:
        log.warning("%s: seek to %ss overshot; range decoded from the start", rec["video"],
                    rec["range_start"])
    rows.append({"kind": "range", "video": rec["video"], "second": int(rec["range_start"]),
                 "decoded": stats.decoded, "last_ts_ms": stats.last_ts_ms, "error": error})
    return _pandas(rows, _DECODED)


# ---------------------------------------------------------------- the stage

def _quarantine_row(rec: dict, reason: str, now: dt.datetime) -> dict:
    return {"video": rec["video"], "path": rec["path"], "role": rec["role"], "size": rec.get("size"),
            "content_hash": rec.get("content_hash"), "fps": rec.get("fps"),
            "width": rec.get("width"), "height": rec.get("height"), "duration": None,
            "frame_count": None, "header_frame_count": rec.get("header_frame_count"),
            "seconds": 0, "status": QUARANTINED, "error": reason, "processed_at": now}


def _none_if_nan(value):
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def run(spark: SparkSession, config: Mapping) -> ExtractResult:
    """Bring ``videos`` and ``frames`` up to date with the input folders."""
    from vidspark.schemas import VIDEOS

    candidates, problems = discover(config)
    if not candidates:
        log.info("extract: no video files found")
        return ExtractResult(0, 0, 0, 0, 0, 0, problems)

    cand_df = spark.createDataFrame(candidates, _CANDIDATES)
    probed = (cand_df.repartition(min(len(candidates), spark.sparkContext.defaultParallelism * 4))
              .mapInPandas(_probe_partitions, _PROBED).collect())
    probed = [r.asDict() for r in probed]

    known = {r.video: (r.content_hash, r.role)
             for r in storage.read(spark, config, "videos")
             .select("video", "content_hash", "role").collect()}
    todo = [r for r in probed
            if known.get(r["video"]) != (r["content_hash"], r["role"]) or r["content_hash"] is None]
    # A file whose bytes and role are unchanged is skipped by every stage; a role change alone
    # (moved between folders) only updates its `videos` row.
    role_only = [r for r in todo if r["video"] in known and known[r["video"]][0] == r["content_hash"]
                 and r["content_hash"] is not None]
    todo = [r for r in todo if r not in role_only]
    skipped = len(probed) - len(todo) - len(role_only)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    if role_only:
        storage.upsert(spark, config, "videos",
                       storage.read(spark, config, "videos")
                       .join(spark.createDataFrame([(r["video"], r["role"]) for r in role_only],
                                                   "video string, new_role string"), "video", "inner")
                       .withColumn("role", F.col("new_role")).drop("new_role"))

    video_rows = [ _quarantine_row(r, r["error"], now) for r in todo if r["error"]]
    decodable = [r for r in todo if not r["error"]]
    frame_count = 0
    min_frames = int(config["extract"]["min_frames"])
    if decodable:
        ranges = []
        for r in decodable:
            for start, end in V.plan_ranges(
                    (r["header_frame_count"] or 0) / r["fps"] if r["fps"] else 0.0,
                    int(config["extract"]["split_seconds"])):
                ranges.append((r["video"], r["path"], start, end, float(r["first_ts_ms"]),
                               float(r["fps"] or 0.0)))
        decoded = (spark.createDataFrame(ranges, _RANGES)
                   .repartition(len(ranges))
                   .mapInPandas(_decode_partitions_fn(int(config["extract"]["jpeg_quality"]),
                                                      float(config["extract"]["seek_margin_seconds"])),
                                _DECODED)
                   .persist(StorageLevel.MEMORY_AND_DISK))
        try:
            per_range = (decoded.where(F.col("kind") == "range")
                         .select("video", "second", "decoded", "last_ts_ms", "error").collect())
            frames = decoded.where(F.col("kind") == "frame")
            counts = {r.video: r["count"] for r in frames.groupBy("video").count().collect()}
            summary = _summarise(per_range)
            for r in decodable:
                s = summary[r["video"]]
                n = counts.get(r["video"], 0)
                if s["error"] and n == 0:
                    video_rows.append(_quarantine_row(r, s["error"], now))
                    continue
                if n == 0 or s["last_ts_ms"] is None:
                    video_rows.append(_quarantine_row(r, "no decodable frames", now))
                    continue
                if s["decoded"] < min_frames:
                    video_rows.append(_quarantine_row(
                        r, f"truncated or damaged: only {s['decoded']} decodable frame(s) "
                           f"(extract.min_frames is {min_frames})", now))
                    continue
                video_rows.append({
                    "video": r["video"], "path": r["path"], "role": r["role"], "size": r["size"],
                    "content_hash": r["content_hash"], "fps": r["fps"], "width": r["width"],
                    "height": r["height"], "duration": s["last_ts_ms"] / 1000.0,
                    "frame_count": s["decoded"], "header_frame_count": r["header_frame_count"],
                    "seconds": n, "status": OK, "error": s["error"], "processed_at": now})
                frame_count += n
            ok_videos = [v["video"] for v in video_rows if v["status"] == OK]
            # Frames first, then the `videos` row: a crash in between leaves the hash unseen, so
            # the next run redoes the video and replaces its frames rather than duplicating them.
            storage.replace_videos(spark, config, "frames",
                                   frames.where(F.col("video").isin(ok_videos)), ok_videos)
        finally:
            decoded.unpersist()

    # Frames, features and predictions of videos that changed or turned bad are replaced/removed.
    redone = [v["video"] for v in video_rows]
    stale = [v for v in redone if v in known]
    quarantined_now = [v["video"] for v in video_rows if v["status"] == QUARANTINED]
    if quarantined_now:
        storage.replace_videos(spark, config, "frames", spark.createDataFrame([], storage_schema("frames")),
                               [v for v in quarantined_now if v in known])
    for table in ("features", "predictions"):
        storage.replace_videos(spark, config, table, spark.createDataFrame([], storage_schema(table)), stale)
    if video_rows:
        rows = [{k: _none_if_nan(v) for k, v in row.items()} for row in video_rows]
        storage.upsert(spark, config, "videos", spark.createDataFrame(rows, VIDEOS))

    n_ok = sum(1 for v in video_rows if v["status"] == OK)
    n_q = len(video_rows) - n_ok
    for v in video_rows:
        if v["status"] == QUARANTINED:
            log.warning("quarantined %s: %s", v["path"], v["error"])
    log.info("extract: %d files, %d new or changed, %d unchanged skipped, %d ok, %d quarantined, "
             "%d frames", len(probed), len(todo), skipped, n_ok, n_q, frame_count)
    return ExtractResult(len(probed), len(todo), skipped, n_ok, n_q, frame_count, problems)


def storage_schema(name: str) -> T.StructType:
    from vidspark.schemas import TABLES

    return TABLES[name]


def _summarise(per_range) -> dict:
    out: dict = {}
    for r in per_range:
        s = out.setdefault(r.video, {"decoded": 0, "last_ts_ms": None, "error": None})
        s["decoded"] += int(r.decoded or 0)
        if r.last_ts_ms is not None:
            s["last_ts_ms"] = max(s["last_ts_ms"] or 0.0, r.last_ts_ms)
        if r.error:
            s["error"] = r.error if not s["error"] else s["error"] + "; " + r.error
    return out
