"""A real Spark standalone cluster on loopback (a master and two workers started from the
pyspark installation): `spark-submit --master spark://...` runs the nightly job unchanged."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from vidspark import storage
from vidspark.config import load_config
from vidspark_demo import generate_demo_dataset
from tests.conftest import QUICK_JVM, ROOT
from tests.test_e2e import _env

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class(*args: str, log) -> subprocess.Popen:
    # the master and workers live as long as the test: the quick compiler (conftest)
    env = dict(_env(), SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1",
               SPARK_DAEMON_JAVA_OPTS=QUICK_JVM)
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "spark-class"), *args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def master_state(web_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/json/", timeout=5) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    port, web = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    procs = []
    logs = open(tmp / "cluster.log", "w")
    try:
        procs.append(spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                 "--port", str(port), "--webui-port", str(web), log=logs))
        for i in range(2):
            procs.append(spark_class("org.apache.spark.deploy.worker.Worker", url,
                                     "--host", "127.0.0.1", "--cores", "1", "--memory", "3g",
                                     "--webui-port", str(free_port()),
                                     "--work-dir", str(tmp / f"work{i}"), log=logs))
        deadline = time.time() + 120
        while True:
            try:
                state = master_state(web)
                if sum(w["state"] == "ALIVE" for w in state["workers"]) == 2:
                    break
            except OSError:
                pass
            assert time.time() < deadline, open(tmp / "cluster.log").read()[-3000:]
            time.sleep(1)
        yield {"url": url, "web": web, "tmp": tmp}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        logs.close()


def test_nightly_job_on_a_standalone_cluster(cluster, spark, weights_path):
    tmp = cluster["tmp"]
    data = tmp / "data"
    generate_demo_dataset(str(data), seconds=4)
    conf = tmp / "cluster.yaml"
    conf.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp / "store")},
        "input": {"train_videos": str(data / "train"), "score_videos": str(data / "score"),
                  "labels": str(data / "labels.csv")},
        "featurizer": {"weights": weights_path, "batch_size": 8},
        "train": {"random_forest": {"num_trees": [20]}},     # the deployment is tested, not the model
    }))
    # the executors live as long as the job: the quick compiler, like the driver (conftest)
    proc = subprocess.run(
        ["spark-submit", "--master", cluster["url"], "--conf", "spark.executor.memory=1g",
         "--conf", f"spark.executor.extraJavaOptions={QUICK_JVM}",
         "--conf", f"spark.pyspark.python={sys.executable}", "jobs/nightly.py",
         "--config", str(conf)], cwd=ROOT, env=dict(_env(), SPARK_LOCAL_IP="127.0.0.1"),
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    state = master_state(cluster["web"])
    apps = state["completedapps"]
    assert [a["name"] for a in apps] == ["vidspark-nightly"]
    assert sum(w["state"] == "ALIVE" for w in state["workers"]) == 2
    assert apps[0]["cores"] == 2                    # one core on each of the two workers
    config = load_config(str(conf))
    storage.register_tables(spark, config)
    assert storage.read(spark, config, "frames").count() == 15 * 4
    assert storage.read(spark, config, "features").count() == 15 * 4
    assert storage.read(spark, config, "predictions").count() == 6 * 4
    # executors ran on both workers: each worker folder holds an executor of this app
    app_id = apps[0]["id"]
    assert all((tmp / f"work{i}" / app_id).is_dir() for i in range(2))
