"""Feature groups and feature sets: what a model sees of one second, built from the stored tables.

A feature set is a ``+``-joined list of groups (``motion``, ``motion+change``,
``appearance+motion``); train and score build the same columns with ``assemble``, one ML vector
column per group, named after the group:

* ``motion`` (3 x 42 values): the second's ``motion`` vector (``vidspark.media.motion.FEATURE_NAMES``),
  then its mean and its maximum over the window [second - n, second + n] of the same video
  (``features.context_seconds``; Spark window functions), element by element.
* ``appearance`` (2,048 values): the InceptionV3 embedding of the second's frame. Models reduce
  it with a Spark ML ``PCAModel`` (``features.pca_components``, fit on the training data by
  ``vidspark.stages.pca``) before it
  meets other groups, so a few dozen motion values are not drowned by 2,048 appearance values.
* ``change`` (3 x 4 values): how the picture changes across seconds: the cosine distance of the
  embedding to the previous and to the next second, and the difference of the second's 32x24
  thumbnail from its camera's background (mean absolute grey-level difference / 255, and the
  share of pixels off by more than 25 grey levels), then the window mean and maximum of those
  four. The background is the per-pixel median of up to ``features.background_samples``
  thumbnails of the camera's seconds (spread over all its videos): a bag left behind changes
  the picture for as long as it stays, while nothing moves.
* ``anomaly`` (1 value): ``anomaly_score``, below.

``anomaly_score`` is label-free: how much more activity a second shows than is usual for its own
camera. For every camera (with at least ``features.anomaly_min_seconds`` seconds) each of the 42
motion values and the two background differences get a robust z-score against the camera's
median and median absolute deviation over all its seconds; the score is the mean of the positive
z-scores (clipped at 10). Only more change than usual counts: quiet seconds of a busy camera are
not suspicious. Cameras with too little history get a null score (0 as a model input).

Version identity: the motion values carry ``motion_version`` (extract settings), the embeddings
the weights identity; a model records both (``feature_set``, ``motion_version``, ``weights``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from vidspark import storage
from vidspark.config import Config, FEATURE_GROUPS, parse_feature_set
from vidspark.media import motion as M

N_MOTION = M.N_FEATURES
CHANGE_NAMES = ("embedding_distance_previous", "embedding_distance_next", "background_diff",
                "background_changed_share")
_BACKGROUND = T.StructType([T.StructField("background_diff", T.DoubleType()),
                            T.StructField("background_changed_share", T.DoubleType())])
_Z_CLIP = 10.0


@dataclass(frozen=True)
class FeatureSet:
    """A named feature set: its groups, in order."""
    name: str
    groups: tuple

    @property
    def needs_embeddings(self) -> bool:
        return "appearance" in self.groups or "change" in self.groups


def feature_set(name: str) -> FeatureSet:
    return FeatureSet(name, parse_feature_set(name))


def union_groups(names) -> tuple:
    """The groups of several feature sets (each once, in ``FEATURE_GROUPS`` order)."""
    wanted = {g for name in names for g in parse_feature_set(name)}
    return tuple(g for g in FEATURE_GROUPS if g in wanted)


def group_size(group: str) -> int:
    """Length of a group's vector before any reduction."""
    return {"motion": 3 * N_MOTION, "appearance": 2048, "change": 3 * len(CHANGE_NAMES),
            "anomaly": 1}[group]


def feature_names(group: str) -> list:
    """Names of the values of a group's vector (for feature importances)."""
    if group == "motion":
        return (list(M.FEATURE_NAMES) + [f"{n}_window_mean" for n in M.FEATURE_NAMES]
                + [f"{n}_window_max" for n in M.FEATURE_NAMES])
    if group == "change":
        return (list(CHANGE_NAMES) + [f"{n}_window_mean" for n in CHANGE_NAMES]
                + [f"{n}_window_max" for n in CHANGE_NAMES])
    if group == "anomaly":
        return ["anomaly_score"]
    return [f"embedding_{i}" for i in range(2048)]


# --- inputs -------------------------------------------------------------------------------

def motion_rows(spark: SparkSession, config: Config) -> DataFrame:
    """The ``motion`` rows of the current motion settings."""
    return (storage.read(spark, config, "motion")
            .where(F.col("motion_version") == M.configured_identity(config)))


def _camera_rows(spark: SparkSession, config: Config, videos: Optional[DataFrame]) -> DataFrame:
    """Motion rows of every video of the cameras of ``videos`` (all when None): the history
    that backgrounds and anomaly statistics are computed from."""
    rows = motion_rows(spark, config).select("video", "second", "camera", "motion", "thumb")
    if videos is None:
        return rows
    cameras = rows.join(videos.select("video"), "video", "left_semi").select("camera").distinct()
    return rows.join(F.broadcast(cameras), "camera", "left_semi")


# --- background and anomaly -------------------------------------------------------------------

_STATS = T.StructType([T.StructField("camera", T.StringType()),
                       T.StructField("_seconds", T.LongType()),
                       T.StructField("background", T.BinaryType()),
                       T.StructField("_med", T.ArrayType(T.DoubleType())),
                       T.StructField("_mad", T.ArrayType(T.DoubleType()))])


def _lower_median(values: np.ndarray) -> np.ndarray:
    """Per column, the smallest value with at least half the values at or below it (Spark's
    ``percentile_approx(x, 0.5)``, which is exact at these sizes)."""
    ranked = np.sort(values, axis=0)
    return ranked[int(np.ceil(0.5 * len(ranked))) - 1]


def _thumb_difference(thumbs, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean absolute grey-level difference / 255, share off by more than 25 levels) of each
    thumbnail against ``background``."""
    stack = np.stack([np.frombuffer(t, np.uint8) for t in thumbs]).astype(np.int16)
    d = np.abs(stack - background.astype(np.int16))
    return d.mean(axis=1) / 255.0, (d > 25).mean(axis=1)


def _stats_fn(background_samples: int, stats_samples: int):
    def stats(key: tuple, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("_n")
        thumbs = [t for t in frame["thumb"].iloc[:background_samples] if t is not None]
        sizes = {len(t) for t in thumbs}
        if not thumbs or len(sizes) != 1:
            return pd.DataFrame({"camera": [key[0]], "_seconds": [int(frame["_total"].iloc[0])],
                                 "background": [None], "_med": [None], "_mad": [None]})
        background = np.median(np.stack([np.frombuffer(t, np.uint8) for t in thumbs]), axis=0)
        background = background.round().astype(np.uint8)
        med = mad = None
        sample = frame.iloc[:stats_samples]
        sample = sample[sample["thumb"].map(lambda t: t is not None and len(t) == background.size)]
        if stats_samples and len(sample):
            diff, share = _thumb_difference(sample["thumb"], background)
            activity = np.column_stack([np.stack(sample["motion"].map(np.asarray)), diff, share])
            med = _lower_median(activity)
            mad = _lower_median(np.abs(activity - med))
            med, mad = med.tolist(), mad.tolist()
        return pd.DataFrame({"camera": [key[0]], "_seconds": [int(frame["_total"].iloc[0])],
                             "background": [background.tobytes()], "_med": [med], "_mad": [mad]})
    return stats


def camera_statistics(history: DataFrame, background_samples: int,
                      stats_samples: int) -> DataFrame:
    """Per camera of ``history`` (camera, video, second, motion, thumb): ``_seconds`` (how many
    it has), ``background`` (the per-pixel median thumbnail of ``background_samples`` of its
    seconds) and, when ``stats_samples`` > 0, ``_med`` and ``_mad`` (median and median absolute
    deviation of each activity value, ``_activity``, over ``stats_samples`` of its seconds).
    The seconds are a fixed sample spread over the camera's videos (the smallest hashes of video
    and second), so a camera's statistics cost the same whatever its history, and one pandas
    pass per camera computes them all."""
    by_camera = Window.partitionBy("camera")
    pick = by_camera.orderBy(F.xxhash64("video", "second"), "video", "second")
    sampled = (history.select("camera", "video", "second", "motion", "thumb")
               .withColumn("_n", F.row_number().over(pick))
               .withColumn("_total", F.count(F.lit(1)).over(by_camera))
               .where(F.col("_n") <= max(background_samples, stats_samples)))
    return (sampled.select("camera", "motion", "thumb", "_n", "_total").groupBy("camera")
            .applyInPandas(_stats_fn(background_samples, stats_samples), _STATS))


def backgrounds(history: DataFrame, samples: int) -> DataFrame:
    """(camera, background): the per-pixel median thumbnail of up to ``samples`` seconds of each
    camera, picked by a hash of (video, second), so spread over its videos and stable."""
    return camera_statistics(history, samples, 0).select("camera", "background")


@F.pandas_udf(_BACKGROUND)
def _background_difference(thumb: pd.Series, background: pd.Series) -> pd.DataFrame:
    diff, changed = [], []
    for t, b in zip(thumb, background):
        if t is None or b is None or len(t) != len(b):
            diff.append(None)
            changed.append(None)
            continue
        mean, share = _thumb_difference([t], np.frombuffer(b, np.uint8))
        diff.append(float(mean[0]))
        changed.append(float(share[0]))
    return pd.DataFrame({"background_diff": diff, "background_changed_share": changed})


def with_background(rows: DataFrame, background: DataFrame) -> DataFrame:
    """``rows`` (with camera, thumb) plus ``background_diff`` and ``background_changed_share``
    against ``background`` (camera, background)."""
    joined = rows.join(F.broadcast(background.select("camera", "background")), "camera", "left")
    diff = _background_difference(F.col("thumb"), F.col("background"))
    return (joined.withColumn("_bg", diff)
            .withColumn("background_diff", F.col("_bg.background_diff"))
            .withColumn("background_changed_share", F.col("_bg.background_changed_share"))
            .drop("_bg", "background"))


def _activity(df: DataFrame) -> DataFrame:
    """The values the anomaly score looks at: motion then the two background differences."""
    return df.withColumn("_activity", F.concat(
        F.transform("motion", lambda x: x.cast("double")),
        F.array(F.coalesce("background_diff", F.lit(0.0)),
                F.coalesce("background_changed_share", F.lit(0.0)))))


def anomaly_scores(rows: DataFrame, stats: DataFrame, min_seconds: int) -> DataFrame:
    """``rows`` (with camera, motion, background columns) plus ``anomaly_score``: the mean of the
    positive robust z-scores of its activity against its camera's statistics (``stats``, of
    ``camera_statistics``); null for a camera with fewer than ``min_seconds`` seconds."""
    n = N_MOTION + 2
    known = (stats.where((F.col("_seconds") >= min_seconds) & F.col("_med").isNotNull())
             .select("camera", "_med", "_mad"))
    scored = _activity(rows).join(F.broadcast(known), "camera", "left")
    z = F.zip_with(
        F.zip_with("_activity", "_med", lambda x, m: x - m),
        F.zip_with("_mad", "_med", lambda d, m: 1.4826 * d + 1e-3 * (1.0 + F.abs(m))),
        lambda dx, s: F.least(F.greatest(dx / s, F.lit(0.0)), F.lit(_Z_CLIP)))
    score = F.aggregate(z, F.lit(0.0), lambda acc, v: acc + v) / F.lit(float(n))
    return (scored.withColumn("anomaly_score", F.when(F.col("_med").isNotNull(), score))
            .drop("_activity", "_med", "_mad"))


# --- context across seconds ----------------------------------------------------------------------

def _window(context: int):
    return Window.partitionBy("video").orderBy("second").rangeBetween(-context, context)


def _with_context(df: DataFrame, column: str, size: int, context: int, out: str) -> DataFrame:
    """``out`` = ``column`` (an array of ``size`` numbers), then its element-wise mean and max over
    the window of seconds [s - context, s + context] of the same video. One window expression
    collects the window's arrays (in the order of the seconds, as ``avg`` and ``max`` over the
    window would add them: the same doubles) and higher-order functions reduce them, so the plan
    stays small whatever ``size`` is (a window aggregate per value made plan analysis cost
    seconds per query)."""
    as_double = F.transform(column, lambda x: x.cast("double"))
    window = F.collect_list(as_double).over(_window(context))
    index = F.sequence(F.lit(0), F.lit(size - 1))
    mean = F.transform(index, lambda i: F.try_divide(
        F.aggregate("_window", F.lit(0.0), lambda acc, row: acc + row[i]), F.size("_window")))
    peak = F.transform(index, lambda i: F.array_max(F.transform("_window", lambda row: row[i])))
    return (df.withColumn("_window", window)
            .withColumn(out, array_to_vector(F.concat(as_double, mean, peak)))
            .drop("_window"))


def _cosine_distance(a, b):
    dot = F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda s, v: s + v)
    na = F.aggregate(a, F.lit(0.0), lambda s, v: s + v * v)
    nb = F.aggregate(b, F.lit(0.0), lambda s, v: s + v * v)
    return F.when((na > 0) & (nb > 0), 1.0 - dot / F.sqrt(na * nb))


def _with_embedding_change(df: DataFrame) -> DataFrame:
    """Cosine distances of the embedding to the previous and the next second (the other one when
    a video's first or last second has no neighbour; 0 for a single second)."""
    w = Window.partitionBy("video").orderBy("second")
    prev_ok = F.lag("second").over(w) == F.col("second") - 1
    next_ok = F.lead("second").over(w) == F.col("second") + 1
    prev = F.when(prev_ok, _cosine_distance(F.lag("embedding").over(w), F.col("embedding")))
    nxt = F.when(next_ok, _cosine_distance(F.col("embedding"), F.lead("embedding").over(w)))
    return (df.withColumn("_prev", prev).withColumn("_next", nxt)
            .withColumn("embedding_distance_previous", F.coalesce("_prev", "_next", F.lit(0.0)))
            .withColumn("embedding_distance_next", F.coalesce("_next", "_prev", F.lit(0.0)))
            .drop("_prev", "_next"))


# --- the assembly ----------------------------------------------------------------------------

def assemble(spark: SparkSession, config: Config, groups, *, weights: Optional[str] = None,
             videos: Optional[DataFrame] = None, anomaly_score: bool = True) -> DataFrame:
    """(video, second, camera, one vector column per group of ``groups``, anomaly_score) for every
    second of ``videos`` (a DataFrame with a ``video`` column; all videos when None) that has the
    inputs of the groups: motion rows of the current motion settings, and embeddings of
    ``weights`` for ``appearance`` and ``change``. Context windows see every stored second of the
    video, so score and train get the same values for the same second.

    ``anomaly_score=False`` leaves the column null unless the ``anomaly`` group needs it (the
    camera statistics behind it are the costly part: training a model without that group needs
    neither them nor, without ``change``, the camera backgrounds)."""
    f = config.features
    groups = tuple(groups)
    history = _camera_rows(spark, config, videos)
    rows = history if videos is None else history.join(videos.select("video"), "video", "left_semi")
    if "appearance" in groups or "change" in groups:
        if weights is None:
            raise ValueError("appearance and change need the embeddings' weights identity")
        emb = (storage.read(spark, config, "features").where(F.col("weights") == weights)
               .select("video", "second", F.col("features").alias("embedding")))
        rows = rows.join(emb, ["video", "second"], "inner")
    anomaly = anomaly_score or "anomaly" in groups
    if anomaly or "change" in groups:
        stats = camera_statistics(history, int(f.background_samples),
                                  int(f.anomaly_history_seconds) if anomaly else 0
                                  ).localCheckpoint()          # a row per camera
        rows = with_background(rows, stats)
    if anomaly:
        rows = anomaly_scores(rows, stats, int(f.anomaly_min_seconds))
    else:
        rows = rows.withColumn("anomaly_score", F.lit(None).cast("double"))
    context = int(f.context_seconds)
    columns = []
    if "motion" in groups:
        rows = _with_context(rows, "motion", N_MOTION, context, "motion_vector")
        columns.append(F.col("motion_vector").alias("motion"))
    if "appearance" in groups:
        columns.append(array_to_vector(F.col("embedding")).alias("appearance"))
    if "change" in groups:
        rows = _with_embedding_change(rows)
        rows = rows.withColumn("_change", F.array(
            *[F.coalesce(F.col(c).cast("double"), F.lit(0.0)) for c in CHANGE_NAMES]))
        rows = _with_context(rows, "_change", len(CHANGE_NAMES), context, "change_vector")
        columns.append(F.col("change_vector").alias("change"))
    if "anomaly" in groups:
        columns.append(array_to_vector(F.array(F.coalesce("anomaly_score", F.lit(0.0))))
                       .alias("anomaly"))
    return rows.select("video", "second", "camera", *columns, "anomaly_score")
