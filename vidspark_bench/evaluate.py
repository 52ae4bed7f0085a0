"""Detection quality (``make eval``): camera-grouped, nested cross-validation on real footage.

Not a test: nothing here asserts a figure. ``make eval`` runs the pipeline's own stages (extract
with motion, labels, featurize) on a labelled folder of real surveillance clips (by default
``../shared/data/fights``: 168 clips from 49 cameras, one folder per camera) into its own store,
and then measures, for each feature set, how well the train stage's whole procedure ranks the
seconds of cameras it never saw:

* outer folds group by camera (``--folds``, default 5): no camera is ever on both sides;
* inside each outer training part the train stage's sweep runs as in the nightly job (its
  camera-grouped cross-validation of the feature set's candidates), the best candidate is
  refit on the whole outer training part and scores the held-out cameras;
* the held-out probabilities of all outer folds are pooled: average precision (AP), ROC AUC,
  precision at k, beside the positive rate (the AP of a random ranking).

Rows: today's appearance-only model (logistic regression on the 2,048 embedding values, the grid
this project used before motion existed), each feature set with the configured model families,
the label-free ``anomaly_score`` (no training at all), and the configuration as given (by default
the packaged defaults: what a nightly job does). Results go to ``eval/results.json``,
``eval/results.md`` and README's "Detection quality" section (between the ``eval:begin`` and
``eval:end`` markers), and to an MLflow run (experiment ``vidspark-eval`` of the eval store) with
the PR curves. Nothing in those tables is typed by hand.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from typing import Optional

import numpy as np
import pandas as pd

from vidspark.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "fights")
DEFAULT_WEIGHTS = os.path.join(ROOT, "..", "shared", "models",
                               "inception_v3_notop_imagenet_partial.weights.h5")
BEGIN, END = "<!-- eval:begin -->", "<!-- eval:end -->"
EXPERIMENT = "vidspark-eval"
TOP_K = 20

log = logging.getLogger("vidspark_bench.evaluate")

# label, feature sets (None: the configuration's), train overrides for the row
TODAY = ("appearance, before motion (logistic regression on the raw embedding)", ["appearance"],
         ["train.models=[logistic_regression]", "train.reg_param=[0.01, 0.1]",
          "train.elastic_net_param=[0.0, 0.5]", "train.class_weighting=[false, true]",
          "features.pca_components=0"])
ROWS = [
    TODAY,
    ("appearance (PCA), random forest", ["appearance"], ["train.models=[random_forest]"]),
    ("motion, logistic regression", ["motion"], ["train.models=[logistic_regression]"]),
    ("motion, gradient-boosted trees", ["motion"], ["train.models=[gbt]"]),
    ("motion, random forest", ["motion"], ["train.models=[random_forest]"]),
    ("motion+change, random forest", ["motion+change"], ["train.models=[random_forest]"]),
    ("appearance+motion, random forest", ["appearance+motion"], ["train.models=[random_forest]"]),
    ("a sweep over motion and motion+change, random forest", ["motion", "motion+change"],
     ["train.models=[random_forest]"]),
]
BOOTSTRAP = 1000
ANOMALY = "anomaly_score alone (label-free, no training)"
DEFAULT = "the configuration (what the nightly job runs)"


def eval_config(data: str, store: str, weights: str, config_file: Optional[str],
                overrides=()) -> Config:
    from vidspark.config import load_config

    return load_config(config_file, [
        f"storage.root={store}", f"input.train_videos={os.path.join(data, 'videos')}",
        "input.score_videos=null", f"input.labels={os.path.join(data, 'labels.csv')}",
        f"featurizer.weights={weights}", "train.group_by=camera", *overrides])


def camera_interval(oof: pd.DataFrame, metric, n: int = BOOTSTRAP, seed: int = 0) -> list:
    """The 95% interval of ``metric(labels, probs)`` when whole cameras are drawn with
    replacement: how much the figure depends on which cameras happen to be in the set."""
    rng = np.random.default_rng(seed)
    groups = [g for _, g in oof.groupby("camera")]
    values = []
    for _ in range(n):
        sample = pd.concat([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        if sample.label.nunique() == 2:
            values.append(metric(sample.label.to_numpy(), sample.prob.to_numpy()))
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def within_cameras(oof: pd.DataFrame) -> dict:
    """Mean ROC AUC of the ranking inside each camera that has both classes (and, for a score
    that can be missing, a score): how well a camera's own seconds are ordered."""
    from vidspark.stages import evaluation

    values = [evaluation.area_under_roc(g.label, g.prob) for _, g in oof.dropna(subset=["prob"])
              .groupby("camera") if g.label.nunique() == 2]
    return {"roc_auc": float(np.mean(values)) if values else float("nan"), "cameras": len(values)}


def figures(labels, probs, k: int = TOP_K) -> dict:
    from vidspark.stages import evaluation

    labels = np.asarray(labels, dtype=float)
    return {"ap": evaluation.average_precision(labels, probs),
            "roc_auc": evaluation.area_under_roc(labels, probs),
            "area_under_pr": evaluation.area_under_pr(labels, probs),
            "precision_at_k": evaluation.precision_at_k(labels, probs, k),
            "positive_rate": float(labels.mean()), "seconds": int(len(labels)),
            "positives": int(labels.sum())}


def nested_cv(spark, data, config: Config, outer_folds: int) -> tuple[pd.DataFrame, list]:
    """Held-out predictions of the train stage's procedure (sweep + refit of the best) for every
    labelled second, with outer folds by camera. Returns (video, camera, second, label, fold,
    prob) and the candidate chosen in each outer fold."""
    from pyspark.sql import functions as F

    from vidspark.stages import train

    per_camera = (data.groupBy(F.col("camera").alias("group"))
                  .agg(F.sum("label").alias("positives"),
                       F.sum(1 - F.col("label")).alias("negatives")).toPandas())
    outer = train.assign_folds(per_camera, outer_folds, int(config.train.seed), "camera")
    fold_df = spark.createDataFrame(list(outer.items()), "camera string, outer int")
    data = data.join(F.broadcast(fold_df), "camera").cache()
    parts, chosen = [], []
    try:
        for f in range(outer_folds):
            part = data.where(F.col("outer") != f).drop("outer")
            inner = train.cross_validate(spark, part, config)
            best = inner.candidates[inner.best]
            model = inner.best_model         # the best candidate refit on the whole part
            held = (train.with_probability(model.transform(data.where(F.col("outer") == f)))
                    .select("video", "camera", "second", "label", F.col("outer").alias("fold"),
                            "prob").toPandas())
            parts.append(held)
            chosen.append({"fold": f, **train.spark_params(best),
                           "inner_areaUnderPR": inner.metrics["areaUnderPR"]})
            log.info("eval: outer fold %d/%d: %s, %d held-out seconds", f + 1, outer_folds,
                     train.spark_params(best), len(held))
    finally:
        data.unpersist()
    return pd.concat(parts, ignore_index=True), chosen


def _row_result(label, feature_sets_, oof, chosen, seconds) -> dict:
    """A row's figures; a missing score (``prob`` null) ranks last in the pooled figures."""
    from vidspark.stages import evaluation

    within = within_cameras(oof)
    oof = oof.fillna({"prob": 0.0})
    return {"row": label, "feature_sets": feature_sets_, **figures(oof.label, oof.prob),
            "within_cameras": within,
            "ap_interval": camera_interval(oof, evaluation.average_precision),
            "roc_auc_interval": camera_interval(oof, evaluation.area_under_roc),
            "chosen": chosen, "seconds_taken": seconds, "predictions": oof}


def shown_path(data: str) -> str:
    """``data`` as results show it: relative to the checkout when it sits beside it (the
    generated table must not depend on where the repository was cloned), else absolute."""
    data = os.path.abspath(data)
    return os.path.relpath(data, ROOT) if data.startswith(os.path.dirname(ROOT) + os.sep) else data


def run_all(data: str, store: str, weights: str, config_file: Optional[str], folds: int,
            rows: Optional[list] = None) -> dict:
    """Extract, label and featurize ``data`` into ``store``, then evaluate every row."""
    from pyspark.sql import functions as F

    from vidspark import pipeline, storage
    from vidspark.media import motion
    from vidspark.session import build_spark
    from vidspark.stages import feature_sets, train
    from vidspark_bench.bench import machine

    started = time.perf_counter()
    config = eval_config(data, store, weights, config_file)
    spark = build_spark(config, app_name="vidspark-eval", runs_model=True)
    spark.sparkContext.setLogLevel("ERROR")
    pipeline.run_stages(spark, config, ["extract", "labels", "featurize"])
    keys = train.labelled_keys(storage.read(spark, config, "labels"),
                               storage.read(spark, config, "videos")).cache()
    weights_id = train.embedding_weights(spark, config, keys)
    all_groups = feature_sets.union_groups(["appearance+motion+change+anomaly"])
    everything = train.training_set(spark, config, all_groups, weights_id, keys).localCheckpoint()
    n_cameras = everything.select("camera").distinct().count()
    results = {"generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "data": shown_path(data), "cameras": n_cameras,
               "videos": everything.select("video").distinct().count(),
               "outer_folds": folds, "inner_folds": int(config.train.folds),
               "weights": weights_id, "motion_version": motion.configured_identity(config),
               "machine": machine(), "rows": []}
    anomaly = everything.select("video", "camera", "second", "label",
                                F.col("anomaly_score").alias("prob")).toPandas()
    results["rows"].append(_row_result(ANOMALY, [], anomaly, [], 0.0))
    todo = list(ROWS if rows is None else [r for r in ROWS if r[0] in rows])
    if rows is None or DEFAULT in rows:
        todo.append((DEFAULT, None, []))
    for label, sets, overrides in todo:
        t0 = time.perf_counter()
        row_config = eval_config(data, store, weights, config_file,
                                 ([f"train.feature_sets={json.dumps(sets)}"] if sets else [])
                                 + overrides)
        groups = feature_sets.union_groups(row_config.train.feature_sets)
        subset = everything.select("video", "second", "camera", *groups, "anomaly_score",
                                   "label", "source")
        log.info("eval: %s: %d candidates per sweep", label, len(train.candidates(row_config)))
        oof, chosen = nested_cv(spark, subset, row_config, folds)
        results["rows"].append(_row_result(label, row_config.train.feature_sets, oof,
                                           chosen, time.perf_counter() - t0))
        r = results["rows"][-1]
        log.info("eval: %s: AP %.3f, ROC AUC %.3f (%.0f s)", label, r["ap"], r["roc_auc"],
                 r["seconds_taken"])
    results["eval_wall_s"] = time.perf_counter() - started
    _log_mlflow(config, results)
    keys.unpersist()
    spark.stop()
    return results


def _log_mlflow(config: Config, results: dict) -> None:
    """One MLflow run in the eval store: metrics of every row, its PR curve, its predictions."""
    import mlflow

    from vidspark.stages import evaluation
    from vidspark.storage import tracking

    tracking.setup(config.replace(f"tracking.experiment={EXPERIMENT}"))
    with mlflow.start_run(run_name="camera-grouped-eval"):
        mlflow.log_params({"data": results["data"], "cameras": results["cameras"],
                           "outer_folds": results["outer_folds"],
                           "inner_folds": results["inner_folds"], "weights": results["weights"],
                           "motion_version": results["motion_version"]})
        fig, ax = evaluation._axes("Precision-recall, cameras held out (pooled)")
        for i, r in enumerate(results["rows"]):
            oof = r["predictions"]
            prefix = f"row{i}"
            mlflow.log_metrics({f"{prefix}.{k}": float(r[k]) for k in
                                ("ap", "roc_auc", "area_under_pr", "precision_at_k")})
            mlflow.log_figure(evaluation.pr_figure(oof.label, oof.prob, title=r["row"][:60]),
                              f"plots/pr_curve_{prefix}.png")
            mlflow.log_text(oof.to_csv(index=False), f"eval/predictions_{prefix}.csv")
            _, recall, precision = evaluation.pr_curve(oof.label, oof.prob)
            ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post",
                    label=f"{r['row'][:40]}: AP {r['ap']:.3f}")
        ax.axhline(results["rows"][0]["positive_rate"], color="grey", ls=":", label="positive rate")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
        ax.legend(loc="lower left", fontsize=6)
        mlflow.log_figure(fig, "plots/pr_curves.png")
        mlflow.log_dict({"rows": [{k: v for k, v in r.items() if k != "predictions"}
                                  for r in results["rows"]]}, "eval/results.json")


# --- report ------------------------------------------------------------------------------------

def _chosen(r: dict) -> str:
    if not r["chosen"]:
        return "—"
    picks = pd.Series([f"{c['feature_set']} / {c['model']}" for c in r["chosen"]]).value_counts()
    return ", ".join(f"{name} ×{n}" for name, n in picks.items())


def markdown(results: dict) -> str:
    m, shown = results["machine"], results["data"]
    lines = [f"Measured by `make eval` on {results['generated_at'][:10]} on `{shown}`: "
             f"{results['rows'][0]['seconds']} labelled seconds ({results['rows'][0]['positives']} "
             f"suspicious) of {results['videos']} videos from {results['cameras']} cameras. "
             f"Nested cross-validation grouped by camera: {results['outer_folds']} outer folds hold "
             f"whole cameras out; inside each, the train stage's sweep ({results['inner_folds']} "
             f"camera-grouped folds) picks a candidate that is refit and scores the held-out "
             f"cameras; the held-out probabilities are pooled. Motion {results['motion_version']}, "
             f"embeddings {results['weights'].split(':sha256')[0]}; {m['cores']} cores, "
             f"PySpark {m['pyspark']}, OpenCV {m['opencv']}. In brackets: the 95% interval when "
             f"whole cameras are resampled ({BOOTSTRAP} draws).", "",
             f"| Features, model | AP | ROC AUC | precision at {TOP_K} | positive rate | "
             "ROC AUC within cameras | chosen in the outer folds |", "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        bold = "**" if r["row"] == DEFAULT else ""
        name = r["row"] if r["row"] != DEFAULT else (
            f"{DEFAULT}: `{', '.join(r['feature_sets'])}`")
        ap, auc = r["ap_interval"], r["roc_auc_interval"]
        lines.append(f"| {bold}{name}{bold} | {bold}{r['ap']:.3f}{bold} ({ap[0]:.2f}–{ap[1]:.2f}) | "
                     f"{bold}{r['roc_auc']:.3f}{bold} ({auc[0]:.2f}–{auc[1]:.2f}) | "
                     f"{r['precision_at_k']:.2f} | {r['positive_rate']:.3f} | "
                     f"{r['within_cameras']['roc_auc']:.3f} ({r['within_cameras']['cameras']}) | "
                     f"{_chosen(r)} |")
    lines += ["", "ROC AUC within cameras: the mean over the cameras that have both classes (how many "
              "in brackets) of the ranking of each camera's own seconds. The anomaly score ranks "
              "within a camera and needs history: a camera with fewer than "
              "`features.anomaly_min_seconds` seconds (most of this set's, whose clips last "
              "two seconds) gets no score and ranks last in the pooled figures.", "",
              f"`make eval` took {results['eval_wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def _write(results: dict, out: str, readme: Optional[str]) -> None:
    from vidspark_bench.bench import write_table

    os.makedirs(out, exist_ok=True)
    serial = dict(results, rows=[{k: v for k, v in r.items() if k != "predictions"}
                                 for r in results["rows"]])
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(serial, fh, indent=2, default=float)
        fh.write("\n")
    write_table(markdown(serial), out, readme, BEGIN, END)


def main(argv=None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog or "python -m vidspark_bench.evaluate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.abspath(DEFAULT_DATA),
                        help="labelled folder: videos/<camera>/<clip> and labels.csv "
                             "(video,second,label); default ../shared/data/fights")
    parser.add_argument("--store", default=os.path.join(ROOT, "data", "eval", "vidspark"),
                        help="storage.root of the evaluation (reused: unchanged videos are skipped)")
    parser.add_argument("--weights", default=os.path.abspath(DEFAULT_WEIGHTS),
                        help="InceptionV3 weights file (default: the shared offline file)")
    parser.add_argument("--config", help="a config to evaluate instead of the packaged defaults")
    parser.add_argument("--folds", type=int, default=5, help="outer folds (by camera)")
    parser.add_argument("--rows", nargs="*", help="evaluate only these rows (by label)")
    parser.add_argument("--out", default=os.path.join(ROOT, "eval"),
                        help="folder for results.json and results.md")
    parser.add_argument("--readme", help="README to update between the eval markers")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write results.md and the README section again "
                             "from results.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "tensorflow", "absl", "h5py", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.render:
        from vidspark_bench.bench import write_table

        with open(os.path.join(args.out, "results.json"), encoding="utf-8") as fh:
            write_table(markdown(json.load(fh)), args.out, args.readme, BEGIN, END)
        return
    if not os.path.isdir(os.path.join(args.data, "videos")):
        sys.exit(f"vidspark eval: no videos/ folder in {args.data} (use --data)")
    if not os.path.isfile(args.weights) and args.weights != "imagenet":
        sys.exit(f"vidspark eval: weights file not found: {args.weights} (use --weights)")
    results = run_all(args.data, args.store, args.weights, args.config, args.folds, args.rows)
    _write(results, args.out, args.readme)


if __name__ == "__main__":
    main()
