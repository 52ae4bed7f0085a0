"""Real footage: the nightly stages with the packaged default configuration, trained on every
camera of ../shared/data/fights and run on a folder of other cameras."""
from __future__ import annotations

import os

import pytest
from pyspark.sql import functions as F

from vidspark import pipeline, storage
from vidspark.config import load_config
from vidspark.media import motion as M
from tests.conftest import ROOT, WEIGHTS
from tests.helpers import write_scene

pytestmark = pytest.mark.slow
FIGHTS = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "fights"))


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    if not os.path.isdir(os.path.join(FIGHTS, "videos")):
        pytest.fail(f"the shared real-footage set is missing: {FIGHTS}")
    tmp = tmp_path_factory.mktemp("fights")
    other = tmp / "other"
    write_scene(other / "gate" / "0800.mpg", "burst", seconds=30)
    write_scene(other / "gate" / "0900.mpg", "still", seconds=5)
    write_scene(other / "yard" / "1000.mpg", "scuffle", seconds=7, fps=30)
    # the packaged defaults: what a user's nightly job runs
    config = load_config(None, [f"storage.root={tmp}/store",
                                f"input.train_videos={FIGHTS}/videos",
                                f"input.score_videos={other}",
                                f"input.labels={FIGHTS}/labels.csv",
                                f"featurizer.weights={WEIGHTS}",
                                "spark.sql.shuffle.partitions=4"])
    storage.register_tables(spark, config)
    reports = pipeline.nightly(spark, config)
    return {"config": config, "reports": reports}


def test_trained_on_every_labelled_camera(spark, night):
    t = night["reports"]["train"]
    assert t["refit"] and t["champion"] and t["rows"] == 375 and t["cameras"] == 49
    assert t["feature_set"] in ("motion", "motion+change") and t["model_type"] == "random_forest"
    model = storage.read(spark, night["config"], "models").where("champion").first()
    assert (model.feature_set, model.model_type) == (t["feature_set"], t["model_type"])
    assert model.motion_version == f"{M.ALGORITHM}:w128:fps10"
    print(f"fights, camera-grouped CV of the sweep's best: areaUnderPR {model.area_under_pr:.3f}, "
          f"areaUnderROC {model.area_under_roc:.3f}")
    assert model.area_under_roc > 0.7       # far from a coin: cameras held out whole


def test_every_second_of_the_other_cameras_is_scored(spark, night):
    config = night["config"]
    frames = storage.read(spark, config, "frames").where(~F.col("video").startswith("cam"))
    preds = storage.read(spark, config, "predictions")
    assert preds.count() == frames.count() == 30 + 5 + 7
    assert preds.join(frames, ["video", "second"], "left_anti").count() == 0
    got = preds.toPandas()
    assert set(got.camera) == {"gate", "yard"}
    assert set(got.feature_set) == {night["reports"]["train"]["feature_set"]}
    assert got.prob_suspicious.between(0, 1).all()
    # 35 seconds of `gate` are enough history for an anomaly score (features.anomaly_min_seconds
    # is 30), 7 of `yard` are not
    assert got[got.camera == "gate"].anomaly_score.notna().all()
    assert got[got.camera == "yard"].anomaly_score.isna().all()
    top = got[got.camera == "gate"].sort_values("anomaly_score", ascending=False).head(2)
    assert set(zip(top.video, top.second)) == {("gate/0800", 26), ("gate/0800", 27)}
