"""The nightly HTML report: one self-contained page (pictures, plots and clips embedded as
``data:`` URIs, no external files or scripts) with the run summary and a card per top segment.

Built from the tables by ``jobs/report.py`` (``make report``); every card carries the
``vidspark review`` command that records a verdict for its segment.
"""
from __future__ import annotations

import datetime as dt
import html
import logging
import os

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from vidspark import review, storage
from vidspark.config import Config, local_path
from vidspark.errors import VidsparkError
from vidspark.media import clips as media
from vidspark.storage import runs

log = logging.getLogger(__name__)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
     color:#1d232a;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6570;font-size:13px}
table{border-collapse:collapse;font-size:13px;background:#fff}
td,th{border:1px solid #d9dde2;padding:3px 8px;text-align:left}
.summary{display:flex;gap:12px;flex-wrap:wrap}
.figure{background:#fff;border:1px solid #d9dde2;border-radius:6px;padding:8px 14px}
.figure b{display:block;font-size:20px}
.segment-card{background:#fff;border:1px solid #d9dde2;border-radius:8px;margin:14px 0;
              padding:12px 16px;display:grid;grid-template-columns:330px 1fr;gap:12px 18px}
.segment-card h3{grid-column:1/3;margin:0;font-size:15px}
.segment-card .thumb{width:320px;border-radius:4px}
.segment-card .timeline{max-width:100%}
.segment-card .media{grid-column:1/3;display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
.clip{max-width:480px;border-radius:4px;background:#000}
.clip-note{font-size:12px;color:#8a5a00}
code{background:#eef0f3;padding:1px 4px;border-radius:3px;font-size:12px}
.verdict-confirmed{color:#1b7f3b;font-weight:600}
#render-check{color:#5b6570;font-size:12px;margin-top:24px}
"""

# Reports how the page rendered (cards, decoded pictures, playable clips) into #render-check:
# after `load` every picture is decoded or broken (naturalWidth 0); clips are waited for.
# what a reader sees at the bottom and what the headless-browser test reads back.
_SCRIPT = """
window.addEventListener('load', async () => {
  const cards = document.querySelectorAll('.segment-card');
  const imgs = [...document.images];
  const vids = [...document.querySelectorAll('video')];
  await Promise.all(vids.map(v => v.readyState >= 1 ? null : new Promise(done => {
    v.addEventListener('loadedmetadata', done, {once: true});
    v.addEventListener('error', done, {once: true});
    setTimeout(done, 8000);
  })));
  const out = document.getElementById('render-check');
  const okImgs = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const okVids = vids.filter(v => v.readyState >= 1 && v.duration > 0).length;
  Object.assign(out.dataset, {cards: cards.length, images: imgs.length, imagesOk: okImgs,
                              videos: vids.length, videosOk: okVids});
  out.textContent = `rendered ${cards.length} segment cards, ${okImgs}/${imgs.length} pictures, ` +
                    `${okVids}/${vids.length} playable clips`;
});
"""


def _e(value) -> str:
    return html.escape("" if value is None or (not isinstance(value, str) and pd.isna(value))
                       else str(value))


def last_run(spark: SparkSession, config: Config) -> pd.DataFrame:
    """The stages of the latest run that scored (or of the latest run), in order."""
    all_runs = storage.read(spark, config, "runs")
    whole = all_runs.where(F.col("stage") == runs.RUN)
    scoring = whole.where(F.col("job").contains("score") | (F.col("job") == "nightly"))
    latest = (scoring.orderBy(F.col("started_at").desc()).first()
              or whole.orderBy(F.col("started_at").desc()).first())
    if latest is None:
        return pd.DataFrame()
    rows = (all_runs.where(F.col("run_id") == latest.run_id)
            .select("run_id", "job", "stage", "status", "started_at", "ended_at", "rows_read",
                    "rows_written", "rows_skipped", "rows_quarantined", "error")
            .orderBy("started_at").toPandas())
    rows["seconds"] = (rows.ended_at - rows.started_at).dt.total_seconds().round(1)
    return rows


def totals(spark: SparkSession, config: Config) -> dict:
    preds = storage.read(spark, config, "predictions")
    p = preds.agg(F.count(F.lit(1)).alias("n"), F.sum("prediction").alias("flagged"),
                  F.countDistinct("video").alias("videos")).first()
    segs = storage.read(spark, config, "segments")
    newest = segs.agg(F.max("computed_at").alias("t")).first().t
    reviews = storage.read(spark, config, "reviews")
    return {"scored_videos": p.videos, "scored_seconds": p.n, "flagged_seconds": p.flagged or 0,
            "segments": segs.count(),
            "segments_tonight": segs.where(F.col("computed_at") == newest).count() if newest else 0,
            "to_review": review.to_review(spark, config).count(),
            "verdicts": reviews.count(),
            "rejected": reviews.where(F.col("verdict") == "rejected").count()}


def champion_row(spark: SparkSession, config: Config):
    return (storage.read(spark, config, "models").where(F.col("champion"))
            .orderBy(F.col("model_version").desc()).first())


def _card(i: int, seg, thumb: bytes | None, timeline_png: bytes, clip_html: str,
          config_hint: str) -> str:
    label = "no label" if pd.isna(seg.peak_label) else f"label {int(seg.peak_label)}"
    verdict = (f'<span class="verdict-{_e(seg.verdict)}">{_e(seg.verdict)} by '
               f'{_e(seg.reviewer)}</span>' if isinstance(seg.verdict, str) else "not reviewed")
    img = (f'<img class="thumb" alt="peak frame {_e(seg.peak_frame_name)}" '
           f'src="{media.data_uri(thumb, "image/jpeg")}">' if thumb else "<p>no stored frame</p>")
    command = (f"vidspark review --config {config_hint} --segment {seg.segment_id} "
               "--verdict confirmed|rejected")
    return f"""
<section class="segment-card" id="segment-{_e(seg.segment_id)}" data-segment-id="{_e(seg.segment_id)}">
  <h3>#{i} {_e(seg.video)}: seconds {seg.start_second}&ndash;{seg.end_second}
      (peak p={seg.peak_prob:.3f} at {seg.peak_second}s)</h3>
  <div>{img}<div class="meta">{_e(seg.peak_frame_name)} &middot; {label}</div></div>
  <div>
    <table>
      <tr><th>segment</th><td><code>{_e(seg.segment_id)}</code></td></tr>
      <tr><th>seconds</th><td>{seg.start_second}&ndash;{seg.end_second} ({seg.seconds} s,
          {seg.flagged_seconds} flagged)</td></tr>
      <tr><th>peak / mean prob</th><td>{seg.peak_prob:.3f} / {seg.mean_prob:.3f}</td></tr>
      <tr><th>model</th><td>{_e(seg.model_id)}</td></tr>
      <tr><th>verdict</th><td>{verdict}</td></tr>
    </table>
    <p class="meta">Record a verdict: <code>{_e(command)}</code></p>
  </div>
  <div class="media">
    <img class="timeline" alt="timeline of {_e(seg.video)}" src="{media.data_uri(timeline_png, "image/png")}">
    {clip_html}
  </div>
</section>"""


def build(spark: SparkSession, config: Config, top_n: int = review.DEFAULT_TOP_N,
          config_hint: str = "<config>") -> str:
    """The report page as one HTML string."""
    segs = review.ranking(spark, config, top_n)
    summary = totals(spark, config)
    stages = last_run(spark, config)
    champ = champion_row(spark, config)
    thumbs = {}
    for sid, jpeg in review.peak_frames(spark, config, segs).items():
        thumbs[sid] = media.thumbnail(jpeg) if jpeg else None
    data = review.timeline_data(spark, config, list(segs.video))
    cards = []
    for i, seg in enumerate(segs.itertuples(), start=1):
        timeline = review.timeline_figure(seg.video, data[seg.video], highlight=seg.segment_id,
                                          size=(7.5, 2.0)).png()
        clip = review.clip(spark, config, seg.segment_id)
        cards.append(_card(i, seg, thumbs.get(seg.segment_id), timeline, clip.html(seg.video),
                           config_hint))
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    figures = [("scored videos", summary["scored_videos"]),
               ("scored seconds", summary["scored_seconds"]),
               ("flagged seconds", summary["flagged_seconds"]),
               ("segments (latest scoring)", summary["segments_tonight"]),
               ("segments to review", summary["to_review"]),
               ("verdicts (rejected)", f"{summary['verdicts']} ({summary['rejected']})")]
    boxes = "".join(f'<div class="figure">{_e(k)}<b>{_e(v)}</b></div>' for k, v in figures)
    if champ is not None:
        model = (f"Champion <b>{_e(champ.model_id)}</b>: areaUnderPR "
                 f"{champ.area_under_pr or float('nan'):.3f}, areaUnderROC "
                 f"{champ.area_under_roc or float('nan'):.3f} (grouped CV), threshold "
                 f"{champ.threshold or float('nan'):.3f}, trained on {champ.train_rows} labelled "
                 f"seconds of {champ.train_videos} videos (registered {champ.created_at:%Y-%m-%d %H:%M}).")
    else:
        model = "No champion model yet."
    if len(stages):
        run = stages[stages.stage == runs.RUN].iloc[0] if (stages.stage == runs.RUN).any() else None
        head = (f"Run <code>{_e(stages.run_id.iloc[0])}</code> ({_e(stages.job.iloc[0])}): "
                f"{_e(run.status) if run is not None else '?'}, started {_e(stages.started_at.iloc[0])}")
        table = stages[stages.stage != runs.RUN][["stage", "status", "seconds", "rows_read",
                                                  "rows_written", "rows_skipped",
                                                  "rows_quarantined", "error"]].fillna("")
        run_html = f"<p>{head}</p>" + table.to_html(index=False, na_rep="", border=0)
    else:
        run_html = "<p>No run recorded yet.</p>"
    body = "".join(cards) or "<p>No segments to review.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vidspark report {now}</title>
<style>{_CSS}</style></head>
<body>
<h1>vidspark: suspicious segments</h1>
<div class="meta">Generated {now} from {_e(storage.root(config))}</div>
<h2>Run summary</h2>
<div class="summary">{boxes}</div>
<p>{model}</p>
{run_html}
<h2>Top {len(cards)} segments to review</h2>
<p class="meta">Best first by peak probability; segments rejected for their model version are
not shown. The timeline shades flagged segments (this card's darker), marks labelled seconds and
draws the threshold; clips start {media.CLIP_PAD_SECONDS} s before and end
{media.CLIP_PAD_SECONDS} s after the segment.</p>
{body}
<div id="render-check">rendering&hellip;</div>
<script>{_SCRIPT}</script>
</body></html>
"""


def default_path(config: Config) -> str:
    root = local_path(storage.root(config))
    if root is None:
        raise VidsparkError("storage.root is not a local folder: give the report a path with --out")
    return os.path.join(root, "reports", f"vidspark-report-{dt.date.today():%Y-%m-%d}.html")


def write(spark: SparkSession, config: Config, out: str | None = None,
          top_n: int = review.DEFAULT_TOP_N, config_hint: str = "<config>") -> str:
    """Build the report and write it to ``out`` (default: ``<storage.root>/reports/
    vidspark-report-<date>.html``, replaced by a re-run the same day); returns the path."""
    page = build(spark, config, top_n, config_hint)
    path = out or default_path(config)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, path)
    log.info("report: %s (%d KiB)", path, os.path.getsize(path) // 1024)
    return path


def render_check(dom: str) -> dict:
    """The figures the page's script wrote into ``#render-check`` (from a browser's DOM dump)."""
    import re

    m = re.search(r'<div id="render-check"([^>]*)>', dom)
    if not m:
        return {}
    found = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1)))
    return {k: int(v) for k, v in found.items() if v.isdigit()} | (
        {"text": re.sub("<[^>]+>", "", dom[m.end():dom.find("</div>", m.end())])})
