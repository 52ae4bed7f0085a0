"""Wiring: the stages in order, each a function of (spark, config) returning a small report."""
from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from vidspark import extract, featurize, labels, score, storage, train

log = logging.getLogger(__name__)

STAGES: dict[str, Callable] = {
    "extract": extract.run,
    "labels": labels.run,
    "featurize": featurize.run,
    "train": train.run,
    "score": score.run,
}


def preflight(config: Mapping, names) -> None:
    """Fail before any work when an input the stages need is missing (local paths only: a
    Hadoop URI is checked when it is read)."""
    import os

    from vidspark.config import ConfigError

    if "extract" in names:
        folders = [(k, config["input"][k]) for k in ("train_videos", "score_videos")]
        if not any(path for _, path in folders):
            raise ConfigError("input.train_videos and input.score_videos are both unset")
        for key, path in folders:
            if path and "://" not in path and not os.path.isdir(path):
                raise ConfigError(f"input.{key}: folder not found: {path}")
    labels = config["input"]["labels"]
    if "labels" in names and labels and "://" not in labels and not os.path.isfile(labels):
        raise ConfigError(f"input.labels: file not found: {labels}")


def run_stages(spark: SparkSession, config: Mapping, names) -> dict:
    """Run the named stages in order; returns {stage: report}."""
    reports = {}
    for name in names:
        t0 = time.time()
        reports[name] = STAGES[name](spark, config)
        log.info("stage %s done in %.1fs", name, time.time() - t0)
    return reports


def nightly(spark: SparkSession, config: Mapping) -> dict:
    """Extract both input folders, import labels, featurize, train and score."""
    return run_stages(spark, config, list(STAGES))


def top_predictions(spark: SparkSession, config: Mapping, n: int = 10):
    return (storage.read(spark, config, "predictions")
            .orderBy(F.col("prob_suspicious").desc(), "video", "second")
            .select("video", "second", "frame_name", "prob_suspicious", "prediction")
            .limit(n).collect())


def summary(spark: SparkSession, config: Mapping, n: int = 10) -> str:
    """A short human summary: where the tables are, their sizes, the top ranked frames."""
    lines = [f"tables under {storage.root(config)}/tables ({config['storage']['format']}):"]
    for name in ("videos", "frames", "features", "labels", "predictions", "models"):
        lines.append(f"  {name:<12} {storage.read(spark, config, name).count():>7} rows")
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
