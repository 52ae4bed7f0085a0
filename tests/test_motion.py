"""Motion features (pure OpenCV): generated videos whose motion is known give features in the
known order, inside every second; a range decoded alone agrees with the whole video."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vidspark.media import motion as M, video as V
from tests.helpers import scene_frames, write_scene

F = {name: i for i, name in enumerate(M.FEATURE_NAMES)}


def measure(path, start=0, end=None, width=128, fps=10.0):
    p = V.probe(path)
    sampler = M.MotionSampler(width=width, fps=fps, start=start, end=end)
    seconds = [s for s, _, _ in V.sample_seconds(path, start=start, end=end,
                                                   first_ts_ms=p.first_ts_ms, fps=p.fps,
                                                   motion=sampler)]
    return {s: sampler.vector(s) for s in seconds}, sampler


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return {kind: measure(write_scene(root / f"{kind}.mpg", kind))[0]
            for kind in ("still", "slow", "fast", "scuffle", "cut", "appear", "held")}


def mean_of(vectors, name, seconds=None):
    keys = seconds if seconds is not None else sorted(vectors)
    return float(np.mean([vectors[s][0][F[name]] for s in keys]))


def test_every_second_has_a_vector_and_its_pairs(scenes):
    for kind, vectors in scenes.items():
        assert sorted(vectors) == list(range(6)), kind
        for values, pairs in vectors.values():
            assert len(values) == M.N_FEATURES and np.isfinite(values).all()
            assert pairs == 9          # 10 frames a second, pairs inside the second only


def test_still_scene_has_no_motion(scenes):
    for name in ("speed_mean_mean", "speed_p99_max", "moving_share_max", "changed_share_max",
                 "direction_entropy_max"):
        assert mean_of(scenes["still"], name) < 0.01, name


def test_faster_block_gives_more_motion(scenes):
    still, slow, fast = (scenes[k] for k in ("still", "slow", "fast"))
    for name in ("speed_mean_mean", "speed_p99_mean", "diff_mean_mean", "changed_share_mean"):
        assert mean_of(still, name) < mean_of(slow, name) < mean_of(fast, name), name
    # 40 and 200 pixels per second across 320 pixels: 0.125 and 0.625 frame widths per second
    assert mean_of(slow, "speed_p99_mean") == pytest.approx(0.125, rel=0.35)
    assert mean_of(fast, "speed_p99_mean") == pytest.approx(0.625, rel=0.35)
    assert mean_of(fast, "speed_share_1_2_mean") > mean_of(slow, "speed_share_1_2_mean")


def test_many_directions_at_once_have_more_direction_entropy(scenes):
    for name in ("direction_entropy_mean", "direction_entropy_max"):
        assert mean_of(scenes["scuffle"], name) > mean_of(scenes["fast"], name) + 0.15, name
        assert mean_of(scenes["slow"], name) > mean_of(scenes["still"], name)


def test_a_scene_change_shows_in_its_second(scenes):
    cut = scenes["cut"]                    # the picture changes at 3.5 s
    changed = [cut[s][0][F["changed_share_max"]] for s in range(6)]
    assert changed[3] > 0.3 and max(changed[:3] + changed[4:]) < 0.01


def test_an_object_that_appears_and_stays_moves_only_when_it_appears(scenes):
    appear = scenes["appear"]              # appears at 4.0 s, on a second's first frame
    assert max(appear[s][0][F["changed_share_max"]] for s in range(6)) < 0.01
    assert max(appear[s][0][F["speed_mean_max"]] for s in range(6)) < 0.01


def test_footage_held_still_for_a_second_gives_zero_motion(scenes):
    for values, pairs in scenes["held"].values():
        assert pairs == 9 and max(abs(v) for v in values) == 0.0


def test_a_range_decoded_alone_gives_the_same_vectors(tmp_path):
    path = write_scene(tmp_path / "scuffle.mpg", "scuffle", seconds=8)
    whole, _ = measure(path)
    parts = {}
    for start, end in ((0, 3), (3, 6), (6, None)):
        parts.update(measure(path, start, end)[0])
    assert sorted(parts) == sorted(whole)
    for s in whole:
        assert parts[s][1] == whole[s][1]
        np.testing.assert_allclose(parts[s][0], whole[s][0], rtol=0, atol=1e-9)


def test_speeds_do_not_depend_on_frame_rates_or_sizes(tmp_path):
    at25, _ = measure(write_scene(tmp_path / "a.mpg", "slow", fps=25))
    at30, _ = measure(write_scene(tmp_path / "b.mpg", "slow", fps=30))
    pairs_5_per_second, _ = measure(str(tmp_path / "a.mpg"), fps=5.0)
    wider, _ = measure(str(tmp_path / "a.mpg"), width=160)
    # speeds are in frame widths per second, pairs 0.2 s apart measure the same speed
    ref = mean_of(at25, "speed_p99_mean")
    for other in (at30, pairs_5_per_second, wider):
        assert mean_of(other, "speed_p99_mean") == pytest.approx(ref, rel=0.25)


def test_thumbnails_and_identity(tmp_path):
    _, sampler = measure(write_scene(tmp_path / "s.mpg", "still", seconds=3))
    assert sorted(sampler.thumbs) == [0, 1, 2]
    assert all(len(t) == M.THUMB_SIZE[0] * M.THUMB_SIZE[1] for t in sampler.thumbs.values())
    assert M.identity(128, 10) == f"{M.ALGORITHM}:w128:fps10"
    assert M.small_gray(np.zeros((1080, 1920, 3), np.uint8), 128).shape == (72, 128)


def test_the_luma_copy_is_the_grey_copy_of_the_converted_frame(tmp_path):
    """Motion reads the decoder's luma plane: every k-th pixel, area-averaged, studio range
    stretched: the grey copy of the BGR frame (converted, grey, reduced the same way) within
    rounding, on studio-range H.264 and on full-range MJPEG (yuvj) alike."""
    import av

    from vidspark_demo import write_video

    frames = [cv2.resize(f, (1280, 720)) for f in scene_frames("scuffle", seconds=1)[:3]]
    for name in ("h264.mp4", "mjpeg.avi"):
        path = str(tmp_path / name)
        if name.endswith(".mp4"):
            with av.open(path, "w") as out:
                stream = out.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
                for frame in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
        else:
            write_video(path, frames, fps=25)
        container, stream = V._open(path)
        try:
            picture = next(V._decoded(container, stream))
            luma, full = picture.luma()
            assert luma.shape == (720, 1280) and full == name.endswith(".avi")
            got = M.picture_gray(picture, 128).astype(int)
            grey = cv2.cvtColor(picture.bgr(), cv2.COLOR_BGR2GRAY)
            want = M.small_luma(grey, 128, full_range=True).astype(int)
        finally:
            container.close()
        assert got.shape == want.shape == (72, 128)
        # within rounding (swscale's fixed-point conversion sits about a level lower)
        assert np.abs(got - want).mean() < 2.0 and np.abs(got - want).max() <= 4


def test_a_second_reuses_the_last_embedded_second_while_nothing_changes():
    from vidspark.media.change import embedded_seconds, thumb_change

    still = np.full(768, 100, np.uint8)

    def thumb(level=0, spot=0):
        t = still.copy()
        t[:] += level                       # light over the whole picture
        t[:spot] = 10                       # something dark in a corner
        return t.tobytes()

    seconds = list(range(8))
    thumbs = [thumb(), thumb(), thumb(3), thumb(6), thumb(9), thumb(9, spot=4), thumb(9, spot=4),
              None]
    assert thumb_change(thumb(), thumb(9)) == 9 and thumb_change(thumb(), b"x") == 255
    # drift adds up against the last embedded second (3, 6 stay within 8 of 0; 9 does not);
    # a dark spot is new; a second without a thumbnail is embedded
    assert embedded_seconds(seconds, thumbs, 8) == [0, 0, 0, 0, 4, 5, 5, 7]
    # any order in, the same decisions out; a missing second starts a new chain
    order = [3, 1, 0, 2]
    assert embedded_seconds(order, [thumbs[s] for s in order], 8) == [0, 0, 0, 0]
    assert embedded_seconds([0, 1, 3], [thumb()] * 3, 8) == [0, 0, 3]
    assert embedded_seconds(seconds, thumbs, 0) == [0, 0, 2, 3, 4, 5, 5, 7]
