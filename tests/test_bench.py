"""The benchmark's own logic (``make bench`` itself is not a test): the reference seek loop gives
the extract stage's frames, throughput is marginal, and README's table is the generated one."""
import math

import cv2
import numpy as np
import pytest

from vidspark_bench import bench
from vidspark_demo import decode_index_frame, write_index_video
from tests.conftest import ROOT
from tests.helpers import generated_results


def test_reference_seek_loop_and_extraction_give_the_same_frames(tmp_path):
    path = str(tmp_path / "idx.mpg")
    write_index_video(path, 25 * 12 + 7, fps=25.0)          # 12.28 s: 13 seconds
    ours = bench._extract_ours([path], 90, 1920)[path]
    seek = bench._extract_seek_loop([path], {path: len(ours)}, 90, 1920)[path]
    assert len(ours) == len(seek) == 13
    assert all(j[:2] == b"\xff\xd8" for j in ours)
    ours_frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in ours]
    seek_frames = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in seek]
    assert [decode_index_frame(f) for f in ours_frames] == [math.ceil(s * 25) for s in range(13)]
    assert ([decode_index_frame(f) for f in seek_frames]
            == [decode_index_frame(f) for f in ours_frames])
    assert seek == ours                                    # byte for byte


def test_marginal_throughput_removes_fixed_costs():
    # 5 s fixed + 0.1 s per frame: 10 frames/s whatever the fixed cost
    assert bench._marginal(100, 5 + 10.0, 400, 5 + 40.0) == pytest.approx(10.0)
    assert bench._marginal(100, 3.0, 400, 3.0) is None


def test_readme_table_is_the_generated_one(tmp_path):
    """README's performance table is bench/results.md, rendered from bench/results.json."""
    results = generated_results(ROOT, "bench", bench)
    for key in ("extract", "featurize", "e2e", "camera"):
        assert key in results
    # update_readme replaces only the marked block
    copy = tmp_path / "README.md"
    copy.write_text(f"intro\n{bench.BEGIN}\nold\n{bench.END}\noutro\n", encoding="utf-8")
    assert bench.update_readme(str(copy), "| new |\n")
    assert copy.read_text(encoding="utf-8") == f"intro\n{bench.BEGIN}\n| new |\n{bench.END}\noutro\n"
    (tmp_path / "plain.md").write_text("no markers\n", encoding="utf-8")
    assert not bench.update_readme(str(tmp_path / "plain.md"), "x")


def test_camera_footage_is_what_cameras_send(tmp_path):
    """Generated footage: H.264 main profile, I and P frames only, a keyframe every 2 s, a
    camera's bitrate, people in view in the share of seconds asked (its sidecar says which); the
    first half of a file is cut at a keyframe, and clips joined without re-encoding decode with
    every frame and rising timestamps."""
    import av

    from vidspark_bench import footage as FT

    path = FT.generated(str(tmp_path), "720p", 0, seconds=12, active_fraction=0.5)
    info = FT.describe(path)
    assert (info["width"], info["height"], info["fps"], info["seconds"]) == (1280, 720, 25, 12)
    assert 0.6 * FT.BITRATE_KBPS["720p"] < info["bitrate_kbps"] < 1.4 * FT.BITRATE_KBPS["720p"]
    assert abs(info["active_fraction"] - 0.5) <= 0.2 and info["active"] == sorted(info["active"])
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.profile) == ("h264", "Main")
        frames = list(container.decode(stream))
    # No B-frames (PyAV's pict_type is an int on some versions, an enum on others).
    assert len(frames) == 300 and {int(f.pict_type) for f in frames} <= {1, 2}
    assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 50, 100, 150, 200, 250]
    first = FT.describe(FT.first_part(path, 6))
    assert first["seconds"] == 6.0 and all(s < 6 for s in first["active"])
    joined = FT.join([path, path], str(tmp_path / "joined.mp4"), 30)
    with av.open(joined) as container:
        times = [f.time for f in container.decode(video=0)]
    assert len(times) == 900 and all(b > a for a, b in zip(times, times[1:]))
    assert FT.describe(joined)["seconds"] == pytest.approx(36.0, abs=0.1)


def test_camera_days_have_people_in_view_as_often_as_asked_in_every_stretch():
    from vidspark_demo.cctv import camera_day

    day = camera_day(640, 360, 600, active_fraction=0.2, seed=4)
    assert 0.18 <= day.active_fraction <= 0.22
    for start in (0, 300):
        share = sum(1 for s in day.active if start <= s < start + 300) / 300
        assert 0.12 <= share <= 0.28
    frames = day.frames()
    first = next(frames)
    assert first.shape == (360, 640, 3) and first.dtype == np.uint8


def test_marginal_camera_throughput_leaves_the_fixed_costs_apart():
    from vidspark_bench import camera

    runs = {"small": {"video_seconds": 300, "stages_s": {"extract": 25, "featurize": 15,
                                                        "score": 10}},
            "large": {"video_seconds": 600, "stages_s": {"extract": 40, "featurize": 20,
                                                        "score": 10}}}
    m = camera.marginal(runs, cores=2)
    # 300 extra video-s in 20 extra s on 2 cores: 7.5 camera-hours per core-hour
    assert m["pipeline_per_core"] == pytest.approx(7.5)
    assert m["core_s_per_camera_hour"] == pytest.approx(
        {"extract": 360.0, "featurize": 120.0, "score": 0.0})
    assert m["fixed_s"]["extract"] == pytest.approx(10.0) and m["fixed_s"]["score"] is None
