"""The real Keras InceptionV3 graph with the shared offline weights, through the Spark UDF."""
import cv2
import numpy as np
import pytest

from vidspark import featurize as FZ
from vidspark.config import load_config
from tests.conftest import TEST_CONF


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


def test_spark_udf_matches_plain_keras(spark, images, weights_path):
    frames = spark.createDataFrame([("v", i, jpeg(img)) for i, img in enumerate(images)],
                                   "video string, second int, jpeg binary")
    out = FZ.with_features(frames, weights=weights_path, identity="id", batch_size=2)
    rows = sorted(out.collect(), key=lambda r: r.second)
    feats = np.array([r.features.toArray() for r in rows])
    assert feats.shape == (3, 2048) and np.isfinite(feats).all()
    assert {r.weights for r in rows} == {"id"}
    # different frames give different features
    assert np.abs(feats[0] - feats[1]).max() > 1e-3 and np.abs(feats[1] - feats[2]).max() > 1e-3
    plain = FZ.load_model(weights_path).predict_on_batch(
        FZ.preprocess_jpegs([jpeg(img) for img in images]))
    np.testing.assert_allclose(feats, plain, rtol=1e-3, atol=1e-4)


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
