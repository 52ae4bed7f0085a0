"""Benchmarks (``make bench``): extraction, featurization and the nightly job end to end.

Not tests: nothing here asserts a speed. Every figure is the median of several repetitions and is
written with a description of the machine to ``bench/results.json`` and ``bench/results.md``; the
Markdown table also replaces the performance table in README.md (between the ``bench:begin`` and
``bench:end`` markers), so the README's figures always come from a run.

Each measurement runs in its own Python process, so start-up costs and peak memory belong to the
thing measured:

* ``extract``: one process pinned to one core decodes the generated MPEG-1 clips the way the extract
  stage does (sequential decoding, the frame at or after each whole second, JPEG encoding), and a
  reference loop that seeks with ``CAP_PROP_POS_MSEC`` once per second (bounded to the true
  duration: unbounded, that loop never ends on MPEG program streams). Both must give the same
  frames.
* ``keras``: plain Keras in one process over the same decoded, preprocessed frames, with the
  featurizer's batch size (the faster of a ``model.predict`` call and a ``predict_on_batch`` loop).
* ``spark``: the Spark featurize stage (``featurize.run``: Delta in, UDF, Delta MERGE out) in
  local mode with all cores; one process per input size, so its Python workers' peak memory is
  per size. The first run in a process is cold (Python workers start, TensorFlow loads, the
  model loads); the following runs are warm.
* ``e2e``: ``spark-submit jobs/nightly.py`` on the demo data set with a fresh store: wall time,
  stage times from its log, and peak memory of the driver (JVM and Python) and Python workers.

Throughputs are marginal: (n2 - n1) / (t2 - t1) over two input sizes, so fixed costs do not hide
per-frame costs; fixed costs are reported as start-up.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from typing import Optional

from vidspark_bench.measure import TreeMemory, _extract_ours, _extract_seek_loop, _pin_one_core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WEIGHTS = os.path.join(ROOT, "..", "shared", "models",
                               "inception_v3_notop_imagenet_partial.weights.h5")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "bf16")


# --- machine -----------------------------------------------------------------------------------

def machine() -> dict:
    """Cores, CPU model and the flags that matter for the model, and library versions."""
    import cv2
    import pyspark

    from vidspark.stages.featurize import cpu_info

    model, flags = cpu_info()
    model = model or platform.processor() or platform.machine()
    def version(dist):
        from importlib.metadata import PackageNotFoundError, version as _version

        try:
            return _version(dist)
        except PackageNotFoundError:
            return "not installed"

    tf_version = version("tensorflow-cpu")
    if tf_version == "not installed":
        tf_version = version("tensorflow")
    keras_version, delta_version = version("keras"), version("delta-spark")
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": mem,
            "cpu_flags": [f for f in FLAGS if f in flags], "python": platform.python_version(),
            "os": platform.platform(), "tensorflow": tf_version, "keras": keras_version,
            "pyspark": pyspark.__version__, "delta_spark": delta_version,
            "opencv": cv2.__version__}


def _median(values):
    return float(statistics.median(values)) if values else None


def _marginal(n1, t1, n2, t2) -> Optional[float]:
    return (n2 - n1) / (t2 - t1) if t2 > t1 else None


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


# --- data --------------------------------------------------------------------------------------

def prepare_data(data_dir: str) -> dict:
    """The demo data set (15 generated MPEG-1 clips, 410 video-seconds) under ``data_dir``."""
    from vidspark_demo import generate_demo_dataset

    return generate_demo_dataset(os.path.join(data_dir, "demo"), seed=7)


def _videos(data_dir: str) -> list:
    root = os.path.join(data_dir, "demo")
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root)
                  for f in files if f.endswith(".mpg"))


# --- 1. extraction -----------------------------------------------------------------------------

def _motion_settings() -> tuple:
    """The packaged defaults' (extract.motion_width, extract.motion_fps)."""
    from vidspark.config import load_config

    ex = load_config().extract
    return int(ex.motion_width), float(ex.motion_fps)


def _with_and_without_motion(paths, reps: int, quality: int, max_side: int) -> dict:
    """Throughput of the extract stage's task code on ``paths`` (one core) without and with the
    motion features."""
    motion = _motion_settings()
    plain_t, motion_t, seconds = [], [], 0
    for _ in range(reps):
        t = time.perf_counter()
        seconds = sum(len(v) for v in _extract_ours(paths, quality, max_side).values())
        plain_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        _extract_ours(paths, quality, max_side, motion)
        motion_t.append(time.perf_counter() - t)
    return {"videos": len(paths), "video_seconds": seconds, "motion_width": motion[0],
            "motion_fps": motion[1],
            "without_motion_video_s_per_s_per_core": seconds / _median(plain_t),
            "with_motion_video_s_per_s_per_core": seconds / _median(motion_t),
            "motion_ratio": _median(plain_t) / _median(motion_t)}


def _real_clips(folder: Optional[str]) -> list:
    if not folder or not os.path.isdir(folder):
        return []
    return sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                  if f.lower().endswith((".mp4", ".mpg", ".avi", ".mkv", ".mov")))


def bench_extract(data_dir: str, reps: int, frames_file: str, real_clips: Optional[str] = None) -> dict:
    import cv2

    from vidspark.media import video

    core = _pin_one_core()
    cv2.setNumThreads(1)
    paths = _videos(data_dir)
    quality, max_side = 90, 1920
    ours_t, seek_t, ours, seek = [], [], {}, {}
    for _ in range(reps):
        t = time.perf_counter()
        ours = _extract_ours(paths, quality, max_side)
        ours_t.append(time.perf_counter() - t)
        seconds = {p: len(v) for p, v in ours.items()}
        t = time.perf_counter()
        seek = _extract_seek_loop(paths, seconds, quality, max_side)
        seek_t.append(time.perf_counter() - t)
    total = sum(len(v) for v in ours.values())
    # Same encoder, same settings: equal frames give equal JPEG bytes.
    mismatches = [f"{os.path.basename(p)}@{s}" for p in paths
                  for s, (a, b) in enumerate(zip(ours[p], seek[p])) if a != b]
    frames = [(os.path.splitext(os.path.basename(p))[0], s, jpeg)
              for p in paths for s, jpeg in enumerate(ours[p])]
    with open(frames_file, "wb") as fh:
        pickle.dump(frames, fh)
    # decode only: what the target's "decode time" is made of
    t = time.perf_counter()
    for path in paths:
        for _ in video.sample_seconds(path):
            pass
    decode_s = time.perf_counter() - t
    result = {"videos": len(paths), "video_seconds": total, "pinned_core": core,
              "ours_s": _median(ours_t), "seek_loop_s": _median(seek_t),
              "ours_video_s_per_s_per_core": total / _median(ours_t),
              "seek_loop_video_s_per_s_per_core": total / _median(seek_t),
              "speed_ratio": _median(seek_t) / _median(ours_t),
              "decode_only_s": decode_s, "mismatched_seconds": len(mismatches),
              "mismatches": mismatches[:20], "reps": reps,
              "motion": {"demo": _with_and_without_motion(paths, reps, quality, max_side)}}
    real = _real_clips(real_clips)
    if real:
        result["motion"]["real"] = dict(_with_and_without_motion(real, reps, quality, max_side),
                                        folder=os.path.abspath(real_clips))
    return result


# --- 2a. plain Keras ---------------------------------------------------------------------------

def bench_keras(frames_file: str, weights: str, precision: str, batch_size: int,
                sizes: tuple, reps: int, features_out: Optional[str]) -> dict:
    t0 = time.perf_counter()
    from vidspark.stages import featurize as FZ

    with open(frames_file, "rb") as fh:
        jpegs = [f[2] for f in pickle.load(fh)][:max(sizes)]
    model = FZ.load_model(weights, 0, precision)
    startup = time.perf_counter() - t0
    import numpy as np

    x = FZ.preprocess_jpegs(jpegs)              # the same decoded, preprocessed frames
    model.predict_on_batch(x[:batch_size])     # warm-up (graph tracing)
    model.predict(x[:batch_size], batch_size=batch_size, verbose=0)

    def loop(n):
        return [model.predict_on_batch(x[i:min(i + batch_size, n)]) for i in range(0, n, batch_size)]

    times = {"predict": {}, "predict_on_batch": {}}
    feats = None
    for n in sizes:
        for way in times:
            runs = []
            for _ in range(reps):
                t = time.perf_counter()
                if way == "predict":
                    out = model.predict(x[:n], batch_size=batch_size, verbose=0)
                else:
                    out = np.concatenate(loop(n))
                runs.append(time.perf_counter() - t)
                if n == max(sizes):
                    feats = np.asarray(out, np.float32)
            times[way][n] = _median(runs)
    n1, n2 = sizes
    fps = {way: _marginal(n1, t[n1], n2, t[n2]) for way, t in times.items()}
    best = max(fps, key=lambda w: fps[w] or 0)
    if features_out:
        np.save(features_out, feats)
    return {"precision": precision, "batch_size": batch_size, "sizes": list(sizes),
            "startup_s": startup, "times_s": {w: {str(n): v for n, v in t.items()}
                                              for w, t in times.items()},
            "marginal_fps": fps, "best_way": best, "fps": fps[best],
            "peak_rss_mb": round(_peak_rss_mb(), 1), "reps": reps}


# --- 2b. the Spark featurize stage ------------------------------------------------------------

def bench_spark(frames_file: str, weights: str, precision: str, batch_size: int, sizes: tuple,
                reps: int, store: str, arrow_rows: int) -> dict:
    """The featurize stage at each size (smallest first) in one Spark application: a cold run,
    then ``reps`` warm runs per size. Python workers live as long as the application, so their
    peak memory after the small size and after the large one shows whether it grows."""
    t0 = time.perf_counter()
    import datetime as dt

    from vidspark import storage
    from vidspark.config import load_config
    from vidspark.session import build_spark
    from vidspark.stages import featurize
    from vidspark.storage.schemas import FRAMES, VIDEOS

    shutil.rmtree(store, ignore_errors=True)
    config = load_config(None, [f"storage.root={store}", f"featurizer.weights={weights}",
                                f"featurizer.precision={precision}",
                                f"featurizer.batch_size={batch_size}",
                                f"featurizer.arrow_batch_rows={arrow_rows}",
                                "spark.sql.shuffle.partitions=4", "spark.ui.enabled=false"])
    spark = build_spark(config, app_name="vidspark-bench", runs_model=True)
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - t0
    with open(frames_file, "rb") as fh:
        all_frames = pickle.load(fh)
    features_path = storage.table_path(config, "features")
    out = {"precision": precision, "session_s": session_s, "sizes": {}, "reps": reps}
    with TreeMemory(os.getpid()) as mem:
        for k, size in enumerate(sorted(sizes)):
            frames = all_frames[:size]
            rows = [(v, s, float(s * 1000), f"{v}frame{s:04d}.jpg", j, 384, 288, v)
                    for v, s, j in frames]
            storage.overwrite(spark, config, "frames", spark.createDataFrame(rows, FRAMES))
            now = dt.datetime.now()
            vrows = [(v, f"/bench/{v}.mpg", "train", None, None, None, 25.0, 384, 288, None,
                      None, None, None, "ok", None, now, None, v)
                     for v in sorted({v for v, _, _ in frames})]
            storage.overwrite(spark, config, "videos", spark.createDataFrame(vrows, VIDEOS))
            times, reports = [], []
            for _ in range(reps + (1 if k == 0 else 0)):
                spark.sql(f"DELETE FROM delta.`{features_path}`")
                t = time.perf_counter()
                reports.append(featurize.run(spark, config))
                times.append(time.perf_counter() - t)
            stored = storage.read(spark, config, "features").count()
            mem.sample()
            warm = times[1:] if k == 0 else times
            entry = {"warm_s": _median(warm), "warm_runs_s": warm, "stored": stored,
                     "partitions": reports[-1].get("partitions"),
                     "precision_used": reports[-1]["precision"], "memory_mb": mem.result()}
            if k == 0:
                entry["cold_s"] = times[0]
                out["cold_extra_s"] = times[0] - entry["warm_s"]
            out["sizes"][str(size)] = entry
    spark.stop()
    return out


# --- 3. end to end -----------------------------------------------------------------------------

STAGE_LINE = re.compile(r"stage (\w+) done in ([\d.]+)s")
SESSION_LINE = re.compile(r"Spark session ready \(")
TABLES_LINE = re.compile(r"tables (?:registered|ready) in ([\d.]+)s")
READY_LINE = re.compile(r"Spark session and tables ready in ([\d.]+)s")


def bench_e2e(data_dir: str, weights: str, store: str, fresh: bool = True,
              job: str = "nightly.py") -> dict:
    """``spark-submit jobs/<job>`` on the demo data set: on a fresh store, or (``fresh`` false)
    on the store as the last run left it."""
    demo = os.path.join(data_dir, "demo")
    if fresh:
        shutil.rmtree(store, ignore_errors=True)
    cmd = ["spark-submit", os.path.join(ROOT, "jobs", job),
           "--config", os.path.join(ROOT, "conf", "demo.yaml"),
           "--set", f"storage.root={store}", "--set", f"featurizer.weights={weights}",
           "--set", f"input.train_videos={demo}/train", "--set", f"input.score_videos={demo}/score",
           "--set", f"input.labels={demo}/labels.csv"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    lines, ready = [], None
    with TreeMemory(proc.pid) as mem:
        for line in proc.stdout:
            lines.append(line)
            if ready is None and SESSION_LINE.search(line):
                ready = time.perf_counter() - t    # spark-submit, JVM, packages, session
        proc.wait()
    wall = time.perf_counter() - t
    output = "".join(lines)
    if proc.returncode != 0:
        raise RuntimeError(f"nightly job failed ({proc.returncode}):\n{output[-3000:]}")
    stages = {m.group(1): float(m.group(2)) for m in STAGE_LINE.finditer(output)}
    tables = TABLES_LINE.search(output)
    # Spark start-up: launch to SparkSession (spark-submit, JVM, Delta packages, session);
    # creating the empty tables of a fresh store is reported apart.
    ready_s = READY_LINE.search(output)
    return {"wall_s": wall, "stages_s": stages, "session_s": ready,
            "tables_s": float(tables.group(1)) if tables else None,
            "ready_s": float(ready_s.group(1)) if ready_s else None,
            "unchanged_stages": output.count("unchanged since run")
            + output.count("none new, changed or gone since run"),
            "memory_mb": mem.result()}


# --- 3b. SQL ------------------------------------------------------------------------------------

def _vidspark_sql(store: str, port: int, query: str) -> float:
    """Wall seconds of one ``vidspark sql`` (a new process, as an analyst runs it)."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "vidspark"), "sql",
           "--config", os.path.join(ROOT, "conf", "demo.yaml"),
           "--set", f"storage.root={store}", "--set", f"sql_server.port={port}", query]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not proc.stdout.startswith("video,second"):
        raise RuntimeError(f"vidspark sql failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def bench_sql(store: str, with_server: int = 5, without_server: int = 3) -> dict:
    """README's ranked-frames query through ``vidspark sql`` on the end-to-end store: with a
    ``vidspark sql-server`` running (median of ``with_server`` runs, after one warm-up query),
    then without one (Spark started by the command)."""
    import socket

    from vidspark.sqlserver import README_QUERY

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "vidspark"), "sql-server",
         "--config", os.path.join(ROOT, "conf", "demo.yaml"), "--set", f"storage.root={store}",
         "--set", f"sql_server.port={port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    t = time.perf_counter()
    ready, lines = None, []
    try:
        for line in server.stdout:
            lines.append(line)
            if "read-only at jdbc:hive2://" in line:
                ready = time.perf_counter() - t
                break
        if ready is None:
            raise RuntimeError("vidspark sql-server did not start:\n" + "".join(lines)[-3000:])
        threading.Thread(target=server.stdout.read, daemon=True).start()
        first = _vidspark_sql(store, port, README_QUERY)
        served = [_vidspark_sql(store, port, README_QUERY) for _ in range(with_server)]
    finally:
        server.terminate()
        server.wait(timeout=120)
    alone = [_vidspark_sql(store, port, README_QUERY) for _ in range(without_server)]
    return {"server_ready_s": ready, "first_query_s": first, "with_server_s": served,
            "with_server_median_s": _median(served), "without_server_s": alone,
            "without_server_median_s": _median(alone)}


# --- orchestration -----------------------------------------------------------------------------

def _child(args: list, timeout: int = 900) -> dict:
    """Run one measurement in a fresh Python process and return its JSON result."""
    cmd = [sys.executable, "-m", "vidspark_bench.bench", "--child", json.dumps(args)]
    # Spark's Python workers and spark-submit come from this interpreter's environment.
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    raise RuntimeError(f"benchmark step {args[0]} failed ({proc.returncode}):\n"
                       f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def _camera(name: str):
    def call(**kwargs):
        from vidspark_bench import camera

        return getattr(camera, name)(**kwargs)
    return call


def _run_child(args: list) -> None:
    name, kwargs = args[0], args[1]
    fn = {"extract": bench_extract, "keras": bench_keras, "spark": bench_spark,
          "e2e": bench_e2e, "camera_bounds": _camera("bounds"),
          "camera_pipeline": _camera("pipeline")}[name]
    if "sizes" in kwargs:
        kwargs["sizes"] = tuple(kwargs["sizes"])
    result = fn(**kwargs)
    print("BENCH-RESULT " + json.dumps(result, default=float), flush=True)


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_all(out: str, weights: str, reps: int, e2e_reps: int, sizes: tuple,
            batch_size: int, arrow_rows: int, precisions: tuple,
            real_clips: Optional[str] = None, camera: bool = True,
            fights: Optional[str] = None) -> dict:
    started = time.perf_counter()
    out = os.path.abspath(out)
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    frames_file = os.path.join(data_dir, "frames.pkl")
    results = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
               "settings": {"reps": reps, "e2e_reps": e2e_reps, "sizes": list(sizes),
                            "batch_size": batch_size, "arrow_batch_rows": arrow_rows,
                            "weights": os.path.basename(weights)}}
    _say("generating the demo data set (reused when present)")
    prepare_data(data_dir)

    _say("extraction: sequential decoding vs the seek loop, one core")
    results["extract"] = _child(["extract", {"data_dir": data_dir, "reps": reps,
                                             "frames_file": frames_file,
                                             "real_clips": real_clips}])
    _say(f"  {results['extract']['ours_video_s_per_s_per_core']:.0f} vs "
         f"{results['extract']['seek_loop_video_s_per_s_per_core']:.0f} video-s/s/core, "
         f"{results['extract']['mismatched_seconds']} mismatched seconds")
    for kind, m in results["extract"]["motion"].items():
        _say(f"  with motion ({kind} clips): {m['motion_ratio']:.2f} x the throughput without")

    results["featurize"] = {}
    for precision in precisions:
        _say(f"featurization ({precision}): plain Keras")
        keras = _child(["keras", {"frames_file": frames_file, "weights": weights,
                                  "precision": precision, "batch_size": batch_size,
                                  "sizes": list(sizes), "reps": reps,
                                  "features_out": os.path.join(data_dir, f"keras-{precision}.npy")}])
        _say(f"  {keras['fps']:.1f} frames/s ({keras['best_way']})")
        _say(f"featurization ({precision}): Spark featurize stage, {sizes[0]} and {sizes[1]} frames")
        spark = _child(["spark", {
            "frames_file": frames_file, "weights": weights, "precision": precision,
            "batch_size": batch_size, "sizes": list(sizes), "reps": reps,
            "arrow_rows": arrow_rows,
            "store": os.path.join(data_dir, f"store-featurize-{precision}")}])
        n1, n2 = sizes
        s1, s2 = spark["sizes"][str(n1)], spark["sizes"][str(n2)]
        fps = _marginal(n1, s1["warm_s"], n2, s2["warm_s"])
        entry = {
            "keras": keras, "spark": spark, "spark_fps": fps, "keras_fps": keras["fps"],
            "ratio": fps / keras["fps"] if fps and keras["fps"] else None,
            # fixed costs: the stage's warm overhead (jobs, Delta reads and MERGE) and the first
            # run's extra (Python workers, TensorFlow, model load)
            "spark_stage_overhead_s": s1["warm_s"] - n1 / fps if fps else None,
            "spark_cold_extra_s": spark["cold_extra_s"], "spark_session_s": spark["session_s"],
            "precision_used": s2["precision_used"],
            "worker_peak_mb": {str(n): spark["sizes"][str(n)]["memory_mb"].get("python_worker")
                               for n in sizes},
        }
        results["featurize"][precision] = entry
        _say(f"  Spark {fps:.1f} frames/s = {entry['ratio']:.2f} of plain Keras; worker peak "
             f"{entry['worker_peak_mb']} MB")
    if "float32" in precisions and "bfloat16" in precisions:
        import numpy as np

        a = np.load(os.path.join(data_dir, "keras-float32.npy"))
        b = np.load(os.path.join(data_dir, "keras-bfloat16.npy"))
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        f32, bf16 = results["featurize"]["float32"], results["featurize"]["bfloat16"]
        results["bfloat16"] = {
            "frames": int(len(cos)), "min_cosine": float(cos.min()),
            "median_cosine": float(np.median(cos)),
            "keras_speedup": bf16["keras_fps"] / f32["keras_fps"],
            "spark_speedup": (bf16["spark_fps"] / f32["spark_fps"]
                              if bf16["spark_fps"] and f32["spark_fps"] else None)}
        _say(f"  bfloat16: {results['bfloat16']['spark_speedup']:.2f}x float32 through Spark, "
             f"min cosine {results['bfloat16']['min_cosine']:.4f}")

    runs = []
    for i in range(e2e_reps):
        _say(f"end to end: the nightly job on the demo data set ({i + 1}/{e2e_reps})")
        runs.append(_child(["e2e", {"data_dir": data_dir, "weights": weights,
                                    "store": os.path.join(data_dir, "store-e2e")}]))
        _say(f"  {runs[-1]['wall_s']:.1f} s")
    if runs:
        stages = sorted({s for r in runs for s in r["stages_s"]},
                        key=lambda s: list(runs[0]["stages_s"]).index(s))
        video_s = results["extract"]["video_seconds"]
        f32 = results["featurize"].get("float32") or next(iter(results["featurize"].values()))
        decode_s = results["extract"]["decode_only_s"]
        keras_s = video_s / f32["keras_fps"]
        session = _median([r["session_s"] for r in runs if r["session_s"] is not None])
        wall = _median([r["wall_s"] for r in runs])
        budget = 1.3 * (decode_s + keras_s) + (session or 0)
        results["e2e"] = {
            "video_seconds": video_s, "wall_s": wall, "runs_wall_s": [r["wall_s"] for r in runs],
            "stages_s": {s: _median([r["stages_s"].get(s, 0) for r in runs]) for s in stages},
            "session_s": session, "decode_s": decode_s, "keras_s": keras_s,
            "tables_s": _median([r["tables_s"] for r in runs if r.get("tables_s") is not None]),
            "target_s": budget, "ratio_to_target": wall / budget,
            "memory_mb": {k: max((r["memory_mb"].get(k) or 0) for r in runs)
                          for k in ("jvm", "python_driver", "python_worker")}}
    if runs:
        store = os.path.join(data_dir, "store-e2e")
        _say("end to end: the nightly job again on the same store, with no new input")
        noop = _child(["e2e", {"data_dir": data_dir, "weights": weights, "store": store,
                               "fresh": False}])
        _say(f"  {noop['wall_s']:.1f} s, stages {sum(noop['stages_s'].values()):.1f} s")
        _say("a job's start on an existing store: spark-submit jobs/score.py, nothing to score")
        starts = [_child(["e2e", {"data_dir": data_dir, "weights": weights, "store": store,
                                  "fresh": False, "job": "score.py"}]) for _ in range(3)]
        full = results["e2e"]["wall_s"]
        results["fixed_costs"] = {
            "noop_wall_s": noop["wall_s"], "noop_stages_s": noop["stages_s"],
            "noop_stage_total_s": sum(noop["stages_s"].values()), "full_wall_s": full,
            "noop_ratio": noop["wall_s"] / full, "noop_unchanged_stages": noop["unchanged_stages"],
            "ready_s": [r["ready_s"] for r in starts],
            "ready_median_s": _median([r["ready_s"] for r in starts if r["ready_s"] is not None]),
            "tables_s": [r["tables_s"] for r in starts]}
        _say(f"  ready in {results['fixed_costs']['ready_median_s']:.1f} s (median of 3)")
        _say("SQL: the README's ranked-frames query through vidspark sql, with and without a server")
        results["sql"] = bench_sql(os.path.join(data_dir, "store-e2e"))
        _say(f"  {results['sql']['with_server_median_s']:.2f} s with the server, "
             f"{results['sql']['without_server_median_s']:.1f} s without")
    if camera:
        results["camera"] = bench_camera(data_dir, weights, batch_size, fights)
    results["bench_wall_s"] = time.perf_counter() - started
    return results


def bench_camera(data_dir: str, weights: str, batch_size: int, fights: str) -> dict:
    """Camera scale (``vidspark_bench.camera``): per resolution and footage, camera-hours per
    core-hour of the pipeline (marginal) beside the decode-only and model-only bounds and their
    combination; skipping; extraction with Spark's default memory."""
    from vidspark.config import load_config
    from vidspark_bench import camera

    sets = camera.prepare(data_dir, fights, say=_say)
    memory_sets = sets.pop("memory")
    warmup = sets.pop("warmup")
    config = load_config(os.path.join(ROOT, "conf", "demo.yaml"))
    precision = config.featurizer.precision
    out = {"precision": precision, "seconds_per_file": camera.SECONDS,
           "unchanged_grey": int(config.featurizer.unchanged_grey), "resolutions": {}}
    bounds: dict = {}
    for res, kinds in sets.items():
        for kind, sizes in kinds.items():
            _say(f"camera scale, {res} {kind}: decode-only and model-only bounds, one core")
            bounds[(res, kind)] = _child(["camera_bounds", {
                "path": sizes["large"][0], "weights": weights, "batch_size": batch_size,
                "precision": precision}], timeout=3600)
    _say("camera scale: extract (with motion), featurize and score, all cores, each footage's "
         "first halves then whole files")
    pipe = _child(["camera_pipeline", {"data_dir": data_dir, "weights": weights, "sets": sets,
                                       "store": os.path.join(data_dir, "store-camera"),
                                       "warmup": warmup}], timeout=7200)
    out["cores"] = pipe["cores"]
    for res, kinds in sets.items():
        out["resolutions"][res] = {}
        for kind, sizes in kinds.items():
            b, runs = bounds[(res, kind)], pipe[f"{res}/{kind}"]
            m = camera.marginal(runs, pipe["cores"])
            entry = dict(b, footage=camera.describe(sizes["large"]), runs=runs, **m,
                         ratio=(m["pipeline_per_core"] / b["combined_per_core"]
                                if m["pipeline_per_core"] else None))
            out["resolutions"][res][kind] = entry
            _say(f"  {res} {kind}: pipeline {_f(m['pipeline_per_core'], '{:.2f}')} camera-h per "
                 f"core-h; decode {b['decode_per_core']:.1f}, model {b['model_per_core']:.1f}, "
                 f"combined {b['combined_per_core']:.2f}: ratio {_f(entry['ratio'], '{:.2f}')}; "
                 f"reused {_f(runs['skipping']['reused_fraction'], '{:.2f}')}")
    _say("camera scale: the share of seconds reused on the fights clips")
    out["fights_skipping"] = camera.skipping_on_clips(fights, out["unchanged_grey"])
    out["memory"] = {}
    for name, paths in memory_sets.items():
        _say(f"camera scale: extraction with Spark's default memory ({name})")
        out["memory"][name] = camera.memory(paths, os.path.join(data_dir, "store-memory"))
        _say(f"  {'ok' if out['memory'][name]['ok'] else 'FAILED'} in "
             f"{out['memory'][name]['wall_s']:.0f} s")
    return out


# --- report ------------------------------------------------------------------------------------

def _f(value, fmt="{:.1f}"):
    return "n/a" if value is None else fmt.format(value)


def _stage_times(times: dict) -> str:
    """``{stage: seconds}`` as the tables list it: "extract 26.9, labels 10.6, ..."."""
    return ", ".join(f"{k} {v:.1f}" for k, v in times.items())


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"Measured by `make bench` on {r['generated_at'][:10]}: {m['cores']} cores ({m['cpu']}), "
             f"CPU flags {', '.join(m['cpu_flags']) or 'none of note'}; TensorFlow {m['tensorflow']}, "
             f"Keras {m['keras']}, PySpark {m['pyspark']}, OpenCV {m['opencv']}. Medians of "
             f"{r['settings']['reps']} repetitions (end to end: {r['settings']['e2e_reps']}); "
             f"featurization throughputs are marginal over {r['settings']['sizes'][0]} and "
             f"{r['settings']['sizes'][1]} frames, batch size {r['settings']['batch_size']}.", "",
             "| What | Measured | Target |", "|---|---|---|"]
    x = r["extract"]
    lines.append(f"| Extraction, sequential decoding ({x['video_seconds']} video-s of MPEG-1, one core) "
                 f"| {_f(x['ours_video_s_per_s_per_core'], '{:.0f}')} video-s/s "
                 f"({x['mismatched_seconds']} frames differ from the seek loop) | ≥ seek loop, exact |")
    lines.append(f"| Extraction, reference `CAP_PROP_POS_MSEC` seek loop | "
                 f"{_f(x['seek_loop_video_s_per_s_per_core'], '{:.0f}')} video-s/s | |")
    names = {"demo": "the demo's MPEG-1 clips (384×288)",
             "real": "real surveillance clips (`fights`, H.264, 352×240 to 1280×720)"}
    for kind, m in x.get("motion", {}).items():
        lines.append(f"| Extraction with motion features ({m['motion_width']} px, "
                     f"{m['motion_fps']:g} frames/s), {names[kind]}, {m['video_seconds']} video-s, "
                     f"one core | {_f(m['with_motion_video_s_per_s_per_core'], '{:.0f}')} video-s/s "
                     f"with, {_f(m['without_motion_video_s_per_s_per_core'], '{:.0f}')} without = "
                     f"**{_f(m['motion_ratio'], '{:.2f}')}** × | ≥ 0.5 × |")
    for precision, e in r["featurize"].items():
        lines.append(f"| Featurization {precision}, plain Keras (`{e['keras']['best_way']}`) | "
                     f"{_f(e['keras_fps'])} frames/s | |")
        lines.append(f"| Featurization {precision}, Spark featurize stage (local, all cores) | "
                     f"{_f(e['spark_fps'])} frames/s = **{_f(e['ratio'], '{:.2f}')}** × plain Keras | "
                     f"≥ 0.90 × |")
        lines.append(f"| Featurization {precision}, fixed costs | Spark session and a fresh store's "
                     f"tables {_f(e['spark_session_s'])} s, "
                     f"first run +{_f(e['spark_cold_extra_s'])} s (workers, TensorFlow, model), "
                     f"stage {_f(e['spark_stage_overhead_s'])} s | |")
        sizes = list(e["worker_peak_mb"])
        lines.append(f"| Featurization {precision}, Python worker peak memory | "
                     + ", ".join(f"{_f(e['worker_peak_mb'][n], '{:.0f}')} MB at {n} frames"
                                 for n in sizes) + " | flat |")
    if "bfloat16" in r:
        b = r["bfloat16"]
        lines.append(f"| bfloat16 vs float32 | {_f(b['spark_speedup'], '{:.2f}')}× through Spark, "
                     f"{_f(b['keras_speedup'], '{:.2f}')}× plain Keras; cosine ≥ "
                     f"{_f(b['min_cosine'], '{:.4f}')} over {b['frames']} frames | ≥ 1.7×, ≥ 0.99 |")
    if "e2e" in r:
        e = r["e2e"]
        stages = _stage_times(e["stages_s"])
        lines.append(f"| End to end, nightly job on {e['video_seconds']} video-s (demo, a fresh "
                     f"store) | {_f(e['wall_s'])} s wall; Spark start-up {_f(e['session_s'])} s, "
                     f"creating the fresh store's tables {_f(e.get('tables_s'))} s, stages (s): "
                     f"{stages} | |")
        mem = e["memory_mb"]
        lines.append(f"| End to end, peak memory | driver JVM {_f(mem['jvm'], '{:.0f}')} MB, "
                     f"driver Python {_f(mem['python_driver'], '{:.0f}')} MB, Python worker "
                     f"{_f(mem['python_worker'], '{:.0f}')} MB | |")
    if "fixed_costs" in r:
        fc = r["fixed_costs"]
        stages = _stage_times(fc["noop_stages_s"])
        lines.append(f"| A job's Spark session and tables ready, existing store (`spark-submit "
                     f"jobs/score.py`, process start to the log line; median of "
                     f"{len(fc['ready_s'])}) | **{_f(fc['ready_median_s'])}** s (tables "
                     + ", ".join(_f(t, "{:.2f}") for t in fc["tables_s"]) + " s) | ≤ 5 s |")
        lines.append(f"| Nightly job with no new input (the same store again) | "
                     f"{_f(fc['noop_wall_s'])} s wall = **{_f(fc['noop_ratio'], '{:.2f}')}** × the "
                     f"full run; stages **{_f(fc['noop_stage_total_s'])}** s ({stages}; "
                     f"{fc['noop_unchanged_stages']} of 5 found their inputs unchanged) | "
                     f"≤ 0.3 ×, ≤ 20 s |")
    if "sql" in r:
        q = r["sql"]
        lines.append(f"| SQL: README's ranked-frames query, `vidspark sql` with `vidspark sql-server` "
                     f"running (a new process per query; median of {len(q['with_server_s'])}) | "
                     f"**{_f(q['with_server_median_s'], '{:.2f}')}** s (server ready in "
                     f"{_f(q['server_ready_s'])} s; its first query {_f(q['first_query_s'], '{:.2f}')} s) "
                     f"| ≤ 1 s |")
        lines.append(f"| SQL: the same without a server (`vidspark sql` starts Spark; median of "
                     f"{len(q['without_server_s'])}) | **{_f(q['without_server_median_s'])}** s | ≤ 10 s |")
    if "camera" in r:
        lines += camera_markdown(r["camera"])
    lines += ["", f"`make bench` took {r['bench_wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


TARGETS = {("1080p", "generated"): "≥ 1.2", ("1080p", "real"): "≥ 0.6"}
NAMES = {"generated": "generated CCTV", "real": "real (fights)"}


def camera_markdown(c: dict) -> list:
    """The camera-scale tables."""
    lines = ["", f"Camera scale, per resolution and footage, each two cameras' files of "
             f"{c['seconds_per_file']} s: generated CCTV-like H.264 (a still scene with sensor "
             "noise and slow light change, people in view in the share of seconds shown; "
             "25 frames/s, a keyframe every 2 s, no B-frames) and the real fights clips of two "
             "cameras joined into long files (people move in every second). Camera-hours per "
             "core-hour. Bounds on one core: decode-only (every frame decoded and nothing else, "
             "the faster of OpenCV's and PyAV's FFmpeg), model-only (plain Keras, "
             f"{c['precision']}, on the frame kept each second), combined = 1 / (1/decode + "
             f"1/model). Pipeline: extract (with motion), featurize and score on {c['cores']} "
             "cores, marginal over the files' first halves and the whole files (one run each), "
             "with each stage's core-seconds per camera-hour and its fixed cost per run apart.",
             "", "| Resolution, footage | Bitrate, people in view | Decode-only | Model-only | "
             "Combined bound | Pipeline | Pipeline / bound | Core-s per camera-hour: extract, "
             "featurize, score | Fixed cost per run (s): extract, featurize, score |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res, kinds in c["resolutions"].items():
        for kind, e in kinds.items():
            f = e["footage"]
            active = ("every second" if f["active_fraction"] is None
                      else f"{f['active_fraction']:.0%} of the seconds")
            per = e["core_s_per_camera_hour"]
            fixed = e["fixed_s"]
            target = TARGETS.get((res, kind))
            lines.append(
                f"| {res}, {NAMES[kind]} | {f['bitrate_kbps'] / 1000:.1f} Mbit/s, {active} | "
                f"{_f(e['decode_per_core'])} | {_f(e['model_per_core'])} | "
                f"{_f(e['combined_per_core'], '{:.2f}')} | {_f(e['pipeline_per_core'], '{:.2f}')} | "
                f"**{_f(e['ratio'], '{:.2f}')}**{f' (target {target})' if target else ''} | "
                + ", ".join("0 (noise)" if s in e.get("noisy", ()) else _f(per[s], "{:.0f}")
                            for s in ("extract", "featurize", "score"))
                + " | " + ", ".join(_f(fixed[s]) for s in ("extract", "featurize", "score"))
                + " |")
    scores = [(e["runs"][size]["stages_s"]["score"], e["runs"][size]["scored"], res, kind, size)
              for res, kinds in c["resolutions"].items() for kind, e in kinds.items()
              for size in ("small", "large")]
    worst = max(scores)
    lines += ["", f"The score stage took {min(scores)[0]:.1f} to {worst[0]:.1f} s per run "
              f"(the longest: {worst[1]} new seconds, {worst[2]} {NAMES[worst[3]]}, "
              f"{'whole files' if worst[4] == 'large' else 'first halves'}; target ≤ 5 s for up "
              "to 1,000 new seconds)."]
    lines += ["", f"Skipping unchanged seconds (`featurizer.unchanged_grey` {c['unchanged_grey']}) "
              "and exactness, on the same whole files: the share of seconds whose embedding was "
              "reused, and the cosine of each reused embedding to the one computed from its own "
              "frame (plain Keras, the model-only bound's).", "",
              "| Resolution, footage | Seconds reused | Cosine reused vs fresh: mean, 5th "
              "percentile | Sequential extraction vs seek loop (one core) | Stored JPEG → model "
              "input (one core) |", "|---|---|---|---|---|"]
    for res, kinds in c["resolutions"].items():
        for kind, e in kinds.items():
            k = e["runs"]["skipping"]
            lines.append(
                f"| {res}, {NAMES[kind]} | {_f(k['reused_fraction'], '{:.0%}')} "
                f"({k['reused']} of {k['seconds']}) | {_f(k['cosine_mean'], '{:.4f}')}, "
                f"{_f(k['cosine_p5'], '{:.4f}')} (targets ≥ 0.98, ≥ 0.95) | "
                f"{_f(e['speed_ratio'], '{:.2f}')} × ({e['mismatched_seconds']} frames differ) | "
                f"{_f(e['preprocess_fps_per_core'], '{:.0f}')} frames/s |")
    k = c["fights_skipping"]
    lines += ["", f"On the fights clips (`make eval`'s set: {k['seconds']} seconds, people moving "
              f"in all of them) {k['reused']} second(s) would be reused "
              f"({_f(k['reused_fraction'], '{:.1%}')}).", "",
              "Extraction with Spark's default memory (`spark-submit`, no `--driver-memory`: a "
              "1 GB driver in local mode), generated 1080p:", "",
              "| Input | Result | Wall | Peak memory: driver JVM, Python worker |",
              "|---|---|---|---|"]
    names = {"two_files": "two 5-minute files", "hour": "a 1-hour file"}
    for name, m in c["memory"].items():
        mem = m["memory_mb"]
        lines.append(f"| {names.get(name, name)} ({m['video_seconds']:.0f} video-s, "
                     f"{m['bitrate_kbps'] / 1000:.1f} Mbit/s) | "
                     f"{'extracted' if m['ok'] else 'FAILED' + (' (out of memory)' if m['out_of_memory'] else '')} | "
                     f"{m['wall_s']:.0f} s | {_f(mem.get('jvm'), '{:.0f}')} MB, "
                     f"{_f(mem.get('python_worker'), '{:.0f}')} MB |")
    return lines


def update_readme(path: str, table: str, begin: str = BEGIN, end: str = END) -> bool:
    """Replace the text between the markers ``begin`` and ``end`` in ``path``; False when the
    markers are missing."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{head}{begin}\n{table}{end}{tail}")
    return True


def main(argv=None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog or "python -m vidspark_bench.bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"),
                        help="folder for results.json, results.md and the generated data")
    parser.add_argument("--weights", default=os.path.abspath(DEFAULT_WEIGHTS),
                        help="InceptionV3 weights file (default: the shared offline file)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (median)")
    parser.add_argument("--e2e-reps", type=int, default=2, help="runs of the nightly job")
    parser.add_argument("--sizes", type=int, nargs=2, default=[96, 384],
                        help="the two featurization input sizes (frames)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arrow-batch-rows", type=int, default=64)
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--fights", default=os.path.join(ROOT, "..", "shared", "data", "fights"),
                        help="the fights set (videos/<camera>/*.mp4): real footage for the "
                             "extraction-with-motion figure and the camera-scale tables (default: "
                             "../shared/data/fights)")
    parser.add_argument("--no-camera", action="store_true",
                        help="leave out the camera-scale measurements (about 45 minutes, and "
                             "about 15 more to make the footage the first time)")
    parser.add_argument("--readme", help="README to update between the bench markers")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write results.md and the README table again from "
                             "results.json (after a change to how they are written)")
    args = parser.parse_args(argv)
    if args.child:
        _run_child(json.loads(args.child))
        return
    if args.render:
        with open(os.path.join(args.out, "results.json"), encoding="utf-8") as fh:
            _write_tables(json.load(fh), args.out, args.readme)
        return
    if not os.path.isfile(args.weights) and args.weights != "imagenet":
        sys.exit(f"vidspark bench: weights file not found: {args.weights} (use --weights)")
    results = run_all(args.out, args.weights, args.reps, args.e2e_reps, tuple(args.sizes),
                      args.batch_size, args.arrow_batch_rows, tuple(args.precisions),
                      os.path.join(args.fights, "videos"), not args.no_camera, args.fights)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2, default=float)
        fh.write("\n")
    _write_tables(results, args.out, args.readme)


def _write_tables(results: dict, out: str, readme: Optional[str]) -> None:
    write_table(markdown(results), out, readme, BEGIN, END)


def write_table(table: str, out: str, readme: Optional[str], begin: str, end: str) -> None:
    """Write ``table`` to ``<out>/results.md``, print it, and put it between the markers of
    ``readme`` (when given)."""
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(table)
    print(table)
    if readme and not update_readme(readme, table, begin, end):
        sys.exit(f"vidspark: {readme} has no {begin} ... {end} markers")


if __name__ == "__main__":
    main()
