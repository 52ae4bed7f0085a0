"""Feature groups built with Spark from the stored tables: cameras, motion context windows,
change across seconds (embeddings, camera background), the per-camera anomaly score, and the
label-free ranking of a camera that has no labels."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from vidspark import pipeline, storage
from vidspark.media import motion as M
from vidspark.stages import feature_sets, train
from vidspark_demo import generate_demo_dataset
from tests.conftest import make_config
from tests.helpers import write_scene

pytestmark = pytest.mark.slow
N = M.N_FEATURES


@pytest.fixture(scope="module")
def store(spark, tmp_path_factory):
    """Labelled demo clips (each file its own camera) to train on; in the score folder a camera
    `camA` (a still scene; one where a bag-like block appears at 6 s and stays) and a camera
    `camB` (16 quiet seconds with a burst of fast motion in seconds 12-13), neither labelled."""
    tmp = tmp_path_factory.mktemp("feature_sets")
    info = generate_demo_dataset(str(tmp / "demo"), seconds=6)
    shutil.copytree(tmp / "demo" / "train", tmp / "train")
    write_scene(tmp / "score" / "camA" / "still.mpg", "still", seconds=8)
    write_scene(tmp / "score" / "camA" / "appear.mpg", "appear", seconds=8)
    write_scene(tmp / "score" / "camB" / "burst.mpg", "burst", seconds=16)
    config = make_config(tmp, f"input.labels={info['labels']}", "features.anomaly_min_seconds=12")
    storage.register_tables(spark, config)
    reports = pipeline.nightly(spark, config)
    weights = reports["featurize"]["weights"]
    return {"config": config, "weights": weights, "reports": reports}


def _assembled(spark, store, groups, where=None):
    df = feature_sets.assemble(spark, store["config"], groups, weights=store["weights"])
    if where is not None:
        df = df.where(where)
    for g in groups:
        df = df.withColumn(g, vector_to_array(g))
    return {(r.video, r.second): r for r in df.collect()}


def test_every_table_carries_the_camera(spark, store):
    config = store["config"]
    videos = {r.video: r.camera for r in storage.read(spark, config, "videos").collect()}
    assert videos["camA/appear"] == videos["camA/still"] == "camA"
    assert videos["camB/burst"] == "camB" and videos["Walk1"] == "Walk1"   # a top-level file
    for table in ("frames", "motion", "features", "predictions"):
        rows = storage.read(spark, config, table).select("video", "camera").distinct().collect()
        assert rows and all(videos[r.video] == r.camera for r in rows), table


def test_motion_context_is_the_window_mean_and_max(spark, store):
    rows = _assembled(spark, store, ("motion",), F.col("video") == "camB/burst")
    raw = {(r.video, r.second): np.array(r.motion) for r in
           storage.read(spark, store["config"], "motion").where("video = 'camB/burst'").collect()}
    for (video, second), r in rows.items():
        v = np.array(r.motion)
        assert len(v) == 3 * N
        window = np.array([raw[(video, s)] for s in range(second - 2, second + 3) if (video, s) in raw])
        np.testing.assert_allclose(v[:N], raw[(video, second)], rtol=1e-6)
        np.testing.assert_allclose(v[N:2 * N], window.mean(axis=0), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(v[2 * N:], window.max(axis=0), rtol=1e-6)
    speed = [rows[("camB/burst", s)].motion[M.FEATURE_NAMES.index("speed_mean_mean")]
             for s in range(16)]
    assert min(speed[12:14]) > 0 and max(speed[:12] + speed[14:]) == 0


def test_change_sees_a_bag_left_behind(spark, store):
    rows = _assembled(spark, store, ("change",), F.col("camera") == "camA")
    names = feature_sets.CHANGE_NAMES
    bg = [rows[("camA/appear", s)].change[names.index("background_diff")] for s in range(8)]
    # the camera's background is the empty scene: the seconds with the block differ from it
    assert min(bg[6:]) > 5 * max(bg[:6])
    still = [rows[("camA/still", s)].change[names.index("background_diff")] for s in range(8)]
    assert max(still) < min(bg[6:]) / 5
    emb = [rows[("camA/appear", s)].change[names.index("embedding_distance_previous")] for s in range(8)]
    assert emb[6] > 2 * max(emb[1:6])              # the picture changed between seconds 5 and 6


def test_anomaly_score_ranks_the_unusual_seconds_of_a_camera(spark, store):
    rows = _assembled(spark, store, ("anomaly",), F.col("camera").isin("camA", "camB", "Walk1"))
    burst = sorted(range(16), key=lambda s: -rows[("camB/burst", s)].anomaly_score)
    assert set(burst[:2]) == {12, 13}
    assert rows[("camB/burst", 12)].anomaly[0] == rows[("camB/burst", 12)].anomaly_score
    # camA has 16 seconds, Walk1 only 6 (< features.anomaly_min_seconds): no score, 0 as input
    assert rows[("camA/still", 0)].anomaly_score is not None
    assert rows[("Walk1", 0)].anomaly_score is None and rows[("Walk1", 0)].anomaly[0] == 0.0


def test_a_camera_without_labels_gets_an_anomaly_based_ranking(spark, store):
    preds = storage.read(spark, store["config"], "predictions").where("camera = 'camB'").toPandas()
    assert len(preds) == 16 and preds.anomaly_score.notna().all()
    assert set(preds.feature_set) == {store["reports"]["train"]["feature_set"]} == {"motion"}
    top = spark.sql("SELECT second, camera_rank, camera_labelled FROM camera_anomalies "
                    "WHERE camera = 'camB' ORDER BY camera_rank LIMIT 2").collect()
    assert {r.second for r in top} == {12, 13} and not any(r.camera_labelled for r in top)
    labelled = spark.sql("SELECT DISTINCT camera_labelled FROM camera_anomalies "
                         "WHERE camera = 'Walk1'").collect()
    assert labelled == []                         # a train video: not scored, not ranked
    assert spark.sql("SELECT count(*) AS n FROM camera_anomalies WHERE camera = 'camA'").first().n == 16


def test_camera_grouped_folds_never_share_a_camera(spark, store, tmp_path):
    # A copy of the store, its train clips grouped into cameras by their names (Walk1 and Walk2
    # -> Walk): the extract stage moves the camera of every stored row; some cameras hold only
    # negatives.
    shutil.copytree(store["config"].storage.root, tmp_path / "store")
    config = make_config(tmp_path, f"input.train_videos={store['config'].input.train_videos}",
                         "input.score_videos=null", f"input.labels={store['config'].input.labels}",
                         "input.camera=regex", r"input.camera_regex=^([A-Za-z_]+?)\d+$",
                         "train.folds=2")
    storage.register_tables(spark, config)
    report = pipeline.run_stages(spark, config, ["extract"])["extract"]
    assert report["new_videos"] == 0
    for table in ("videos", "frames", "motion", "features"):
        cams = {r.video: r.camera for r in storage.read(spark, config, table)
                .select("video", "camera").distinct().collect()}
        assert cams["Walk2"] == cams["Walk1"] == "Walk" and cams["LeftBag1"] == "LeftBag", table
    keys = train.labelled_keys(storage.read(spark, config, "labels"),
                               storage.read(spark, config, "videos"))
    data = train.training_set(spark, config, ("motion",), None, keys).cache()
    result = train.cross_validate(spark, data, config)
    cameras = {r.camera for r in data.select("camera").distinct().collect()}
    assert set(result.folds) == cameras and len(cameras) < data.select("video").distinct().count()
    for fold, models in enumerate(result.sub_models):
        held_out = {c for c, f in result.folds.items() if f == fold}
        for model in models:
            trained_on = {r.camera for r in model.stages[-1].summary.predictions
                          .select("camera").distinct().collect()}
            assert trained_on.isdisjoint(held_out) and trained_on | held_out == cameras
    oof = result.oof
    assert (oof.fold == oof.camera.map(result.folds)).all()
    data.unpersist()


def test_assign_folds_with_many_single_class_cameras():
    import pandas as pd

    rng = np.random.default_rng(0)
    per = pd.DataFrame({"group": [f"cam{i:02d}" for i in range(49)],
                        "positives": [int(rng.integers(2, 20)) if i < 19 else 0 for i in range(49)],
                        "negatives": [int(rng.integers(0, 20)) if i < 19 else 2 for i in range(49)]})
    folds = train.assign_folds(per, 5, 0, "camera")
    assert set(folds) == set(per.group) and set(folds.values()) == set(range(5))
    per["fold"] = per.group.map(folds)
    by_fold = per.groupby("fold")[["positives", "negatives"]].sum()
    assert (by_fold > 0).all().all()
    assert by_fold.positives.max() - by_fold.positives.min() <= per.positives.max()
    with pytest.raises(train.TrainingError, match="set train.group_by: video"):
        train.assign_folds(per.head(3), 5, 0, "camera")
