import os

import pytest

from vidspark.config import ConfigError, TrackingConfig, load_config, parse_override
from tests.conftest import TEST_CONF


def test_defaults_and_environment_file():
    cfg = load_config(TEST_CONF)
    assert cfg.storage.format == "delta"
    assert cfg.train.reg_param == (0.05,)                # from conf/test.yaml
    assert cfg.train.class_weighting == (False, True)
    assert cfg.tracking == TrackingConfig(uri=None, experiment="vidspark",
                                          model_name="vidspark-suspicious")
    assert cfg.featurizer.batch_size == 16          # from conf/test.yaml
    assert os.path.isabs(cfg.storage.root)           # paths resolved against the cwd


def test_overrides_are_typed():
    cfg = load_config(TEST_CONF, ["train.max_iter=50", "train.reg_param=[0.1, 1]",
                                  "storage.format=parquet", "spark.sql.shuffle.partitions=3"])
    assert cfg.train.max_iter == (50,)                 # a single value is a one-value grid
    assert cfg.train.reg_param == (0.1, 1)
    assert cfg.storage.format == "parquet"
    assert cfg.spark["spark.sql.shuffle.partitions"] == 3


def test_a_config_is_typed_immutable_and_changed_by_validated_copies():
    import dataclasses
    import pickle

    cfg = load_config(TEST_CONF)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.folds = 5
    changed = cfg.replace("train.folds=5", "train.gbt.max_depth=4")
    assert (changed.train.folds, changed.train.gbt.max_depth, cfg.train.folds) == (5, (4,), 3)
    assert changed.train.grid("gbt") == {"max_iter": (50,), "max_depth": (4,), "step_size": (0.1,)}
    with pytest.raises(ConfigError, match="train.folds must be at least 2"):
        cfg.replace("train.folds=1")
    with pytest.raises(ConfigError, match="unknown configuration key 'train.nope'"):
        cfg.replace("train.nope=1")
    assert pickle.loads(pickle.dumps(cfg)) == cfg          # travels to Spark's Python workers
    plain = cfg.to_dict()
    assert plain["train"]["reg_param"] == [0.05] and plain["spark"] == cfg.spark
    assert set(plain) == {"storage", "input", "extract", "featurizer", "features", "train",
                          "segments", "tracking", "sql_server", "spark"}
    spark_only = cfg.with_spark({"spark.ui.enabled": "false"})
    assert spark_only.spark["spark.ui.enabled"] == "false" and "spark.ui.enabled" not in cfg.spark


def test_parse_override_keeps_spark_keys_whole():
    assert parse_override("spark.sql.shuffle.partitions=4") == (
        ["spark", "spark.sql.shuffle.partitions"], 4)
    assert parse_override("featurizer.weights=random") == (["featurizer", "weights"], "random")


@pytest.mark.parametrize("override, message", [
    (["train.maxiter=5"], "unknown configuration key 'train.maxiter'"),
    (["nosuch.key=1"], "unknown configuration key 'nosuch'"),
    (["storage.format=orc"], "storage.format must be one of delta, parquet"),
    (["featurizer.batch_size=0"], "featurizer.batch_size must be a positive integer"),
    (["train.elastic_net_param=2"], "train.elastic_net_param must be between 0 and 1"),
    (["train.reg_param=[0.1, -1]"], "train.reg_param must be a non-negative number, not -1"),
    (["train.reg_param=[]"], "train.reg_param must not be an empty list"),
    (["train.class_weighting=yes please"], "train.class_weighting must be true or false"),
    (["train.folds=1"], "train.folds must be at least 2"),
    (["train.promote=sometimes"], "train.promote must be one of auto, always, never"),
    (["train.metric=accuracy"], "train.metric must be one of areaUnderPR, areaUnderROC"),
    (["train.threshold=youden"], "train.threshold must be one of max_f1, recall, precision"),
    (["train.threshold_target=0"], r"train.threshold_target must be in \(0, 1\]"),
    (["train.max_iter"], "is not of the form key=value"),
    (["spark.master=local[1]"], "spark-submit --master chooses it"),
    (["featurizer.precision=float16"], "featurizer.precision must be one of float32, bfloat16"),
    (["featurizer.backend=torch"], "featurizer.backend must be one of tensorflow, jax"),
    (["featurizer.threads=-1"], "featurizer.threads must be a non-negative integer"),
    (["featurizer.gpu_batch_size=0"], "featurizer.gpu_batch_size must be a positive integer"),
    (["input.camera=folders"], "input.camera must be one of folder, parent, regex"),
    (["input.camera=regex"], "input.camera is regex but input.camera_regex is not set"),
    (["input.camera=regex", "input.camera_regex=(cam"], "input.camera_regex is not a valid regular"),
    (["extract.motion_width=16"], "extract.motion_width must be at least 32"),
    (["extract.motion_fps=0"], r"extract.motion_fps must be a number in \(0, 60\]"),
    (["features.context_seconds=-1"], "features.context_seconds must be a non-negative integer"),
    (["train.group_by=clip"], "train.group_by must be one of camera, video"),
    (["train.feature_sets=[motion+colour]"], "feature set 'motion\\+colour': groups are appearance"),
    (["train.feature_sets=[motion+motion]"], "each at most once"),
    (["train.feature_sets=[motion, motion]"], "lists a feature set twice"),
    (["train.models=[svm]"], "train.models: unknown model family 'svm'"),
    (["train.gbt.max_depth=[0]"], "train.gbt.max_depth must be a positive integer"),
    (["train.gbt.step_size=[2]"], r"train.gbt.step_size must be in \(0, 1\]"),
    (["train.random_forest.max_depth=[31]"], "train.random_forest.max_depth must be at most 30"),
    (["train.random_forest.num_trees=[]"], "train.random_forest.num_trees must not be an empty list"),
])
def test_bad_configuration_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(TEST_CONF, override)


def test_camera_of_a_video():
    from vidspark.config import camera_of

    folder = load_config(TEST_CONF)
    assert folder.input.camera == "folder" and folder.train.group_by == "camera"
    assert camera_of("cam1/2026-11-01/0800", folder) == "cam1"
    assert camera_of("Fight_Chase", folder) == "Fight_Chase"          # a file at the top: itself
    parent = load_config(TEST_CONF, ["input.camera=parent"])
    assert camera_of("cam1/2026-11-01/0800", parent) == "cam1/2026-11-01"
    named = load_config(TEST_CONF, ["input.camera=regex", r"input.camera_regex=_(?P<camera>c\d+)_"])
    assert camera_of("site_c12_0800", named) == "c12"
    assert camera_of("unmatched", named) == "unmatched"
    grouped = load_config(TEST_CONF, ["input.camera=regex", r"input.camera_regex=^([A-Za-z]+)"])
    assert camera_of("Walk1", grouped) == "Walk"


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config("nope.yaml")


def test_committed_spark_defaults_match_the_code():
    from vidspark.session import render_spark_defaults

    root = os.path.dirname(TEST_CONF)
    with open(os.path.join(root, "spark-defaults.conf"), encoding="utf-8") as fh:
        assert fh.read() == render_spark_defaults(cluster=True)


def test_local_path():
    from vidspark.config import local_path

    assert local_path("/data/x") == "/data/x"
    assert local_path("file:/data/x") == "/data/x"
    assert local_path("file:///data/x") == "/data/x"
    assert local_path("hdfs://nn:8020/data/x") is None
    assert local_path("s3a://bucket/x") is None


def test_every_configuration_key_is_documented_in_the_readme():
    import yaml

    with open(os.path.join(os.path.dirname(TEST_CONF), "..", "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    base = yaml.safe_load(open(os.path.join(os.path.dirname(TEST_CONF), "..", "vidspark", "conf",
                                            "base.yaml"), encoding="utf-8"))
    keys = [f"{section}.{key}" for section, values in base.items() if section != "spark"
            for key in values]
    missing = [k for k in keys if f"`{k}`" not in readme and f"`{k}." not in readme]
    assert missing == []


def test_the_sql_query_the_bench_times_is_the_readmes():
    from vidspark.sqlserver import README_QUERY

    with open(os.path.join(os.path.dirname(TEST_CONF), "..", "README.md"), encoding="utf-8") as fh:
        assert f'"{README_QUERY}"' in fh.read()
