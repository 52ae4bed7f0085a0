"""Extract stage: discover video files, hash and probe them, decode one frame per second and
measure the motion inside every second in the same pass.

All per-file work runs in Spark tasks (``mapInPandas``, at most four tasks per core): hashing
and probing files, and decoding time ranges, a long video being split into ranges of
``extract.split_seconds`` so it does not serialise the job. Files that cannot be used become
``videos`` rows with status ``quarantined`` and the reason; the stage goes on with the rest.
Every video gets a ``camera`` (``input.camera``). Videos stored before their motion was measured
with the current ``extract.motion_*`` settings (an older store, or changed settings) are decoded
again for motion only; their frames are kept.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import logging
import os
import resource
import time
from typing import Iterator, Optional

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from vidspark import storage
from vidspark.config import Config, camera_of, ConfigError, local_path
from vidspark.errors import PrerequisiteError
from vidspark.media import motion as M, video as V
from vidspark.storage import runs
from vidspark.storage.schemas import TABLES

log = logging.getLogger(__name__)

QUARANTINED = "quarantined"
OK = "ok"

_CANDIDATES = T.StructType([
    T.StructField("video", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("role", T.StringType()),
    T.StructField("size", T.LongType()),
    T.StructField("mtime_ns", T.LongType()),
    T.StructField("camera", T.StringType()),
])

_PROBED = T.StructType(_CANDIDATES.fields + [
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
    T.StructField("camera", T.StringType()),
])

_TASKS = T.StructType([T.StructField("task", T.IntegerType()),
                       T.StructField("ranges", T.ArrayType(_RANGES))])

_FIRST = T.StructType([T.StructField("video", T.StringType()),
                       T.StructField("first_ts_ms", T.DoubleType())])

# Output of the decode tasks: frame rows (kind 'frame', with the second's motion) and one
# bookkeeping row per range.
_DECODED = T.StructType([
    T.StructField("kind", T.StringType()),
    T.StructField("video", T.StringType()),
    T.StructField("second", T.IntegerType()),
    T.StructField("ts_ms", T.DoubleType()),
    T.StructField("frame_name", T.StringType()),
    T.StructField("jpeg", T.BinaryType()),           # null when decoding for motion only
    T.StructField("width", T.IntegerType()),
    T.StructField("height", T.IntegerType()),
    T.StructField("camera", T.StringType()),
    T.StructField("motion", T.ArrayType(T.FloatType())),
    T.StructField("pairs", T.IntegerType()),
    T.StructField("thumb", T.BinaryType()),
    T.StructField("decoded", T.LongType()),
    T.StructField("last_ts_ms", T.DoubleType()),
    T.StructField("error", T.StringType()),
    T.StructField("frames", T.LongType()),           # frame rows the range gave
    T.StructField("max_rss_mb", T.DoubleType()),    # the Python worker's peak memory so far
])


# ---------------------------------------------------------------- discovery (driver, listing only)

LISTING_THREADS = 8        # sub-folder trees listed at once

def video_name(path: str, folder: str) -> str:
    """The ``video`` key: the path relative to its input folder, without extension."""
    rel = os.path.relpath(path, folder)
    return os.path.splitext(rel)[0].replace(os.sep, "/")


def _is_video(name: str, exts: set) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in exts


def _walk(top: str, exts: set) -> list[dict]:
    """(path, size, mtime_ns) of the videos in the tree under ``top``."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        # a folder named like a video is reported (and still walked)
        for name in filenames + [d for d in dirnames if _is_video(d, exts)]:
            if _is_video(name, exts):
                rows.append(_stat(os.path.join(dirpath, name)))
    return [r for r in rows if r]


def _stat(path: str) -> Optional[dict]:
    try:
        st = os.stat(path)
    except OSError:
        if os.path.islink(path):   # a broken symbolic link: listed, and quarantined by the probe
            return {"path": path, "size": None, "mtime_ns": None}
        return None                # vanished between listing and stat
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _not_a_file(path: str) -> Optional[str]:
    """Why a listed entry that looks like a video is not a video file, or None."""
    if os.path.isdir(path):
        return "a directory, not a video file"
    if os.path.islink(path) and not os.path.exists(path):
        return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    return None


def list_files(folder: str, extensions) -> list[dict]:
    """(path, size, mtime_ns) of the video files under ``folder``. Its sub-folder trees (e.g. one
    per camera) are walked side by side by a few threads of this process, so a mounted archive's
    latency is spread; no file is read (a night with nothing new costs this listing). Hidden
    names (".x") are skipped."""
    from concurrent.futures import ThreadPoolExecutor

    exts = {"." + e.lower().lstrip(".") for e in extensions}
    files, subdirs = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subdirs.append(entry.path)
            if _is_video(entry.name, exts):   # a folder named like a video is reported too
                files.append(_stat(entry.path))
    with ThreadPoolExecutor(min(LISTING_THREADS, max(1, len(subdirs)))) as pool:
        for rows in pool.map(lambda d: _walk(d, exts), sorted(subdirs)):
            files += rows
    return [f for f in files if f]


def discover(spark: SparkSession, config: Config) -> tuple[list[dict], list[str], list[str]]:
    """List video files under the train and score folders.

    Returns (candidates, roles listed, problems). A file present in both folders (same path) is
    one candidate with role ``train+score``. Two different files that map to the same ``video``
    name (``a.mpg`` and ``a.avi``, or the same relative name in both folders) cannot both be
    stored: the first in sorted order is kept and the other is reported in ``problems``.
    """
    found: dict[str, dict] = {}
    problems: list[str] = []
    listed: list[str] = []
    for role in ("train", "score"):
        folder = getattr(config.input, f"{role}_videos")
        if not folder:
            continue
        listed.append(role)
        base = local_path(folder)
        if base is None:
            raise ConfigError(f"input.{role}_videos must be a local or mounted folder (OpenCV "
                              f"reads files): {folder}")
        base = base.rstrip("/")
        # a real file keeps its video name before a folder named like a video (reported)
        for f in sorted(list_files(base, config.input.extensions),
                        key=lambda f: (os.path.isdir(f["path"]), f["path"])):
            name = video_name(f["path"], base)
            prev = found.get(name)
            if prev is None:
                found[name] = dict(f, video=name, role=role, camera=camera_of(name, config))
            elif prev["path"] == f["path"]:
                prev["role"] = "train+score"
            else:
                problems.append(f"{f['path']} ignored: video name '{name}' is already taken by "
                                f"{prev['path']}")
    for p in problems:
        log.warning(p)
    return list(found.values()), listed, problems


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
            out = dict(rec, content_hash=None, fps=None, width=None, height=None,
                       header_frame_count=None, first_ts_ms=None, error=None)
            try:
                why = _not_a_file(rec["path"])
                if why is not None:
                    raise V.VideoError(why)
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


def _first_timestamps(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """(video, first decoded timestamp) of stored videos; None when the file cannot be read."""
    for batch in batches:
        rows = []
        for rec in batch.to_dict("records"):
            first = None
            try:
                first = V.probe(rec["path"]).first_ts_ms
            except Exception as exc:  # gone or changed since: it is handled on its next discovery
                log.warning("%s: cannot measure motion: %s", rec["path"], exc)
            rows.append({"video": rec["video"], "first_ts_ms": first})
        yield _pandas(rows, _FIRST)


# What one decode task hands to Spark at a time: a batch of frame rows is cut when its JPEGs
# reach this many bytes (or rows), so neither the Python worker nor the JVM ever holds a whole
# range of a long high-resolution video (600 s of 1080p are 100-200 MB of JPEG).
BATCH_BYTES = 8 << 20
BATCH_ROWS = 256


def _decode_partitions_fn(jpeg_quality: int, seek_margin: float, max_side: int,
                          motion_width: int, motion_fps: float, frames: bool = True):
    def decode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        threads = ctx.cpus() if ctx is not None else 1     # FFmpeg threads: the task's CPUs
        for batch in batches:
            for rec in batch.to_dict("records"):
                yield from _decode_range(rec, jpeg_quality, seek_margin, max_side, motion_width,
                                         motion_fps, frames, threads)
    return decode


def _decode_range(rec: dict, jpeg_quality: int, seek_margin: float, max_side: int,
                  motion_width: int = 128, motion_fps: float = 10.0,
                  frames: bool = True, threads: int = 1) -> Iterator[pd.DataFrame]:
    """Decode one time range: rows per second (its JPEG unless ``frames`` is false, and its
    motion, unless ``motion_width`` is 0), in batches that end at the second reaching
    ``BATCH_BYTES`` of JPEG or ``BATCH_ROWS`` rows, then one bookkeeping row. A batch holds only
    seconds whose motion is complete: when second s arrives, every earlier second has all its
    frames."""
    start = int(rec["range_start"])
    end = None if pd.isna(rec["range_end"]) else int(rec["range_end"])
    stats = V.RangeStats()
    sampler = (M.MotionSampler(width=motion_width, fps=motion_fps, start=start, end=end)
               if motion_width else None)
    pending: list = []
    pending_bytes, emitted = 0, 0
    error = None

    def flush() -> pd.DataFrame:
        nonlocal pending, pending_bytes, emitted
        if sampler is not None:
            for row in pending:
                row["motion"], row["pairs"] = sampler.vector(row["second"])
                row["thumb"] = sampler.thumbs.get(row["second"])
                sampler.release(row["second"])
        out = _pandas(pending, _DECODED)
        emitted += len(pending)
        pending, pending_bytes = [], 0
        return out

    try:
        for second, ts_ms, frame in V.sample_seconds(
                rec["path"], start=start, end=end,
                first_ts_ms=float(rec["first_ts_ms"]), fps=float(rec["fps"] or 0),
                seek_margin=seek_margin, stats=stats, motion=sampler, threads=threads):
            if pending and (pending_bytes >= BATCH_BYTES or len(pending) >= BATCH_ROWS):
                yield flush()
            row = {"kind": "frame", "video": rec["video"], "second": second, "ts_ms": ts_ms,
                   "frame_name": V.frame_name(rec["path"], second), "camera": rec.get("camera")}
            if frames:
                frame = V.fit_within(frame, max_side)
                row.update(jpeg=V.encode_jpeg(frame, jpeg_quality), height=frame.shape[0],
                           width=frame.shape[1])
                pending_bytes += len(row["jpeg"])
            pending.append(row)
    except V.VideoError as exc:
        error = str(exc)
    except OSError:
        # An I/O error, not a bad file: the task fails (Spark retries it where
        # spark.task.maxFailures allows), nothing of its chunk is committed, and the next run
        # decodes the file again. Storing what was read so far would keep it cut short as ok.
        raise
    except Exception as exc:
        error = f"decoding failed: {type(exc).__name__}: {exc}"
    if pending:
        yield flush()
    if stats.restarted:
        log.warning("%s: seek to %ss overshot; range decoded from the start", rec["video"],
                    rec["range_start"])
    yield _pandas([{"kind": "range", "video": rec["video"], "second": int(rec["range_start"]),
                    "decoded": stats.decoded, "last_ts_ms": stats.last_ts_ms, "error": error,
                    "frames": emitted,
                    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}],
                  _DECODED)


# ---------------------------------------------------------------- the stage

def _quarantine_row(rec: dict, reason: str, now: dt.datetime) -> dict:
    return {"video": rec["video"], "path": rec["path"], "role": rec["role"],
            "size": rec.get("size"), "mtime_ns": rec.get("mtime_ns"), "missing_since": None,
            "content_hash": rec.get("content_hash"), "fps": rec.get("fps"),
            "width": rec.get("width"), "height": rec.get("height"), "duration": None,
            "frame_count": None, "header_frame_count": rec.get("header_frame_count"),
            "seconds": 0, "status": QUARANTINED, "error": reason, "processed_at": now,
            "camera": rec.get("camera")}


def _none_if_nan(value):
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def run(spark: SparkSession, config: Config) -> dict:
    """Bring ``videos``, ``frames`` and ``motion`` up to date with the input folders.

    A file is new when its content hash is unseen. A file whose path, size and modification
    time match its stored row is not even hashed again; one whose hash is unchanged only gets
    its ``videos`` row updated (path, role, camera, no longer missing). New and changed files are
    decoded, and a changed file's old frames, motion, features and predictions are replaced. A
    file that disappeared keeps its rows and gets ``missing_since`` set. Stored videos whose
    motion is missing or was measured with other settings are decoded again for motion only.
    """
    candidates, listed, problems = discover(spark, config)
    last = runs.unchanged_since(spark, config, "extract", _inputs(spark, config, candidates))
    if last is not None:
        log.info("extract: %d files, none new, changed or gone since run %s; nothing to do",
                 len(candidates), last["run_id"])
        return {"read": len(candidates), "written": 0, "skipped": len(candidates),
                "quarantined": 0, "new_videos": 0, "ok": 0, "frames": 0, "missing": 0,
                "problems": problems, "motion_version": M.configured_identity(config),
                "motion_remeasured": 0, "max_worker_rss_mb": None,
                "inputs": last["inputs"], "unchanged_since": last["run_id"]}
    known = {r.video: r.asDict() for r in storage.read(spark, config, "videos").collect()}
    if not candidates and not known:
        folders = " or ".join(f"input.{role}_videos ({getattr(config.input, role + '_videos')})"
                              for role in listed)
        raise PrerequisiteError(
            f"extract: no video files in {folders} and none stored: copy videos (extensions "
            f"{', '.join(config.input.extensions)}) there, or point the keys at them")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    same_stat = [c for c in candidates if _same_file(known.get(c["video"]), c)]
    unchanged_ids = {c["video"] for c in same_stat}
    probed = _probe(spark, [c for c in candidates if c["video"] not in unchanged_ids])
    todo, touched = [], []
    for r in probed + same_stat:
        old = known.get(r["video"])
        if r["video"] not in unchanged_ids and (
                r["content_hash"] is None or old is None or old["content_hash"] != r["content_hash"]):
            todo.append(r)
        elif (old["path"], old["role"], old["mtime_ns"], old["missing_since"], old["camera"]) != (
                r["path"], r["role"], r["mtime_ns"], None, r["camera"]):
            touched.append(dict(old, path=r["path"], role=r["role"], mtime_ns=r["mtime_ns"],
                                missing_since=None, camera=r["camera"]))
    present = {c["video"] for c in candidates}
    gone = [dict(old, missing_since=now) for video, old in known.items()
            if video not in present and old["missing_since"] is None
            and all(role in listed for role in old["role"].split("+"))]

    # Videos are decoded and committed in chunks of about `extract.chunk_seconds` video-seconds:
    # a job killed mid-stage keeps every chunk it committed (their `videos` rows are written last,
    # so the next run skips them) and decodes the rest.
    video_rows = [_quarantine_row(r, r["error"], now) for r in todo if r["error"]]
    _commit(spark, config, video_rows, known)
    chunks = plan_chunks([r for r in todo if not r["error"]], int(config.extract.chunk_seconds))
    started = time.perf_counter()
    for i, chunk in enumerate(chunks):
        rows = _decode(spark, config, chunk, now)
        _commit(spark, config, rows, known)
        video_rows += rows
        if len(chunks) > 1:
            elapsed = time.perf_counter() - started
            log.info("extract: chunk %d/%d committed (%d videos, %.0fs, about %.0fs left)",
                     i + 1, len(chunks), len(chunk), elapsed,
                     elapsed / (i + 1) * (len(chunks) - i - 1))
    recamera = [t for t in touched if t["camera"] != known[t["video"]]["camera"]
                and t["status"] == OK]
    if recamera:
        cameras = spark.createDataFrame([(t["video"], t["camera"]) for t in recamera],
                                        "video string, camera string")
        for table in ("frames", "motion", "features", "predictions"):
            storage.set_camera(spark, config, table, cameras)
        log.info("extract: camera set for %d stored videos", len(recamera))
    _commit(spark, config, touched + gone, known, new_content=False)
    remeasured, unmeasured = _backfill_motion(spark, config, present)
    # Files that could not be read (no content hash) are tried again by every run, as are stored
    # videos whose motion could not be measured: while there are any, a run records no inputs,
    # so the next one does not take "nothing changed" for "nothing to do".
    retry = [r["video"] for r in todo if r["content_hash"] is None] + unmeasured

    n_ok = sum(1 for v in video_rows if v["status"] == OK)
    for v in video_rows:
        if v["status"] == QUARANTINED:
            log.warning("quarantined %s: %s", v["path"], v["error"])
    for v in gone:
        log.warning("missing: %s (%s) is gone; its rows are kept", v["video"], v["path"])
    frames = sum(v["seconds"] for v in video_rows if v["status"] == OK)
    report = {"read": len(candidates), "written": frames, "skipped": len(candidates) - len(todo),
              "quarantined": len(video_rows) - n_ok, "new_videos": len(todo), "ok": n_ok,
              "frames": frames, "missing": len(gone), "problems": problems,
              "motion_version": M.configured_identity(config), "motion_remeasured": remeasured,
              "max_worker_rss_mb": _max_rss(video_rows),
              "inputs": None if retry else _inputs(spark, config, candidates)}
    log.info("extract: %d files, %d new videos (%d ok, %d quarantined), %d unchanged skipped, "
             "%d missing, %d frames, motion measured again for %d stored videos", len(candidates),
             len(todo), n_ok, report["quarantined"], report["skipped"], len(gone), frames,
             remeasured)
    return report


def _inputs(spark: SparkSession, config: Config, candidates: list[dict]):
    """What the stage reads: the listing (paths, sizes, modification times, roles, cameras),
    the tables it writes, the motion settings."""
    listing = hashlib.sha256(json.dumps(
        sorted((c["video"], c["path"], c["role"], c["size"], c["mtime_ns"], c["camera"])
               for c in candidates), default=str).encode()).hexdigest()[:16]
    return runs.inputs_of(spark, config, ("videos", "frames", "motion"), listing=listing,
                          motion=M.configured_identity(config))


def plan_chunks(videos: list[dict], chunk_seconds: int) -> list[list[dict]]:
    """Consecutive groups of ``videos`` of at most ``chunk_seconds`` seconds by their headers (a
    longer video is a chunk of its own; its time ranges are still separate tasks)."""
    chunks, current, seconds = [], [], 0.0
    for r in videos:
        duration = (r["header_frame_count"] or 0) / r["fps"] if r.get("fps") else 0.0
        if current and seconds + duration > chunk_seconds:
            chunks.append(current)
            current, seconds = [], 0.0
        current.append(r)
        seconds += duration
    return chunks + ([current] if current else [])


def _commit(spark: SparkSession, config: Config, rows: list[dict], known: dict,
            new_content: bool = True) -> None:
    """Write ``videos`` rows, last (after their frames and motion). Rows of ``new_content`` (a
    decoded or quarantined file) replace what a stored video of the same id had: its features,
    predictions and segments go, and its frames and motion too when it is now quarantined."""
    if not rows:
        return
    if new_content:
        stale = [v["video"] for v in rows if v["video"] in known]
        bad = [v["video"] for v in rows if v["status"] == QUARANTINED and v["video"] in known]
        for table, videos in (("frames", bad), ("motion", bad), ("features", stale),
                              ("predictions", stale), ("segments", stale)):
            storage.delete_videos(spark, config, table, videos)
    columns = TABLES["videos"].fieldNames()
    storage.upsert(spark, config, "videos", spark.createDataFrame(
        [{k: _none_if_nan(row.get(k)) for k in columns} for row in rows], TABLES["videos"]))


def _same_file(old: Optional[dict], new: dict) -> bool:
    """The stored row describes this very file (same path, size and mtime) and has a hash."""
    return (old is not None and old["content_hash"] is not None and old["path"] == new["path"]
            and old["size"] == new["size"] and old["mtime_ns"] == new["mtime_ns"])


def _max_rss(rows: list[dict]) -> Optional[float]:
    values = [r.get("max_rss_mb") for r in rows if r.get("max_rss_mb") is not None]
    return max(values) if values else None


def _probe(spark: SparkSession, candidates: list[dict]) -> list[dict]:
    """Hash and probe every candidate file, one Spark task per few files."""
    if not candidates:
        return []
    parts = _task_count(spark, len(candidates))
    df = spark.createDataFrame(candidates, _CANDIDATES).repartition(parts)
    return [r.asDict() for r in df.mapInPandas(_probe_partitions, _PROBED).collect()]


def _task_count(spark: SparkSession, items: int) -> int:
    """Tasks for ``items`` pieces of per-file work: one each, at most four per core."""
    return max(1, min(items, spark.sparkContext.defaultParallelism * 4))


def _ranges(spark: SparkSession, decodable: list[dict], split_seconds: int) -> DataFrame:
    """The time ranges of ``decodable`` (a row each), spread over at most four tasks per core
    with about equal video-seconds each (by their headers): a task per range would spend more
    on task and file overhead than on decoding when the videos are short clips, and write as
    many small files per table."""
    pieces = []   # (estimated seconds, range row)
    for r in decodable:
        duration = (r["header_frame_count"] or 0) / r["fps"] if r["fps"] else 0.0
        for start, end in V.plan_ranges(duration, split_seconds):
            pieces.append((max((duration if end is None else end) - start, 1.0),
                           (r["video"], r["path"], start, end, float(r["first_ts_ms"]),
                            float(r["fps"] or 0.0), r.get("camera"))))
    tasks = [[] for _ in range(_task_count(spark, len(pieces)))]
    loads = [(0.0, k) for k in range(len(tasks))]     # a heap: the least loaded task first
    for seconds, row in sorted(pieces, key=lambda p: -p[0]):   # longest first
        load, k = heapq.heappop(loads)
        tasks[k].append(row)
        heapq.heappush(loads, (load + seconds, k))
    # A row per task holding its ranges, joined to spark.range's ids, one in each of its
    # partitions (a broadcast join keeps them there), then a row per range. All of it runs in
    # the JVM: a Python RDD function (parallelize + flatMap) would start Python workers of its
    # own, from a second daemon, beside those of the stage's pandas functions.
    packed = spark.createDataFrame(list(enumerate(tasks)), _TASKS)
    slots = spark.range(0, len(tasks), 1, numPartitions=len(tasks))
    return (slots.join(F.broadcast(packed), slots.id == packed.task)
            .select(F.explode("ranges").alias("r")).select("r.*"))


def _decoder(config: Config, frames: bool = True):
    ex = config.extract
    return _decode_partitions_fn(int(ex.jpeg_quality), float(ex.seek_margin_seconds),
                                 int(ex.max_side), int(ex.motion_width),
                                 float(ex.motion_fps), frames)


def _motion_rows(decoded, version: str):
    return decoded.select("video", "second", "camera", "motion", "pairs", "thumb",
                          F.lit(version).alias("motion_version"))


def _decode(spark: SparkSession, config: Config, decodable: list[dict], now) -> list[dict]:
    """Decode the videos (by time range, in parallel tasks), write their frames and motion,
    return their ``videos`` rows (``ok``, or ``quarantined`` when too little could be
    decoded)."""
    if not decodable:
        return []
    ex = config.extract
    # Decoded once, cached on the executors' disks: the tasks hand over their frames in small
    # batches, Spark's cache packs them into column batches of a few MB that go to disk as they
    # fill, and each write streams them back, so no task holds more than a batch of frames
    # (with the cache in memory, a long 1080p range's frames took hundreds of MB of heap).
    decoded = (_ranges(spark, decodable, int(ex.split_seconds))
               .mapInPandas(_decoder(config), _DECODED)
               .persist(StorageLevel.DISK_ONLY))
    try:
        summary = _summarise(decoded.where(F.col("kind") == "range")
                             .select("video", "decoded", "last_ts_ms", "error", "frames",
                                     "max_rss_mb").collect())
        rows = [_video_row(r, summary[r["video"]], summary[r["video"]]["frames"],
                           int(ex.min_frames), now) for r in decodable]
        ok = [v["video"] for v in rows if v["status"] == OK]
        # Frames and motion first, then (by the caller) the `videos` row: a crash in between
        # leaves the hash unseen, so the next run redoes the video and replaces its rows, never
        # duplicates them.
        ok_frames = decoded.where((F.col("kind") == "frame") & F.col("video").isin(ok))
        storage.replace_videos(spark, config, "frames", ok_frames, ok)
        storage.replace_videos(spark, config, "motion",
                               _motion_rows(ok_frames, M.configured_identity(config)), ok)
    finally:
        decoded.unpersist()
    return rows


def _backfill_motion(spark: SparkSession, config: Config,
                     present: set) -> tuple[int, list[str]]:
    """Measure the motion of stored ``ok`` videos that have none under the current settings
    (decoding again, without re-encoding frames); returns how many videos were measured and the
    videos that could not be (their first frame could not be read)."""
    version = M.configured_identity(config)
    measured = (storage.read(spark, config, "motion").where(F.col("motion_version") == version)
                .select("video").distinct())
    videos = (storage.read(spark, config, "videos")
              .where((F.col("status") == OK) & F.col("missing_since").isNull())
              .join(measured, "video", "left_anti").collect())
    videos = [r.asDict() for r in videos if r.video in present]
    if not videos:
        return 0, []
    log.info("extract: measuring motion (%s) of %d stored videos", version, len(videos))
    # A range needs the first frame's timestamp, which the videos row lacks: probe (in tasks).
    parts = _task_count(spark, len(videos))
    first = {r.video: r.first_ts_ms for r in
             spark.createDataFrame([(r["video"], r["path"]) for r in videos], "video string, path string")
             .repartition(parts).mapInPandas(_first_timestamps, _FIRST)
             .collect()}
    unreadable = [r["video"] for r in videos if first.get(r["video"]) is None]
    videos = [dict(r, first_ts_ms=first.get(r["video"])) for r in videos
              if first.get(r["video"]) is not None]
    if unreadable:
        log.warning("extract: motion of %d stored videos not measured, their files cannot be "
                    "read now (e.g. %s); tried again next run", len(unreadable), unreadable[0])
    if not videos:
        return 0, unreadable
    decoded = (_ranges(spark, videos, int(config.extract.split_seconds))
               .mapInPandas(_decoder(config, frames=False), _DECODED)
               .where(F.col("kind") == "frame"))
    # Only seconds that have a frame: motion rows match the frames table key for key.
    stored = storage.read(spark, config, "frames").select("video", "second")
    rows = _motion_rows(decoded, version).join(stored, ["video", "second"], "left_semi")
    storage.replace_videos(spark, config, "motion", rows, [r["video"] for r in videos])
    return len(videos), unreadable


def _video_row(r: dict, s: dict, n: int, min_frames: int, now) -> dict:
    if n == 0 or s["last_ts_ms"] is None:
        return _quarantine_row(r, s["error"] or "no decodable frames", now)
    if s["decoded"] < min_frames:
        return _quarantine_row(r, f"truncated or damaged: only {s['decoded']} decodable "
                                  f"frame(s) (extract.min_frames is {min_frames})", now)
    return {"video": r["video"], "path": r["path"], "role": r["role"], "size": r["size"],
            "mtime_ns": r["mtime_ns"], "missing_since": None, "content_hash": r["content_hash"], "fps": r["fps"], "width": r["width"],
            "height": r["height"], "duration": s["last_ts_ms"] / 1000.0,
            "frame_count": s["decoded"], "header_frame_count": r["header_frame_count"],
            "seconds": n, "status": OK, "error": s["error"], "processed_at": now,
            "max_rss_mb": s["max_rss_mb"], "camera": r.get("camera")}


def _summarise(per_range) -> dict:
    out: dict = {}
    for r in per_range:
        s = out.setdefault(r.video, {"decoded": 0, "last_ts_ms": None, "error": None,
                                     "max_rss_mb": None, "frames": 0})
        s["decoded"] += int(r.decoded or 0)
        s["frames"] += int(r.frames or 0)
        if r.max_rss_mb is not None:
            s["max_rss_mb"] = max(s["max_rss_mb"] or 0.0, r.max_rss_mb)
        if r.last_ts_ms is not None:
            s["last_ts_ms"] = max(s["last_ts_ms"] or 0.0, r.last_ts_ms)
        if r.error:
            s["error"] = r.error if not s["error"] else s["error"] + "; " + r.error
    return out
