"""Video code without Spark: probing a file and sampling one frame per whole second.

The extract stage calls these functions inside its tasks, and tests call them directly. The
sampling rule: for t = 0, 1, 2, ... the first decoded frame whose timestamp, relative to the
first decoded frame, is >= t seconds. Frames are found by decoding sequentially and reading each
decoded frame's timestamp; the only seek is a single one at the start of a time range (see
``sample_seconds``), never a loop of ``CAP_PROP_POS_MSEC`` seeks, which on MPEG program streams
keeps "succeeding" past the end of the file. A video whose last decoded frame is at T seconds
therefore yields exactly floor(T) + 1 frames, whatever its header says.

Decoding is FFmpeg's, through PyAV (the same libraries as OpenCV's FFmpeg backend): a decoded
frame stays in the decoder's own YUV planes until something asks for it, so the motion sampler
takes the luma plane of the frames it measures (no colour conversion) and only the frame kept
each second is converted to BGR. That conversion is swscale's, with the settings of OpenCV's
FFmpeg backend, so the BGR frames are the ones ``cv2.VideoCapture.read`` returns, byte for byte
(``make bench`` checks it against a ``CAP_PROP_POS_MSEC`` seek loop). OpenCV cannot do the same:
its ``CAP_PROP_CONVERT_RGB`` switch hands back the luma plane when set before the first frame,
but toggled between frames it returns garbage or fails (OpenCV 4.14).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Iterator, Optional

import av
import cv2
import numpy as np

from vidspark.errors import VidsparkError

log = logging.getLogger(__name__)

# FFmpeg's own decoder messages ("ac-tex damaged", "MVs not available") about a damaged file
# would go to the task's stderr: what matters reaches the quarantine reason instead. PyAV ignores
# them unless asked; VIDSPARK_FFMPEG_LOGS=1 shows them (warnings and errors), of OpenCV's FFmpeg
# too (the review clips' fallback and the benchmark's reference loop decode with OpenCV).
if os.environ.get("VIDSPARK_FFMPEG_LOGS") == "1":
    import av.logging

    av.logging.set_level(av.logging.WARNING)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24")
else:
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Timestamps are compared in milliseconds with a little slack for float noise (40.00000000000001).
_EPS_MS = 1e-3
_HASH_CHUNK = 4 << 20


class VideoError(VidsparkError):
    """A file that cannot be used as a video; the message is the quarantine reason."""


@dataclass
class Probe:
    """What the container says about a video, plus the timestamp of its first decoded frame."""
    fps: float
    width: int
    height: int
    header_frame_count: int
    first_ts_ms: float

    @property
    def header_duration(self) -> float:
        """Duration estimated from the header (frame count / fps): only a planning hint."""
        if self.fps > 0 and self.header_frame_count > 0:
            return self.header_frame_count / self.fps
        return 0.0


@dataclass
class RangeStats:
    """Bookkeeping of one decoded time range, summed over ranges to describe the whole video."""
    decoded: int = 0                  # decoded frames whose timestamp lies inside the range
    last_ts_ms: Optional[float] = None
    restarted: bool = False           # the seek landed too late and decoding restarted at 0
    notes: list = field(default_factory=list)


def file_digest(path: str) -> tuple[int, str]:
    """(size in bytes, sha256 hex digest) of a file; raises VideoError if it cannot be read."""
    try:
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror or exc}") from None
    return size, digest.hexdigest()


# Pixel formats whose first plane is the luma (Y) plane, 8 bits a sample; the ``j`` formats and
# grey are full range (0-255), the others are full range only when the frame says so.
_LUMA_FORMATS = {"yuv420p", "yuv422p", "yuv444p", "yuv440p", "yuv411p", "yuv410p", "nv12",
                 "nv21", "nv16", "yuva420p", "yuva422p", "yuva444p", "yuvj420p", "yuvj422p",
                 "yuvj444p", "yuvj440p", "yuvj411p", "gray"}
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p", "gray"}
_JPEG_RANGE = 2          # AVCOL_RANGE_JPEG


_LOCAL = threading.local()


def _reformatter():
    r = getattr(_LOCAL, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _LOCAL.reformatter = VideoReformatter()
    return r


class Picture:
    """A decoded frame, converted only when asked: ``bgr()`` (what ``cv2.VideoCapture.read``
    gives) or ``luma()`` (the frame's Y plane, no conversion at all)."""

    __slots__ = ("frame",)

    def __init__(self, frame: av.VideoFrame):
        self.frame = frame

    @property
    def width(self) -> int:
        return self.frame.width

    def bgr(self) -> np.ndarray:
        # swscale's default BT.601 coefficients, as OpenCV's FFmpeg backend converts; through
        # one reformatter per thread, whose swscale context is reused from frame to frame
        # (``frame.to_ndarray(format=...)`` makes a new one for every frame: 2-5 ms at 384x288,
        # more than decoding the frame)
        return _reformatter().reformat(self.frame, format="bgr24").to_ndarray()

    def luma(self) -> tuple[Optional[np.ndarray], bool]:
        """(the Y plane as a 2-D uint8 view, whether it is full range), or (None, False) for a
        format without an 8-bit luma plane (RGB, palette, more than 8 bits a sample)."""
        frame = self.frame
        if frame.format.name not in _LUMA_FORMATS:
            return None, False
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :frame.width]
        full = frame.format.name in _FULL_RANGE_FORMATS or frame.color_range == _JPEG_RANGE
        return y, full


def _open(path: str, threads: int = 1):
    """(container, video stream) of ``path``, decoding with ``threads`` threads (0: FFmpeg's
    choice)."""
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception:  # noqa: BLE001 - whatever FFmpeg says, the file is not a readable video
        raise VideoError("not a readable video: FFmpeg could not open the container") from None
    if not container.streams.video:
        container.close()
        raise VideoError("not a readable video: FFmpeg found no video stream in the container")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = max(0, int(threads))
    if threads != 1:
        stream.thread_type = "AUTO"          # frame and slice threads
    return container, stream


def _decoded(container, stream) -> Iterator[Picture]:
    """Every decodable frame of ``stream`` in order. A damaged packet is skipped (FFmpeg conceals
    what it can, as OpenCV's reader does); a container that cannot be read further ends it. An
    I/O error (an ``OSError``: EIO, a permission or connection lost) is raised, not taken for
    the file's end: extract's task fails with it (the next run decodes the file again) rather
    than store the file cut short as ok."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except OSError:
            raise
        except Exception:  # noqa: BLE001 - a damaged or truncated container: its end
            return
        try:
            frames = packet.decode()
        except Exception:  # noqa: BLE001 - a damaged packet
            continue
        for frame in frames:
            yield Picture(frame)


def _ms(frame: av.VideoFrame, stream) -> float:
    """The frame's timestamp in ms from the stream's start (as ``CAP_PROP_POS_MSEC``); 0 when it
    has none (``_reconcile`` then counts on from the previous frame)."""
    if frame.pts is None:
        return 0.0
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base) * 1000.0


def _header(container, stream) -> tuple[float, int]:
    """(frames per second, frame count) as the container's header states them, computed as
    OpenCV's FFmpeg backend does (the count from the duration when the header has none)."""
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    count = int(stream.frames or 0)
    if count == 0 and fps > 0:
        seconds = (container.duration or 0) / av.time_base
        if seconds <= 0 and stream.duration:
            seconds = float(stream.duration * stream.time_base)
        count = int(np.floor(seconds * fps + 0.5)) if seconds > 0 else 0
    return fps, count


def probe(path: str) -> Probe:
    """Open ``path``, read its header and decode its first frame."""
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")
    container, stream = _open(path)
    try:
        fps, count = _header(container, stream)
        first = next(_decoded(container, stream), None)
        if first is None:
            raise VideoError("no decodable frames")
        first_ts = _ms(first.frame, stream)
        width, height = first.frame.width, first.frame.height
    finally:
        container.close()
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 0.0
    return Probe(fps=fps, width=width, height=height, header_frame_count=max(count, 0),
                 first_ts_ms=first_ts)


def plan_ranges(duration_hint: float, split_seconds: int) -> list[tuple[int, Optional[int]]]:
    """Time ranges [start, end) in whole seconds that together cover the video; the last one is
    open-ended (None), so a header that under-states the duration loses nothing and one that
    over-states it only yields empty ranges."""
    if split_seconds <= 0 or duration_hint <= split_seconds:
        return [(0, None)]
    n = int(np.ceil(duration_hint / split_seconds))
    starts = [k * split_seconds for k in range(n)]
    return [(s, s + split_seconds) for s in starts[:-1]] + [(starts[-1], None)]


def _seek(container, stream, ms: float) -> bool:
    """Seek to the keyframe at or before ``ms`` (stream time, as ``_ms`` counts); False when the
    container cannot seek."""
    target = int(ms / 1000.0 / stream.time_base) + (stream.start_time or 0)
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except Exception:  # noqa: BLE001 - not seekable: the caller decodes from the start
        return False
    return True


def sample_seconds(path: str, *, start: int = 0, end: Optional[int] = None,
                   first_ts_ms: Optional[float] = None, fps: float = 0.0,
                   seek_margin: float = 10.0,
                   stats: Optional[RangeStats] = None,
                   motion=None, threads: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(second, ts_ms, bgr_frame)`` for every whole second in [start, end).

    ``ts_ms`` is relative to the first decoded frame of the file (``first_ts_ms``, absolute, from
    ``probe``; read here when ``start`` is 0). A range that starts later seeks once to
    ``start - seek_margin`` and decodes forward; if the seek lands after ``start`` (inexact seeking
    on some containers), decoding restarts from the beginning, so results never depend on seek
    accuracy. ``stats`` (if given) receives the count of decoded frames inside the range and the
    last timestamp, which summed over ranges give the video's decoded frame count and duration.
    ``motion`` (a ``vidspark.media.motion.MotionSampler``, if given) is shown every decoded frame's
    timestamp and given the frames it wants (their luma planes), so motion costs no second
    decode and no colour conversion. ``threads``: FFmpeg's decoding threads (0: its choice).
    """
    stats = stats if stats is not None else RangeStats()
    if start > 0 and first_ts_ms is None:
        raise ValueError("a range that starts after 0 needs first_ts_ms from probe()")
    container, stream = _open(path, threads)
    try:
        seeked = False
        if start > 0 and start - seek_margin > 0:
            seeked = _seek(container, stream, first_ts_ms + (start - seek_margin) * 1000.0)
            if not seeked:
                container.close()
                container, stream = _open(path, threads)
        yield from _decode_forward(container, stream, path, start, end, first_ts_ms, fps,
                                   stats, seeked, motion, threads)
    finally:
        container.close()


def _reconcile(raw: float, prev: Optional[float], frame_ms: float) -> float:
    """A frame's timestamp from FFmpeg's report and the previous frame's timestamp.

    On MPEG program streams only some packets carry a timestamp and FFmpeg guesses the rest:
    for seconds at a time its guesses run one frame late, a frame may repeat its predecessor's
    time, and a frame with none reports 0. Frames of these streams come at a constant rate, so:
    a report that agrees with counting (previous + one interval) is used as is; one that is
    late by less than 1.5 intervals is replaced by the count; one that is earlier is trusted
    (kept strictly increasing); a jump of 1.5 intervals or more is a real gap and re-syncs.
    """
    if prev is None:
        return raw
    predicted = prev + frame_ms
    if raw <= 0:
        return predicted
    delta = raw - predicted
    if abs(delta) <= 0.5:
        return raw if raw > prev else predicted
    if -1.5 * frame_ms < delta < 0:
        return max(raw, prev + _EPS_MS)
    if 0 < delta < 1.5 * frame_ms:
        return predicted
    return raw if raw > prev else predicted


def _decode_forward(container, stream, path, start, end, first_ts_ms, fps, stats, seeked,
                    motion=None, threads=1):
    frame_ms = 1000.0 / fps if fps > 0 else 40.0
    next_t = start
    prev_abs: Optional[float] = None
    first_after_seek = seeked
    for picture in _decoded(container, stream):
        ts_abs = _reconcile(_ms(picture.frame, stream), prev_abs, frame_ms)
        prev_abs = ts_abs
        if first_ts_ms is None:
            first_ts_ms = ts_abs
        rel = ts_abs - first_ts_ms
        if first_after_seek:
            first_after_seek = False
            if rel > start * 1000.0 + _EPS_MS or picture.frame.pts is None:
                # The seek overshot the range start, or landed on a frame without a timestamp
                # (counting on from it would be counting from nowhere): decode this range from
                # the file's start, with the first container closed meanwhile.
                stats.restarted = True
                container.close()
                container2, stream2 = _open(path, threads)
                try:
                    yield from _decode_forward(container2, stream2, path, start, end, first_ts_ms,
                                               fps, stats, False, motion, threads)
                finally:
                    container2.close()
                return
        if end is not None and rel >= end * 1000.0 - _EPS_MS and next_t >= end:
            break
        if rel >= start * 1000.0 - _EPS_MS and (end is None or rel < end * 1000.0 - _EPS_MS):
            stats.decoded += 1
            stats.last_ts_ms = rel
        wanted = rel >= next_t * 1000.0 - _EPS_MS and (end is None or next_t < end)
        if motion is not None and motion.wants(rel):
            motion.add(rel, picture)
        if wanted:
            frame = picture.bgr()
            while rel >= next_t * 1000.0 - _EPS_MS and (end is None or next_t < end):
                if motion is not None:
                    motion.add_second(next_t, rel, picture)
                yield next_t, rel, frame
                next_t += 1


def frame_name(video_path: str, second: int) -> str:
    """The Databricks notebook's frame name: ``<file stem>frame<NNNN>.jpg`` (more digits past 9999)."""
    stem = os.path.splitext(os.path.basename(video_path))[0]
    return f"{stem}frame{second:04d}.jpg"


def fit_within(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Scale a frame down (area interpolation) so its longest side is at most ``max_side``."""
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise VideoError("JPEG encoding failed")
    return buf.tobytes()


def clip_frames(path: str, start: float, end: float, *,
                seek_margin: float = 10.0) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(ts_ms, bgr_frame)`` for every decoded frame whose timestamp (relative to the first
    decoded frame) lies in [start, end) seconds: the frames of a clip to show a reviewer.

    Like ``sample_seconds``: at most one seek, to ``start - seek_margin``, then sequential decoding
    by decoded timestamps; a seek that lands after ``start`` restarts from the beginning."""
    info = probe(path)
    frame_ms = 1000.0 / info.fps if info.fps > 0 else 40.0
    for seek in (start - seek_margin > 0, False):
        container, stream = _open(path)
        try:
            if seek and not _seek(container, stream,
                                  info.first_ts_ms + (start - seek_margin) * 1000.0):
                continue
            prev: Optional[float] = None
            check_overshoot = seek
            for picture in _decoded(container, stream):
                prev = _reconcile(_ms(picture.frame, stream), prev, frame_ms)
                rel = prev - info.first_ts_ms
                if check_overshoot:
                    check_overshoot = False
                    if rel > start * 1000.0 + _EPS_MS:
                        break                       # seek overshot: decode from the start
                if rel >= end * 1000.0 - _EPS_MS:
                    return
                if rel >= start * 1000.0 - _EPS_MS:
                    yield rel, picture.bgr()
            else:
                return                              # end of file
        finally:
            container.close()
