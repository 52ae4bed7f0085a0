"""Tests for vidspark_demo: video writing, the frame-index code and the demo data set."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import vidspark_demo as demo

SECONDS = 8
FPS = 25


def read_frames(path: str | Path) -> list[np.ndarray]:
    """Decode a whole video sequentially."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def read_labels(path: str | Path) -> list[tuple[str, int]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ImageName", "label"]
    return [(name, int(label)) for name, label in rows[1:]]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    return demo.generate_demo_dataset(tmp_path_factory.mktemp("demo_a"), seconds=SECONDS)


# -- index code ------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2, 37, 1000, 2048, 4095])
def test_index_code_round_trips_in_memory(index):
    frame = demo.encode_index_frame(index)
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    assert demo.decode_index_frame(frame) == index
    assert demo.decode_index_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) == index


def test_index_code_rejects_bad_input():
    with pytest.raises(ValueError):
        demo.encode_index_frame(4096)
    with pytest.raises(ValueError):
        demo.encode_index_frame(-1)
    with pytest.raises(ValueError):
        demo.encode_index_frame(0, width=40, height=30)


def test_index_video_round_trips_through_mpeg1(tmp_path):
    path = tmp_path / "nested" / "index.mpg"
    demo.write_index_video(path, 3 * FPS, fps=FPS)
    assert path.read_bytes()[:4] == b"\x00\x00\x01\xba"  # MPEG program stream pack header
    decoded = [demo.decode_index_frame(frame) for frame in read_frames(path)]
    assert decoded == list(range(3 * FPS))


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_index_video_round_trips_through_other_containers(tmp_path, suffix):
    path = tmp_path / f"index{suffix}"
    demo.write_index_video(path, 30, width=192, height=144)
    frames = read_frames(path)
    assert frames[0].shape == (144, 192, 3)
    assert [demo.decode_index_frame(f) for f in frames] == list(range(30))


# -- write_video -----------------------------------------------------------------------


def test_write_video_counts_frames(tmp_path):
    frames = (np.full((64, 96, 3), i * 10, np.uint8) for i in range(12))
    assert demo.write_video(tmp_path / "grey.mpg", frames) == 12
    assert len(read_frames(tmp_path / "grey.mpg")) == 12


def test_write_video_errors(tmp_path):
    frame = np.zeros((64, 96, 3), np.uint8)
    with pytest.raises(ValueError, match="suffix"):
        demo.write_video(tmp_path / "clip.xyz", [frame])
    with pytest.raises(ValueError, match="no frames"):
        demo.write_video(tmp_path / "clip.mpg", [])
    with pytest.raises(ValueError, match="differs"):
        demo.write_video(tmp_path / "clip.avi", [frame, np.zeros((32, 32, 3), np.uint8)])
    with pytest.raises(RuntimeError, match="could not open"):
        demo.write_video(tmp_path / "clip.mpg", [frame], fps=7)  # not an MPEG-1 frame rate


# -- demo data set ---------------------------------------------------------------------


def test_plan_matches_requested_layout():
    specs = demo.plan_demo_dataset(seed=7)
    train = [s for s in specs if s.split == "train"]
    score = [s for s in specs if s.split == "score"]
    assert len(train) == 9 and len(score) == 6
    assert len({s.name for s in specs}) == len(specs)
    for spec in specs:
        assert 20 <= spec.seconds <= 35
        start, end = spec.event
        assert 0 < start < end < spec.seconds and 6 <= end - start <= 15
        assert sum(spec.labels()) == (end - start if spec.suspicious else 0)
    for split in (train, score):
        assert {s.kind for s in split} == {"walk", "browse", "meet", "fight", "fall", "leftbag"}


def test_dataset_videos_are_caviar_like(dataset):
    assert len(dataset["train"]) == 9 and len(dataset["score"]) == 6
    for path in dataset["train"] + dataset["score"]:
        assert Path(path).suffix == ".mpg"
        assert Path(path).read_bytes()[:4] == b"\x00\x00\x01\xba"
        frames = read_frames(path)
        assert len(frames) == SECONDS * FPS, path
        assert frames[0].shape == (288, 384, 3)
        assert not np.array_equal(frames[0], frames[1])  # sensor noise and flicker


def test_dataset_labels(dataset):
    train_stems = [Path(p).stem for p in dataset["train"]]
    rows = read_labels(dataset["labels"])
    assert len(rows) == len(train_stems) * SECONDS
    assert {label for _, label in rows} == {0, 1}
    pattern = re.compile(r"^(?P<stem>[A-Za-z_]+\d+)frame(?P<second>\d{4})\.jpg$")
    expected = [f"{stem}frame{s:04d}.jpg" for stem in train_stems for s in range(SECONDS)]
    assert [name for name, _ in rows] == expected
    assert all(pattern.match(name) for name, _ in rows)
    # Suspicious clips are labelled in one contiguous span in the middle; normal ones not at all.
    for stem in train_stems:
        labels = [label for name, label in rows if name.startswith(f"{stem}frame")]
        if stem.startswith(("Fight", "Rest_Fall", "LeftBag")):
            ones = [s for s, label in enumerate(labels) if label]
            assert ones == list(range(ones[0], ones[-1] + 1)) and 0 < ones[0] and ones[-1] < SECONDS - 1
        else:
            assert not any(labels)
    assert dataset["positive_rate_train"] == pytest.approx(sum(label for _, label in rows) / len(rows))

    score_rows = read_labels(dataset["score_labels"])
    assert len(score_rows) == len(dataset["score"]) * SECONDS
    assert {label for _, label in score_rows} == {0, 1}
    assert 0 < dataset["positive_rate_score"] < 1


def test_dataset_is_deterministic_and_reused(dataset, tmp_path):
    again = demo.generate_demo_dataset(tmp_path, seconds=SECONDS)
    assert read_labels(again["labels"]) == read_labels(dataset["labels"])
    assert read_labels(again["score_labels"]) == read_labels(dataset["score_labels"])
    for first, second in zip(dataset["train"] + dataset["score"], again["train"] + again["score"]):
        cap_a, cap_b = cv2.VideoCapture(first), cv2.VideoCapture(second)
        ok_a, frame_a = cap_a.read()
        ok_b, frame_b = cap_b.read()
        assert ok_a and ok_b and np.array_equal(frame_a, frame_b)

    # A finished data set is not written again unless forced.
    clip = Path(again["train"][0])
    before = clip.stat().st_mtime_ns
    assert demo.generate_demo_dataset(tmp_path, seconds=SECONDS) == again
    assert clip.stat().st_mtime_ns == before
    assert (tmp_path / ".complete").exists()


def test_different_seed_gives_different_clips():
    a = demo.plan_demo_dataset(seed=7, seconds=SECONDS)
    b = demo.plan_demo_dataset(seed=8, seconds=SECONDS)
    assert [s.name for s in a] == [s.name for s in b]
    first_a = next(demo.clip_frames(a[0]))
    first_b = next(demo.clip_frames(b[0]))
    assert not np.array_equal(first_a, first_b)


def test_main_prints_summary(tmp_path, capsys):
    demo.main(["--out", str(tmp_path), "--seconds", "3", "--seed", "3"])
    out = capsys.readouterr().out
    assert "train: 9 clips" in out and "score: 6 clips" in out
    assert len(read_labels(tmp_path / "labels.csv")) == 9 * 3
