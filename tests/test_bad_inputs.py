"""Every kind of bad input becomes `ok` with correct frames or `quarantined` with a reason, and
none stops the extract stage."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest

from vidspark import storage
from vidspark.stages import extract
from vidspark_demo import decode_index_frame, write_index_video, write_video
from tests.conftest import make_config, ROOT


def lying_avi(path, n_frames: int, claimed: int) -> None:
    """An MJPG AVI whose headers (avih dwTotalFrames, strh dwLength) claim ``claimed`` frames."""
    write_index_video(path, n_frames)
    data = bytearray(open(path, "rb").read())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24:avih + 28] = struct.pack("<I", claimed)
    data[strh + 40:strh + 44] = struct.pack("<I", claimed)
    open(path, "wb").write(bytes(data))


@pytest.fixture(scope="module")
def outcome(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    score = tmp / "score"
    write_index_video(score / "good.mpg", 75)
    (score / "zero.mpg").parent.mkdir(parents=True, exist_ok=True)
    (score / "zero.mpg").write_bytes(b"")
    (score / "text.mpg").write_text("this is a text file renamed .mpg\n" * 50)
    good = open(score / "good.mpg", "rb").read()
    (score / "truncated_early.mpg").write_bytes(good[:300])
    (score / "truncated_late.mpg").write_bytes(good[:len(good) * 2 // 3])
    lying_avi(score / "header_says_more.avi", 75, 5000)     # 3 s, header claims 200 s
    lying_avi(score / "header_says_less.avi", 75, 10)       # 3 s, header claims 0.4 s
    writer = cv2.VideoWriter(str(score / "no_frames.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    writer.release()
    rng = np.random.default_rng(0)
    huge = cv2.resize((rng.random((30, 40, 3)) * 255).astype(np.uint8), (5000, 3750))
    write_video(score / "huge.avi", (np.roll(huge, i * 7, axis=1) for i in range(15)), fps=5)
    write_index_video(score / "Kamera Süd" / "Eingang 2 – nacht.mpg", 60)
    shutil.copy(score / "good.mpg", score / "locked.mpg")
    os.chmod(score / "locked.mpg", 0)
    # entries that look like videos but are not files, at the top and inside a camera folder
    os.symlink(tmp / "nowhere.mp4", score / "dangling.mp4")
    os.symlink(tmp / "nowhere.mp4", score / "Kamera Süd" / "dangling.mp4")
    (score / "folder.mp4").mkdir()
    (score / "Kamera Süd" / "folder.avi").mkdir()
    config = make_config(tmp, "input.train_videos=null", "extract.split_seconds=60",
                         "extract.max_side=1920")
    storage.register_tables(spark, config)
    report = extract.run(spark, config)
    videos = {r.video: r for r in storage.read(spark, config, "videos").collect()}
    frames = storage.read(spark, config, "frames")
    return {"report": report, "videos": videos, "frames": frames, "config": config}


def frames_of(outcome, video):
    return outcome["frames"].where(f"video = '{video}'").orderBy("second").collect()


def test_nothing_stopped_the_stage(outcome):
    assert outcome["report"]["read"] == 15
    assert set(outcome["videos"]) == {
        "good", "zero", "text", "truncated_early", "truncated_late", "header_says_more",
        "header_says_less", "no_frames", "huge", "Kamera Süd/Eingang 2 – nacht", "locked",
        "dangling", "Kamera Süd/dangling", "folder", "Kamera Süd/folder"}


@pytest.mark.parametrize("video, reason", [
    ("zero", "empty file (0 bytes)"),
    ("text", "not a readable video: FFmpeg could not open the container"),
    ("truncated_early", "truncated or damaged: only 1 decodable frame(s)"),
    ("no_frames", "no decodable frames"),
    ("dangling", "broken symbolic link (its target "),
    ("Kamera Süd/dangling", "broken symbolic link (its target "),
    ("folder", "a directory, not a video file"),
    ("Kamera Süd/folder", "a directory, not a video file"),
])
def test_quarantined_with_a_reason(outcome, video, reason):
    row = outcome["videos"][video]
    assert row.status == "quarantined" and row.error.startswith(reason)
    assert frames_of(outcome, video) == []


@pytest.mark.parametrize("video, seconds", [
    ("good", 3), ("header_says_more", 3), ("header_says_less", 3), ("locked", 3),
    ("Kamera Süd/Eingang 2 – nacht", 3),
])
def test_ok_with_exactly_the_right_frames(outcome, video, seconds):
    row = outcome["videos"][video]
    assert row.status == "ok", row.error
    rows = frames_of(outcome, video)
    assert [r.second for r in rows] == list(range(seconds))
    assert [decode_index_frame(cv2.imdecode(np.frombuffer(r.jpeg, np.uint8), 1)) for r in rows] \
        == [s * 25 for s in range(seconds)]


def test_a_wrong_header_frame_count_does_not_matter(outcome):
    more, less = outcome["videos"]["header_says_more"], outcome["videos"]["header_says_less"]
    assert (more.header_frame_count, less.header_frame_count) == (5000, 10)
    assert more.frame_count == less.frame_count == 75


def test_a_file_cut_part_way_keeps_its_first_frames(outcome):
    row = outcome["videos"]["truncated_late"]
    assert row.status == "ok" and 1 < row.seconds < 3 + 1


def test_huge_frames_are_scaled_down(outcome):
    row = outcome["videos"]["huge"]
    assert row.status == "ok" and (row.width, row.height) == (5000, 3750)
    rows = frames_of(outcome, "huge")
    assert len(rows) == 3
    for r in rows:
        assert (r.width, r.height) == (1920, 1440)
        assert cv2.imdecode(np.frombuffer(r.jpeg, np.uint8), 1).shape == (1440, 1920, 3)


# The stage's own range decoder on the 5000x3750 video, in a fresh Python: the peak the stage
# reports is its Python worker's, and a reused worker may still hold TensorFlow from an earlier
# featurization, so it says nothing about decoding (a 5000x3750 frame is 56 MB).
DECODE_HUGE = """
import json, resource, sys
import pandas as pd
from vidspark.media import video
from vidspark.stages import extract
path = sys.argv[1]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
p = video.probe(path)
rec = {"video": "huge", "path": path, "camera": None, "range_start": 0, "range_end": None,
       "first_ts_ms": p.first_ts_ms, "fps": p.fps}
rows = pd.concat(list(extract._decode_range(rec, 90, 10.0, 1920)))
print(json.dumps({"before": before, "after": float(rows.max_rss_mb.dropna().iloc[0]),
                  "frames": int((rows.kind == "frame").sum())}))
"""


def test_huge_frames_are_decoded_in_bounded_memory(outcome):
    path = outcome["videos"]["huge"].path
    proc = subprocess.run([sys.executable, "-c", DECODE_HUGE, path], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"decoding 15 frames of 5000x3750: peak RSS {peak['before']:.0f} -> {peak['after']:.0f} MB")
    assert peak["frames"] == 3
    # probing and decoding hold a few frames at a time (about 225 MB), never all 15 (840 MB)
    assert peak["after"] - peak["before"] < 500


def test_unreadable_file_is_quarantined_for_a_non_root_reader():
    """Root reads any file, so the permission case runs the task code as user nobody, on a file
    in a folder nobody can enter, next to a readable control file."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    folder = tempfile.mkdtemp(prefix="vidspark-perm-", dir="/tmp")
    try:
        os.chmod(folder, 0o755)
        for name, mode in (("locked.mpg", 0), ("open.mpg", 0o644)):
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(b"\0" * 100)
            os.chmod(os.path.join(folder, name), mode)
        code = ("import sys; from vidspark.media import video\n"
                "for p in sys.argv[1:]:\n"
                "    try:\n        print(video.file_digest(p)[0])\n"
                "    except video.VideoError as e:\n        print(e)\n")
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-c", code, os.path.join(folder, "open.mpg"),
                               os.path.join(folder, "locked.mpg")], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.stdout.splitlines() == ["100", "cannot read file: Permission denied"], proc.stderr
    finally:
        shutil.rmtree(folder)
