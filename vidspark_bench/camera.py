"""Camera scale (``make bench``): what a site's footage costs, per resolution (1080p, 720p) and
per footage: generated CCTV-like footage (a still scene, people in view in a fifth of the
seconds, a camera's bitrate) and real footage (the fights clips of two cameras joined into long
files; people move in every second). ``vidspark_bench.footage`` makes both.

* **Bounds**, one core, on a footage's first camera file: decoding every frame and nothing else
  (the faster of OpenCV's and PyAV's FFmpeg, one decoding thread) and plain Keras on the frame
  kept each second (preprocessed beforehand, the featurizer's batch size); their combination
  1 / (1/decode + 1/model). Beside them: the extract stage's sequential decoding against a
  ``CAP_PROP_POS_MSEC`` seek loop (the same frames, byte for byte) and what turning a stored JPEG
  into model input costs.
* **The pipeline**, all cores: extract (with motion), featurize and score, in a store trained on
  the demo data, on the two cameras' first halves and then on their whole files: the marginal
  throughput is the extra video over the extra time (per stage and in all), so fixed costs are
  reported apart.
* **Skipping**: the share of seconds whose embedding was reused, and the cosine of each reused
  embedding to the one plain Keras computes from that second's own stored frame.
* **Memory**: two 5-minute 1080p files and a 1-hour 1080p file extracted by ``spark-submit``
  with Spark's default memory (a 1 GB driver in local mode).

Throughputs are camera-hours per core-hour: video seconds per second of one core.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from vidspark_bench import footage as FT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("extract", "featurize", "score")
KINDS = ("generated", "real")
SECONDS = 300          # per camera file (the first half is the small input)
HOUR = 3600


def prepare(data_dir: str, fights: str, say=print) -> dict:
    """The footage files, made when missing: {resolution: {kind: {"small": [2 paths], "large":
    [2 paths]}}}, and the files of the memory check."""
    folder = os.path.join(data_dir, "camera")
    out: dict = {}
    for res in FT.RESOLUTIONS:
        out[res] = {}
        say(f"camera footage {res}: generated (2 cameras x {SECONDS} s) and real (fights)")
        generated = [FT.generated(folder, res, i, SECONDS) for i in range(2)]
        real = [FT.real(folder, res, cam, fights, SECONDS) for cam in FT.REAL_CAMERAS[res]]
        for kind, paths in (("generated", generated), ("real", real)):
            out[res][kind] = {"large": paths,
                              "small": [FT.first_part(p, SECONDS // 2) for p in paths]}
    out["warmup"] = FT.generated(folder, "720p", 9, 30)        # warms the pipeline up, unmeasured
    say("camera footage: an hour of 1080p, joined from the generated files")
    out["memory"] = {"two_files": out["1080p"]["generated"]["large"],
                     "hour": [FT.long_file(folder, "1080p", out["1080p"]["generated"]["large"],
                                           HOUR)]}
    return out


def describe(paths: list) -> dict:
    """Length, bitrate and active share of a set of footage files (from their sidecars)."""
    infos = [FT.describe(p) for p in paths]
    seconds = sum(i["seconds"] for i in infos)
    active = [i.get("active") for i in infos]
    return {"files": len(infos), "seconds": seconds, "fps": infos[0]["fps"],
            "bitrate_kbps": sum(i["bitrate_kbps"] * i["seconds"] for i in infos) / seconds,
            "active_fraction": (sum(len(a) for a in active) / seconds
                                if all(a is not None for a in active) else None)}


# --- bounds, one core -----------------------------------------------------------------------

def _decode_opencv(path: str) -> int:
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def _decode_pyav(path: str) -> int:
    import av

    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in container.decode(stream):
            n += 1
    return n


def bounds(path: str, weights: str, batch_size: int, precision: str) -> dict:
    """On one core, on one footage file: decode-only (the faster decoder), model-only, the
    seek-loop check, stored JPEG to model input."""
    from vidspark.stages import featurize as FZ
    from vidspark_bench.measure import _extract_ours, _extract_seek_loop, _pin_one_core

    core = _pin_one_core()
    import cv2

    cv2.setNumThreads(1)
    model = FZ.load_model(weights, 0, precision, threads=1)
    decoders = {}
    for name, fn in (("opencv", _decode_opencv), ("pyav", _decode_pyav)):
        t = time.perf_counter()
        frames = fn(path)
        decoders[name] = time.perf_counter() - t
    decode_s = min(decoders.values())
    video_s = FT.describe(path)["seconds"]
    t = time.perf_counter()
    ours = _extract_ours([path], 90, 1920)[path]
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    seek = _extract_seek_loop([path], {path: len(ours)}, 90, 1920)[path]
    seek_s = time.perf_counter() - t
    mismatched = sum(a != b for a, b in zip(ours, seek)) + abs(len(ours) - len(seek))
    del seek
    t = time.perf_counter()
    x = FZ.preprocess_jpegs(ours)
    preprocess_s = time.perf_counter() - t
    model.predict_on_batch(x[:batch_size])                      # warm-up (graph tracing),
    if len(x) % batch_size:                                     # for the last batch's shape too
        model.predict_on_batch(x[:len(x) % batch_size])
    t = time.perf_counter()
    for i in range(0, len(x), batch_size):
        model.predict_on_batch(x[i:i + batch_size])
    model_s = time.perf_counter() - t
    return {"pinned_core": core, "precision": precision, "batch_size": batch_size,
            "file": os.path.basename(path), "frames": frames, "video_seconds": video_s,
            "kept_frames": len(x), "decode_s": decode_s, "decoders_s": decoders,
            "model_s": model_s, "decode_per_core": video_s / decode_s,
            "model_per_core": video_s / model_s,
            "combined_per_core": video_s / (decode_s + model_s),
            "preprocess_fps_per_core": len(x) / preprocess_s,
            "ours_s": ours_s, "seek_loop_s": seek_s, "speed_ratio": seek_s / ours_s,
            "mismatched_seconds": int(mismatched)}


# --- the pipeline, all cores -------------------------------------------------------------------

def _link(paths: list, incoming: str, label: str) -> list:
    """Links to the files under ``incoming``: ``<camera>-<label>/<size>/<file>``, so a camera
    (the top folder, ``input.camera: folder``) is the same for a file's first half and its
    whole; returns the folders made."""
    made = []
    for path in paths:
        size = "small" if "-first" in os.path.basename(path) else "large"
        camera = os.path.basename(os.path.dirname(path))
        folder = os.path.join(incoming, f"{camera}-{label}", size)
        os.makedirs(folder, exist_ok=True)
        os.symlink(os.path.abspath(path), os.path.join(folder, os.path.basename(path)))
        made.append(folder)
    return made


def _cosines(spark, config, weights: str, videos: list) -> dict:
    """The share of reused seconds of ``videos``, and the cosine of each reused embedding to
    the one plain Keras computes from that second's own stored frame (on the driver)."""
    import numpy as np
    from pyspark.sql import functions as F

    from vidspark import storage
    from vidspark.stages import featurize as FZ

    features = storage.read(spark, config, "features").where(F.col("video").isin(videos))
    total = features.count()
    reused = (features.where(F.col("embedded_second") != F.col("second"))
              .join(storage.read(spark, config, "frames").select("video", "second", "jpeg"),
                    ["video", "second"]).select("features", "jpeg").collect())
    cos = []
    for i in range(0, len(reused), 64):
        rows = reused[i:i + 64]
        fresh = FZ.featurize_jpegs([r.jpeg for r in rows], weights, 16)
        for r, ref in zip(rows, fresh):
            got = np.asarray(r.features, np.float32)
            cos.append(float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref))))
    cos = np.asarray(cos)
    return {"seconds": total, "reused": int(len(cos)),
            "reused_fraction": len(cos) / total if total else None,
            "cosine_mean": float(cos.mean()) if len(cos) else None,
            "cosine_p5": float(np.percentile(cos, 5)) if len(cos) else None,
            "cosine_min": float(cos.min()) if len(cos) else None}


def pipeline(data_dir: str, weights: str, sets: dict, store: str, warmup: str) -> dict:
    """Extract, featurize and score each footage's small then large set in a store trained on
    the demo data (one Spark application, local mode on all cores)."""
    from pyspark.sql import functions as F

    from vidspark import pipeline as P, storage
    from vidspark.config import load_config
    from vidspark.session import build_spark

    demo = os.path.join(data_dir, "demo")
    shutil.rmtree(store, ignore_errors=True)
    incoming = os.path.join(store, "incoming")
    os.makedirs(incoming)
    config = load_config(os.path.join(ROOT, "conf", "demo.yaml"),
                         [f"storage.root={store}/vidspark", f"featurizer.weights={weights}",
                          f"input.train_videos={demo}/train", f"input.score_videos={incoming}",
                          f"input.labels={demo}/labels.csv"])
    spark = build_spark(config, app_name="vidspark-bench-camera", runs_model=True)
    cores = spark.sparkContext.defaultParallelism
    P.nightly(spark, config)                            # the model that scores the footage
    # A short clip of its own through the three stages first, so the measured runs find this
    # application's code paths warm (a camera of its own: it adds to no measured camera).
    _link([warmup], incoming, "warmup")
    for name in STAGES:
        P.run_stages(spark, config, [name])
    shutil.rmtree(os.path.join(incoming, f"{os.path.basename(os.path.dirname(warmup))}-warmup"))
    out = {"cores": cores, "precision": config.featurizer.precision}
    for res, kinds in sets.items():
        for kind, sizes in kinds.items():
            runs = {}
            for size in ("small", "large"):
                folders = _link(sizes[size], incoming, f"{res}-{kind}")
                stages, reports = {}, {}
                for name in STAGES:
                    t = time.perf_counter()
                    reports[name] = P.run_stages(spark, config, [name])[name]
                    stages[name] = time.perf_counter() - t
                under = F.lit(False)
                for folder in folders:
                    under = under | F.col("path").startswith(folder + "/")
                videos = [r.video for r in storage.read(spark, config, "videos").where(under)
                          .select("video").collect()]
                seconds = sum(r.duration or 0 for r in storage.read(spark, config, "videos")
                              .where(F.col("video").isin(videos)).collect())
                runs[size] = {"video_seconds": seconds, "stages_s": stages,
                              "new_seconds": reports["extract"]["frames"],
                              "embedded": reports["featurize"].get("embedded"),
                              "reused": reports["featurize"].get("reused"),
                              "scored": reports["score"]["scored"],
                              "worker_rss_mb": reports["extract"].get("max_worker_rss_mb")}
                if size == "large":
                    runs["skipping"] = _cosines(spark, config, weights, videos)
                for folder in folders:                  # out of the next runs' listing
                    shutil.rmtree(folder, ignore_errors=True)
            out[f"{res}/{kind}"] = runs
    spark.stop()
    return out


def marginal(runs: dict, cores: int) -> dict:
    """Camera-hours per core-hour of the extra video between the small and the large run, per
    stage (as core-seconds per camera-hour) and in all, and each stage's fixed cost. A stage
    whose large run took less time than its small one (run-to-run noise larger than its work on
    the extra video) counts as costing nothing per camera-hour, is listed in ``noisy`` and has
    no fixed cost: a negative time would inflate the pipeline's figure."""
    small, large = runs["small"], runs["large"]
    extra = large["video_seconds"] - small["video_seconds"]
    per_stage, fixed, noisy, total = {}, {}, [], 0.0
    for name in STAGES:
        dt = large["stages_s"][name] - small["stages_s"][name]
        if dt < 0:
            noisy.append(name)
            dt = 0.0
        total += dt
        per_stage[name] = dt * cores / extra * HOUR if extra > 0 else None   # core-s per camera-h
        rate = extra / dt if dt > 0 else None                  # video-s per wall-s
        fixed[name] = (small["stages_s"][name] - small["video_seconds"] / rate) if rate else None
    return {"pipeline_per_core": extra / (total * cores) if total > 0 else None,
            "core_s_per_camera_hour": per_stage, "fixed_s": fixed, "noisy": noisy,
            "extra_video_seconds": extra}


# --- memory -----------------------------------------------------------------------------------

def memory(paths: list, store: str) -> dict:
    """``spark-submit jobs/extract_frames.py`` on ``paths`` with Spark's default memory: whether
    it succeeded, its wall time and the peak memory of the driver's JVM and the Python workers."""
    from vidspark_bench.measure import TreeMemory

    shutil.rmtree(store, ignore_errors=True)
    incoming = os.path.join(store, "incoming")
    for i, path in enumerate(paths):
        os.makedirs(os.path.join(incoming, f"cam{i}"))
        os.symlink(os.path.abspath(path), os.path.join(incoming, f"cam{i}", os.path.basename(path)))
    conf = os.path.join(store, "memory.yaml")
    with open(conf, "w", encoding="utf-8") as fh:
        json.dump({"storage": {"root": os.path.join(store, "vidspark")},
                   "input": {"score_videos": incoming}}, fh)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    cmd = ["spark-submit", os.path.join(ROOT, "jobs", "extract_frames.py"), "--config", conf]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    with TreeMemory(proc.pid) as mem:
        output = proc.stdout.read()
        proc.wait()
    wall = time.perf_counter() - t
    oom = "OutOfMemoryError" in output
    info = describe(paths)
    result = {"files": len(paths), "video_seconds": info["seconds"],
              "bitrate_kbps": info["bitrate_kbps"], "ok": proc.returncode == 0 and not oom,
              "returncode": proc.returncode, "out_of_memory": oom, "wall_s": wall,
              "memory_mb": mem.result()}
    if not result["ok"]:
        result["log_tail"] = output[-2000:]
    shutil.rmtree(store, ignore_errors=True)
    return result


def skipping_on_clips(fights: str, threshold: int) -> dict:
    """The share of seconds of the fights clips whose embedding the featurize stage would reuse
    (``vidspark.media.change`` on the thumbnails the extract stage keeps): people move in every
    second of this set, so almost none."""
    import glob

    from vidspark.config import load_config
    from vidspark.media import change, motion, video

    ex = load_config().extract
    clips = sorted(glob.glob(os.path.join(fights, "videos", "*", "*.mp4")))
    seconds = reused = 0
    for clip in clips:
        info = video.probe(clip)
        sampler = motion.MotionSampler(width=int(ex.motion_width), fps=float(ex.motion_fps))
        kept = [s for s, _, _ in video.sample_seconds(clip, first_ts_ms=info.first_ts_ms,
                                                      fps=info.fps, motion=sampler)]
        chosen = change.embedded_seconds(kept, [sampler.thumbs.get(s) for s in kept], threshold)
        seconds += len(kept)
        reused += sum(1 for s, e in zip(kept, chosen) if s != e)
    return {"clips": len(clips), "seconds": seconds, "reused": reused,
            "reused_fraction": reused / seconds if seconds else None}
