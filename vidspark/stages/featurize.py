"""Featurize stage: JPEG frames -> 2048 InceptionV3 features (Keras, ``include_top=False``,
``pooling="avg"``, 299x299, InceptionV3's own preprocessing, RGB order), stored as
``array<float>`` (any Delta reader can read them; train and score build ML vectors).

The model runs in an iterator pandas UDF and is loaded once per Python worker (a module-level
cache survives across tasks because Spark reuses Python workers). Arrow batches are kept small
(``featurizer.arrow_batch_rows``) and the model sees ``featurizer.batch_size`` frames at a time,
so a worker's memory is bounded by the batch sizes, not by the number of frames.

Numerics (``featurizer.precision``): ``float32``, or ``bfloat16``, which runs the model with Keras
mixed precision (bfloat16 compute, float32 variables) where the hardware has bfloat16 units
(x86 AVX512-BF16 or AMX, ARM BF16, or a GPU). Whether it does is decided by a probe task on an
executor, where the model runs; without such hardware the stage logs a warning and uses float32.
Features are stored as float32 either way, and the precision is part of the feature identity.

Backend (``featurizer.backend``): ``tensorflow`` (the default) or ``jax``. Keras 3 runs the same
InceptionV3 graph with the same weights file and the same preprocessing on either; their features
agree to float32 rounding (cosine >= 0.999 is tested), so the backend is not part of the feature
identity (it is recorded in the run's details). JAX is there for GPU machines that have no
TensorFlow build for their CUDA (the ``[gpu]`` extra installs JAX with CUDA); XLA compiles one
program per input shape, so on JAX every model call has the same batch shape (a short last batch
is padded and the padding's outputs dropped).

Threads and devices: each Python worker gives the backend as many threads as its task has CPUs
(``spark.task.cpus``; ``featurizer.threads`` overrides), so ``local[*]`` runs one single-threaded
model per core instead of several models fighting over every core. A worker whose backend sees
a GPU (the one Spark assigned to its task, when GPU scheduling is on) uses it with
``featurizer.gpu_batch_size`` frames per model call.

Weights (``featurizer.weights``):
* ``imagenet``: Keras' published ImageNet weights through Keras' cache (downloaded on first use);
* a path: that weights file (e.g. an offline copy);
* ``random``: an explicitly untrained network (seeded), for smoke runs only.
The identity of the weights is stored with every feature row and with every model.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import sys
import time
from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from vidspark import storage
from vidspark.config import Config, BACKENDS, PRECISIONS
from vidspark.errors import VidsparkError
from vidspark.storage import runs

log = logging.getLogger(__name__)

IMAGE_SIZE = 299
N_FEATURES = 2048
# Keras' published no-top InceptionV3 ImageNet weights (what weights="imagenet" downloads).
IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                + IMAGENET_FILE)
IMAGENET_HASH = "bcbd6486424b2319ff4ef7d526e38f63"


_MODELS: dict = {}
_DEVICE: dict = {}


class WeightsError(VidsparkError, RuntimeError):
    """The configured weights cannot be loaded."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(config: Config) -> tuple[str, str]:
    """Check ``featurizer.weights`` on the driver and return (what workers load, identity).

    ``imagenet`` is fetched here through Keras' cache, so a machine without internet access fails
    before any Spark work with a message that says what to do instead.
    """
    spec = config.featurizer.weights
    if spec == "random":
        seed = int(config.featurizer.random_seed)
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


def cpu_info() -> tuple[str, set]:
    """(CPU model name, CPU flags) from ``/proc/cpuinfo``; ("", empty set) where there is none."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        pass
    return model, flags


def cpu_has_bfloat16() -> bool:
    """Whether this machine's CPU has bfloat16 arithmetic (x86 AVX512-BF16 or AMX-BF16, ARM BF16),
    from ``/proc/cpuinfo`` (Linux) or ``sysctl`` (macOS)."""
    if os.path.exists("/proc/cpuinfo"):
        return bool(cpu_info()[1] & {"avx512_bf16", "amx_bf16", "bf16"})
    import subprocess

    try:
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == "1"


def _gpu_addresses() -> list:
    """The GPUs Spark assigned to the running task (GPU scheduling), if any."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return []
    gpu = (ctx.resources() or {}).get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def _init_tensorflow(threads: int) -> bool:
    """Configure TensorFlow before its first use in this process: on a GPU task, only the GPU Spark
    assigned (and grow GPU memory as needed, so workers can share a GPU); on CPUs, ``threads``
    intra-op threads (once, before TensorFlow runs its first op). Returns whether TensorFlow sees
    a GPU."""
    if "gpu" not in _DEVICE:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        addresses = _gpu_addresses()
        if addresses and "CUDA_VISIBLE_DEVICES" not in os.environ:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(addresses)
        with quiet_native_stderr():      # its C++ start-up notices (oneDNN, absl)
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        _DEVICE["gpu"] = bool(gpus)
        if gpus:
            log.info("featurize: TensorFlow uses GPU(s) %s", [g.name for g in gpus])
    if not _DEVICE["gpu"] and threads > 0 and "threads" not in _DEVICE:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
            _DEVICE["threads"] = threads
        except RuntimeError as exc:  # TensorFlow already ran in this process
            _DEVICE["threads"] = None
            log.warning("featurize: TensorFlow ran before vidspark could set its threads (%s); "
                        "using its existing settings", exc)
    return _DEVICE["gpu"]


def _init_jax(threads: int) -> bool:
    """Configure JAX before its first use in this process: on a GPU task, only the GPU Spark
    assigned, allocated as needed (JAX otherwise takes 75% of the GPU's memory up front, so
    workers could not share it); on CPUs with ``threads`` 1, XLA's single-threaded CPU kernels
    (XLA has no flag for another count: with more threads it uses its own pool). Returns whether
    JAX sees a GPU."""
    if "jax_gpu" not in _DEVICE:
        addresses = _gpu_addresses()
        if addresses and "CUDA_VISIBLE_DEVICES" not in os.environ:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(addresses)
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        flags = os.environ.get("XLA_FLAGS", "")
        if threads == 1 and "jax" not in sys.modules and "multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        _DEVICE["jax_gpu"] = bool(gpus)
        if gpus:
            log.info("featurize: JAX uses GPU(s) %s", gpus)
    return _DEVICE["jax_gpu"]


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence the process's file descriptor 2 while a backend starts and builds a model:
    TensorFlow's C++ library prints notices there (oneDNN, absl) whatever its log level, once
    per task process. Python exceptions still propagate; ``VIDSPARK_NATIVE_LOGS=1`` keeps them."""
    if os.environ.get("VIDSPARK_NATIVE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def init_backend(backend: str, threads: int = 0) -> bool:
    """Configure ``backend``'s devices and threads in this process (once); whether it sees a GPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return _init_tensorflow(threads) if backend == "tensorflow" else _init_jax(threads)


def keras_on(backend: str):
    """The ``keras`` package running on ``backend`` in this process. Keras reads its backend when
    first imported (``KERAS_BACKEND``); a Python worker that already ran Keras on another backend
    (Spark reuses workers across jobs) switches with ``keras.config.set_backend``, which reloads
    Keras, and drops the models it built on the other backend (loaded again when needed)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
    keras = importlib.import_module("keras")
    if keras.backend.backend() != backend:
        keras.config.set_backend(backend)
        keras = importlib.import_module("keras")
        # Keras does not promise that objects built before a switch keep working: rebuild.
        for key in [k for k in _MODELS if k[3] != backend]:
            del _MODELS[key]
    return keras


def load_model(weights: str, seed: int = 0, precision: str = "float32", threads: int = 0,
               backend: str = "tensorflow"):
    """The Keras InceptionV3 feature extractor on ``backend``, cached per Python process.

    ``precision`` ``bfloat16`` builds it under Keras' ``mixed_bfloat16`` policy (bfloat16
    compute, float32 variables); ``threads`` > 0 sets the backend's intra-op threads when this
    is the process's first use of it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    key = (weights, seed, precision, backend)
    if key not in _MODELS:
        init_backend(backend, threads)
        keras = keras_on(backend)

        if weights == "random":
            keras.utils.set_random_seed(seed)
        previous = keras.mixed_precision.global_policy()
        if precision == "bfloat16":
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            with quiet_native_stderr():
                _MODELS[key] = keras.applications.InceptionV3(
                    include_top=False, pooling="avg", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                    weights=None if weights == "random" else weights)
        finally:
            keras.mixed_precision.set_global_policy(previous)
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


def _pad_to(backend: str, batch_size: int) -> int:
    """What ``_predict`` pads a short batch to: on JAX the batch size (XLA compiles a program
    per input shape), else nothing."""
    return batch_size if backend == "jax" else 0


def featurize_jpegs(jpegs, weights: str, batch_size: int, seed: int = 0,
                    precision: str = "float32", backend: str = "tensorflow") -> np.ndarray:
    """Features (n, 2048, float32) for a sequence of JPEG frames, ``batch_size`` frames per model
    call."""
    model = load_model(weights, seed, precision, backend=backend)
    pad = _pad_to(backend, batch_size)
    parts = [_predict(model, jpegs[i:i + batch_size], pad)
             for i in range(0, len(jpegs), batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, N_FEATURES), np.float32)


def _predict(model, jpegs, pad_to: int = 0) -> np.ndarray:
    """One model call: float32 features (n, 2048) of a batch of JPEG frames. With ``pad_to``,
    a shorter batch is padded with zeros to that many frames (one input shape, so XLA compiles
    once) and the padding's outputs are dropped."""
    x = preprocess_jpegs(jpegs)
    n = len(x)
    if pad_to > n:
        x = np.concatenate([x, np.zeros((pad_to - n,) + x.shape[1:], x.dtype)])
    return np.asarray(model.predict_on_batch(x), dtype=np.float32)[:n]


def rebatch(batches: Iterator[pd.Series], fn, batch_size: int) -> Iterator[pd.Series]:
    """Apply ``fn`` (a list of inputs -> an (n, ...) array) to ``batch_size`` inputs at a time,
    whatever the sizes of the incoming Arrow batches, and yield one output Series per incoming
    batch, in order. Rows not yet answered never exceed one model batch and two Arrow batches
    (inputs waiting for a full model batch, outputs waiting to complete their Arrow batch), so
    memory does not grow with the number of rows; a short final call handles the remainder."""
    pending: list = []          # inputs not yet run through fn
    sizes: list = []            # sizes of incoming batches not yet answered
    ready: list = []            # outputs of fn not yet yielded, as 1-row arrays
    for series in batches:
        sizes.append(len(series))
        pending.extend(series)
        while len(pending) >= batch_size:
            ready.extend(fn(pending[:batch_size]))
            del pending[:batch_size]
        while sizes and len(ready) >= sizes[0]:
            n = sizes.pop(0)
            yield pd.Series(ready[:n], dtype=object)
            del ready[:n]
    if pending:
        ready.extend(fn(pending))
    for n in sizes:
        yield pd.Series(ready[:n], dtype=object)
        del ready[:n]


def _features_udf(weights: str, batch_size: int, seed: int, precision: str = "float32",
                  threads: int = 0, gpu_batch_size: int = 128, backend: str = "tensorflow"):
    @F.pandas_udf(T.ArrayType(T.FloatType()))
    def inception_features(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        n_threads = threads or (ctx.cpus() if ctx is not None else 0)
        on_gpu = init_backend(backend, n_threads)
        model = load_model(weights, seed, precision, n_threads, backend)  # once per worker
        size = gpu_batch_size if on_gpu else batch_size
        pad = _pad_to(backend, size)
        yield from rebatch(batches, lambda jpegs: list(_predict(model, jpegs, pad)), size)
    return inception_features


def with_features(frames: DataFrame, *, weights: str, identity: str, batch_size: int,
                  seed: int = 0, precision: str = "float32", threads: int = 0,
                  gpu_batch_size: int = 128, backend: str = "tensorflow") -> DataFrame:
    """``frames`` (video, second, jpeg, camera) -> (video, second, features as array<float>,
    weights identity, camera, embedded_second: the second itself)."""
    udf = _features_udf(weights, batch_size, seed, precision, threads, gpu_batch_size, backend)
    return frames.select(
        "video", "second",
        udf(F.col("jpeg")).alias("features"),
        F.lit(identity).alias("weights"),
        "camera",
        F.col("second").alias("embedded_second"),
    )


def _prober(backend: str):
    def probe_executor(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for _ in batches:
            pass
        import platform

        from pyspark import TaskContext

        info = {"host": platform.node(), "cpu_bfloat16": cpu_has_bfloat16(),
                "gpus": len(_gpu_addresses())}
        if not info["cpu_bfloat16"] and not info["gpus"]:
            # A GPU seen without GPU scheduling. The worker is reused by the featurize tasks:
            # configure the backend as they would (threads = the task's CPUs).
            ctx = TaskContext.get()
            info["gpus"] = int(init_backend(backend, ctx.cpus() if ctx is not None else 0))
        yield pd.DataFrame([info])
    return probe_executor


_PROBED: dict = {}


def executor_supports_bfloat16(spark: SparkSession,
                               backend: str = "tensorflow") -> tuple[bool, str]:
    """Whether an executor (where the model runs) has bfloat16 hardware, and what it found;
    asked once per Spark application and backend."""
    app = (spark.sparkContext.applicationId, backend)
    if app not in _PROBED:
        # collect(), not first(): a Python task whose output is read to the end hands its worker
        # back for reuse; one cut short loses it, and the next worker must load the model again.
        row = (spark.range(1, numPartitions=1)
               .mapInPandas(_prober(backend), "host string, cpu_bfloat16 boolean, gpus int")
               .collect()[0])
        if row.cpu_bfloat16:
            _PROBED[app] = (True, f"{row.host}: CPU with bfloat16 instructions")
        elif row.gpus:
            _PROBED[app] = (True, f"{row.host}: {row.gpus} GPU(s)")
        else:
            _PROBED[app] = (False, f"{row.host}: no AVX512-BF16/AMX/BF16 CPU flags and no GPU")
    return _PROBED[app]


def resolve_precision(spark: SparkSession, config: Config) -> str:
    """The precision the model runs at: ``featurizer.precision``, with ``bfloat16`` falling back
    to ``float32`` (and a warning) when an executor has no bfloat16 hardware."""
    wanted = config.featurizer.precision
    if wanted != "bfloat16":
        return wanted
    ok, found = executor_supports_bfloat16(spark, config.featurizer.backend)
    if ok:
        log.info("featurize: bfloat16 precision (%s)", found)
        return "bfloat16"
    log.warning("featurizer.precision is bfloat16 but the executor has no bfloat16 hardware "
                "(%s): using float32", found)
    return "float32"


def feature_identity(weights_identity: str, precision: str) -> str:
    """What the ``weights`` column (and a model's ``weights`` tag) records: the weights, plus the
    precision when it is not float32 (so float32 stores keep their identity)."""
    return weights_identity if precision == "float32" else f"{weights_identity}+{precision}"


_PLAN = T.StructType([T.StructField("video", T.StringType()),
                      T.StructField("second", T.IntegerType()),
                      T.StructField("embedded_second", T.IntegerType())])


def _plan_fn(threshold: int):
    def plan(frame: pd.DataFrame) -> pd.DataFrame:
        from vidspark.media import change

        embedded = change.embedded_seconds(frame["second"].tolist(), frame["thumb"].tolist(),
                                           threshold)
        return pd.DataFrame({"video": frame["video"], "second": frame["second"].astype("int32"),
                             "embedded_second": pd.Series(embedded, dtype="int32",
                                                          index=frame.index)})
    return plan


def embedded_seconds(spark: SparkSession, config: Config, videos: DataFrame) -> DataFrame:
    """(video, second, embedded_second) for every second of ``videos`` (a ``video`` column) that
    has a thumbnail under the current motion settings: the second whose embedding stands for it
    (``vidspark.media.change.embedded_seconds``, ``featurizer.unchanged_grey``), decided per video
    from its first second on, so a run that resumes a video decides as a clean run would."""
    from vidspark.media import motion as M

    thumbs = (storage.read(spark, config, "motion")
              .where(F.col("motion_version") == M.configured_identity(config))
              .join(videos, "video", "left_semi").select("video", "second", "thumb"))
    return thumbs.groupBy("video").applyInPandas(
        _plan_fn(int(config.featurizer.unchanged_grey)), _PLAN)


def run(spark: SparkSession, config: Config) -> dict:
    """Compute features for frames that have none under the current weights; with
    ``featurizer.skip_unchanged``, a second that shows nothing new since the last embedded second
    of its video gets that second's embedding (``embedded_second`` says which)."""
    weights, identity = resolve_weights(config)
    precision = resolve_precision(spark, config)
    identity = feature_identity(identity, precision)
    fz = config.featurizer
    skip = bool(fz.skip_unchanged)

    def read_now():
        from vidspark.media import motion as M

        return runs.inputs_of(spark, config, ("frames", "videos", "features", "motion"),
                              weights=identity, skip=[skip, int(fz.unchanged_grey)],
                              motion=M.configured_identity(config))

    start = read_now()
    last = runs.unchanged_since(spark, config, "featurize", start)
    if last is not None:
        log.info("featurize: 0 frames featurized (frames and features unchanged since run %s)",
                 last["run_id"])
        return {"read": 0, "written": 0, "skipped": 0, "quarantined": 0, "featurized": 0,
                "embedded": 0, "reused": 0, "weights": identity, "precision": precision,
                "backend": fz.backend, "chunks": 0, "inputs": last["inputs"],
                "unchanged_since": last["run_id"]}
    frames = storage.read(spark, config, "frames")
    ok_videos = (storage.read(spark, config, "videos").where(F.col("status") == "ok")
                 .select("video"))
    stored = storage.read(spark, config, "features").where(F.col("weights") == identity)
    done = stored if skip else stored.where(F.col("embedded_second").isNull()
                                            | (F.col("embedded_second") == F.col("second")))
    todo = (frames.join(ok_videos, "video", "left_semi")
            .join(done.select("video", "second"), ["video", "second"], "left_anti")
            .select("video", "second", "jpeg", "camera"))
    total = frames.count()
    # Which second's frame each second to do gets its embedding from, fixed before any commit.
    targets = todo.select("video", "second", "camera")
    if skip:
        plan = embedded_seconds(spark, config, todo.select("video").distinct())
        targets = (targets.join(plan, ["video", "second"], "left")
                   .withColumn("embedded_second", F.coalesce("embedded_second", "second")))
    else:
        targets = targets.withColumn("embedded_second", F.col("second"))
    targets = targets.localCheckpoint(eager=True)
    chunk_frames = int(fz.chunk_frames)
    keys, chunks = plan_chunks(targets.where(F.col("embedded_second") == F.col("second")),
                               chunk_frames)
    # A reused second is committed with the chunk that embeds its second, or first of all
    # (chunk -1) when that second's features are stored already (a run that resumes a video).
    reused = (targets.where(F.col("embedded_second") != F.col("second"))
              .join(keys.select("video", F.col("second").alias("embedded_second"), "chunk"),
                    ["video", "embedded_second"], "left")
              .fillna({"chunk": -1}).localCheckpoint(eager=True))
    n_embed = sum(c["frames"] for c in chunks)
    n_reused = reused.count()
    n = n_embed + n_reused
    if n == 0:
        log.info("featurize: 0 frames featurized (all frames have features for %s)", identity)
        return {"read": 0, "written": 0, "skipped": total, "quarantined": 0,
                "featurized": 0, "embedded": 0, "reused": 0, "weights": identity,
                "precision": precision, "backend": fz.backend, "chunks": 0,
                "inputs": runs.settle(start, read_now(), ("features",))}
    backend = fz.backend
    log.info("featurize: %d frames to featurize with %s on %s: %d embedded in %d chunk(s) of at "
             "most %d frames, %d reused from an earlier second that shows the same",
             n, identity, backend, n_embed, len(chunks), chunk_frames, n_reused)
    batch_size = int(fz.batch_size)
    parallelism = spark.sparkContext.defaultParallelism
    partitions = 0
    done_frames, started = 0, time.perf_counter()
    if reused.where(F.col("chunk") == -1).limit(1).count():
        storage.upsert(spark, config, "features", _copies(reused.where(F.col("chunk") == -1),
                                                          stored, identity))
    for i, chunk in enumerate(chunks):
        size = chunk["frames"]
        # Up to 4 tasks per core of model batches, and at least one task per core: each
        # task's model runs single-threaded (one thread per task CPU).
        partitions = max(min(parallelism, size), min(parallelism * 4, -(-size // batch_size)))
        # The video filter prunes the frames table's files (Delta data skipping) before the join.
        part = (todo.where(F.col("video").isin(chunk["videos"]))
                .join(keys.where(F.col("chunk") == i).drop("chunk"), ["video", "second"],
                      "left_semi"))
        feats = with_features(part.repartition(partitions), weights=weights,
                              identity=identity, batch_size=batch_size,
                              seed=int(fz.random_seed), precision=precision,
                              threads=int(fz.threads),
                              gpu_batch_size=int(fz.gpu_batch_size), backend=backend)
        # Materialise once: MERGE may read its source more than once, and the model is the cost.
        feats = feats.localCheckpoint(eager=True)
        copies = _copies(reused.where(F.col("chunk") == i), feats, identity)
        # Each chunk is its own commit: a job killed later keeps it, and the next run's
        # anti-join above leaves it out.
        storage.upsert(spark, config, "features", feats.unionByName(copies))
        done_frames += size
        if len(chunks) > 1:
            elapsed = time.perf_counter() - started
            log.info("featurize: chunk %d/%d committed (%d frames embedded; %d of %d done, "
                     "%.0fs, about %.0fs left)", i + 1, len(chunks), size, done_frames, n_embed,
                     elapsed, elapsed / done_frames * (n_embed - done_frames))
    log.info("featurize: %d frames featurized with %s (%d embedded, %d reused)", n, identity,
             n_embed, n_reused)
    return {"read": n, "written": n, "skipped": total - n, "quarantined": 0,
            "featurized": n, "embedded": n_embed, "reused": n_reused,
            "skip_unchanged": skip, "weights": identity, "precision": precision,
            "backend": backend, "partitions": partitions, "chunks": len(chunks),
            "inputs": runs.settle(start, read_now(), ("features",))}


def _copies(reused: DataFrame, sources: DataFrame, identity: str) -> DataFrame:
    """``features`` rows for the ``reused`` seconds (video, second, embedded_second, camera): the
    features of their embedded second, found in ``sources`` (``features`` rows; a source that
    was itself a reused row passes on the second it came from)."""
    src = sources.select("video", F.col("second").alias("embedded_second"), "features",
                         F.coalesce("embedded_second", "second").alias("_from"))
    return (reused.join(src, ["video", "embedded_second"], "inner")
            .select("video", "second", "features", F.lit(identity).alias("weights"), "camera",
                    F.col("_from").cast("int").alias("embedded_second")))


def plan_chunks(todo: DataFrame, chunk_frames: int) -> tuple[DataFrame, list[dict]]:
    """Cut the frames of ``todo`` into chunks of at most ``chunk_frames`` frames, in order of
    video and second (a video may span two or more chunks).

    Returns the (materialised) keys ``video, second, chunk`` and, per chunk, its number of
    ``frames`` and its ``videos`` (so a chunk reads only their files of ``frames``). Only
    per-video counts come to the driver; each frame's chunk is its position in that order (the
    video's offset plus its rank in the video) divided by ``chunk_frames``.
    """
    counts = todo.groupBy("video").count().orderBy("video").toPandas()
    if counts.empty:
        return todo.select("video", "second", F.lit(0).alias("chunk")).limit(0), []
    counts["offset"] = counts["count"].cumsum() - counts["count"]
    spark = todo.sparkSession
    offsets = spark.createDataFrame(counts[["video", "offset"]].astype({"offset": "int64"}))
    rank = F.row_number().over(Window.partitionBy("video").orderBy("second")) - 1
    keys = (todo.select("video", "second").join(F.broadcast(offsets), "video")
            .select("video", "second",
                    ((F.col("offset") + rank) / F.lit(chunk_frames)).cast("int").alias("chunk"))
            .localCheckpoint(eager=True))   # fixed: chunks must not move as features commit
    n = int(counts["count"].sum())
    chunks = [{"frames": min(chunk_frames, n - k * chunk_frames), "videos": []}
              for k in range(-(-n // chunk_frames))]
    for video, offset, count in zip(counts["video"], counts["offset"], counts["count"]):
        offset, count = int(offset), int(count)
        for k in range(offset // chunk_frames, (offset + count - 1) // chunk_frames + 1):
            chunks[k]["videos"].append(str(video))
    return keys, chunks
