"""Shared fixtures: one local SparkSession for the whole run, generated videos, the shared
offline InceptionV3 weights file."""
from __future__ import annotations

import fcntl
import os
import shutil
import sys

import pytest

from vidspark.session import QUICK_COMPILER

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.abspath(os.path.join(
    ROOT, "..", "shared", "models", "inception_v3_notop_imagenet_partial.weights.h5"))
TEST_CONF = os.path.join(ROOT, "conf", "test.yaml")

# Tests run Spark in local mode with two cores; jobs never set a master themselves. The driver
# fits the models, two at once with train.parallelism 2, late in a long session (conf/test.yaml
# keeps execution-memory pages small for the same reason).
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--master local[2] --driver-memory 4g pyspark-shell")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The JVMs the tests start compile with the JVM's quick C1 compiler only
# (vidspark.session.QUICK_COMPILER keeps the code cache a whole job needs): on the tests' small
# data C2's compiler threads cost more CPU than its faster code saves (in a short nightly job
# they spent about 60% of the JVM's CPU time, -XX:+CITime; the session's C2 cost test_train
# 50 CPU-seconds and saved no time), CPU the other test process needs. The spark-submit and
# vidspark commands (they inherit SPARK_SUBMIT_OPTS) also use the serial collector; the session
# below, which lives as long as the test run with a 4 GB heap, keeps the default one.
QUICK_JVM = f"{QUICK_COMPILER} -XX:+UseSerialGC"
os.environ.setdefault("SPARK_SUBMIT_OPTS", QUICK_JVM)


@pytest.fixture(scope="session")
def weights_path() -> str:
    if not os.path.isfile(WEIGHTS):
        pytest.fail(f"the shared offline weights file is missing: {WEIGHTS}")
    return WEIGHTS


def make_config(tmp, *overrides: str, fmt: str = "delta") -> dict:
    """The test config with storage and inputs under ``tmp``."""
    from vidspark.config import load_config

    return load_config(TEST_CONF, [
        f"storage.root={tmp}/store", f"storage.format={fmt}",
        f"input.train_videos={tmp}/train", f"input.score_videos={tmp}/score",
        f"featurizer.weights={WEIGHTS}", *overrides])


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from vidspark.session import build_spark

    config = make_config(tmp_path_factory.mktemp("session"))
    inherited = os.environ.get("SPARK_SUBMIT_OPTS")
    if inherited == QUICK_JVM:
        os.environ["SPARK_SUBMIT_OPTS"] = QUICK_COMPILER
    try:
        session = build_spark(config, app_name="vidspark-tests", runs_model=True)
    finally:
        if inherited == QUICK_JVM:
            os.environ["SPARK_SUBMIT_OPTS"] = inherited
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict:
    """The built-in demo dataset (the same generator `make demo` uses)."""
    from vidspark_demo import generate_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    info = generate_demo_dataset(str(root))
    info["root"] = str(root)
    return info


@pytest.fixture(scope="session")
def featurized(spark, tmp_path_factory, weights_path, worker_id):
    """Small demo clips (6 s each) extracted, labelled and featurized once per test run (the
    first test process that needs them builds them, under a file lock, and the others read
    them); tests read the store as it is or copy it with ``fresh_store``, never write to it."""
    from vidspark import pipeline, storage
    from vidspark_demo import generate_demo_dataset

    if worker_id == "master":           # one test process: its own temporary folder
        tmp, lock = tmp_path_factory.mktemp("featurized"), None
    else:                               # pytest-xdist: the folder all its test processes share
        tmp = tmp_path_factory.getbasetemp().parent / "featurized"
        tmp.mkdir(exist_ok=True)
        lock = open(tmp.parent / "featurized.lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        info = generate_demo_dataset(str(tmp), seconds=6)
        config = make_config(tmp, f"input.labels={info['labels']}")
        storage.register_tables(spark, config)
        if not (tmp / ".featurized").exists():
            pipeline.run_stages(spark, config, ["extract", "labels", "featurize"])
            (tmp / ".featurized").touch()
    finally:
        if lock is not None:
            lock.close()                # releases the lock
    return {"tmp": tmp, "config": config, "labels": info["labels"]}


def fresh_store(spark, featurized, tmp_path, *overrides):
    """A copy of the ``featurized`` store under ``tmp_path`` (its own MLflow store beside it)."""
    from vidspark import storage

    shutil.copytree(featurized["tmp"] / "store", tmp_path / "store")
    for part in ("train", "score"):
        os.symlink(featurized["tmp"] / part, tmp_path / part)
    config = make_config(tmp_path, f"input.labels={featurized['labels']}", *overrides)
    storage.register_tables(spark, config)
    return config


# The longest modules first, by their time in CI's `--durations` (e2e about 400 s, operations
# 260, train 190, review 170, scale 160, pipeline 140, cluster 115, fights 105, then less): with
# test processes side by side (`make test`), they start early instead of ending the run alone.
# xdist keeps this order with --no-loadscope-reorder (the Makefile); by default it sends the
# modules with the most tests first, which left the one-test operations module for the end.
# Other modules keep their order after these.
LONGEST_FIRST = ("test_e2e", "test_operations", "test_train", "test_review", "test_scale",
                 "test_pipeline", "test_cluster", "test_fights", "test_feature_sets",
                 "test_featurize", "test_bad_inputs", "test_evaluate", "test_cli")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(
        os.path.splitext(os.path.basename(item.nodeid.split("::")[0]))[0], len(rank)))
