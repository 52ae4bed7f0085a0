"""Nightly operation through spark-submit: runs killed in the middle of extraction and late in
featurization keep the chunks they committed, the next run does only the rest, and the result
has exactly the rows of a clean run; two runs at once on one storage.root never corrupt or
duplicate anything."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml

from vidspark import storage
from vidspark.config import load_config
from vidspark.storage.lock import LOCK_NAME
from vidspark_demo import generate_demo_dataset
from tests.conftest import ROOT, TEST_CONF
from tests.test_e2e import _env, TABLES

pytestmark = pytest.mark.slow


SECONDS = 4  # the demo clips' length
CHUNK = 12   # video-seconds per extraction commit, frames per featurization commit


def write_conf(tmp, name, data_root, weights) -> str:
    conf = tmp / f"{name}.yaml"
    conf.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp / name)},
        "input": {"train_videos": f"{data_root}/train", "score_videos": f"{data_root}/score",
                  "labels": f"{data_root}/labels.csv"},
        # several commits per stage: 15 clips of 4 s are 5 chunks of extraction and featurization
        "extract": {"chunk_seconds": CHUNK},
        "featurizer": {"weights": weights, "batch_size": 8, "arrow_batch_rows": 8,
                       "chunk_frames": CHUNK},
        # a small forest: what is tested is what a crash keeps, not the model
        "train": {"random_forest": {"num_trees": [20]}},
        # the tests' small-data engine settings (the e2e test keeps Spark's defaults)
        "spark": load_config(TEST_CONF).spark,
    }))
    return str(conf)


def start(conf: str) -> subprocess.Popen:
    env = dict(_env(), PYTHONUNBUFFERED="1")
    return subprocess.Popen(["spark-submit", "--master", "local[2]", "jobs/nightly.py",
                             "--config", conf], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 600) -> list[str]:
    lines, deadline = [], time.time() + timeout
    for line in proc.stdout:
        lines.append(line)
        if needle in line:
            return lines
        assert time.time() < deadline, f"no '{needle}' within {timeout}s"
    raise AssertionError(f"the job ended without printing '{needle}':\n{''.join(lines[-40:])}")


# Columns that differ between two correct runs: times, and ids/paths of the run's own model.
RUN_DEPENDENT = {"processed_at", "scored_at", "created_at", "data_fingerprint", "mtime_ns",
                 "run_id", "computed_at"}


def snapshot(spark, config) -> dict:
    """Every table's rows (JPEG bytes included), minus run-dependent columns."""
    out = {}
    for name in TABLES:
        df = storage.read(spark, config, name).toPandas()
        df = df.drop(columns=[c for c in df.columns if c in RUN_DEPENDENT])
        for column in ("features", "motion"):            # arrays of floats
            if column in df.columns:
                df[column] = [tuple(np.round(np.asarray(v, dtype=float), 5)) for v in df[column]]
        for column in df.columns:
            if df[column].dtype.kind == "f":      # probabilities, thresholds, areas
                df[column] = df[column].round(6)
        keys = [c for c in ("video", "second") if c in df.columns] or list(df.columns)
        out[name] = df.sort_values(keys).reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops-data")
    generate_demo_dataset(str(root), seconds=SECONDS)
    return str(root)


def test_concurrent_runs_and_crashes_in_extraction_and_featurization(spark, tmp_path, data, weights_path):
    clean_conf = write_conf(tmp_path, "clean", data, weights_path)
    crash_conf = write_conf(tmp_path, "crash", data, weights_path)

    # 1. A clean run; a second run on the same storage.root meanwhile refuses clearly.
    clean = start(clean_conf)
    wait_for_line(clean, "stage extract done")
    second = subprocess.run(["spark-submit", "--master", "local[2]", "jobs/nightly.py",
                             "--config", clean_conf], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert second.returncode != 0
    assert "another run holds storage.root" in second.stdout + second.stderr
    assert clean.wait(timeout=900) == 0, clean.stdout.read()[-3000:]

    crash_config = load_config(crash_conf)
    total_videos, total_frames = 15, 15 * SECONDS

    # 2. A run killed (SIGKILL, whole process group) after extraction committed its first chunk.
    crashed = start(crash_conf)
    wait_for_line(crashed, "extract: chunk 1/")
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait(timeout=60)
    storage.register_tables(spark, crash_config)
    kept_videos = storage.read(spark, crash_config, "videos").count()
    assert 0 < kept_videos < total_videos

    # 3. The next run decodes only the videos not committed, and is killed late in featurization.
    crashed = start(crash_conf)
    lines = wait_for_line(crashed, "frames to featurize")
    chunks = int(re.search(r"in (\d+) chunk", lines[-1]).group(1))
    assert chunks >= 3, lines[-1]
    lines += wait_for_line(crashed, f"featurize: chunk {chunks - 1}/{chunks} committed")
    assert crashed.poll() is None, "featurization finished before the kill"
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait(timeout=60)
    log = "".join(lines)
    assert "took over the lock" in log
    assert re.search(rf"\b{total_videos - kept_videos} new videos", log)
    assert f"featurize: {total_frames} frames to featurize" in log
    assert os.path.exists(os.path.join(crash_config.storage.root, LOCK_NAME))
    storage.register_tables(spark, crash_config)
    committed = storage.read(spark, crash_config, "features").count()
    # whole chunks only, in order: at least the first chunks - 1, not all
    assert committed % CHUNK == 0 and (chunks - 1) * CHUNK <= committed < total_frames, committed
    assert storage.read(spark, crash_config, "predictions").count() == 0

    # 4. The next run takes over the dead run's lock and featurizes only what was not committed.
    rerun = start(crash_conf)
    log = "".join(wait_for_line(rerun, "succeeded:"))
    assert rerun.wait(timeout=900) == 0
    assert "took over the lock" in log and re.search(r"\b0 new videos", log)
    assert f"featurize: {total_frames - committed} frames to featurize" in log
    runs = storage.read(spark, crash_config, "runs").toPandas()
    assert set(runs.status) == {"abandoned", "succeeded"}
    abandoned = runs[runs.status == "abandoned"]
    assert set(abandoned.stage) == {"run"} and abandoned.run_id.nunique() == 2
    # the run killed in featurization recorded the stages it finished; featurize never ended
    stages = runs.groupby("run_id").stage.apply(set)
    assert sorted(map(sorted, stages[abandoned.run_id])) == [["extract", "labels", "run"], ["run"]]

    # 5. Every table holds exactly what the clean run produced.
    clean_config = load_config(clean_conf)
    storage.register_tables(spark, clean_config)
    expected = snapshot(spark, clean_config)
    storage.register_tables(spark, crash_config)
    got = snapshot(spark, crash_config)
    for name in TABLES:
        exp, act = expected[name], got[name]
        assert len(act) == len(exp), name
        assert act.equals(exp), f"{name} differs from the clean run"
    counts = {name: len(df) for name, df in got.items()}
    print("row counts after crash + re-run == clean run:", counts)
