"""Wiring: the stages in order, each a function of (spark, config) returning a small report."""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config, ConfigError, local_path
from vidspark.errors import PrerequisiteError

log = logging.getLogger(__name__)

#: The stages, in order.
STAGES = ("extract", "labels", "featurize", "train", "score")


def stage(name: str) -> Callable:
    """A stage's ``run(spark, config)``; the stages' modules (pandas, OpenCV, PyAV, Spark ML) are
    imported when a stage first runs, not when a job starts."""
    from vidspark.stages import extract, featurize, labels, score, train

    return {"extract": extract.run, "labels": labels.run, "featurize": featurize.run,
            "train": train.run, "score": score.run}[name]


def require_champion(config: Config):
    """The champion model version, or the error that says to train first (before Spark starts:
    a score job without a model has nothing to do)."""
    from vidspark.stages import score

    return score.require_champion(config)


def preflight(config: Config, names, champion: bool = True) -> None:
    """Fail before any work, with one line naming the key, when an input the stages need is
    missing or malformed or ``storage.root`` is not writable (a remote labels file or storage
    root is checked when it is used); with ``champion``, also when a job that starts by scoring
    has no model (``require_champion``, an MLflow query)."""
    if "extract" in names:
        folders = [(k, getattr(config.input, k)) for k in ("train_videos", "score_videos")]
        if not any(path for _, path in folders):
            raise ConfigError("input.train_videos and input.score_videos are both unset")
        for key, path in folders:
            if not path:
                continue
            if local_path(path) is None:
                raise ConfigError(f"input.{key} must be a local or mounted folder (OpenCV reads "
                                  f"files): {path}")
            if not os.path.isdir(local_path(path)):
                raise ConfigError(f"input.{key}: folder not found: {path}")
    labels_path = local_path(config.input.labels or "")
    if "labels" in names and labels_path:
        import pandas as pd

        from vidspark.stages import labels

        if not os.path.isfile(labels_path):
            raise ConfigError(f"input.labels: file not found: {labels_path}")
        try:
            raw = pd.read_csv(labels_path, dtype=str, keep_default_na=False).replace("", None)
            raw.columns = [str(c).strip() for c in raw.columns]
            labels.parse(raw, source=labels_path)
        except (labels.LabelsError, ValueError, pd.errors.ParserError) as exc:
            raise ConfigError(f"input.labels: {exc}") from None
    if champion and list(names)[:1] == ["score"]:
        require_champion(config)
    root = local_path(config.storage.root)
    if root is not None:
        probe = os.path.join(root, ".vidspark-write-test")
        try:
            os.makedirs(root, exist_ok=True)
            with open(probe, "w") as fh:
                fh.write("ok")
            os.remove(probe)
        except OSError as exc:
            raise ConfigError(f"storage.root: not writable: {root} ({exc.strerror})") from None


def prerequisites(spark: SparkSession, config: Config, first: str) -> None:
    """What a job's first stage needs from earlier jobs; a ``PrerequisiteError`` naming the job to
    run when it is missing (a job that starts with extract needs videos in its folders)."""
    if first == "extract":
        return   # extract.run raises when its folders and the store have no videos at all
    stored = storage.read(spark, config, "frames")
    if first == "score":
        stored = stored.join(storage.read(spark, config, "videos")
                             .where(F.col("role").contains("score")), "video", "left_semi")
    if stored.isEmpty():
        what = "frames of score videos" if first == "score" else "frames"
        raise PrerequisiteError(
            f"{first}: no {what} stored under {storage.root(config)}: put videos in "
            f"input.{'score' if first == 'score' else 'train'}_videos and run the extract job "
            "first (vidspark extract)")


def run_stages(spark: SparkSession, config: Config, names, recorder=None) -> dict:
    """Run the named stages in order; returns {stage: report}. With a ``RunRecorder`` each
    stage's start, end, counts or error go to the ``runs`` table."""
    reports = {}
    for name in names:
        t0 = time.time()
        if recorder:
            recorder.start(name)
        try:
            reports[name] = stage(name)(spark, config)
        except Exception as exc:
            if recorder:
                recorder.fail(name, exc)
            raise
        if recorder:
            recorder.end(name, reports[name])
        what = one_line({name: reports[name]})
        log.info("stage %s done in %.1fs%s", name, time.time() - t0, f": {what}" if what else "")
    return reports


def one_line(reports: Mapping[str, Mapping]) -> str:
    """What a run did, in one line (the operator's first question)."""
    parts = []
    if "extract" in reports:
        r = reports["extract"]
        parts.append(f"{r['new_videos']} new videos ({r['quarantined']} quarantined, "
                     f"{r['frames']} frames)")
    if "featurize" in reports:
        parts.append(f"{reports['featurize']['featurized']} frames featurized")
    if "train" in reports:
        r = reports["train"]
        if r["refit"]:
            parts.append(f"model {r['model_id']} fitted "
                         f"({'champion' if r['champion'] else 'candidate, champion unchanged'})")
        else:
            parts.append(f"model {r['model_id']} kept")
    if "score" in reports:
        parts.append(f"{reports['score']['scored']} frames scored")
    return ", ".join(parts)


def nightly(spark: SparkSession, config: Config) -> dict:
    """Extract both input folders, import labels, featurize, train and score."""
    return run_stages(spark, config, list(STAGES))


def top_predictions(spark: SparkSession, config: Config, n: int = 10):
    return (storage.read(spark, config, "predictions")
            .orderBy(F.col("prob_suspicious").desc(), "video", "second")
            .select("video", "second", "frame_name", "prob_suspicious", "prediction")
            .limit(n).collect())


def summary(spark: SparkSession, config: Config, n: int = 10) -> str:
    """A short human summary: where the tables are, their sizes, the top ranked frames."""
    from concurrent.futures import ThreadPoolExecutor

    lines = [f"tables under {storage.root(config)}/tables ({config.storage.format}):"]
    names = ("videos", "frames", "motion", "features", "labels", "predictions", "segments",
             "reviews", "models")
    with ThreadPoolExecutor(4) as pool:    # Spark jobs side by side: mostly Delta's bookkeeping
        counts = list(pool.map(lambda n: storage.read(spark, config, n).count(), names))
    for name, count in zip(names, counts):
        lines.append(f"  {name:<12} {count:>7} rows")
    quarantined = (storage.read(spark, config, "videos").where(F.col("status") == "quarantined")
                   .select("video", "error").collect())
    for r in quarantined:
        lines.append(f"  quarantined: {r.video}: {r.error}")
    lines.append(f"top {n} suspicious frames:")
    lines.append(f"  {'video':<28} {'second':>6}  {'frame_name':<36} {'prob':>6}  pred")
    for r in top_predictions(spark, config, n):
        lines.append(f"  {r.video:<28} {r.second:>6}  {r.frame_name:<36} "
                     f"{r.prob_suspicious:6.3f}  {r.prediction}")
    return "\n".join(lines)
