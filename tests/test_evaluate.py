"""The evaluation's own logic (``make eval`` itself is not a test): nested cross-validation holds
whole cameras out, the figures, and README's quality table is the generated one."""

import numpy as np
import pandas as pd
import pytest

from vidspark.stages import evaluation, train
from vidspark_bench import evaluate
from tests.conftest import make_config, ROOT
from tests.helpers import generated_results


def test_readme_quality_table_is_the_generated_one():
    results = generated_results(ROOT, "eval", evaluate)
    rows = {r["row"] for r in results["rows"]}
    assert {evaluate.DEFAULT, evaluate.ANOMALY, evaluate.TODAY[0]} <= rows
    assert results["cameras"] == 49 and results["outer_folds"] >= 2


def test_figures_and_the_camera_interval():
    oof = pd.DataFrame({"camera": ["a", "a", "b", "b", "c", "c"], "label": [1, 0, 1, 0, 1, 0],
                        "prob": [0.9, 0.1, 0.8, 0.3, 0.2, 0.7]})
    f = evaluate.figures(oof.label, oof.prob, k=2)
    assert f["roc_auc"] == pytest.approx(evaluation.area_under_roc(oof.label, oof.prob))
    assert f["ap"] == pytest.approx(evaluation.average_precision(oof.label, oof.prob))
    assert (f["positive_rate"], f["seconds"], f["positives"], f["precision_at_k"]) == (0.5, 6, 3, 1.0)
    low, high = evaluate.camera_interval(oof, evaluation.area_under_roc, n=200)
    assert 0 <= low <= f["roc_auc"] <= high <= 1
    # within cameras: a and b rank their own seconds right, c wrong; a missing score is no rank
    assert evaluate.within_cameras(oof) == {"roc_auc": pytest.approx(2 / 3), "cameras": 3}
    oof.loc[oof.camera == "c", "prob"] = None
    assert evaluate.within_cameras(oof) == {"roc_auc": 1.0, "cameras": 2}


def test_nested_cv_holds_whole_cameras_out(spark, featurized):
    config = make_config(featurized["tmp"], "train.folds=2")
    data = train.training_set(spark, config, ("motion",)).cache()
    try:
        oof, chosen = evaluate.nested_cv(spark, data, config, outer_folds=2)
        per_camera = data.groupBy("camera").count().toPandas().set_index("camera")["count"]
        n_rows = data.count()
    finally:
        data.unpersist()
    assert len(oof) == n_rows and len(chosen) == 2
    assert oof.prob.between(0, 1).all()
    # every camera is held out in exactly one outer fold, with all its seconds
    assert (oof.groupby("camera").fold.nunique() == 1).all()
    assert oof.groupby("camera").size().to_dict() == per_camera.to_dict()
    assert {c["model"] for c in chosen} == {"logistic_regression"}
    assert np.isfinite(evaluate.figures(oof.label, oof.prob)["ap"])
