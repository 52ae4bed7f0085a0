"""The per-second sampling rule on real MPEG-1 files whose frames carry their own index."""
import math
import re

import cv2
import numpy as np
import pytest

from vidspark.media import video as V
from vidspark_demo import decode_index_frame, write_index_video

FPS = 25.0


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    """A 30.5 s video (763 frames): the last frame is at 30.48 s."""
    path = str(tmp_path_factory.mktemp("idx") / "idx.mpg")
    write_index_video(path, 763, fps=FPS)
    return path


def expected_index(second: int) -> int:
    """The first frame at or after ``second``: frame i is at i / fps seconds."""
    return math.ceil(second * FPS - 1e-9)


def test_one_frame_per_second_is_the_first_at_or_after_it(index_video):
    p = V.probe(index_video)
    stats = V.RangeStats()
    got = [(s, ts, decode_index_frame(f)) for s, ts, f in
           V.sample_seconds(index_video, first_ts_ms=p.first_ts_ms, fps=p.fps, stats=stats)]
    # Last decoded frame at T = 762 / 25 = 30.48 s -> floor(T) + 1 = 31 frames.
    assert [s for s, _, _ in got] == list(range(31))
    assert [i for _, _, i in got] == [expected_index(s) for s in range(31)]
    assert all(ts >= s * 1000 - 1e-3 for s, ts, _ in got)
    assert stats.decoded == 763
    assert stats.last_ts_ms == pytest.approx(30480.0)


def test_split_ranges_give_the_same_frames_as_one_pass(index_video):
    p = V.probe(index_video)
    ranges = V.plan_ranges(p.header_duration, 7)
    assert len(ranges) == 5 and ranges[-1][1] is None
    got, decoded = [], 0
    for start, end in ranges:
        stats = V.RangeStats()
        got += [(s, decode_index_frame(f)) for s, _, f in V.sample_seconds(
            index_video, start=start, end=end, first_ts_ms=p.first_ts_ms, fps=p.fps,
            seek_margin=2, stats=stats)]
        decoded += stats.decoded
    assert got == [(s, expected_index(s)) for s in range(31)]
    assert decoded == 763   # every decoded frame counted exactly once across ranges


def test_header_that_understates_the_length_loses_nothing(index_video):
    p = V.probe(index_video)
    # Plan as if the header said 10 s: the last range is open-ended and decodes to the end.
    ranges = V.plan_ranges(10.0, 4)
    seconds = [s for start, end in ranges for s, _, _ in V.sample_seconds(
        index_video, start=start, end=end, first_ts_ms=p.first_ts_ms, fps=p.fps)]
    assert seconds == list(range(31))


def test_frame_count_follows_decoded_timestamps_not_the_header(tmp_path):
    path = str(tmp_path / "short.mpg")
    write_index_video(path, 63, fps=FPS)     # last frame at 2.48 s
    p = V.probe(path)
    assert [s for s, _, _ in V.sample_seconds(path, first_ts_ms=p.first_ts_ms, fps=p.fps)] == [0, 1, 2]


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file (0 bytes)"),
    (b"this is not a video\n" * 20, "not a readable video"),
])
def test_bad_files_are_refused_with_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mpg"
    path.write_bytes(content)
    with pytest.raises(V.VideoError, match=re.escape(reason)):
        V.probe(str(path))


def test_truncated_file_keeps_the_frames_before_the_cut(tmp_path, index_video):
    path = tmp_path / "trunc.mpg"
    data = open(index_video, "rb").read()
    path.write_bytes(data[:len(data) // 2])
    p = V.probe(str(path))
    got = [(s, decode_index_frame(f)) for s, _, f in
           V.sample_seconds(str(path), first_ts_ms=p.first_ts_ms, fps=p.fps)]
    assert 5 < len(got) < 31
    # every second but the last (whose frame may be the concealed, damaged one) is exact
    assert got[:-1] == [(s, expected_index(s)) for s in range(len(got) - 1)]


def test_frame_name_and_jpeg():
    assert V.frame_name("/x/Fight_Chase.mpg", 7) == "Fight_Chaseframe0007.jpg"
    assert V.frame_name("cam1/a b.mpg", 12345) == "a bframe12345.jpg"
    frame = np.full((288, 384, 3), 90, np.uint8)
    decoded = cv2.imdecode(np.frombuffer(V.encode_jpeg(frame, 90), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (288, 384, 3)


def test_plan_ranges():
    assert V.plan_ranges(100, 600) == [(0, None)]
    assert V.plan_ranges(1300, 600) == [(0, 600), (600, 1200), (1200, None)]
    assert V.plan_ranges(0, 600) == [(0, None)]


def reconcile(raw):
    out, prev = [], None
    for ts in raw:
        prev = V._reconcile(ts, prev, 40.0)
        out.append(prev)
    return out


def test_ffmpeg_timestamp_glitches_are_corrected_without_drift():
    # As decoded from real MPEG-1 program streams: frames 995-997 report 39840, 39880, 39880
    # (true: 39800, 39840, 39880); frames of a late stretch report one interval late for
    # seconds; the last frame reports 0 (no timestamp).
    raw = [39760.0, 39840.0, 39880.0, 39880.0, 39920.0, 0.0]
    assert reconcile(raw) == [39760.0, 39800.0, 39840.0, 39880.0, 39920.0, 39960.0]
    late_stretch = [i * 40.0 for i in range(270, 275)] + [i * 40.0 + 40 for i in range(275, 320)] \
        + [i * 40.0 for i in range(320, 330)]
    assert reconcile(late_stretch) == [i * 40.0 for i in range(270, 330)]


def test_anchored_on_a_late_frame_the_timestamps_recover():
    # a range that starts (after a seek) inside a late stretch
    raw = [i * 40.0 + 40 for i in range(100, 110)] + [i * 40.0 for i in range(110, 115)]
    out = reconcile(raw)
    assert out[-3:] == [i * 40.0 for i in range(112, 115)]
    assert all(b > a for a, b in zip(out, out[1:]))


def test_real_gaps_resync():
    raw = [0.0, 40.0, 80.0, 1080.0, 1120.0]          # one second missing from the stream
    assert reconcile(raw) == raw


def test_an_io_error_while_demuxing_is_raised_not_taken_for_the_end_of_the_file():
    import errno
    import types

    import av

    class Packet:
        def decode(self):
            return []

    def demux(code):
        def packets(stream):
            yield Packet()
            av.error.err_check(code)        # raises FFmpeg's error for the code, as demux does
        return types.SimpleNamespace(demux=packets)

    with pytest.raises(OSError):            # extract's task fails: tried again, never cut short
        list(V._decoded(demux(-errno.EIO), None))
    # damaged or cut data (AVERROR_INVALIDDATA, AVERROR_EOF) ends the file, as OpenCV's reader
    assert list(V._decoded(demux(-0x41444E49), None)) == []
    assert list(V._decoded(demux(-0x20464F45), None)) == []
