"""Featurize stage: JPEG frames -> 2048 InceptionV3 features (Keras, ``include_top=False``,
``pooling="avg"``, 299x299, InceptionV3's own preprocessing, RGB order).

The model runs in an iterator pandas UDF and is loaded once per Python worker (a module-level
cache survives across tasks because Spark reuses Python workers). Arrow batches are kept small
(``featurizer.arrow_batch_rows``) and the model sees ``featurizer.batch_size`` frames at a time,
so a worker's memory is bounded by the batch sizes, not by the number of frames.

Weights (``featurizer.weights``):
* ``imagenet``: Keras' published ImageNet weights through Keras' cache (downloaded on first use);
* a path: that weights file (e.g. an offline copy);
* ``random``: an explicitly untrained network (seeded), for smoke runs only.
The identity of the weights is stored with every feature row and with every model.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from vidspark import storage

log = logging.getLogger(__name__)

IMAGE_SIZE = 299
N_FEATURES = 2048
# Keras' published no-top InceptionV3 ImageNet weights (what weights="imagenet" downloads).
IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                + IMAGENET_FILE)
IMAGENET_HASH = "bcbd6486424b2319ff4ef7d526e38f63"

_MODELS: dict = {}


class WeightsError(RuntimeError):
    """The configured weights cannot be loaded."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(config: Mapping) -> tuple[str, str]:
    """Check ``featurizer.weights`` on the driver and return (what workers load, identity).

    ``imagenet`` is fetched here through Keras' cache, so a machine without internet access fails
    before any Spark work with a message that says what to do instead.
    """
    spec = config["featurizer"]["weights"]
    if spec == "random":
        seed = int(config["featurizer"]["random_seed"])
        log.warning("featurizer.weights is 'random': features carry no ImageNet knowledge "
                    "(smoke runs only)")
        return "random", f"random:seed={seed}"
    if spec == "imagenet":
        try:
            import keras

            keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models",
                                 file_hash=IMAGENET_HASH)
        except Exception as exc:
            raise WeightsError(
                "featurizer.weights=imagenet: could not download Keras' InceptionV3 ImageNet "
                f"weights ({type(exc).__name__}: {exc}). On a machine without internet access, "
                "set featurizer.weights to the path of a local weights file.") from None
        # Workers load "imagenet" through their own Keras cache (on a cluster: on each machine).
        return "imagenet", f"imagenet:{IMAGENET_FILE}:md5={IMAGENET_HASH}"
    if not os.path.isfile(spec):
        raise WeightsError(f"featurizer.weights: file not found: {spec}")
    return spec, f"file:{os.path.basename(spec)}:sha256={_sha256(spec)[:16]}"


def load_model(weights: str, seed: int = 0):
    """The Keras InceptionV3 feature extractor, cached per Python process."""
    key = (weights, seed)
    if key not in _MODELS:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        if weights == "random":
            keras.utils.set_random_seed(seed)
        _MODELS[key] = keras.applications.InceptionV3(
            include_top=False, pooling="avg", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
            weights=None if weights == "random" else weights)
    return _MODELS[key]


def preprocess_jpegs(jpegs) -> np.ndarray:
    """JPEG bytes -> float32 batch (n, 299, 299, 3) in RGB order, scaled to [-1, 1] as
    ``keras.applications.inception_v3.preprocess_input`` does."""
    import cv2

    out = np.empty((len(jpegs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    for i, data in enumerate(jpegs):
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("a stored frame is not a decodable JPEG")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out[i] = cv2.resize(rgb, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    out /= 127.5
    out -= 1.0
    return out


def featurize_jpegs(jpegs, weights: str, batch_size: int, seed: int = 0) -> np.ndarray:
    """Features (n, 2048) for a sequence of JPEG frames, ``batch_size`` frames per model call."""
    model = load_model(weights, seed)
    parts = []
    for i in range(0, len(jpegs), batch_size):
        x = preprocess_jpegs(jpegs[i:i + batch_size])
        parts.append(np.asarray(model.predict_on_batch(x), dtype=np.float32))
    return np.concatenate(parts) if parts else np.empty((0, N_FEATURES), np.float32)


def _features_udf(weights: str, batch_size: int, seed: int):
    @F.pandas_udf(T.ArrayType(T.FloatType()))
    def inception_features(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        load_model(weights, seed)  # once per Python worker, before the first batch
        for jpegs in batches:
            feats = featurize_jpegs(list(jpegs), weights, batch_size, seed)
            yield pd.Series(list(feats))
    return inception_features


def with_features(frames: DataFrame, *, weights: str, identity: str, batch_size: int,
                  seed: int = 0) -> DataFrame:
    """``frames`` (video, second, jpeg) -> (video, second, features vector, weights identity)."""
    udf = _features_udf(weights, batch_size, seed)
    return frames.select(
        "video", "second",
        array_to_vector(udf(F.col("jpeg"))).alias("features"),
        F.lit(identity).alias("weights"),
    )


def run(spark: SparkSession, config: Mapping) -> dict:
    """Compute features for frames that have none under the current weights."""
    weights, identity = resolve_weights(config)
    frames = storage.read(spark, config, "frames")
    ok_videos = (storage.read(spark, config, "videos").where(F.col("status") == "ok")
                 .select("video"))
    done = (storage.read(spark, config, "features").where(F.col("weights") == identity)
            .select("video", "second"))
    todo = (frames.join(ok_videos, "video", "left_semi")
            .join(done, ["video", "second"], "left_anti")
            .select("video", "second", "jpeg"))
    n = todo.count()
    total = frames.count()
    if n == 0:
        log.info("featurize: 0 frames featurized (all frames have features for %s)", identity)
        return {"read": 0, "written": 0, "skipped": total, "quarantined": 0,
                "featurized": 0, "weights": identity}
    log.info("featurize: %d frames to featurize with %s", n, identity)
    parallelism = spark.sparkContext.defaultParallelism
    batch_size = int(config["featurizer"]["batch_size"])
    partitions = max(1, min(parallelism * 4, -(-n // batch_size)))
    feats = with_features(todo.repartition(partitions), weights=weights, identity=identity,
                          batch_size=batch_size, seed=int(config["featurizer"]["random_seed"]))
    # Materialise once: MERGE may read its source more than once, and the model is the cost.
    feats = feats.localCheckpoint(eager=True)
    storage.upsert(spark, config, "features", feats)
    log.info("featurize: %d frames featurized with %s", n, identity)
    return {"read": n, "written": n, "skipped": total - n, "quarantined": 0,
            "featurized": n, "weights": identity}
