"""The real Keras InceptionV3 graph with the shared offline weights, through the Spark UDF."""
import cv2
import numpy as np
import pytest

from vidspark.config import load_config
from vidspark.stages import featurize as FZ
from tests.conftest import TEST_CONF
from tests.helpers import cosine


def jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 95])[1].tobytes()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur((rng.random((288, 384, 3)) * 255).astype(np.uint8), (0, 0), 6)
    red = np.zeros((288, 384, 3), np.uint8)
    red[..., 2] = 220                                   # BGR: a red picture
    stripes = np.zeros((288, 384, 3), np.uint8)
    stripes[:, ::16] = 255
    return [base, red, stripes]


def test_preprocessing_is_inceptions_own_in_rgb_order(images):
    import keras

    x = FZ.preprocess_jpegs([jpeg(images[1])])
    assert x.shape == (1, 299, 299, 3) and x.dtype == np.float32
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(images[1]), np.uint8), 1), cv2.COLOR_BGR2RGB)
    ref = keras.applications.inception_v3.preprocess_input(
        cv2.resize(rgb, (299, 299)).astype(np.float32))
    np.testing.assert_allclose(x[0], ref, atol=1e-6)
    assert x[0, ..., 0].mean() > 0.5 > x[0, ..., 2].mean()   # red is channel 0 (RGB)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_spark_udf_matches_plain_keras(spark, images, weights_path, backend):
    """The UDF on either Keras backend gives plain Keras-TensorFlow's features (on JAX, the last
    batch of 1 frame is padded to the batch size of 2)."""
    frames = spark.createDataFrame([("v", i, jpeg(img), "cam") for i, img in enumerate(images)],
                                   "video string, second int, jpeg binary, camera string")
    out = FZ.with_features(frames.coalesce(1), weights=weights_path, identity="id", batch_size=2,
                           backend=backend)
    assert out.schema["features"].dataType.simpleString() == "array<float>"   # any engine reads it
    rows = sorted(out.collect(), key=lambda r: r.second)
    feats = np.array([r.features for r in rows])
    assert {r.camera for r in rows} == {"cam"}
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()
    assert {r.weights for r in rows} == {"id"}
    # different frames give different features
    assert np.abs(feats[0] - feats[1]).max() > 1e-3 and np.abs(feats[1] - feats[2]).max() > 1e-3
    plain = FZ.load_model(weights_path).predict_on_batch(
        FZ.preprocess_jpegs([jpeg(img) for img in images]))
    np.testing.assert_allclose(feats, plain, rtol=1e-3, atol=1e-4)
    assert (cosine(feats, np.asarray(plain)) >= 0.999).all()


def test_backends_switch_in_a_reused_worker(spark, images, weights_path):
    """Spark reuses Python workers across jobs: a worker that ran Keras on TensorFlow runs JAX
    next (its float rounding differs a little: the JAX graph really ran) and TensorFlow again
    (its model built again after the switch: the same features as the first time)."""
    frames = spark.createDataFrame([("v", i, jpeg(img), "cam") for i, img in enumerate(images)],
                                   "video string, second int, jpeg binary, camera string")

    def features(backend):
        out = FZ.with_features(frames.coalesce(1), weights=weights_path, identity="id",
                               batch_size=4, backend=backend)
        return np.array([r.features for r in sorted(out.collect(), key=lambda r: r.second)])

    tf1, jx, tf2 = features("tensorflow"), features("jax"), features("tensorflow")
    np.testing.assert_allclose(tf1, tf2, rtol=1e-6, atol=1e-6)
    assert (cosine(tf1, jx) >= 0.999).all()
    assert np.abs(tf1 - jx).max() > 0


def test_workers_fork_from_one_daemon_that_imported_the_backend(spark):
    """The tests' session featurizes (conftest builds it with ``runs_model``): its Python workers
    are forks of vidspark.worker's daemon, which imported TensorFlow and froze what the imports
    made out of the garbage collector; mapInPandas and pandas UDFs share that one daemon."""
    import pandas as pd
    from pyspark.sql import functions as F

    from vidspark.worker import preload_list

    def where(batches):
        import gc
        import os

        for _ in batches:
            pass
        daemon = os.getppid()
        with open(f"/proc/{daemon}/cmdline") as fh:
            cmdline = fh.read().replace("\0", " ")
        with open(f"/proc/{daemon}/maps") as fh:
            tensorflow = "_pywrap_tensorflow" in fh.read()
        yield pd.DataFrame([{"daemon": daemon, "cmdline": cmdline, "tensorflow": tensorflow,
                             "frozen": gc.get_freeze_count()}])

    @F.pandas_udf("int")
    def daemon_of(ids: pd.Series) -> pd.Series:
        import os

        return pd.Series([os.getppid()] * len(ids))

    rows = (spark.range(2, numPartitions=2)
            .mapInPandas(where, "daemon int, cmdline string, tensorflow boolean, frozen int")
            .collect())
    assert all("-m vidspark.worker pyspark.worker" in r.cmdline for r in rows), rows
    assert all(r.tensorflow and r.frozen > 10_000 for r in rows), rows
    udf_daemons = {r[0] for r in spark.range(2, numPartitions=2).select(daemon_of("id")).collect()}
    assert udf_daemons == {r.daemon for r in rows} and len(udf_daemons) == 1
    assert preload_list("jax") == preload_list() == "numpy,pandas,pyarrow,cv2"
    assert preload_list("tensorflow").endswith(",tensorflow,keras")


def test_weights_identity(weights_path, monkeypatch):
    cfg = load_config(TEST_CONF, [f"featurizer.weights={weights_path}"])
    arg, identity = FZ.resolve_weights(cfg)
    assert arg == weights_path
    assert identity.startswith("file:inception_v3_notop_imagenet_partial.weights.h5:sha256=")
    cfg = load_config(TEST_CONF, ["featurizer.weights=random", "featurizer.random_seed=5"])
    assert FZ.resolve_weights(cfg) == ("random", "random:seed=5")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    cfg = load_config(TEST_CONF, [f"featurizer.weights={tmp_path}/nope.h5"])
    with pytest.raises(FZ.WeightsError, match="featurizer.weights: file not found: .*nope.h5"):
        FZ.resolve_weights(cfg)


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    cfg = load_config(TEST_CONF, ["featurizer.weights=imagenet"])
    with pytest.raises(FZ.WeightsError, match="set featurizer.weights to the path of a local weights file"):
        FZ.resolve_weights(cfg)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_bfloat16_features_are_close_to_float32(spark, images, weights_path, backend):
    """featurizer.precision bfloat16 runs the model in bfloat16 (features differ from float32)
    and stores float32 features whose cosine similarity to float32's is >= 0.99 on every frame."""
    frames = spark.createDataFrame([("v", i, jpeg(img), None) for i, img in enumerate(images)],
                                   "video string, second int, jpeg binary, camera string")
    out = FZ.with_features(frames, weights=weights_path, identity="id+bfloat16", batch_size=2,
                           precision="bfloat16", backend=backend)
    assert out.schema["features"].dataType.simpleString() == "array<float>"
    rows = sorted(out.collect(), key=lambda r: r.second)
    bf16 = np.array([r.features for r in rows])
    f32 = FZ.featurize_jpegs([jpeg(img) for img in images], weights_path, 2)
    assert f32.dtype == np.float32 and bf16.shape == f32.shape
    sim = cosine(bf16, f32)
    assert (sim >= 0.99).all(), sim
    assert np.abs(bf16 - f32).max() > 1e-4        # bfloat16 compute really ran


def test_feature_identity_records_the_precision():
    assert FZ.feature_identity("file:w.h5:sha256=ab", "float32") == "file:w.h5:sha256=ab"
    assert FZ.feature_identity("file:w.h5:sha256=ab", "bfloat16") == "file:w.h5:sha256=ab+bfloat16"


def test_bfloat16_falls_back_to_float32_with_a_warning(spark, monkeypatch, caplog):
    cfg = load_config(TEST_CONF, ["featurizer.weights=random", "featurizer.precision=bfloat16"])
    ok, found = FZ.executor_supports_bfloat16(spark)     # the real probe, on an executor
    assert ok == FZ.cpu_has_bfloat16() or "GPU" in found   # local mode: this machine
    assert FZ.resolve_precision(spark, cfg) == ("bfloat16" if ok else "float32")
    monkeypatch.setattr(FZ, "executor_supports_bfloat16", lambda s, b: (False, "host: no flags"))
    with caplog.at_level("WARNING", logger="vidspark.stages.featurize"):
        assert FZ.resolve_precision(spark, cfg) == "float32"
    assert "no bfloat16 hardware (host: no flags): using float32" in caplog.text
    cfg32 = load_config(TEST_CONF, ["featurizer.weights=random"])
    assert FZ.resolve_precision(spark, cfg32) == "float32"


@pytest.mark.parametrize("sizes, batch", [([5, 1, 7, 3], 4), ([64, 64, 10], 32), ([2, 2], 16),
                                          ([0, 3, 0], 2)])
def test_rebatch_keeps_order_and_batch_sizes(sizes, batch):
    """Model batches of exactly ``batch`` rows (the last may be short) whatever the Arrow batch
    sizes, one output per input batch in order, and never more rows held than one model batch
    and two Arrow batches."""
    import pandas as pd

    calls, start = [], 0
    inputs = []
    for n in sizes:
        inputs.append(pd.Series(range(start, start + n)))
        start += n
    consumed, yielded, held = [0], [0], []

    def fn(items):
        calls.append(len(items))
        held.append(consumed[0] - yielded[0])
        return [np.array([x * 10]) for x in items]

    def feed():
        for s in inputs:
            consumed[0] += len(s)
            yield s

    outs = []
    for out in FZ.rebatch(feed(), fn, batch):
        outs.append(out)
        yielded[0] += len(out)
    assert [len(o) for o in outs] == sizes
    flat = [int(v[0]) for o in outs for v in o]
    assert flat == [10 * x for x in range(sum(sizes))]
    assert all(c == batch for c in calls[:-1]) and 0 < calls[-1] <= batch
    assert sum(calls) == sum(sizes)
    assert max(held) <= batch + 2 * max(sizes)


def test_chunks_follow_video_and_second_and_are_bounded(spark):
    # video b has 5 seconds (one of them missing), a has 3, c has 1: 9 frames in chunks of 4
    rows = [("b", s) for s in (0, 1, 2, 4, 5)] + [("a", s) for s in (2, 0, 1)] + [("c", 7)]
    todo = spark.createDataFrame(rows, "video string, second int")
    keys, sizes = FZ.plan_chunks(todo, 4)
    got = sorted((r.video, r.second, r.chunk) for r in keys.collect())
    assert [c["frames"] for c in sizes] == [4, 4, 1]
    assert [c["videos"] for c in sizes] == [["a", "b"], ["b"], ["c"]]
    assert got == [("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("b", 0, 0), ("b", 1, 1), ("b", 2, 1),
                   ("b", 4, 1), ("b", 5, 1), ("c", 7, 2)]
    empty, none = FZ.plan_chunks(todo.limit(0), 4)
    assert none == [] and empty.count() == 0
