"""Pictures and clips for reviewers: JPEG thumbnails, PNG figures and playable clips, as bytes
or as ``data:`` URIs that a notebook or a self-contained HTML page embeds.

A clip is cut from the source video (OpenCV decoding, ``video.clip_frames``) and encoded as
H.264 MP4 with the ffmpeg binary that ``imageio-ffmpeg`` ships. When that is impossible (the
source file is gone, or no ffmpeg), the clip is an animated GIF of the stored one-per-second
frames, and ``Clip.note`` says why.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from vidspark.errors import VidsparkError
from vidspark.media import video

log = logging.getLogger(__name__)

CLIP_PAD_SECONDS = 2          # shown before and after a segment
CLIP_MAX_SECONDS = 60         # longer segments are cut to their first minute
CLIP_MAX_SIDE = 480           # clip frames are scaled down to this (longest side)
THUMB_MAX_SIDE = 320


class MediaError(VidsparkError, RuntimeError):
    """A clip cannot be made the preferred way (the message says why)."""


@dataclass
class Clip:
    data: bytes
    mime: str                 # video/mp4 | image/gif
    start_second: float
    end_second: float
    note: str = ""            # why the fallback was used (empty for MP4)

    def data_uri(self) -> str:
        return data_uri(self.data, self.mime)

    def html(self, title: str = "") -> str:
        """An HTML5 ``<video>`` element (MP4) or an ``<img>`` (GIF), self-contained."""
        label = html.escape(title)
        if self.mime == "video/mp4":
            body = (f'<video class="clip" controls muted loop playsinline preload="auto" '
                    f'width="{CLIP_MAX_SIDE}" title="{label}">'
                    f'<source src="{self.data_uri()}" type="video/mp4"></video>')
        else:
            body = f'<img class="clip" src="{self.data_uri()}" alt="{label}">'
        if self.note:
            body += f'<div class="clip-note">{html.escape(self.note)}</div>'
        return body

    def _repr_html_(self) -> str:   # Jupyter displays the clip inline
        return self.html()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode(jpeg: bytes) -> np.ndarray:
    """A stored JPEG frame as a BGR array."""
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise MediaError("stored frame is not a decodable JPEG")
    return frame


def thumbnail(jpeg: bytes, max_side: int = THUMB_MAX_SIDE, quality: int = 85) -> bytes:
    """A smaller JPEG of a stored frame."""
    return video.encode_jpeg(video.fit_within(decode(jpeg), max_side), quality)


def rgb(jpeg: bytes) -> np.ndarray:
    """A stored JPEG frame as an RGB array (for matplotlib)."""
    return cv2.cvtColor(decode(jpeg), cv2.COLOR_BGR2RGB)


def figure_png(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise MediaError("imageio-ffmpeg is not installed") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise MediaError(f"no ffmpeg binary: {exc}") from None


def encode_mp4(frames: Iterable[np.ndarray], fps: float) -> bytes:
    """H.264 MP4 (yuv420p, faststart: plays in every browser) of BGR frames of one size."""
    exe = ffmpeg_exe()
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise MediaError("no frames in the clip")
    h, w = first.shape[:2]
    w2, h2 = w - w % 2, h - h % 2            # yuv420p needs even sizes
    with tempfile.TemporaryDirectory(prefix="vidspark-clip-") as tmp:
        target = os.path.join(tmp, "clip.mp4")    # faststart rewrites the file: not a pipe
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w2}x{h2}", "-r", f"{fps:.6g}", "-i", "-", "-an", "-c:v", "libx264",
               "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-y", target]
        with open(os.path.join(tmp, "stderr"), "w+b") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err)
            try:
                for frame in _chain(first, frames):
                    if frame.shape[:2] != (h, w):
                        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                    proc.stdin.write(np.ascontiguousarray(frame[:h2, :w2]).tobytes())
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()
                code = proc.wait()
            err.seek(0)
            message = err.read().decode(errors="replace").strip()
        data = b""
        if code == 0 and os.path.isfile(target):
            with open(target, "rb") as fh:
                data = fh.read()
    if code != 0 or not data:
        raise MediaError(f"ffmpeg failed (exit {code}): {message.splitlines()[0] if message else ''}")
    return data


def _chain(first, rest):
    yield first
    yield from rest


def encode_gif(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """An animated GIF of BGR frames (Pillow)."""
    from PIL import Image

    if not frames:
        raise MediaError("no frames in the clip")
    images = [Image.fromarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(1000 / fps)), loop=0)
    return buf.getvalue()


def clip_window(start_second: int, end_second: int, duration: float | None) -> tuple[float, float]:
    """[start, end) seconds shown for a segment: padded, at most ``CLIP_MAX_SECONDS`` long."""
    start = max(0.0, start_second - CLIP_PAD_SECONDS)
    end = min(end_second + 1 + CLIP_PAD_SECONDS, start + CLIP_MAX_SECONDS)
    if duration:
        end = min(end, duration + 1e-3)
    return start, max(end, start + 1)


def source_clip(path: str, start: float, end: float, fps: float | None) -> Clip:
    """The H.264 clip [start, end) seconds cut from the source video."""
    frames = [video.fit_within(f, CLIP_MAX_SIDE) for _, f in video.clip_frames(path, start, end)]
    if not frames:
        raise MediaError(f"no frames decoded between {start:g}s and {end:g}s")
    rate = fps if fps and fps > 0 else len(frames) / max(end - start, 1e-6)
    return Clip(encode_mp4(frames, rate), "video/mp4", start, end)


def frames_clip(jpegs: Sequence[bytes], start: float, end: float, note: str) -> Clip:
    """The fallback: an animated GIF of stored one-per-second frames (two frames a second)."""
    frames = [video.fit_within(decode(j), CLIP_MAX_SIDE) for j in jpegs]
    return Clip(encode_gif(frames, fps=2.0), "image/gif", start, end, note)
