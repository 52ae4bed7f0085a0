"""Reviewing: verdicts in the ``reviews`` table, verdicts as labels (overriding imported labels,
latest wins, source recorded), rejected segments hidden, verdict -> label -> retrain, clips cut
from the source video. Real Spark, Delta, MLflow, OpenCV and ffmpeg."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import pandas as pd
import pytest
from pyspark.sql import functions as F

from vidspark import pipeline, review, storage
from vidspark.media import clips as media, video
from vidspark.storage import runs, tracking
from vidspark_demo import generate_demo_dataset
from tests.conftest import fresh_store, ROOT


@pytest.fixture(scope="module")
def scored(spark, featurized, tmp_path_factory):
    """A trained and scored copy of the small featurized store (segments computed)."""
    tmp = tmp_path_factory.mktemp("review")
    config = fresh_store(spark, featurized, tmp)
    pipeline.run_stages(spark, config, ["train", "score"])
    return {"tmp": tmp, "config": config}


def _labels_stage(spark, config) -> dict:
    """The labels stage as a job runs it (recorded in ``runs``, which its skip check reads)."""
    recorder = runs.RunRecorder(spark, config, runs.new_run_id(), "labels")
    reports = pipeline.run_stages(spark, config, ["labels"], recorder)
    recorder.finish(reports)
    return reports["labels"]


def _labels(spark, config) -> pd.DataFrame:
    return storage.read(spark, config, "labels").toPandas().set_index(["video", "second"])


def test_verdict_errors_are_clear(spark, scored):
    config = scored["config"]
    with pytest.raises(review.ReviewError, match="verdict must be one of"):
        review.record(spark, config, "maybe", segment_id="x")
    with pytest.raises(review.ReviewError, match="either a segment id, or a video"):
        review.record(spark, config, "rejected")
    with pytest.raises(review.ReviewError, match="no segment 'nope'"):
        review.record(spark, config, "rejected", segment_id="nope")
    video_name = storage.read(spark, config, "frames").first().video
    with pytest.raises(review.ReviewError, match="has no frame at second 999"):
        review.record(spark, config, "rejected", video=video_name, second=999)
    assert storage.read(spark, config, "reviews").count() == 0


def test_a_rejected_false_positive_becomes_a_negative_label_in_the_next_training_run(
        spark, featurized, tmp_path):
    from mlflow import MlflowClient

    config = fresh_store(spark, featurized, tmp_path)
    first = pipeline.run_stages(spark, config, ["train", "score"])["train"]
    ranked = review.ranking(spark, config, None)
    assert len(ranked), "the small store should flag something"
    # a false positive: a segment on a score video (never trained on before)
    videos = storage.read(spark, config, "videos").toPandas().set_index("video")
    on_score = ranked[ranked.video.map(videos.role) == "score"]
    assert len(on_score)
    seg = on_score.iloc[0]
    seconds = list(range(int(seg.start_second), int(seg.end_second) + 1))
    row = review.record(spark, config, "rejected", segment_id=seg.segment_id, reviewer="alice",
                        note="a person tying a shoelace")
    assert (row["video"], row["start_second"], row["end_second"]) == (
        seg.video, seg.start_second, seg.end_second)
    assert row["model_id"] == "vidspark-suspicious/1" and row["reviewed_at"] is not None
    # the same verdict again by the same reviewer replaces it: no duplicate
    review.record(spark, config, "rejected", segment_id=seg.segment_id, reviewer="alice")
    assert storage.read(spark, config, "reviews").count() == 1
    # not shown again for this model version (still in the segments table)
    assert seg.segment_id not in set(review.ranking(spark, config, None).segment_id)
    assert spark.table("segments").where(f"segment_id = '{seg.segment_id}'").count() == 1
    # the SQL view shows the same as the function the notebook and the report use
    view = {r.segment_id for r in spark.sql("SELECT segment_id FROM segments_to_review").collect()}
    assert view == set(review.to_review(spark, config).toPandas().segment_id) == (
        set(ranked.segment_id) - {seg.segment_id})

    # the labels stage turns the verdict into negative labels with the source recorded
    report = _labels_stage(spark, config)
    assert report["review_labels"] == len(seconds) and not report["skipped"]
    labels = _labels(spark, config)
    source = f"review:alice:{row['review_id']}"
    for s in seconds:
        assert labels.loc[(seg.video, s)].tolist() == [0, source]
    assert _labels_stage(spark, config)["skipped"] == 1          # nothing new: not re-imported

    # the next training run trains on them: a new version whose validation set holds them as 0
    trained = pipeline.run_stages(spark, config, ["train"])["train"]
    assert trained["refit"] and trained["model_version"] == 2
    uri = tracking.tracking_uri(config)
    client = MlflowClient(uri, registry_uri=uri)
    assert client.get_run(trained["run_id"]).data.params["data.review_labels"] == str(len(seconds))
    oof = tracking.validation_frame(client.get_model_version("vidspark-suspicious", "2"))
    mine = oof[(oof.video == seg.video) & oof.second.isin(seconds)]
    assert sorted(mine.second) == seconds
    assert (mine.label == 0).all() and (mine.source == source).all()
    assert trained["rows"] == first["rows"] + len(seconds)   # a score video's seconds joined
    print(f"rejected {seg.video} {seg.start_second}-{seg.end_second}s (peak {seg.peak_prob:.3f}): "
          f"{len(seconds)} negative labels; version 2 trained on {trained['rows']} rows "
          f"(version 1: {first['rows']}); out-of-fold prob of those seconds: "
          f"{mine.prob.round(3).tolist()}; decision: {trained['decision']}")


def test_a_verdict_overrides_the_imported_label_and_the_latest_verdict_wins(spark, scored):
    config = scored["config"]
    labels = _labels(spark, config)
    train_videos = set(storage.read(spark, config, "videos").where("role = 'train'")
                       .toPandas().video)
    key = next(k for k, r in labels.iterrows() if r.label == 0 and k[0] in train_videos)
    imported = labels.loc[key].source
    _labels_stage(spark, config)
    review.record(spark, config, "confirmed", video=key[0], second=key[1], reviewer="bob")
    assert not _labels_stage(spark, config)["skipped"]         # a new verdict is re-imported
    after = _labels(spark, config)
    assert after.loc[key].label == 1 and after.loc[key].source.startswith("review:bob:")
    assert len(after) == len(labels)                      # replaced, not added
    # a later verdict by someone else on the same second wins
    review.record(spark, config, "rejected", video=key[0], second=key[1], reviewer="carol")
    _labels_stage(spark, config)
    latest = _labels(spark, config)
    assert latest.loc[key].label == 0 and latest.loc[key].source.startswith("review:carol:")
    # the imported labels of every other second are untouched
    others = labels.drop(index=[key])
    assert latest.drop(index=[key]).sort_index().equals(others.sort_index())
    assert imported.startswith("file:")


def test_review_cli_records_a_verdict_and_lists_segments(spark, scored):
    config = scored["config"]
    root = config.storage.root
    base = [os.path.join(os.path.dirname(sys.executable), "vidspark"), "review", "--config", os.path.join(ROOT, "conf", "test.yaml"), "--set", f"storage.root={root}"]
    env = dict(os.environ, PYSPARK_SUBMIT_ARGS="--master local[1] pyspark-shell")
    listed = subprocess.run([*base, "--list"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr[-3000:]
    table = [line.split(",") for line in listed.stdout.strip().splitlines()]
    assert table[0][:3] == ["segment_id", "video", "start_second"] and len(table) > 1
    target = table[1][0]
    done = subprocess.run([*base, "--segment", target, "--verdict", "rejected", "--reviewer", "dana"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rejected" in done.stdout and "dana" in done.stdout
    stored = storage.read(spark, config, "reviews").where(f"segment_id = '{target}'").toPandas()
    assert stored[["verdict", "reviewer"]].values.tolist() == [["rejected", "dana"]]
    bad = subprocess.run([*base, "--segment", "nope", "--verdict", "rejected"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode != 0 and "vidspark review: no segment 'nope'" in bad.stderr


def test_clip_frames_follow_decoded_timestamps(tmp_path):
    info = generate_demo_dataset(str(tmp_path), seconds=8)
    path = info["train"][0]
    direct = list(video.clip_frames(path, 2, 5))                 # decoded from the start
    seeked = list(video.clip_frames(path, 5, 7, seek_margin=1))  # one seek, then forward
    assert len(direct) == 3 * 25 and len(seeked) == 2 * 25
    assert direct[0][0] == pytest.approx(2000) and direct[-1][0] == pytest.approx(4960)
    assert seeked[0][0] == pytest.approx(5000)
    # the frames are the ones sequential decoding gives at those timestamps
    whole = {round(ts): f for ts, f in video.clip_frames(path, 0, 8)}
    for ts, frame in direct[::10] + seeked[::10]:
        assert cv2.absdiff(frame, whole[round(ts)]).max() == 0
    mp4 = media.source_clip(path, 2, 5, 25.0)
    assert mp4.mime == "video/mp4" and mp4.data[4:8] == b"ftyp"
    out = tmp_path / "clip.mp4"
    out.write_bytes(mp4.data)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 75 and '<video class="clip"' in mp4.html()


def test_clip_falls_back_to_stored_frames_when_the_source_is_gone(spark, scored):
    config = scored["config"]
    # the top segment, whatever verdicts the tests before gave (a rejected one leaves the ranking)
    seg = storage.read(spark, config, "segments").orderBy(F.desc("peak_prob"), "segment_id").first()
    path = storage.read(spark, config, "videos").where(f"video = '{seg.video}'").first().path
    good = review.clip(spark, config, seg.segment_id)
    assert good.mime == "video/mp4" and not good.note
    assert os.path.isfile(path)
    # the source file is gone (moved away for a moment; the featurized clips are shared by the
    # test processes, and only this module cuts clips from them)
    os.rename(path, path + ".away")
    try:
        fallback = review.clip(spark, config, seg.segment_id)
    finally:
        os.rename(path + ".away", path)
    assert fallback.mime == "image/gif" and fallback.data[:6] in (b"GIF87a", b"GIF89a")
    assert "source video not found" in fallback.note and "<img" in fallback.html()
