"""Scale: a 2-hour video split into parallel time ranges, 500 videos in camera/date folders, and
300 s of 1080p frames (560 MB of JPEG) with a 512 MB driver,
each through `spark-submit jobs/extract_frames.py` (fresh Python workers, so the reported peak
worker memory is the extract stage's own)."""
from __future__ import annotations

import json
import subprocess
import time

import cv2
import numpy as np
import pytest
import yaml

from vidspark import storage
from vidspark.config import load_config
from vidspark_demo import write_video
from tests.conftest import ROOT
from tests.helpers import noise_video
from tests.test_e2e import _env

pytestmark = [pytest.mark.slow, pytest.mark.scale]


def static_scene(seconds: int, size=(64, 48)):
    """A cheap CCTV stand-in: a static textured scene with a small moving marker."""
    rng = np.random.default_rng(1)
    bg = cv2.GaussianBlur((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8), (0, 0), 3)
    for i in range(seconds * 25):
        frame = bg.copy()
        x = (i // 5) % (size[0] - 4)
        frame[2:6, x:x + 4] = 255
        yield frame


def extract_job(tmp, **inputs) -> tuple[dict, dict, float]:
    conf = tmp / "scale.yaml"
    conf.write_text(yaml.safe_dump({"storage": {"root": str(tmp / "store")}, "input": inputs}))
    t0 = time.time()
    proc = subprocess.run(["spark-submit", "--master", "local[2]", "jobs/extract_frames.py",
                           "--config", str(conf)], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=1200)
    wall = time.time() - t0
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    config = load_config(str(conf))
    return config, proc, wall


def extract_details(spark, config) -> dict:
    row = storage.read(spark, config, "runs").where("stage = 'extract'").first()
    return json.loads(row.details)


def test_two_hour_video_is_split_and_yields_one_frame_per_second(spark, tmp_path):
    seconds = 2 * 3600
    write_video(tmp_path / "score" / "cam1" / "long.mpg", static_scene(seconds), fps=25)
    config, proc, wall = extract_job(tmp_path, score_videos=str(tmp_path / "score"))
    storage.register_tables(spark, config)
    video = storage.read(spark, config, "videos").first()
    assert (video.status, video.frame_count, video.seconds) == ("ok", seconds * 25, seconds)
    frames = storage.read(spark, config, "frames").select("second", "ts_ms").toPandas()
    assert sorted(frames.second) == list(range(seconds))
    # the frame of second t is the first at or after t: within one frame interval of it
    offset = frames.ts_ms - frames.second * 1000.0
    assert offset.between(-0.01, 40.0 - 0.01).all()
    details = extract_details(spark, config)
    print(f"2-hour video: {seconds} frames in {wall:.0f}s wall (spark-submit), "
          f"peak Python worker RSS {details['max_worker_rss_mb']:.0f} MB")
    assert details["max_worker_rss_mb"] < 400


def test_five_hundred_videos_in_camera_date_folders(spark, tmp_path):
    clip = tmp_path / "clip.mpg"
    write_video(clip, static_scene(2), fps=25)
    data = clip.read_bytes()
    for i in range(500):
        path = tmp_path / "score" / f"cam{i % 10:02d}" / f"2026-11-{1 + i // 100:02d}" / f"clip{i:03d}.mpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        # every file distinct, as real clips are: a different byte in the padding at the end
        path.write_bytes(data + i.to_bytes(2, "big"))
    config, proc, wall = extract_job(tmp_path, score_videos=str(tmp_path / "score"))
    storage.register_tables(spark, config)
    videos = storage.read(spark, config, "videos").toPandas()
    assert len(videos) == 500 and (videos.status == "ok").all()
    assert videos.content_hash.nunique() == 500
    assert set(videos.video.str.split("/").str[0]) == {f"cam{c:02d}" for c in range(10)}
    assert storage.read(spark, config, "frames").count() == 1000
    details = extract_details(spark, config)
    print(f"500 videos: discovered and extracted in {wall:.0f}s wall (spark-submit), "
          f"peak Python worker RSS {details['max_worker_rss_mb']:.0f} MB")
    # a second run skips all 500 without hashing them again
    _, again, _ = extract_job(tmp_path, score_videos=str(tmp_path / "score"))
    assert "0 new videos" in again.stdout + again.stderr


def test_long_high_resolution_input_extracts_in_bounded_memory(spark, tmp_path):
    """300 s of 1080p frames that make 560 MB of JPEG, in two ranges decoded side by side, with
    a 512 MB driver (local mode: executors in it too): decode tasks hand over small batches, the
    decoded rows are cached on disk and written in small row groups. Before, a range's frames
    went to Spark as one Arrow batch and the job died of OutOfMemoryError."""
    noise_video(tmp_path / "score" / "cam1" / "noise.mp4", 300)
    conf = tmp_path / "bounded.yaml"
    conf.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "store")},
                                    "input": {"score_videos": str(tmp_path / "score")},
                                    "extract": {"split_seconds": 150}}))
    proc = subprocess.run(["spark-submit", "--master", "local[2]", "--driver-memory", "512m",
                           "jobs/extract_frames.py", "--config", str(conf)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "OutOfMemoryError" not in out, out[-4000:]
    config = load_config(str(conf))
    storage.register_tables(spark, config)
    video = storage.read(spark, config, "videos").first()
    assert (video.status, video.seconds, video.width) == ("ok", 300, 1920)
    frames = storage.read(spark, config, "frames")
    assert frames.count() == 300
    sizes = [len(r.jpeg) for r in frames.select("jpeg").limit(3).collect()]
    assert min(sizes) > 1_000_000                     # noise: about 1.9 MB a frame
    print(f"300 s of 1080p noise ({sum(sizes) / len(sizes) * 300 / 1e6:.0f} MB of JPEG) with a "
          f"512 MB driver: peak worker RSS {extract_details(spark, config)['max_worker_rss_mb']:.0f} MB")
