"""Reviewing flagged clips: what the notebook, the nightly report and ``vidspark review`` call.

* ``ranking`` lists the segments still to review (``to_review``, the same as the SQL view
  ``segments_to_review``): best first, with the latest verdict and, where the labels know it,
  the true label of the peak second.
* ``peak_frame_grid``, ``timelines`` and ``clip`` draw the peak frames, the per-video
  ``prob_suspicious`` timelines and a playable clip of a segment.
* ``record`` stores a verdict (``confirmed`` / ``rejected``) for a segment or one second in the
  ``reviews`` table (one row per target and reviewer: a reviewer who changes their mind replaces
  their verdict). The labels stage turns verdicts into labels (``labels.verdict_labels``): a verdict
  labels every second it covers (a segment's gap seconds included), overrides an imported label
  of the same second, and the latest verdict wins.
"""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import html
import logging
import os
import tempfile
from typing import Iterable, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config
from vidspark.errors import VidsparkError
from vidspark.media import clips as media
from vidspark.storage.schemas import REVIEWS

log = logging.getLogger(__name__)

VERDICTS = ("confirmed", "rejected")
DEFAULT_TOP_N = 10
MAX_TIMELINES = 8                    # videos drawn by ``timelines``


class ReviewError(VidsparkError, ValueError):
    """A verdict cannot be recorded (unknown segment or second, bad verdict)."""


class HTML:
    """An HTML fragment that Jupyter displays (``_repr_html_``); ``str()`` gives the markup."""

    def __init__(self, markup: str):
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup


class Picture:
    """A matplotlib figure that Jupyter displays as PNG whatever the plotting backend."""

    def __init__(self, figure):
        self.figure = figure

    def png(self) -> bytes:
        return media.figure_png(self.figure)

    def _repr_png_(self) -> bytes:
        return self.png()


# --- verdicts ------------------------------------------------------------------------------------

def default_reviewer() -> str:
    return os.environ.get("VIDSPARK_REVIEWER") or getpass.getuser()


def review_id(target: str, reviewer: str) -> str:
    return hashlib.sha256(f"{target}|{reviewer}".encode()).hexdigest()[:16]


def record(spark: SparkSession, config: Config, verdict: str, *, segment_id: str | None = None,
           video: str | None = None, second: int | None = None, reviewer: str | None = None,
           note: str | None = None) -> dict:
    """Store a verdict for a segment (``segment_id``) or one second (``video`` and ``second``);
    returns the stored row. Recording the same target again as the same reviewer replaces the
    earlier verdict (no duplicates)."""
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    if (segment_id is None) == (video is None):
        raise ReviewError("give either a segment id, or a video and a second")
    reviewer = (reviewer or default_reviewer()).strip()
    if not reviewer:
        raise ReviewError("reviewer must not be empty")
    if segment_id is not None:
        seg = (storage.read(spark, config, "segments").where(F.col("segment_id") == segment_id)
               .select("video", "start_second", "end_second", "model_id", "model_version").first())
        if seg is None:
            raise ReviewError(f"no segment {segment_id!r} in the segments table (list the "
                              "segments to review: vidspark review --config ... --list)")
        row = dict(segment_id=segment_id, video=seg.video, start_second=seg.start_second,
                   end_second=seg.end_second, model_id=seg.model_id,
                   model_version=seg.model_version)
        target = f"segment:{segment_id}"
    else:
        if second is None or int(second) != second or int(second) < 0:
            raise ReviewError(f"second must be a non-negative integer; got {second!r}")
        second = int(second)
        known = (storage.read(spark, config, "frames")
                 .where((F.col("video") == video) & (F.col("second") == second)).count())
        if not known:
            raise ReviewError(f"video {video!r} has no frame at second {second} in the frames table")
        pred = (storage.read(spark, config, "predictions")
                .where((F.col("video") == video) & (F.col("second") == second))
                .select("model_id", "model_version").first())
        row = dict(segment_id=None, video=video, start_second=second, end_second=second,
                   model_id=pred.model_id if pred else None,
                   model_version=pred.model_version if pred else None)
        target = f"second:{video}:{second}"
    row.update(review_id=review_id(target, reviewer), verdict=verdict, reviewer=reviewer,
               note=note)
    df = (spark.createDataFrame([row], schema=_without(REVIEWS, "reviewed_at"))
          .withColumn("reviewed_at", F.current_timestamp()))
    storage.upsert(spark, config, "reviews", df)
    stored = (storage.read(spark, config, "reviews")
              .where(F.col("review_id") == row["review_id"]).first().asDict())
    log.info("review: %s %s %s seconds %d-%d by %s", verdict, row["video"],
             f"segment {segment_id}" if segment_id else "second", row["start_second"],
             row["end_second"], reviewer)
    return stored


def _without(schema, name: str):
    from pyspark.sql import types as T

    return T.StructType([f for f in schema.fields if f.name != name])


# --- what to show ---------------------------------------------------------------------------------

def to_review(spark: SparkSession, config: Config) -> DataFrame:
    """The segments of ``config``'s store still to review, best first: what the SQL view
    ``segments_to_review`` shows (every segment whose latest verdict is not ``rejected``, with
    ``verdict``, ``reviewer`` and ``reviewed_at`` of its latest verdict)."""
    latest = Window.partitionBy("segment_id").orderBy(F.col("reviewed_at").desc(), "review_id")
    verdicts = (storage.read(spark, config, "reviews").where(F.col("segment_id").isNotNull())
                .withColumn("n", F.row_number().over(latest)).where(F.col("n") == 1)
                .select("segment_id", "verdict", "reviewer", "reviewed_at"))
    return (storage.read(spark, config, "segments").join(verdicts, "segment_id", "left")
            .where(F.col("verdict").isNull() | (F.col("verdict") != "rejected"))
            .orderBy(F.col("peak_prob").desc(), "video", "start_second"))


def ranking(spark: SparkSession, config: Config, top_n: int | None = DEFAULT_TOP_N) -> pd.DataFrame:
    """The top segments to review (``to_review``: rejected ones hidden), with the true label of
    the peak second where one exists (``peak_label``, ``peak_label_source``)."""
    segs = to_review(spark, config)
    if top_n:
        segs = segs.limit(int(top_n))
    labels = storage.read(spark, config, "labels").select(
        "video", F.col("second").alias("peak_second"), F.col("label").alias("peak_label"),
        F.col("source").alias("peak_label_source"))
    out = (segs.join(labels, ["video", "peak_second"], "left")
           .orderBy(F.col("peak_prob").desc(), "video", "start_second")
           .select("segment_id", "video", "start_second", "end_second", "seconds",
                   "flagged_seconds", "peak_prob", "mean_prob", "peak_second", "peak_frame_name",
                   "peak_label", "peak_label_source", "verdict", "reviewer", "model_id",
                   "model_version", "computed_at")
           .toPandas())
    out["peak_label"] = out["peak_label"].astype("Int64")
    return out


def _frames(spark: SparkSession, config: Config, keys: Iterable[tuple[str, int]]) -> dict:
    keys = sorted(set(keys))
    if not keys:
        return {}
    wanted = spark.createDataFrame(keys, "video string, second int")
    rows = (storage.read(spark, config, "frames").join(wanted, ["video", "second"], "left_semi")
            .select("video", "second", "jpeg").collect())
    return {(r.video, r.second): bytes(r.jpeg) for r in rows}


def peak_frames(spark: SparkSession, config: Config, segments: pd.DataFrame) -> dict:
    """{segment_id: JPEG bytes of its peak frame}."""
    jpegs = _frames(spark, config, zip(segments.video, segments.peak_second.astype(int)))
    return {r.segment_id: jpegs.get((r.video, int(r.peak_second))) for r in segments.itertuples()}


def _label_text(value) -> str:
    return "no label" if pd.isna(value) else f"label {int(value)}"


def peak_frame_grid(spark: SparkSession, config: Config, segments: pd.DataFrame,
                    columns: int = 4) -> Picture:
    """The peak frame of every segment, titled with video, seconds, probability and true label."""
    from matplotlib.figure import Figure

    jpegs = peak_frames(spark, config, segments)
    n = max(1, len(segments))
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.4 * cols, 3.0 * rows))
    for i, seg in enumerate(segments.itertuples()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if jpegs.get(seg.segment_id):
            ax.imshow(media.rgb(jpegs[seg.segment_id]))
        ax.set_title(f"#{i + 1} {seg.video}\n{seg.start_second}-{seg.end_second}s, peak "
                     f"{seg.peak_second}s p={seg.peak_prob:.2f}\n{_label_text(seg.peak_label)}",
                     fontsize=8)
    if not len(segments):
        ax = fig.add_subplot(1, 1, 1)
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no segments to review", ha="center", va="center")
    fig.tight_layout()
    return Picture(fig)


def timeline_data(spark: SparkSession, config: Config, videos: Sequence[str]) -> dict:
    """{video: (predictions, segments, labels, threshold)} as pandas, for ``timeline_figure``."""
    videos = list(dict.fromkeys(videos))
    if not videos:
        return {}
    pick = F.col("video").isin(videos)
    preds = (storage.read(spark, config, "predictions").where(pick)
             .select("video", "second", "prob_suspicious", "prediction", "model_id").toPandas())
    segs = (storage.read(spark, config, "segments").where(pick)
            .select("segment_id", "video", "start_second", "end_second").toPandas())
    labels = (storage.read(spark, config, "labels").where(pick)
              .select("video", "second", "label", "source").toPandas())
    thresholds = {r.model_id: r.threshold for r in storage.read(spark, config, "models")
                  .select("model_id", "threshold").collect()}
    out = {}
    for v in videos:
        p = preds[preds.video == v].sort_values("second")
        model = p.model_id.iloc[0] if len(p) else None
        out[v] = (p, segs[segs.video == v], labels[labels.video == v], thresholds.get(model))
    return out


def draw_timeline(ax, video: str, preds: pd.DataFrame, segs: pd.DataFrame, labels: pd.DataFrame,
                  threshold: float | None, highlight: str | None = None) -> None:
    """``prob_suspicious`` over seconds, the threshold line, flagged segments shaded (the
    ``highlight`` segment darker) and labelled seconds marked."""
    for s in segs.itertuples():
        strong = s.segment_id == highlight
        ax.axvspan(s.start_second - 0.5, s.end_second + 0.5, color="tab:orange",
                   alpha=0.45 if strong else 0.2, lw=0,
                   label="flagged segment" if s.Index == segs.index[0] else None)
    ax.plot(preds.second, preds.prob_suspicious, color="tab:blue", lw=1.4, marker=".", ms=3,
            label="prob_suspicious")
    if threshold is not None and pd.notna(threshold):
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    pos, neg = labels[labels.label == 1], labels[labels.label == 0]
    if len(pos):
        ax.scatter(pos.second, [1.04] * len(pos), marker="v", color="black", s=14,
                   label="labelled suspicious", clip_on=False)
    if len(neg):
        ax.scatter(neg.second, [-0.04] * len(neg), marker="^", color="tab:gray", s=10,
                   label="labelled normal", clip_on=False)
    ax.set_ylim(-0.08, 1.08)
    ax.set_xlim(-0.5, max(preds.second.max() if len(preds) else 0, 1) + 0.5)
    ax.set_ylabel("prob")
    ax.set_title(video, fontsize=9, loc="left")
    ax.grid(alpha=0.3)


def timeline_figure(video: str, data: tuple, highlight: str | None = None,
                    size=(9.0, 2.2)) -> Picture:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    ax = fig.add_subplot(1, 1, 1)
    draw_timeline(ax, video, *data, highlight=highlight)
    ax.set_xlabel("second")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return Picture(fig)


def timelines(spark: SparkSession, config: Config, segments: pd.DataFrame,
              max_videos: int = MAX_TIMELINES) -> Picture:
    """One timeline per video of ``segments`` (best first, at most ``max_videos``), stacked."""
    from matplotlib.figure import Figure

    videos = list(dict.fromkeys(segments.video))[:max_videos]
    data = timeline_data(spark, config, videos)
    fig = Figure(figsize=(10, 2.3 * max(1, len(videos))))
    for i, v in enumerate(videos):
        ax = fig.add_subplot(len(videos), 1, i + 1)
        draw_timeline(ax, v, *data[v])
        if i == 0:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if videos:
        fig.axes[-1].set_xlabel("second")
    fig.tight_layout()
    return Picture(fig)


def clip(spark: SparkSession, config: Config, segment_id: str) -> media.Clip:
    """A playable clip of a segment (padded by ``media.CLIP_PAD_SECONDS``): H.264 MP4 cut from
    the source video, or an animated GIF of the stored frames when that is impossible."""
    seg = (storage.read(spark, config, "segments").where(F.col("segment_id") == segment_id)
           .join(storage.read(spark, config, "videos").select("video", "path", "fps", "duration"),
                 "video", "left").first())
    if seg is None:
        raise ReviewError(f"no segment {segment_id!r} in the segments table")
    start, end = media.clip_window(seg.start_second, seg.end_second, seg.duration)
    try:
        if not seg.path or not os.path.isfile(seg.path):
            raise media.MediaError(f"source video not found: {seg.path}")
        return media.source_clip(seg.path, start, end, seg.fps)
    except Exception as exc:  # any decoding or encoding failure falls back to stored frames
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("clip of segment %s: %s; showing the stored frames", segment_id, reason)
        jpegs = _frames(spark, config, [(seg.video, s) for s in range(int(start), int(end))])
        ordered = [jpegs[k] for k in sorted(jpegs)]
        return media.frames_clip(ordered, start, end,
                                 f"stored one-per-second frames ({reason})")


def clips(spark: SparkSession, config: Config, segments: pd.DataFrame, n: int = 3) -> HTML:
    """Clips of the first ``n`` segments, each under a caption."""
    parts = []
    for seg in segments.head(n).itertuples():
        c = clip(spark, config, seg.segment_id)
        parts.append(f'<figure style="display:inline-block;margin:4px">{c.html(seg.video)}'
                     f'<figcaption>{html.escape(seg.video)} {seg.start_second}-'
                     f'{seg.end_second}s (clip {c.start_second:g}-{c.end_second:g}s), '
                     f'peak p={seg.peak_prob:.2f}, segment {seg.segment_id}</figcaption></figure>')
    return HTML("".join(parts) or "<p>no segments to review</p>")


def record_verdict(spark: SparkSession, config: Config, segment_id: str | None,
                   verdict: str | None = None, reviewer: str | None = None,
                   note: str | None = None) -> HTML:
    """The notebook's verdict call: with a ``verdict`` it records it; without, it shows how and
    the verdicts the segment already has."""
    if segment_id is None:
        return HTML("<p>no segment to review</p>")
    if verdict is None:
        rows = (storage.read(spark, config, "reviews").where(F.col("segment_id") == segment_id)
                .select("verdict", "reviewer", "reviewed_at", "note").toPandas())
        have = rows.to_html(index=False) if len(rows) else "<p>no verdicts yet</p>"
        return HTML(f"<p>Segment <code>{html.escape(segment_id)}</code>: set VERDICT to "
                    "'confirmed' or 'rejected' and run the cell again, or run "
                    f"<code>vidspark review --config ... --segment {html.escape(segment_id)} "
                    f"--verdict rejected</code>.</p>{have}")
    row = record(spark, config, verdict, segment_id=segment_id, reviewer=reviewer, note=note)
    return HTML(f"<p>recorded: {html.escape(row['verdict'])} for segment "
                f"<code>{html.escape(segment_id)}</code> ({html.escape(row['video'])} "
                f"{row['start_second']}-{row['end_second']}s) by {html.escape(row['reviewer'])} "
                f"at {row['reviewed_at']}; the next training run uses it as labels</p>")


# --- notebook set-up -----------------------------------------------------------------------------

@contextlib.contextmanager
def _cwd(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _stderr_to(path: str):
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def find_config(path: str) -> tuple[str, str]:
    """(config file, the folder its relative paths are resolved against). A relative config path
    is looked up from the current folder and its parents (a notebook runs in ``notebooks/``), and
    the folder where it is found plays the role of the project folder jobs run from."""
    if os.path.isabs(path):
        return path, os.getcwd()
    here = os.getcwd()
    for _ in range(4):
        if os.path.isfile(os.path.join(here, path)):
            return os.path.join(here, path), here
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    raise FileNotFoundError(f"config {path!r} not found from {os.getcwd()} or its parents")


def notebook_session(config_path: str | None = None, top_n: int | None = None):
    """(spark, config, top_n) for the review notebook from ``$VIDSPARK_CONFIG`` (default
    ``conf/demo.yaml``) and ``$VIDSPARK_TOP_N`` (default 10)."""
    from vidspark.config import load_config
    from vidspark.session import build_spark

    path = config_path or os.environ.get("VIDSPARK_CONFIG") or "conf/demo.yaml"
    top_n = int(top_n or os.environ.get("VIDSPARK_TOP_N") or DEFAULT_TOP_N)
    found, base = find_config(path)
    with _cwd(base):
        config = load_config(found)
    # The JVM inherits the kernel's stderr: its start-up chatter (Ivy resolving the Delta jars,
    # Spark's warnings) goes to a log file instead of the notebook.
    with _stderr_to(os.path.join(tempfile.gettempdir(), "vidspark-notebook-spark.log")):
        spark = build_spark(config, app_name="vidspark-review")
    spark.sparkContext.setLogLevel("ERROR")
    return spark, config, top_n


def pick(segments: pd.DataFrame, rank: int = 1) -> str | None:
    """The segment_id at ``rank`` (1 = best) of a ``ranking`` table, or None."""
    return segments.segment_id.iloc[rank - 1] if len(segments) >= rank else None
