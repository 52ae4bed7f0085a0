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


def test_camera_clips_are_cctv_like_h264(tmp_path):
    """The camera-scale clips: H.264 at 25 frames/s with a keyframe every 2 s exactly, every
    frame decodable, and people-sized blocks moving over a still scene."""
    import av

    path = str(tmp_path / "cam.mp4")
    bench.write_camera_clip(path, 320, 240, 5, seed=3)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 320, 240)
        keyframes = [i for i, frame in enumerate(container.decode(stream)) if frame.key_frame]
    assert keyframes == [0, 50, 100]
    assert bench._decode_every_frame(path) == 125
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    frames = [cap.read()[1] for _ in range(26)]
    cap.release()
    moved = np.abs(frames[25].astype(int) - frames[0].astype(int)) > 40
    assert 0.005 < moved.mean() < 0.5                     # blocks moved; the scene stayed
