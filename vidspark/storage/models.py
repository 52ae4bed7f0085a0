"""The registered models as the rest of the pipeline sees them: which feature groups a version
reads and whether today's stored features suit it (from its MLflow tags), and the ``models`` table,
the registry's mirror. Train writes these tags and score reads them; both use this module."""
from __future__ import annotations

import datetime as dt
from typing import Mapping, Optional

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from vidspark import storage
from vidspark.config import Config, parse_feature_set
from vidspark.storage import tracking
from vidspark.storage.schemas import MODELS

NO_EMBEDDINGS = "none"               # the weights tag of a model whose features use no embedding


def unusable_inputs(tags: Mapping, inputs: Mapping) -> Optional[str]:
    """Why a model (its version ``tags``) cannot be scored with today's stored features
    (``inputs``: the current ``weights`` and ``motion_version``), or None."""
    groups = model_groups(tags)
    if "appearance" in groups or "change" in groups:
        if tags.get("weights") != inputs.get("weights"):
            return f"other embeddings ({tags.get('weights')})"
    if set(groups) - {"appearance"} and tags.get("motion_version") != inputs.get("motion_version"):
        return f"other motion features ({tags.get('motion_version')})"
    return None


def model_groups(tags: Mapping) -> tuple:
    """The feature groups a registered version needs (a version without a ``feature_set`` tag
    was trained by an older vidspark on the raw embedding)."""
    name = tags.get("feature_set")
    return parse_feature_set(name) if name else ("appearance",)


def version_tags(version) -> dict:
    """A registered version's tags as a dict."""
    return dict(version.tags or {})


def sync_models_table(spark: SparkSession, config: Config) -> None:
    """Mirror the registry's versions of the model in the ``models`` table (its rows rewritten
    when a version is new or gone there, or the champion alias moved since the last sync)."""
    champ = tracking.champion(config)
    rows = []
    for v in tracking.versions(config):
        tags = version_tags(v)
        if "data_fingerprint" not in tags:
            continue  # registered by hand or by another tool: not ours to describe
        rows.append({
            "model_id": f"{v.name}/{v.version}", "path": f"models:/{v.name}/{v.version}",
            "created_at": dt.datetime.fromtimestamp(v.creation_timestamp / 1000, dt.timezone.utc)
            .replace(tzinfo=None),
            "weights": tags.get("weights", ""), "params": tags.get("params", "{}"),
            "train_rows": int(tags.get("train_rows", 0)), "positives": int(tags.get("positives", 0)),
            "train_videos": int(tags.get("train_videos", 0)),
            "data_fingerprint": tags["data_fingerprint"], "model_name": v.name,
            "model_version": int(v.version), "run_id": v.run_id,
            "threshold": float(tags.get("threshold", "nan")),
            "area_under_pr": float(tags.get("areaUnderPR", "nan")),
            "area_under_roc": float(tags.get("areaUnderROC", "nan")),
            "champion": champ is not None and champ.version == v.version,
            "decision": tags.get("decision"),
            "feature_set": tags.get("feature_set", "appearance"),
            "model_type": tags.get("model_type", "logistic_regression"),
            "motion_version": tags.get("motion_version")})
    name = tracking.model_name(config)
    have = {(r.model_id, r.champion, r.feature_set) for r in storage.read(spark, config, "models")
            .where(F.col("model_name") == name)
            .select("model_id", "champion", "feature_set").collect()}
    if {(r["model_id"], r["champion"], r["feature_set"]) for r in rows} != have:
        # The registry is the truth and the table its mirror: this model's rows are replaced in
        # one commit (cheaper than a MERGE; versions deleted from the registry go too), other
        # models' rows stay.
        storage.replace_where(spark, config, "models", spark.createDataFrame(rows, MODELS),
                              "model_name", [name])
