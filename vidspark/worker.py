"""The Python daemon Spark forks vidspark's Python workers from (``spark.python.daemon.module``,
set by ``vidspark.session.build_spark``): Spark's own daemon, after importing once the modules
every vidspark task needs, so that each forked worker starts with them loaded.

A worker is a fork of the daemon. Spark's daemon imports only pyspark and numpy, so every worker
imported pandas, pyarrow and OpenCV itself, and every worker that runs the model imported
TensorFlow and Keras: about 3 of the 6.5 CPU-seconds a new featurizing worker took to build the
model and run its first batches, paid again whenever Spark starts a worker (one per concurrent
task, and again after a worker sat idle for a minute). Imported here, before the forks, they
cost once per executor. Only imports happen before a fork: no backend runs, no model is built
and no device is opened here (TensorFlow's threads and a task's GPU are set up by the task, as
before). The helper threads the imports start (OpenBLAS's, as under Spark's own daemon, and
pyarrow's jemalloc) do not carry over into a fork; every stage's results are the same with this
daemon (the test suite, featurize against plain Keras included).

``VIDSPARK_WORKER_PRELOAD`` (``spark.executorEnv.*``, set by the session builder) lists the
modules to import; an import that fails is reported on the executor's stderr and left to the
task, which then fails as it would have without the daemon.
"""
from __future__ import annotations

import gc
import importlib
import os
import sys

PRELOAD_ENV = "VIDSPARK_WORKER_PRELOAD"
#: What every vidspark task imports (Arrow batches, pandas UDFs, JPEG and video decoding).
COMMON = ("numpy", "pandas", "pyarrow", "cv2")
#: What the featurize stage's workers import, by ``featurizer.backend`` (JAX is left to the
#: tasks: JAX warns against forking once it is imported).
BACKEND_MODULES = {"tensorflow": ("tensorflow", "keras"), "jax": ()}


def preload_list(backend: str | None = None) -> str:
    """The ``VIDSPARK_WORKER_PRELOAD`` value: the common modules, and ``backend``'s when the
    application runs the model."""
    return ",".join(COMMON + (BACKEND_MODULES[backend] if backend else ()))


def preload(names) -> list[str]:
    """Import ``names``; returns those that failed (reported on stderr)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in names:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from vidspark.stages.featurize import quiet_native_stderr    # TensorFlow's C++ notices

    failed = []
    for name in names:
        try:
            with quiet_native_stderr():
                importlib.import_module(name)
        except Exception as exc:  # the task imports it again and fails with the real error
            failed.append(name)
            print(f"vidspark worker daemon: could not import {name} in advance: {exc}",
                  file=sys.stderr)
    return failed


def main() -> None:
    preload([n for n in os.environ.get(PRELOAD_ENV, ",".join(COMMON)).split(",") if n])
    from pyspark import daemon

    # A worker runs a full garbage collection after every task (pyspark.daemon). Without this,
    # each one walks every object the imports above made, copying the pages that hold them into
    # the worker (copy-on-write): that cost more CPU than the imports save. Frozen objects are
    # left out of collections.
    gc.freeze()

    daemon.manager()


if __name__ == "__main__":
    main()
