"""Training: grouped folds, the sweep, metrics against Spark's evaluator, thresholds, MLflow
tracking and the champion alias, with a real MLflow SQLite store in a temporary folder."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.linalg import Vectors

from vidspark import pipeline, storage
from vidspark.config import ConfigError
from vidspark.media import motion
from vidspark.stages import evaluation, train
from vidspark.stages.pca import EigenPCA
from vidspark.storage import tracking
from vidspark.storage.models import unusable_inputs
from tests.conftest import fresh_store as _fresh, make_config


def _data(spark, config, groups=("motion",), weights=None):
    return train.training_set(spark, config, groups, weights)


def test_grouped_folds_never_put_a_video_on_both_sides(spark, featurized):
    config = make_config(featurized["tmp"], "train.group_by=video")
    data = _data(spark, config).cache()
    result = train.cross_validate(spark, data, config)
    videos = {r.video for r in data.select("video").distinct().collect()}
    assert set(result.folds) == videos and set(result.folds.values()) == {0, 1, 2}
    assert len(result.sub_models) == 3 and len(result.sub_models[0]) == len(result.candidates) == 2
    for fold, models in enumerate(result.sub_models):
        validation = {v for v, f in result.folds.items() if f == fold}
        for model in models:
            # the rows each fitted model actually trained on (Spark's training summary)
            trained_on = {r.video for r in model.stages[-1].summary.predictions
                          .select("video").distinct().collect()}
            assert trained_on.isdisjoint(validation)
            assert trained_on | validation == videos
    # every out-of-fold prediction comes from the model that did not see its video
    assert (result.oof.fold == result.oof.video.map(result.folds)).all()
    assert len(result.oof) == data.count()
    # class weighting is really a candidate: the weighted model differs
    weighted = [i for i, c in enumerate(result.candidates) if c["class_weighting"]]
    assert len(weighted) == 1
    coef = [m.stages[-1].coefficients.toArray() for m in result.sub_models[0]]
    assert not np.allclose(coef[0], coef[1])
    assert result.sub_models[0][weighted[0]].stages[-1].getWeightCol() == "class_weight"
    data.unpersist()


def test_the_sweep_chooses_among_feature_sets_and_model_families(spark, featurized):
    weights = train.embedding_weights(spark, featurized["config"], train.labelled_keys(
        storage.read(spark, featurized["config"], "labels"),
        storage.read(spark, featurized["config"], "videos")))
    config = make_config(featurized["tmp"], "train.feature_sets=[motion, appearance+motion]",
                         "train.models=[logistic_regression, gbt, random_forest]", "train.folds=2",
                         "train.class_weighting=[false]", "train.gbt.max_iter=[5]",
                         "train.random_forest.num_trees=[10]", "features.pca_components=4")
    grid = train.candidates(config)
    assert [(c["feature_set"], c["model"]) for c in grid] == [
        (fs, m) for fs in ("motion", "appearance+motion")
        for m in ("logistic_regression", "gbt", "random_forest")]
    data = _data(spark, config, ("appearance", "motion"), weights).cache()
    result = train.cross_validate(spark, data, config)
    kinds = [[type(s).__name__ for s in m.stages] for m in result.sub_models[0]]
    assert kinds[0] == ["VectorAssembler", "LogisticRegressionModel"]
    assert kinds[4] == ["PCAModel", "VectorAssembler", "GBTClassificationModel"]
    assert kinds[5] == ["PCAModel", "VectorAssembler", "RandomForestClassificationModel"]
    # the PCA is fit on each fold's training part, inside the model: 4 components next to motion
    assert result.sub_models[0][5].stages[0].pc.numCols == 4
    assert len(result.table) == 6 and result.table.feature_set.tolist()[3:] == ["appearance+motion"] * 3
    assert {"pooled_areaUnderPR", "pooled_areaUnderROC"} <= set(result.metrics)
    # a tree model's operating threshold cuts its probability like logistic regression's does
    model = result.sub_models[0][5]
    train.set_threshold(model, 0.3)
    out = train.with_probability(model.transform(data)).select("prob", "prediction").toPandas()
    assert (out.prediction == (out.prob > 0.3)).all()
    data.unpersist()


def test_too_few_labelled_videos_for_the_folds_is_a_clear_error(spark, featurized):
    config = make_config(featurized["tmp"], "train.folds=5")
    data = _data(spark, config)
    with pytest.raises(train.TrainingError, match=r"train.folds=5 needs at least 5 labelled train "
                       r"cameras with positive labels .* found 9 labelled cameras, 4 with "
                       r"positives. Label more cameras, lower train.folds or set train.group_by: video"):
        train.cross_validate(spark, data, config)


def test_areas_equal_sparks_evaluator(spark):
    rng = np.random.default_rng(7)
    labels = (rng.random(300) < 0.2).astype(float)
    probs = np.round(np.clip(0.3 * labels + rng.random(300) * 0.7, 0, 1), 2)   # with ties
    df = spark.createDataFrame([(Vectors.dense([1 - p, p]), float(y)) for p, y in zip(probs, labels)],
                               ["probability", "label"])
    for metric, ours in (("areaUnderPR", evaluation.area_under_pr),
                         ("areaUnderROC", evaluation.area_under_roc)):
        spark_value = BinaryClassificationEvaluator(rawPredictionCol="probability",
                                                    metricName=metric).evaluate(df)
        assert ours(labels, probs) == pytest.approx(spark_value, abs=1e-12)


def test_threshold_strategies():
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    probs = np.array([.95, .9, .8, .7, .6, .5, .4, .3, .2, .1])
    best = evaluation.choose_threshold(labels, probs, "max_f1")
    # cuts after rank 2 (P 1, R .5, F1 .667) and rank 4 (P .75, R .75, F1 .75) and 7 (4/7, 1)
    assert best["threshold"] == pytest.approx(0.65) and best["f1"] == pytest.approx(0.75)
    assert evaluation.confusion(labels, probs, best["threshold"]) == {"tp": 3, "fp": 1, "tn": 5, "fn": 1}
    recall = evaluation.choose_threshold(labels, probs, "recall", 1.0)
    assert recall["threshold"] == pytest.approx(0.35) and recall["recall"] == 1.0
    precision = evaluation.choose_threshold(labels, probs, "precision", 1.0)
    assert precision["threshold"] == pytest.approx(0.85) and precision["recall"] == 0.5
    assert not evaluation.choose_threshold(1 - labels[:2], probs[:2], "precision", 0.9)["reached"]
    assert evaluation.precision_at_k(labels, probs, 4) == 0.75
    assert evaluation.average_precision(labels, probs) == pytest.approx((1 + 1 + 3 / 4 + 4 / 7) / 4)


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = make_config(tmp_path)
    assert tracking.tracking_uri(config) == f"sqlite:///{tmp_path}/store/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri(config) == "http://mlflow.example:5000"
    config = make_config(tmp_path, "tracking.uri=http://other:5000")
    assert tracking.tracking_uri(config) == "http://other:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(ConfigError, match="tracking.uri must be set"):
        tracking.tracking_uri(make_config(tmp_path, "storage.root=hdfs://nn:8020/vidspark"))


def test_training_is_tracked_and_registered_and_scoring_uses_the_champion(spark, featurized, tmp_path):
    from mlflow import MlflowClient

    config = _fresh(spark, featurized, tmp_path)
    report = train.run(spark, config)
    assert report["refit"] and report["champion"] and report["model_version"] == 1
    uri = tracking.tracking_uri(config)
    assert uri.startswith("sqlite:///") and str(tmp_path) in uri
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("vidspark")
    assert experiment.artifact_location == f"file://{tmp_path}/store/mlflow/artifacts"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == report["run_id"]]
    assert [p.info.run_id for p in parents] == [report["run_id"]]
    assert len(children) == 2                       # the two candidates of conf/test.yaml
    for child in children:
        assert {"maxIter", "regParam", "elasticNetParam", "class_weighting"} <= set(child.data.params)
        assert {"areaUnderPR", "areaUnderROC"} <= set(child.data.metrics)
    parent = parents[0].data
    assert parent.params["folds"] == "3" and parent.params["data.videos"] == "9"
    assert parent.params["group_by"] == "camera" and parent.params["data.cameras"] == "9"
    assert int(parent.params["data.positives"]) + int(parent.params["data.negatives"]) == report["rows"]
    # conf/test.yaml trains on motion alone: no embeddings in the model
    assert parent.params["data.weights"] == "none" and parent.params["feature_set"] == "motion"
    assert parent.params["data.motion_version"] == f"{motion.ALGORITHM}:w128:fps10"
    assert parent.params["data.features_version"].isdigit()
    assert parent.params["data.labels_version"].isdigit()
    for key in ("areaUnderPR", "areaUnderROC", "precision_at_k", "precision", "recall", "f1",
                "threshold", "confusion_tp", "confusion_fp", "confusion_tn", "confusion_fn",
                "per_video_ap_mean"):
        assert key in parent.metrics, key
    assert 0 < parent.metrics["threshold"] < 1
    assert sum(parent.metrics[f"confusion_{k}"] for k in ("tp", "fp", "tn", "fn")) == report["rows"]
    artifacts = {a.path for a in client.list_artifacts(report["run_id"], "plots")}
    assert artifacts == {"plots/pr_curve.png", "plots/roc_curve.png", "plots/score_histogram.png"}
    local = client.download_artifacts(report["run_id"], "plots/pr_curve.png", str(tmp_path))
    with open(local, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    validation = {a.path for a in client.list_artifacts(report["run_id"], "validation")}
    assert {"validation/predictions.csv", "validation/per_video_ap.json"} <= validation
    recorded = yaml.safe_load(open(client.download_artifacts(report["run_id"], "config.yaml",
                                                             str(tmp_path))))
    assert recorded == config.to_dict()      # the whole configuration travels with the model
    # the model: Spark flavour, registered, champion, threshold stored with it
    champion = client.get_model_version_by_alias("vidspark-suspicious", "champion")
    assert int(champion.version) == 1 and champion.run_id == report["run_id"]
    model = tracking.load_spark_model(config, 1)
    assert model.stages[-1].getThreshold() == pytest.approx(parent.metrics["threshold"])
    assert {champion.tags[k] for k in ("feature_set", "model_type", "motion_version")} == {
        "motion", "logistic_regression", f"{motion.ALGORITHM}:w128:fps10"}
    frame, threshold = tracking.validation(config)
    assert threshold == pytest.approx(parent.metrics["threshold"]) and len(frame) == report["rows"]
    # scoring uses the champion, records its version and cuts at the stored threshold
    scored = pipeline.run_stages(spark, config, ["score"])["score"]
    assert scored["model_version"] == 1 and scored["scored"] == 6 * 6
    preds = storage.read(spark, config, "predictions").toPandas()
    assert set(preds.model_version) == {1} and set(preds.model_id) == {"vidspark-suspicious/1"}
    assert (preds.prediction == (preds.prob_suspicious > threshold).astype(int)).all()
    models = storage.read(spark, config, "models").toPandas()
    assert models[["model_version", "champion", "run_id"]].values.tolist() == [[1, True, report["run_id"]]]
    # nothing changed: no new run, no new version
    again = train.run(spark, config)
    assert not again["refit"] and again["model_version"] == 1
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)


def _corrupted(featurized, tmp_path) -> str:
    """The labels gone bad: every label flipped (a shuffle of 54 seconds can, by chance, still
    rank well; flipped labels never do)."""
    labels = pd.read_csv(featurized["labels"])
    labels["label"] = 1 - labels.label
    path = tmp_path / "flipped.csv"
    labels.to_csv(path, index=False)
    return str(path)


def test_better_data_takes_the_alias_and_corrupted_labels_do_not(spark, featurized, tmp_path):
    from mlflow import MlflowClient

    config = _fresh(spark, featurized, tmp_path)
    client = MlflowClient(tracking.tracking_uri(config), registry_uri=tracking.tracking_uri(config))

    def night(labels_file, **train_settings):
        nonlocal config
        config = config.replace(f"input.labels={labels_file}",
                                *(f"train.{k}={list(v)}" for k, v in train_settings.items()))
        return pipeline.run_stages(spark, config, ["labels", "train", "score"])

    def champion():
        return int(client.get_model_version_by_alias("vidspark-suspicious", "champion").version)

    # 1. a deliberately useless model (L1 so strong that every coefficient is 0) and no champion:
    #    version 1 takes the alias anyway
    grid = {k: getattr(config.train, k) for k in ("reg_param", "elastic_net_param")}
    first = night(featurized["labels"], reg_param=[100.0], elastic_net_param=[1.0])
    assert first["train"]["champion"] and first["train"]["decision"] == "no champion yet"
    # 2. the usual grid beats it on its own validation data, takes the alias, re-scores everything
    second = night(featurized["labels"], **grid)
    print(second["train"]["decision"])
    assert second["train"]["model_version"] == 2 and second["train"]["champion"]
    assert "beats the champion's" in second["train"]["decision"]
    assert champion() == 2
    assert second["score"]["model_version"] == 2 and second["score"]["scored"] == 6 * 6
    # 3. corrupted labels: version 3 stays a candidate, scoring stays on version 2
    third = night(_corrupted(featurized, tmp_path))
    print(third["train"]["decision"])
    assert third["train"]["model_version"] == 3 and not third["train"]["champion"]
    assert "does not beat the champion's" in third["train"]["decision"]
    assert champion() == 2 and client.get_model_version("vidspark-suspicious", "3").aliases == []
    assert third["score"]["scored"] == 0 and third["score"]["model_version"] == 2
    assert set(storage.read(spark, config, "predictions").toPandas().model_version) == {2}
    models = storage.read(spark, config, "models").orderBy("model_version").toPandas()
    assert models.champion.tolist() == [False, True, False]
    assert models.decision.iloc[2] == third["train"]["decision"]
    # 4. promoting by hand moves scoring to that version
    tracking.promote(config, 3)
    fourth = pipeline.run_stages(spark, config, ["score"])["score"]
    assert fourth["model_version"] == 3 and fourth["scored"] == 6 * 6
    predictions = storage.read(spark, config, "predictions").toPandas()
    assert set(predictions.model_version) == {3}
    assert not predictions.duplicated(["video", "second"]).any()   # replaced, not appended
    models = storage.read(spark, config, "models").orderBy("model_version").toPandas()
    assert models.champion.tolist() == [False, False, True]


def test_promote_setting_overrides_the_comparison(tmp_path):
    assert train.decide(None, None, {}, {}, make_config(tmp_path, "train.promote=never")) == (
        False, "train.promote=never")
    assert train.decide(None, None, {}, {}, make_config(tmp_path, "train.promote=always")) == (
        True, "train.promote=always")


def test_a_champion_whose_features_can_no_longer_be_built_is_named():
    now = {"weights": "file:w.h5:sha256=1", "motion_version": "motion-1:w128:fps10"}
    assert unusable_inputs({"feature_set": "motion", "motion_version": "motion-1:w128:fps10",
                                  "weights": "none"}, now) is None
    assert unusable_inputs({"feature_set": "motion", "motion_version": "motion-1:w64:fps10"},
                                 now) == "other motion features (motion-1:w64:fps10)"
    assert unusable_inputs({"feature_set": "appearance", "weights": "file:w.h5:sha256=1"},
                                 now) is None
    # a model from before feature sets: the raw embedding
    assert unusable_inputs({"weights": "file:old.h5:sha256=2"}, now) == \
        "other embeddings (file:old.h5:sha256=2)"


def test_eigen_pca_gives_sparks_pca_model(spark, tmp_path):
    """The sweep's PCA: Spark's components (up to sign) and a Spark PCAModel that saves and
    loads inside a pipeline; the explained variances are those of the exact sample covariance."""
    from pyspark.ml.feature import PCA, PCAModel

    rng = np.random.default_rng(3)
    x = rng.random((700, 40)) @ np.diag(np.linspace(3, 0.1, 40)) + 0.5
    df = spark.createDataFrame([(i, Vectors.dense(r)) for i, r in enumerate(x)], ["id", "v"]).repartition(3)
    theirs = PCA(k=5, inputCol="v", outputCol="p").fit(df)
    ours = Pipeline(stages=[EigenPCA(k=5, inputCol="v", outputCol="p")]).fit(df)
    assert type(ours.stages[0]) is PCAModel and ours.stages[0].getK() == 5
    pc = ours.stages[0].pc.toArray()
    assert np.abs((theirs.pc.toArray() * pc).sum(axis=0)) == pytest.approx(np.ones(5), abs=1e-9)
    assert (pc[np.abs(pc).argmax(axis=0), range(5)] > 0).all()     # a fixed sign
    values = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    assert ours.stages[0].explainedVariance.toArray() == pytest.approx(values[:5] / values.sum())
    ours.write().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))
    a = np.stack([r.p.toArray() for r in loaded.transform(df).orderBy("id").collect()])
    b = np.stack([r.p.toArray() for r in theirs.transform(df).orderBy("id").collect()])
    assert np.abs(a) == pytest.approx(np.abs(b), abs=1e-9)
    with pytest.raises(ValueError, match="k=41 must be between 1 and the 40 input values"):
        EigenPCA(k=41, inputCol="v", outputCol="p").fit(df)
    with pytest.raises(ValueError, match="no rows to fit on in column v"):
        EigenPCA(k=5, inputCol="v", outputCol="p").fit(df.where("id < 0"))
