"""Labels stage: read hand labels, validate them, resolve them to (video, second).

Two CSV formats are accepted:
* the Databricks notebook's ``ImageName,label`` where ImageName is a frame name
  (``Fight_Chase`` + ``frame`` + ``0012`` + ``.jpg``), resolved against the ``frames`` table;
* the native ``video,second,label``.

Rejected with a clear message: missing columns, labels other than 0/1, malformed names or seconds,
and duplicate keys with conflicting labels. Labels that match no frame are reported, not fatal.
"""
from __future__ import annotations

import hashlib
import logging
import re
from typing import Optional

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config, local_path
from vidspark.errors import VidsparkError
from vidspark.storage import runs
from vidspark.storage.schemas import LABELS, REVIEW_SOURCE

log = logging.getLogger(__name__)

_FRAME_NAME = re.compile(r"^(?P<stem>.+)frame(?P<second>\d{4,})\.jpg$")
_EXAMPLES = 5


class LabelsError(VidsparkError, ValueError):
    """The labels file cannot be used; the message says why and shows examples."""


def _examples(values) -> str:
    values = list(values)
    more = f" (and {len(values) - _EXAMPLES} more)" if len(values) > _EXAMPLES else ""
    return ", ".join(str(v) for v in values[:_EXAMPLES]) + more


def read_csv(spark: SparkSession, path: str) -> pd.DataFrame:
    """The labels file as strings (read with Spark, so any Hadoop URI works)."""
    try:
        df = spark.read.option("header", True).option("inferSchema", False).csv(path)
    except Exception as exc:
        raise LabelsError(f"input.labels: cannot read {path}: {str(exc).splitlines()[0]}") from None
    pdf = df.toPandas()
    pdf.columns = [str(c).strip() for c in pdf.columns]
    return pdf


def parse(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a raw labels table. Returns columns: video (None for frame-name labels), second,
    label, image_name (None for native labels), source."""
    cols = {c.lower(): c for c in raw.columns}
    if {"imagename", "label"} <= cols.keys():
        names = raw[cols["imagename"]].astype("string").str.strip()
        parsed = names.str.extract(_FRAME_NAME)
        bad = names[parsed["stem"].isna()]
        if len(bad):
            raise LabelsError(f"{source}: ImageName must look like <video>frame<NNNN>.jpg; "
                              f"bad values: {_examples(bad.fillna('<empty>'))}")
        out = pd.DataFrame({"video": None, "second": parsed["second"].astype(int),
                            "image_name": names.astype(object)})
    elif {"video", "second", "label"} <= cols.keys():
        video = raw[cols["video"]].astype("string").str.strip()
        if video.isna().any() or (video == "").any():
            raise LabelsError(f"{source}: empty video in rows {_examples(video.index[video.isna() | (video == '')] + 2)}")
        second = pd.to_numeric(raw[cols["second"]], errors="coerce")
        bad = raw[cols["second"]][second.isna() | (second < 0) | (second % 1 != 0)]
        if len(bad):
            raise LabelsError(f"{source}: second must be a non-negative integer; bad values: "
                              f"{_examples(bad.fillna('<empty>'))}")
        out = pd.DataFrame({"video": video.astype(object), "second": second.astype(int),
                            "image_name": None})
    else:
        raise LabelsError(f"{source}: a labels file needs the columns 'ImageName,label' or "
                          f"'video,second,label'; found: {', '.join(raw.columns) or 'none'}")
    label_raw = raw[cols["label"]].astype("string").str.strip()
    label = pd.to_numeric(label_raw, errors="coerce")
    bad = label_raw[~label.isin([0, 1])]
    if len(bad):
        raise LabelsError(f"{source}: label must be 0 or 1; bad values: {_examples(bad.fillna('<empty>'))}")
    out["label"] = label.astype(int)
    out["source"] = source
    key = ["image_name"] if out["video"].isna().all() else ["video", "second"]
    out = out.drop_duplicates()
    conflicts = out[out.duplicated(key, keep=False)]
    if len(conflicts):
        shown = conflicts.drop_duplicates(key)[key].astype(str).agg("/".join, axis=1)
        raise LabelsError(f"{source}: conflicting labels (both 0 and 1) for: {_examples(shown)}")
    return out.reset_index(drop=True)


def resolve(spark: SparkSession, parsed: pd.DataFrame, frames: DataFrame) -> tuple[DataFrame, dict]:
    """Attach (video, second) to frame-name labels and count labels that match no frame.

    Returns (labels DataFrame in the ``labels`` schema, report). A frame-name label that matches
    no frame is kept with its file stem as ``video`` (it matches once that video arrives).
    """
    if parsed["image_name"].notna().any():
        names = spark.createDataFrame(parsed[["image_name", "second", "label", "source"]])
        by_name = frames.select("video", F.col("frame_name").alias("image_name"))
        ambiguous = (by_name.join(names.select("image_name"), "image_name", "left_semi")
                     .groupBy("image_name").agg(F.countDistinct("video").alias("n"))
                     .where("n > 1").limit(_EXAMPLES + 1).collect())
        if ambiguous:
            raise LabelsError("frame names in the labels match several videos (same file name in "
                              "different folders); use the native format video,second,label: "
                              + _examples(r.image_name for r in ambiguous))
        joined = names.join(by_name, "image_name", "left")
        stem = F.regexp_extract("image_name", r"^(.+)frame\d{4,}\.jpg$", 1)
        labels = joined.select(F.coalesce("video", stem).alias("video"),
                               F.col("second").cast("int"), F.col("label").cast("int"), "source")
    else:
        labels = spark.createDataFrame(parsed[["video", "second", "label", "source"]]).select(
            "video", F.col("second").cast("int"), F.col("label").cast("int"), "source")
    labels = labels.select(*LABELS.fieldNames()).localCheckpoint()
    matched = labels.join(frames.select("video", "second"), ["video", "second"], "left_semi").count()
    total = labels.count()
    unmatched = labels.join(frames.select("video", "second"), ["video", "second"], "left_anti")
    examples = [f"{r.video}@{r.second}s" for r in unmatched.limit(_EXAMPLES).collect()]
    report = {"labels": total, "matched": matched, "unmatched": total - matched,
              "unmatched_examples": examples}
    return labels, report


def file_digest(spark: SparkSession, path: str) -> str:
    """The SHA-256 of the labels file's bytes."""
    local = local_path(path)
    if local is None:
        return (spark.read.format("binaryFile").load(path)
                .select(F.sha2("content", 256).alias("h")).first().h)
    with open(local, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def fingerprint(spark: SparkSession, path: str, frames: DataFrame,
                digest: Optional[str] = None) -> str:
    """Identifies the labels file's bytes and the frames its names resolve against."""
    digest = digest or file_digest(spark, path)
    keys = frames.agg(F.count(F.lit(1)).alias("n"),
                      F.bit_xor(F.xxhash64("video", "second", "frame_name")).alias("x")).first()
    return f"{digest[:16]}:{keys.n}:{keys.x or 0}"


def _last_fingerprint(spark: SparkSession, config: Config):
    row = (storage.read(spark, config, "runs")
           .where((F.col("stage") == "labels") & (F.col("status") == "succeeded"))
           .orderBy(F.col("ended_at").desc())
           .select(F.get_json_object("details", "$.fingerprint").alias("fp")).first())
    return row.fp if row else None


def verdict_labels(reviews: DataFrame) -> DataFrame:
    """Labels (``labels`` schema) from verdicts: every second a verdict covers, 1 for
    ``confirmed`` and 0 for ``rejected``; where verdicts overlap, the latest wins. ``source`` is
    ``review:<reviewer>:<review_id>``."""
    expanded = reviews.select(
        "video", F.explode(F.sequence("start_second", "end_second")).alias("second"),
        "verdict", "reviewer", "reviewed_at", "review_id")
    latest = Window.partitionBy("video", "second").orderBy(F.col("reviewed_at").desc(),
                                                           F.col("review_id"))
    return (expanded.withColumn("n", F.row_number().over(latest)).where(F.col("n") == 1)
            .select("video", F.col("second").cast("int").alias("second"),
                    F.when(F.col("verdict") == "confirmed", 1).otherwise(0).cast("int")
                    .alias("label"),
                    F.concat(F.lit(REVIEW_SOURCE), "reviewer", F.lit(":"), "review_id")
                    .alias("source")))


def verdicts_fingerprint(reviews: DataFrame) -> str:
    """Identifies the verdicts (for the labels stage's skip check)."""
    r = reviews.agg(F.count(F.lit(1)).alias("n"),
                    F.bit_xor(F.xxhash64("review_id", "verdict", "reviewed_at")).alias("x")).first()
    return f"{r.n}:{r.x or 0}"


def run(spark: SparkSession, config: Config) -> dict:
    """Replace the ``labels`` table with the validated contents of ``input.labels`` overlaid with
    the reviewers' verdicts (``verdict_labels``: a verdict overrides the imported
    label of the same second). Skipped when the file, the frames and the verdicts are unchanged
    since the last successful import. Without ``input.labels`` the imported labels already in the
    table are kept and only the verdicts are applied again."""

    path = config.input.labels
    digest = file_digest(spark, path) if path else None

    def read_now():
        return runs.inputs_of(spark, config, ("frames", "videos", "reviews", "labels"),
                              labels_file=digest)

    start = read_now()
    last = runs.unchanged_since(spark, config, "labels", start)
    if last is not None:
        log.info("labels: labels file, frames and verdicts unchanged since run %s; keeping the "
                 "labels table", last["run_id"])
        return {"read": 0, "written": 0, "skipped": 1, "quarantined": 0,
                "fingerprint": last.get("fingerprint"), "inputs": last["inputs"],
                "unchanged_since": last["run_id"]}
    reviews = storage.read(spark, config, "reviews")
    reviews_fp = verdicts_fingerprint(reviews)
    if not path and reviews_fp == "0:0":
        log.info("labels: input.labels not set and no verdicts; keeping the labels table as it is")
        return {"read": 0, "written": 0, "skipped": 0, "quarantined": 0, "labels": None,
                "inputs": runs.settle(start, read_now(), ("labels",))}
    frames = storage.read(spark, config, "frames")
    fp = ((fingerprint(spark, path, frames, digest) if path else "no-file")
          + f"|reviews:{reviews_fp}")
    if fp == _last_fingerprint(spark, config):
        log.info("labels: labels file, frames and verdicts unchanged; keeping the labels table")
        return {"read": 0, "written": 0, "skipped": 1, "quarantined": 0, "fingerprint": fp,
                "inputs": runs.settle(start, read_now(), ("labels",))}
    if path:
        parsed = parse(read_csv(spark, path), source=f"file:{path.rsplit('/', 1)[-1]}")
        imported, report = resolve(spark, parsed, frames)
    else:
        imported = (storage.read(spark, config, "labels")
                    .where(~F.col("source").startswith(REVIEW_SOURCE)).localCheckpoint())
        n = imported.count()
        report = {"labels": n, "matched": n, "unmatched": 0, "unmatched_examples": []}
    from_reviews = verdict_labels(reviews).localCheckpoint()
    keys = ["video", "second"]
    overridden = (imported.alias("i").join(from_reviews.alias("r"), keys)
                  .where(F.col("i.label") != F.col("r.label")).count())
    labels = (imported.join(from_reviews.select(*keys), keys, "left_anti")
              .unionByName(from_reviews).localCheckpoint())
    report.update(fingerprint=fp, imported=report["labels"], review_labels=from_reviews.count(),
                  review_overrides=overridden, labels=labels.count())
    storage.overwrite(spark, config, "labels", labels)
    if report["unmatched"]:
        log.warning("labels: %d of %d imported labels match no frame (e.g. %s)",
                    report["unmatched"], report["imported"],
                    ", ".join(report["unmatched_examples"]))
    log.info("labels: %d labels (%d imported, %d matching frames; %d from verdicts, %d of them "
             "overriding a different imported label)", report["labels"], report["imported"],
             report["matched"], report["review_labels"], overridden)
    return dict(report, read=report["imported"] + report["review_labels"],
                written=report["labels"], skipped=0, quarantined=0,
                inputs=runs.settle(start, read_now(), ("labels",)))
