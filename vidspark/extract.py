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
from typing import Iterator, Mapping

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from vidspark import storage, video as V
from vidspark.schemas import TABLES

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
    """Bring ``videos`` and ``frames`` up to date with the input folders.

    A file whose content hash is already stored is skipped (if only its path or role changed,
    its ``videos`` row is updated); new and changed files are decoded, and a changed file's
    old frames, features and predictions are replaced.
    """
    candidates, problems = discover(config)
    if not candidates:
        log.info("extract: no video files found")
        return ExtractResult(0, 0, 0, 0, 0, 0, problems)
    probed = _probe(spark, candidates)
    known = {r.video: r.asDict() for r in storage.read(spark, config, "videos").collect()}
    todo, moved = [], []
    for r in probed:
        old = known.get(r["video"])
        if r["content_hash"] is None or old is None or old["content_hash"] != r["content_hash"]:
            todo.append(r)
        elif (old["path"], old["role"]) != (r["path"], r["role"]):
            moved.append(dict(old, path=r["path"], role=r["role"]))
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    video_rows = [_quarantine_row(r, r["error"], now) for r in todo if r["error"]]
    video_rows += _decode(spark, config, [r for r in todo if not r["error"]], now)

    # Frames, features and predictions of videos that changed or turned bad go.
    stale = [v["video"] for v in video_rows if v["video"] in known]
    bad = [v["video"] for v in video_rows if v["status"] == QUARANTINED and v["video"] in known]
    for table, videos in (("frames", bad), ("features", stale), ("predictions", stale)):
        storage.replace_videos(spark, config, table, spark.createDataFrame([], TABLES[table]), videos)
    if video_rows or moved:
        rows = [{k: _none_if_nan(v) for k, v in row.items()} for row in video_rows + moved]
        storage.upsert(spark, config, "videos", spark.createDataFrame(rows, TABLES["videos"]))

    n_ok = sum(1 for v in video_rows if v["status"] == OK)
    for v in video_rows:
        if v["status"] == QUARANTINED:
            log.warning("quarantined %s: %s", v["path"], v["error"])
    frames = sum(v["seconds"] for v in video_rows if v["status"] == OK)
    log.info("extract: %d files, %d new or changed, %d unchanged skipped, %d ok, %d quarantined, "
             "%d frames", len(probed), len(todo), len(probed) - len(todo), n_ok,
             len(video_rows) - n_ok, frames)
    return ExtractResult(len(probed), len(todo), len(probed) - len(todo), n_ok,
                         len(video_rows) - n_ok, frames, problems)


def _probe(spark: SparkSession, candidates: list[dict]) -> list[dict]:
    """Hash and probe every candidate file, one Spark task per few files."""
    parts = min(len(candidates), spark.sparkContext.defaultParallelism * 4)
    df = spark.createDataFrame(candidates, _CANDIDATES).repartition(parts)
    return [r.asDict() for r in df.mapInPandas(_probe_partitions, _PROBED).collect()]


def _decode(spark: SparkSession, config: Mapping, decodable: list[dict], now) -> list[dict]:
    """Decode the videos (one task per time range), write their frames, return their
    ``videos`` rows (``ok``, or ``quarantined`` when too little could be decoded)."""
    if not decodable:
        return []
    ex = config["extract"]
    ranges = [(r["video"], r["path"], start, end, float(r["first_ts_ms"]), float(r["fps"] or 0.0))
              for r in decodable
              for start, end in V.plan_ranges(
                  (r["header_frame_count"] or 0) / r["fps"] if r["fps"] else 0.0,
                  int(ex["split_seconds"]))]
    decode = _decode_partitions_fn(int(ex["jpeg_quality"]), float(ex["seek_margin_seconds"]))
    decoded = (spark.createDataFrame(ranges, _RANGES).repartition(len(ranges))
               .mapInPandas(decode, _DECODED)
               .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        summary = _summarise(decoded.where(F.col("kind") == "range")
                             .select("video", "decoded", "last_ts_ms", "error").collect())
        frames = decoded.where(F.col("kind") == "frame")
        counts = {r.video: r["count"] for r in frames.groupBy("video").count().collect()}
        rows = [_video_row(r, summary[r["video"]], counts.get(r["video"], 0),
                           int(ex["min_frames"]), now) for r in decodable]
        ok = [v["video"] for v in rows if v["status"] == OK]
        # Frames first, then (by the caller) the `videos` row: a crash in between leaves the hash
        # unseen, so the next run redoes the video and replaces its frames, never duplicates them.
        storage.replace_videos(spark, config, "frames", frames.where(F.col("video").isin(ok)), ok)
    finally:
        decoded.unpersist()
    return rows


def _video_row(r: dict, s: dict, n: int, min_frames: int, now) -> dict:
    if n == 0 or s["last_ts_ms"] is None:
        return _quarantine_row(r, s["error"] or "no decodable frames", now)
    if s["decoded"] < min_frames:
        return _quarantine_row(r, f"truncated or damaged: only {s['decoded']} decodable "
                                  f"frame(s) (extract.min_frames is {min_frames})", now)
    return {"video": r["video"], "path": r["path"], "role": r["role"], "size": r["size"],
            "content_hash": r["content_hash"], "fps": r["fps"], "width": r["width"],
            "height": r["height"], "duration": s["last_ts_ms"] / 1000.0,
            "frame_count": s["decoded"], "header_frame_count": r["header_frame_count"],
            "seconds": n, "status": OK, "error": s["error"], "processed_at": now}


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
