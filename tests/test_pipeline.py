"""Stages called as library functions on the session SparkSession."""
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from vidspark import pipeline, storage
from vidspark.media import motion as M, video as V
from vidspark.stages import extract, train
from vidspark.storage.schemas import TABLES_NAMES
from vidspark_demo import decode_index_frame, generate_demo_dataset, write_index_video
from tests.conftest import make_config
from tests.helpers import cosine


def test_long_video_is_split_into_ranges_decoded_by_separate_tasks(spark, tmp_path):
    (tmp_path / "score").mkdir()
    write_index_video(tmp_path / "train" / "cam 1" / "längs.mpg", 25 * 41 + 3)   # last frame 41.08 s
    config = make_config(tmp_path, "extract.split_seconds=10", "input.score_videos=null")
    storage.register_tables(spark, config)
    assert len(extract.discover(spark, config)[0]) == 1
    result = extract.run(spark, config)
    assert (result["ok"], result["frames"]) == (1, 42)
    rows = storage.read(spark, config, "frames").orderBy("second").collect()
    assert [r.second for r in rows] == list(range(42))
    got = [decode_index_frame(cv2.imdecode(np.frombuffer(r.jpeg, np.uint8), 1)) for r in rows]
    assert got == [s * 25 for s in range(42)]
    video = storage.read(spark, config, "videos").first()
    assert (video.video, video.frame_count, video.status) == ("cam 1/längs", 25 * 41 + 3, "ok")
    assert video.duration == pytest.approx(41.08)
    assert rows[0].frame_name == "längsframe0000.jpg"
    # unchanged on a re-run: nothing decoded again
    again = extract.run(spark, config)
    assert (again["new_videos"], again["skipped"]) == (0, 1)
    # changed content under the same path is re-processed and replaces the old frames
    write_index_video(tmp_path / "train" / "cam 1" / "längs.mpg", 25 * 5)
    changed = extract.run(spark, config)
    assert (changed["new_videos"], changed["frames"]) == (1, 5)
    assert storage.read(spark, config, "frames").count() == 5


def test_ranges_are_spread_over_tasks_by_video_seconds(spark):
    """Ranges are planned into at most four tasks per core with about equal video-seconds, and
    each planned task is one partition of what the decoder reads."""
    from pyspark.sql import functions as F

    videos = [{"video": f"v{i}", "path": f"/videos/v{i}.mpg", "header_frame_count": 25 * (10 + 7 * i),
               "fps": 25.0, "first_ts_ms": 0.0, "camera": "c"} for i in range(13)]
    ranges = extract._ranges(spark, videos, 30).withColumn("task", F.spark_partition_id()).toPandas()
    seconds = {v["video"]: v["header_frame_count"] / 25 for v in videos}
    ranges["seconds"] = [(seconds[v] if np.isnan(end) else end) - start
                         for v, start, end in zip(ranges.video, ranges.range_start, ranges.range_end)]
    planned = sum(len(V.plan_ranges(s, 30)) for s in seconds.values())
    assert len(ranges) == len(ranges.drop_duplicates(["video", "range_start"])) == planned > 13
    assert ranges.groupby("video").seconds.sum().to_dict() == seconds     # every second, once
    tasks = spark.sparkContext.defaultParallelism * 4
    per_task = ranges.groupby("task").seconds.sum()
    assert sorted(per_task.index) == list(range(tasks))                   # none empty
    assert per_task.max() - per_task.min() <= ranges.seconds.max()


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    info = generate_demo_dataset(str(root), seconds=4)
    info["root"] = str(root)
    return info


def _small_config(tmp_path, small_demo, *extra, fmt="delta"):
    for part in ("train", "score"):
        shutil.copytree(os.path.join(small_demo["root"], part), tmp_path / part)
    return make_config(tmp_path, f"input.labels={small_demo['labels']}", *extra, fmt=fmt)


def test_whole_pipeline_on_parquet_tables(spark, tmp_path, small_demo):
    config = _small_config(tmp_path, small_demo, fmt="parquet")
    storage.register_tables(spark, config)
    reports = pipeline.nightly(spark, config)
    assert reports["extract"]["frames"] == 15 * 4
    assert reports["featurize"]["featurized"] == 60
    assert reports["train"]["rows"] == 9 * 4
    assert reports["score"]["scored"] == 6 * 4
    first = {t: storage.read(spark, config, t).count() for t in TABLES_NAMES}
    again = pipeline.nightly(spark, config)
    assert again["featurize"]["featurized"] == 0 and again["score"]["scored"] == 0
    assert {t: storage.read(spark, config, t).count() for t in TABLES_NAMES} == first
    assert spark.sql("SELECT count(*) AS n FROM predictions").first().n == 24
    assert os.path.isdir(os.path.join(config.storage.root, "tables", "frames", "video=Walk1"))


def test_training_fails_clearly_without_both_classes(spark, tmp_path, small_demo):
    config = _small_config(tmp_path, small_demo)     # conf/test.yaml trains on motion alone
    storage.register_tables(spark, config)
    pipeline.run_stages(spark, config, ["extract"])

    def train_with_labels(name, text):
        path = tmp_path / name
        path.write_text(text)
        labelled = config.replace(f"input.labels={path}")
        pipeline.run_stages(spark, labelled, ["labels"])
        return train.run(spark, labelled)

    with pytest.raises(train.TrainingError, match="all 2 labelled frames have label 0"):
        train_with_labels("zero.csv", "video,second,label\nWalk1,0,0\nWalk1,1,0\n")
    with pytest.raises(train.TrainingError, match="no labelled frames"):
        train_with_labels("none.csv", "video,second,label\nNoSuchVideo,0,1\n")


def test_motion_of_stored_videos_is_measured_again_when_missing_or_outdated(spark, tmp_path):
    from tests.helpers import write_scene

    write_scene(tmp_path / "train" / "cam1" / "a.mpg", "fast", seconds=4)
    write_scene(tmp_path / "train" / "cam2" / "b.mpg", "slow", seconds=3)
    config = make_config(tmp_path, "input.score_videos=null", "extract.split_seconds=2")
    storage.register_tables(spark, config)
    first = extract.run(spark, config)
    assert (first["new_videos"], first["frames"], first["motion_remeasured"]) == (2, 7, 0)

    def motion(cfg):
        return {(r.video, r.second): (list(r.motion), r.pairs, r.camera, r.motion_version)
                for r in storage.read(spark, cfg, "motion").collect()}

    before = motion(config)
    assert len(before) == 7 and {v[2] for v in before.values()} == {"cam1", "cam2"}
    assert all(v[1] == 9 for v in before.values())
    frames_version = storage.table_version(spark, config, "frames")
    # a store whose motion is missing (written before motion existed, or lost)
    storage.delete_videos(spark, config, "motion", ["cam1/a"])
    again = extract.run(spark, config)
    assert (again["new_videos"], again["motion_remeasured"]) == (0, 1)
    assert motion(config) == before
    assert storage.table_version(spark, config, "frames") == frames_version   # frames kept
    # other motion settings: every stored video is measured again
    narrow = make_config(tmp_path, "input.score_videos=null", "extract.motion_width=96")
    third = extract.run(spark, narrow)
    assert third["motion_remeasured"] == 2
    assert {v[3] for v in motion(narrow).values()} == {f"{M.ALGORITHM}:w96:fps10"}
    assert extract.run(spark, narrow)["motion_remeasured"] == 0


def test_extraction_chunks_bound_the_video_seconds_per_commit():
    videos = [{"video": v, "header_frame_count": n, "fps": 25.0}
              for v, n in (("a", 250), ("b", 250), ("c", 1000), ("d", 100), ("e", 100))]
    chunks = extract.plan_chunks(videos, 20)
    # 10 + 10 s; a 40 s video alone (longer than a chunk); 4 + 4 s
    assert [[r["video"] for r in c] for c in chunks] == [["a", "b"], ["c"], ["d", "e"]]
    assert extract.plan_chunks([], 20) == []
    unknown = [{"video": "x", "header_frame_count": None, "fps": None}] * 3
    assert len(extract.plan_chunks(unknown, 20)) == 1


def test_featurize_stage_on_jax_gives_tensorflows_features(spark, tmp_path, small_demo,
                                                           weights_path):
    """featurizer.backend: jax runs the stage (recorded in its report) with the same feature
    identity, and its stored features agree with TensorFlow's on every frame (cosine >= 0.999)."""
    from vidspark.stages import featurize

    config = _small_config(tmp_path, small_demo, f"featurizer.weights={weights_path}",
                           "featurizer.backend=jax")
    storage.register_tables(spark, config)
    extract.run(spark, config)
    report = featurize.run(spark, config)
    assert (report["backend"], report["featurized"]) == ("jax", 60)
    jax_rows = {(r.video, r.second): np.array(r.features)
                for r in storage.read(spark, config, "features").collect()}
    frames = storage.read(spark, config, "frames").select("video", "second", "jpeg", "camera")
    tf_rows = {(r.video, r.second): np.array(r.features)
               for r in featurize.with_features(frames, weights=weights_path, identity=report["weights"],
                                                batch_size=32).collect()}
    assert jax_rows.keys() == tf_rows.keys() and len(jax_rows) == 60
    a = np.stack([jax_rows[k] for k in sorted(jax_rows)])
    b = np.stack([tf_rows[k] for k in sorted(jax_rows)])
    cos = cosine(a, b)
    assert cos.min() >= 0.999, cos.min()
    assert np.abs(a - b).max() > 0        # JAX really ran: its float rounding differs
    assert report["weights"] == featurize.resolve_weights(config)[1]   # backend not in identity


def test_seconds_that_show_nothing_new_reuse_the_last_embedded_seconds_features(spark, tmp_path):
    """featurizer.skip_unchanged: a still scene is embedded once; a block that appears and stays
    is embedded when it appears; a moving block every second. Every second keeps a row, and
    ``embedded_second`` says whose embedding it holds. Turned off, the reused rows are embedded
    again."""
    from vidspark.stages import featurize
    from tests.helpers import write_scene

    for kind in ("still", "appear", "fast"):
        write_scene(tmp_path / "score" / "cam" / f"{kind}.mpg", kind, seconds=6)
    config = make_config(tmp_path, "input.train_videos=null", "featurizer.chunk_frames=4")
    storage.register_tables(spark, config)
    extract.run(spark, config)
    report = featurize.run(spark, config)
    assert (report["featurized"], report["embedded"], report["reused"]) == (18, 9, 9)
    rows = {(r.video, r.second): r for r in storage.read(spark, config, "features").collect()}
    assert len(rows) == 18
    embedded = {v: [rows[(f"cam/{v}", s)].embedded_second for s in range(6)]
                for v in ("still", "appear", "fast")}
    # "appear": the block is there from 4.0 s, second 4's own frame
    assert embedded == {"still": [0] * 6, "appear": [0, 0, 0, 0, 4, 4], "fast": list(range(6))}
    for (video, second), r in rows.items():
        assert r.features == rows[(video, r.embedded_second)].features
    assert featurize.run(spark, config)["featurized"] == 0
    off = config.replace("featurizer.skip_unchanged=false")
    again = featurize.run(spark, off)
    assert (again["featurized"], again["embedded"], again["reused"]) == (9, 9, 0)
    rows = {(r.video, r.second): r for r in storage.read(spark, off, "features").collect()}
    assert len(rows) == 18 and all(r.embedded_second == s for (_, s), r in rows.items())
    still = np.array([rows[("cam/still", s)].features for s in range(6)])
    assert (cosine(still, np.repeat(still[:1], 6, axis=0)) > 0.99).all()   # nothing new, indeed


def test_a_decode_task_hands_over_small_batches_of_complete_seconds(tmp_path, monkeypatch):
    """A range's rows leave the task in batches of about ``extract.BATCH_BYTES`` of JPEG, each
    second with all its motion: cut into one-frame batches, the rows are those of one batch."""
    from tests.helpers import noise_video, write_scene

    noise = tmp_path / "noise.mp4"
    noise_video(noise, 6)
    scuffle = write_scene(tmp_path / "scuffle.mpg", "scuffle", seconds=5)

    def decode(path):
        p = V.probe(str(path))
        rec = {"video": "v", "path": str(path), "camera": None, "range_start": 0,
               "range_end": None, "first_ts_ms": p.first_ts_ms, "fps": p.fps}
        return list(extract._decode_range(rec, 90, 10.0, 1920))

    whole = {str(p): decode(p) for p in (noise, scuffle)}
    monkeypatch.setattr(extract, "BATCH_BYTES", 3 << 20)
    batches = decode(noise)
    jpegs = [b[b.kind == "frame"].jpeg.map(len).tolist() for b in batches[:-1]]
    assert [len(j) for j in jpegs] == [2, 2, 2]                       # ~1.9 MB frames
    assert all(sum(j) - j[-1] < extract.BATCH_BYTES for j in jpegs)
    assert batches[-1].kind.tolist() == ["range"] and batches[-1].frames.iloc[0] == 6
    monkeypatch.setattr(extract, "BATCH_BYTES", 1)
    small = pd.concat(decode(scuffle), ignore_index=True)
    ref = pd.concat(whole[str(scuffle)], ignore_index=True)
    assert len(decode(scuffle)) == 5 + 1 and len(whole[str(scuffle)]) == 2
    for column in ("second", "jpeg", "pairs", "thumb"):
        assert small[column].tolist() == ref[column].tolist(), column
    assert [list(m) for m in small.motion.dropna()] == [list(m) for m in ref.motion.dropna()]
