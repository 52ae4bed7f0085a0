"""Synthetic CCTV videos for the vidspark demo and tests.

vidspark looks for suspicious behaviour in CCTV footage, in the spirit of the Databricks
"identify suspicious behavior in video" notebooks, which used clips of the CAVIAR data set.
This module makes a small stand-in for that data set that needs no download:

* :func:`generate_demo_dataset` renders CAVIAR-like clips (MPEG-1 program streams, 384x288,
  25 fps) of a shop floor seen by a fixed camera. People walk through, browse at shelves and
  meet; in the suspicious clips two people fight, someone falls and lies on the floor, or a
  bag is left behind. The suspicious act fills a contiguous span of seconds in the middle of
  its clip, and ``labels.csv`` marks those seconds in the notebook's format
  (``ImageName,label`` with ``<clip>frame<NNNN>.jpg`` names, one row per second).
  The output is the same for the same seed.
* :func:`write_video` writes frames with OpenCV in the containers vidspark reads.
* :func:`encode_index_frame`, :func:`decode_index_frame` and :func:`write_index_video` make
  tiny test videos whose frame numbers can be read back from the pictures, even after lossy
  MPEG compression.

Run ``python -m vidspark_demo --out data/demo`` to write the demo data set.

Only numpy, OpenCV and the standard library are used, so the module works without Spark.
"""
from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import itertools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "DATASET_VERSION",
    "ClipSpec",
    "clip_frames",
    "decode_index_frame",
    "encode_index_frame",
    "generate_demo_dataset",
    "main",
    "plan_demo_dataset",
    "write_index_video",
    "write_video",
]

#: Changes whenever the generated data would change; stored in ``<root>/.complete``.
DATASET_VERSION = "vidspark-demo-1"

#: Frame size of the demo clips (the CAVIAR clips are 384x288 too).
FRAME_WIDTH, FRAME_HEIGHT = 384, 288

_MARKER = ".complete"

# --------------------------------------------------------------------------------------
# Writing videos
# --------------------------------------------------------------------------------------

# Container suffix -> (fourcc, OpenCV backend). Any MPEG-1 fourcc makes OpenCV's FFmpeg
# backend print "tag ... is not supported" for the MPEG program stream muxer (it has no
# tag table) before it goes on with the right codec; write_video hides that one line.
_CODECS: dict[str, tuple[str, int]] = {
    ".mpg": ("PIM1", cv2.CAP_FFMPEG),
    ".mpeg": ("PIM1", cv2.CAP_FFMPEG),
    ".avi": ("MJPG", cv2.CAP_ANY),
    ".mp4": ("mp4v", cv2.CAP_ANY),
}
_HARMLESS_FFMPEG_LINE = ("OpenCV: FFMPEG: tag 0x", "OpenCV: FFMPEG: fallback to use tag")


@contextlib.contextmanager
def _without_fourcc_warning() -> Iterator[None]:
    """Hide OpenCV's harmless fourcc-tag warning, printed by native code on file descriptor 2.

    File descriptor 2 is redirected process-wide only while a writer opens; everything else
    written to it meanwhile is passed on afterwards.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable file descriptor 2
        saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            for line in text.splitlines(keepends=True):
                if not line.startswith(_HARMLESS_FFMPEG_LINE):
                    sys.stderr.write(line)


def _checked_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be HxWx3 uint8 BGR arrays, got {frame.dtype} {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise ValueError(f"frame size {frame.shape[:2]} differs from the first frame's {size}")
    return np.ascontiguousarray(frame)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25.0) -> int:
    """Write HxWx3 uint8 BGR ``frames`` to ``path`` and return how many were written.

    The container follows the suffix: ``.mpg``/``.mpeg`` give MPEG-1 video in an MPEG program
    stream (like the CAVIAR clips), ``.avi`` gives Motion JPEG and ``.mp4`` MPEG-4 part 2.
    The frame size is taken from the first frame; parent folders are created. MPEG-1 allows
    only the standard frame rates (23.976, 24, 25, 29.97, 30, 50, 59.94, 60).

    Raises ValueError for an unknown suffix, no frames or a bad frame, and RuntimeError when
    OpenCV cannot open a writer.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CODECS:
        raise ValueError(f"unsupported video suffix {suffix!r} for {path}; use one of {sorted(_CODECS)}")
    frame_iter = iter(frames)
    first = next(frame_iter, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    first = _checked_frame(first, None)
    height, width = first.shape[:2]
    fourcc, backend = _CODECS[suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _without_fourcc_warning():
        code = cv2.VideoWriter_fourcc(*fourcc)
        writer = cv2.VideoWriter(str(path), backend, code, float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(
            f"OpenCV could not open a video writer for {path} (fourcc {fourcc!r}, {width}x{height} at "
            f"{fps} fps); check that OpenCV was built with FFmpeg and, for MPEG-1, that the frame "
            "rate is a standard one (23.976, 24, 25, 29.97, 30, 50, 59.94 or 60)"
        )
    count = 0
    try:
        for frame in itertools.chain([first], frame_iter):
            writer.write(_checked_frame(frame, (height, width)))
            count += 1
    finally:
        writer.release()
    return count


# --------------------------------------------------------------------------------------
# Frame-index code for tests
# --------------------------------------------------------------------------------------

_INDEX_COLS, _INDEX_ROWS = 4, 3
_INDEX_BITS = _INDEX_COLS * _INDEX_ROWS
_INDEX_BACKGROUND = 128
_MIN_BLOCK = 16


def _index_blocks(width: int, height: int) -> list[tuple[int, int, int]]:
    """Top-left corners and size of the code blocks, most significant bit first."""
    block = min(width // (_INDEX_COLS + 1), height // (_INDEX_ROWS + 1))
    if block < _MIN_BLOCK:
        raise ValueError(f"a {width}x{height} frame is too small for the index code")
    left = (width - _INDEX_COLS * block) // 2
    top = (height - _INDEX_ROWS * block) // 2
    return [
        (top + r * block, left + c * block, block) for r in range(_INDEX_ROWS) for c in range(_INDEX_COLS)
    ]


def encode_index_frame(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    """Draw ``index`` (0..4095) into a BGR frame as 12 black/white blocks on mid-grey.

    Each block is at least 16x16 pixels, so the code survives lossy compression.
    """
    if not 0 <= index < 1 << _INDEX_BITS:
        raise ValueError(f"index must be in 0..{(1 << _INDEX_BITS) - 1}, got {index}")
    frame = np.full((height, width, 3), _INDEX_BACKGROUND, np.uint8)
    for bit, (y, x, size) in enumerate(_index_blocks(width, height)):
        on = (index >> (_INDEX_BITS - 1 - bit)) & 1
        frame[y : y + size, x : x + size] = 255 if on else 0
    return frame


def decode_index_frame(frame: np.ndarray) -> int:
    """Read back the number drawn by :func:`encode_index_frame` (BGR or grey frame)."""
    frame = np.asarray(frame)
    grey = frame.mean(axis=2) if frame.ndim == 3 else frame
    height, width = grey.shape
    index = 0
    for y, x, size in _index_blocks(width, height):
        m = size // 4  # look at the middle of the block, away from edge ringing
        bit = grey[y + m : y + size - m, x + m : x + size - m].mean() > _INDEX_BACKGROUND
        index = (index << 1) | int(bit)
    return index


def write_index_video(
    path: str | os.PathLike, n_frames: int, fps: float = 25.0, width: int = 160, height: int = 120
) -> None:
    """Write a video whose frame ``i`` shows the index code of ``i``, for i in 0..n_frames-1."""
    write_video(path, (encode_index_frame(i, width, height) for i in range(n_frames)), fps)


# --------------------------------------------------------------------------------------
# Data set plan
# --------------------------------------------------------------------------------------

#: Clip kinds: CAVIAR-style name stem and whether the clip's act is suspicious.
_KINDS: dict[str, tuple[str, bool]] = {
    "walk": ("Walk", False),
    "browse": ("Browse", False),
    "meet": ("Meet_WalkTogether", False),
    "fight": ("Fight_RunAway", True),
    "fall": ("Rest_FallOnFloor", True),
    "leftbag": ("LeftBag", True),
}
_TRAIN_KINDS = ["walk", "walk", "browse", "meet", "meet", "fight", "fight", "fall", "leftbag"]
_SCORE_KINDS = ["walk", "browse", "meet", "fight", "fall", "leftbag"]


@dataclass(frozen=True)
class ClipSpec:
    """One demo clip: its name, what happens in it and when.

    ``event`` is the ``[start, end)`` span of whole seconds in which the clip's main act
    happens (a fight, a fall, an unattended bag, or in normal clips browsing or a meeting).
    Only suspicious clips label it 1.
    """

    name: str
    kind: str
    split: str
    seconds: int
    event: tuple[int, int]
    seed: int

    @property
    def suspicious(self) -> bool:
        return _KINDS[self.kind][1]

    def labels(self) -> list[int]:
        """One label per second: 1 while the suspicious act happens, else 0."""
        start, end = self.event
        return [int(self.suspicious and start <= s < end) for s in range(self.seconds)]

    def image_names(self) -> list[str]:
        """Per-second image names in the Databricks notebook style, e.g. ``Walk1frame0003.jpg``."""
        return [f"{self.name}frame{s:04d}.jpg" for s in range(self.seconds)]


def plan_demo_dataset(seed: int = 7, seconds: int | None = None) -> list[ClipSpec]:
    """The clips :func:`generate_demo_dataset` writes, train clips first (cheap, no rendering)."""
    if seconds is not None and seconds < 3:
        raise ValueError("clips need at least 3 seconds")
    specs: list[ClipSpec] = []
    counters: dict[str, int] = {}
    for split_no, (split, kinds) in enumerate([("train", _TRAIN_KINDS), ("score", _SCORE_KINDS)]):
        for clip_no, kind in enumerate(kinds):
            counters[kind] = counters.get(kind, 0) + 1
            rng = np.random.default_rng([seed, split_no, clip_no])
            if seconds is None:
                duration = int(rng.integers(20, 36))
                length = int(np.clip(round(duration * rng.uniform(0.3, 0.45)), 6, 15))
                start = (duration - length) // 2 + int(rng.integers(-2, 3))
                start = int(np.clip(start, 4, duration - length - 4))
            else:
                duration = seconds
                start, length = seconds // 3, seconds - 2 * (seconds // 3)
            name = f"{_KINDS[kind][0]}{counters[kind]}"
            clip_seed = int(rng.integers(0, 2**31))
            specs.append(ClipSpec(name, kind, split, duration, (start, start + length), clip_seed))
    return specs


# --------------------------------------------------------------------------------------
# Scene: camera and background
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Camera:
    """A pinhole camera looking horizontally; the floor is y=0, z is the distance in metres."""

    width: int
    height: int
    horizon: float  # image row of the horizon
    focal: float  # pixels
    cx: float  # image column of the optical axis
    cam_height: float  # metres above the floor

    def project(self, x: float, z: float, y: float = 0.0) -> tuple[float, float]:
        return self.cx + self.focal * x / z, self.horizon + self.focal * (self.cam_height - y) / z

    def x_limits(self, z: float) -> tuple[float, float]:
        """Floor x range in view at distance z."""
        return -self.cx * z / self.focal, (self.width - self.cx) * z / self.focal


@dataclass
class _Scene:
    camera: _Camera
    wall_z: float
    z_min: float  # walking area, distance from the camera
    z_max: float
    shelves: list[float]  # centres (x) of shelves along the back wall
    background: np.ndarray

    def offscreen_x(self, side: int, z: float, margin: float = 1.1) -> float:
        lo, hi = self.camera.x_limits(z)
        return hi + margin if side > 0 else lo - margin

    def random_z(self, rng: np.random.Generator) -> float:
        return _uniform(rng, self.z_min, self.z_max)


def _poly(img: np.ndarray, points: Sequence[tuple[float, float]], colour: Sequence[float]) -> None:
    pts = np.round(np.array(points) * 16).astype(np.int32)
    cv2.fillPoly(img, [pts], tuple(float(c) for c in colour), cv2.LINE_AA, 4)


def _wall_rect(
    img: np.ndarray,
    cam: _Camera,
    z: float,
    x0: float,
    x1: float,
    y0: float,
    y1: float,
    colour: Sequence[float],
) -> None:
    """A rectangle on the back wall, x0..x1 wide and y0..y1 metres above the floor."""
    (u0, v0), (u1, v1) = cam.project(x0, z, y1), cam.project(x1, z, y0)
    _poly(img, [(u0, v0), (u1, v0), (u1, v1), (u0, v1)], colour)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _vary(rng: np.random.Generator, colour: Sequence[float], amount: float = 18) -> np.ndarray:
    return np.clip(np.asarray(colour, float) + rng.uniform(-amount, amount, 3), 0, 255)


def _make_scene(rng: np.random.Generator, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> _Scene:
    """A random shop floor: tiled floor in perspective, a back wall with shelves and doors."""
    cam = _Camera(
        width,
        height,
        horizon=_uniform(rng, 40, 75),
        focal=_uniform(rng, 175, 215),
        cx=_uniform(rng, 0.38, 0.62) * width,
        cam_height=_uniform(rng, 2.7, 3.4),
    )
    wall_z = _uniform(rng, 7.5, 10.0)
    wall_height = cam.cam_height + _uniform(rng, 0.5, 1.0)
    img = np.zeros((height, width, 3), np.float32)

    # Ceiling with light panels.
    img[:] = _vary(rng, (150, 155, 160), 25)
    for z in np.arange(3.0, wall_z, _uniform(rng, 1.8, 2.6)):
        for x in (-2.5, 2.5):
            corners = [(x - 0.6, z), (x + 0.6, z), (x + 0.6, z + 0.5), (x - 0.6, z + 0.5)]
            _poly(img, [cam.project(cx, cz, wall_height) for cx, cz in corners], (235, 240, 240))

    # Back wall, skirting board, then things along it.
    x_lo, x_hi = cam.x_limits(wall_z)
    walls = [(170, 190, 200), (190, 190, 185), (150, 170, 190), (200, 205, 210)]
    wall = _vary(rng, walls[rng.integers(len(walls))], 15)
    _wall_rect(img, cam, wall_z, x_lo - 1, x_hi + 1, 0, wall_height, wall)
    _wall_rect(img, cam, wall_z, x_lo - 1, x_hi + 1, 0, 0.12, wall * 0.45)
    shelves: list[float] = []
    x = x_lo + _uniform(rng, 0.3, 1.5)
    while x < x_hi - 1.2:
        kind = rng.choice(["shelf", "shelf", "door", "poster", "window"])
        shelf_w, window_w = _uniform(rng, 1.6, 2.6), _uniform(rng, 1.5, 2.5)
        widths = {"shelf": shelf_w, "door": 1.1, "poster": 0.8, "window": window_w}
        w = min(widths[kind], x_hi - x)
        if kind == "shelf":
            frame_col = _vary(rng, (60, 70, 80), 20)
            _wall_rect(img, cam, wall_z, x, x + w, 0, 1.9, frame_col)
            _wall_rect(img, cam, wall_z, x + 0.05, x + w - 0.05, 0.05, 1.85, frame_col * 0.55)
            for level in np.linspace(0.15, 1.5, 4):
                _wall_rect(img, cam, wall_z, x + 0.05, x + w - 0.05, level, level + 0.05, frame_col * 1.4)
                px = x + 0.08
                while px < x + w - 0.2:  # goods on the shelf
                    pw, ph = _uniform(rng, 0.08, 0.25), _uniform(rng, 0.12, 0.3)
                    colour = rng.uniform(30, 230, 3)
                    _wall_rect(img, cam, wall_z, px, px + pw, level + 0.05, level + 0.05 + ph, colour)
                    px += pw + 0.03
            shelves.append(x + w / 2)
        elif kind == "door":
            _wall_rect(img, cam, wall_z, x, x + w, 0, 2.15, wall * 0.5)
            _wall_rect(img, cam, wall_z, x + 0.08, x + w - 0.08, 0, 2.07, _vary(rng, (80, 95, 110), 25))
            _wall_rect(img, cam, wall_z, x + w - 0.25, x + w - 0.15, 1.0, 1.08, (30, 30, 30))
        elif kind == "poster":
            _wall_rect(img, cam, wall_z, x, x + w, 1.1, 2.1, rng.uniform(40, 220, 3))
            _wall_rect(img, cam, wall_z, x + 0.1, x + w - 0.1, 1.5, 1.9, rng.uniform(40, 220, 3))
        else:
            _wall_rect(img, cam, wall_z, x, x + w, 0.9, 2.3, wall * 0.6)
            _wall_rect(img, cam, wall_z, x + 0.06, x + w - 0.06, 0.96, 2.24, _vary(rng, (200, 185, 150), 20))
        x += w + _uniform(rng, 0.3, 1.4)

    # Tiled floor in perspective.
    floors = [(120, 130, 140), (90, 110, 125), (150, 150, 145), (100, 100, 110)]
    floor = _vary(rng, floors[rng.integers(len(floors))], 15)
    contrast = _uniform(rng, 3, 9)
    tile = _uniform(rng, 0.45, 0.8)
    z_edges = np.arange(wall_z, 0.5, -tile)[::-1]
    for z0, z1 in zip(z_edges[:-1], z_edges[1:]):
        lo, hi = cam.x_limits(z1)
        for i in range(math.floor(lo / tile) - 1, math.ceil(hi / tile) + 1):
            x0, x1 = i * tile, (i + 1) * tile
            shade = contrast if (i + round(z0 / tile)) % 2 else -contrast
            corners = [(x0, z0), (x1, z0), (x1, z1), (x0, z1)]
            _poly(img, [cam.project(cx, cz) for cx, cz in corners], floor + shade)
    grout = floor * 0.75
    for z in z_edges:
        (u0, v), (u1, _) = cam.project(-50, z), cam.project(50, z)
        cv2.line(img, (int(u0), int(v)), (int(u1), int(v)), grout.tolist(), 1, cv2.LINE_AA)
    lo, hi = cam.x_limits(wall_z)
    for i in range(math.floor(lo / tile), math.ceil(hi / tile) + 1):
        p0, p1 = cam.project(i * tile, wall_z), cam.project(i * tile, 0.3)
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), grout.tolist(), 1, cv2.LINE_AA)
    if rng.random() < 0.6:  # a mat on the floor
        mx, mz = _uniform(rng, -2, 2), _uniform(rng, 4, wall_z - 1.5)
        mw, md = _uniform(rng, 1, 2.5), _uniform(rng, 0.8, 1.5)
        corners = [(mx, mz), (mx + mw, mz), (mx + mw, mz + md), (mx, mz + md)]
        _poly(img, [cam.project(cx, cz) for cx, cz in corners], _vary(rng, (60, 50, 110), 40))

    # Smooth shading, vignetting, the camera's colour cast; then soften like a cheap lens.
    def smooth_noise(shape: tuple[int, int, int]) -> np.ndarray:
        small = rng.normal(0, 1, shape).astype(np.float32)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, -1)

    img += 12 * smooth_noise((6, 8, 1)) + 4 * smooth_noise((4, 5, 3))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    img *= (1 - 0.18 * r2)[..., None]
    img = img * rng.uniform(0.82, 1.15, 3).astype(np.float32) + _uniform(rng, -20, 15)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    background = np.clip(img, 0, 255).astype(np.uint8)

    z_min = cam.focal * cam.cam_height / (height - cam.horizon - 25) + 0.3
    return _Scene(cam, wall_z, max(z_min, 2.5), wall_z - 0.8, shelves, background)


# --------------------------------------------------------------------------------------
# People: paths, poses and drawing
# --------------------------------------------------------------------------------------


class _Wiggle:
    """A smooth random signal in about -1..1, a sum of a few sines."""

    def __init__(self, rng: np.random.Generator, low_hz: float, high_hz: float, n: int = 3):
        self.freqs = [2 * math.pi * f for f in rng.uniform(low_hz, high_hz, n)]
        self.phases = [float(p) for p in rng.uniform(0, 2 * math.pi, n)]

    def __call__(self, t: float) -> float:
        total = sum(math.sin(f * t + p) for f, p in zip(self.freqs, self.phases))
        return 0.9 * total / math.sqrt(len(self.freqs))


class _Track:
    """Piecewise-linear path on the floor: keys of (time, x, z)."""

    def __init__(self, keys: Sequence[tuple[float, float, float]]):
        self.t = [k[0] for k in keys]
        self.x = [k[1] for k in keys]
        self.z = [k[2] for k in keys]
        self.dist = [0.0]
        self.facing: list[int] = []
        last = 0
        for i in range(len(keys) - 1):
            dx, dz = self.x[i + 1] - self.x[i], self.z[i + 1] - self.z[i]
            self.dist.append(self.dist[-1] + math.hypot(dx, dz))
            if abs(dx) > 0.05:
                last = 1 if dx > 0 else -1
            self.facing.append(last)
        first_move = next((f for f in self.facing if f), 1)
        self.facing = [f or first_move for f in self.facing] or [first_move]

    def at(self, t: float) -> tuple[float, float, float, float, float, int]:
        """Position x, z, velocity vx, vz, distance walked so far and facing (+1 right, -1 left)."""
        i = bisect.bisect_right(self.t, t) - 1
        if i < 0:
            return self.x[0], self.z[0], 0.0, 0.0, 0.0, self.facing[0]
        if i >= len(self.t) - 1:
            return self.x[-1], self.z[-1], 0.0, 0.0, self.dist[-1], self.facing[-1]
        dt = self.t[i + 1] - self.t[i]
        u = (t - self.t[i]) / dt
        vx, vz = (self.x[i + 1] - self.x[i]) / dt, (self.z[i + 1] - self.z[i]) / dt
        x, z = self.x[i] + u * (self.x[i + 1] - self.x[i]), self.z[i] + u * (self.z[i + 1] - self.z[i])
        dist = self.dist[i] + u * (self.dist[i + 1] - self.dist[i])
        return x, z, vx, vz, dist, self.facing[i]


class _Path:
    """Builds a track step by step."""

    def __init__(self, t: float, x: float, z: float):
        self.keys = [(t, x, z)]

    @property
    def t(self) -> float:
        return self.keys[-1][0]

    @property
    def x(self) -> float:
        return self.keys[-1][1]

    @property
    def z(self) -> float:
        return self.keys[-1][2]

    def walk_to(self, x: float, z: float, speed: float) -> _Path:
        duration = max(math.hypot(x - self.x, z - self.z) / speed, 1e-3)
        self.keys.append((self.t + duration, x, z))
        return self

    def wait_until(self, t: float) -> _Path:
        if t > self.t:
            self.keys.append((t, self.x, self.z))
        return self

    def track(self) -> _Track:
        return _Track(self.keys)


@dataclass
class _Pose:
    """Body pose; angles in radians, limb angles measured from hanging down, + = forwards."""

    facing: int = 1
    moving: bool = False
    tilt: float = 0.0  # whole body about the feet, + = forwards
    bend: float = 0.0  # upper body about the hips, + = forwards
    dx: float = 0.0  # sideways offset in metres
    legs: tuple[float, float] = (0.0, 0.0)  # back, front thigh
    knees: tuple[float, float] = (0.0, 0.0)
    arms: tuple[float, float] = (0.0, 0.0)  # back, front upper arm
    elbows: tuple[float, float] = (0.1, 0.1)


def _walking_pose(dist: float, speed: float, vx: float, facing: int) -> _Pose:
    if speed < 0.05:
        return _Pose(facing=facing, legs=(-0.04, 0.04), arms=(-0.05, 0.05))
    running = speed > 2.2
    stride = 2.6 if running else 1.5
    phase = 2 * math.pi * dist / stride
    # Walking towards or away from the camera shows less swing.
    side = 0.45 + 0.55 * min(1.0, abs(vx) / speed)
    leg_amp = (0.6 if running else 0.38) * side
    arm_amp = (0.7 if running else 0.35) * side
    s = math.sin(phase)
    return _Pose(
        facing=facing,
        moving=True,
        tilt=0.15 if running else 0.02,
        legs=(-leg_amp * s, leg_amp * s),
        knees=(0.5 * max(0.0, math.cos(phase)), 0.5 * max(0.0, -math.cos(phase))),
        arms=(arm_amp * s, -arm_amp * s),
        elbows=(1.3, 1.3) if running else (0.25, 0.25),
    )


def _ramp(u: float) -> float:
    """Smooth 0..1 step for u in 0..1."""
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


@dataclass
class _Action:
    """Something a person does from t0 to t1 that changes the pose."""

    t0: float
    t1: float

    def apply(self, t: float, pose: _Pose) -> None:
        raise NotImplementedError


@dataclass
class _Face(_Action):
    facing: int

    def apply(self, t: float, pose: _Pose) -> None:
        pose.facing = self.facing


@dataclass
class _Talk(_Action):
    facing: int
    gesture: _Wiggle
    sway: _Wiggle

    def apply(self, t: float, pose: _Pose) -> None:
        g = max(0.0, self.gesture(t))
        pose.facing = self.facing
        pose.tilt = 0.03 * self.sway(t)
        pose.arms = (-0.05, 0.15 + 0.6 * g)
        pose.elbows = (0.15, 0.3 + 1.0 * g)


@dataclass
class _Browse(_Action):
    facing: int
    reach: _Wiggle
    lean: _Wiggle

    def apply(self, t: float, pose: _Pose) -> None:
        pose.facing = self.facing
        if pose.moving:  # stepping along the shelf
            return
        up = max(0.0, self.reach(t))
        pose.arms = (-0.05, 0.2 + 2.4 * up)
        pose.elbows = (0.1, 0.3 + 0.5 * up)
        pose.bend = 0.35 * max(0.0, self.lean(t))


@dataclass
class _Fight(_Action):
    facing: int
    wiggles: list[_Wiggle]
    punch_hz: float
    punch_phase: float

    def apply(self, t: float, pose: _Pose) -> None:
        w = [f(t) for f in self.wiggles]
        k = _ramp((t - self.t0) / 0.3) * _ramp((self.t1 - t) / 0.3)  # intensity
        p = 2 * math.pi * self.punch_hz * t + self.punch_phase
        pose.facing = self.facing
        pose.tilt = k * (0.12 + 0.12 * w[0])
        pose.bend = k * 0.15 * w[1]
        pose.dx = k * self.facing * 0.14 * w[2]
        pose.arms = (k * (1.0 + 0.7 * w[3]), k * (1.4 + 0.6 * w[4]))
        pose.elbows = (k * 1.6 * (0.5 + 0.5 * math.sin(p)), k * 1.6 * (0.5 + 0.5 * math.sin(p + math.pi)))
        pose.legs = (k * (-0.35 + 0.2 * w[5]), k * (0.3 + 0.2 * w[1]))
        pose.knees = (0.2 * k, 0.3 * k)


@dataclass
class _Fall(_Action):
    """Fall down in 0.6 s from t0, lie still, get up during the last 0.9 s before t1."""

    direction: int  # +1 forwards, -1 backwards

    def apply(self, t: float, pose: _Pose) -> None:
        down = min(1.0, (t - self.t0) / 0.6) ** 2  # accelerating fall
        up = _ramp((t - (self.t1 - 0.9)) / 0.8)
        amount = down * (1 - up)
        pose.tilt = self.direction * 1.5 * amount
        pose.bend = -0.2 * self.direction * math.sin(math.pi * down) * (1 - up)
        pose.legs = (-0.05 * (1 - amount), 0.1 * (1 - amount) + 0.6 * up * (1 - up))
        pose.knees = (0.0, 1.2 * up * (1 - up))
        pose.arms = (0.6 * amount, 2.6 * amount if self.direction > 0 else 0.4 * amount)
        pose.elbows = (0.2, 0.2)


@dataclass
class _Bend(_Action):
    """Bend down and up again (to put down or pick up something)."""

    facing: int

    def apply(self, t: float, pose: _Pose) -> None:
        u = math.sin(math.pi * min(1.0, max(0.0, (t - self.t0) / (self.t1 - self.t0))))
        pose.facing = self.facing
        pose.bend = 1.1 * u
        pose.legs = (-0.1 * u, 0.35 * u)
        pose.knees = (0.5 * u, 0.7 * u)
        pose.arms = (-0.3 * u, -0.5 * u)
        pose.elbows = (0.1, 0.1)


@dataclass(frozen=True)
class _Look:
    height: float  # metres
    build: float
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]


_SHIRTS = [(40, 40, 170), (150, 70, 30), (50, 120, 40), (205, 205, 205), (35, 35, 35), (40, 150, 210),
           (120, 120, 120), (50, 75, 115), (130, 50, 110), (160, 140, 60), (30, 30, 90), (90, 160, 160)]
_TROUSERS = [(95, 55, 30), (30, 30, 30), (85, 85, 85), (120, 160, 180), (55, 60, 85), (70, 40, 20)]
_SKINS = [(150, 180, 225), (125, 155, 200), (85, 115, 160), (60, 80, 115)]
_HAIRS = [(20, 20, 20), (30, 50, 80), (60, 110, 160), (150, 150, 150), (40, 40, 60)]
_BAGS = [(30, 30, 30), (40, 60, 100), (110, 60, 30), (40, 40, 150), (60, 100, 60), (150, 150, 150)]


def _random_look(rng: np.random.Generator) -> _Look:
    def pick(options):
        return tuple(float(c) for c in _vary(rng, options[rng.integers(len(options))], 12))

    return _Look(_uniform(rng, 1.6, 1.9), _uniform(rng, 0.9, 1.2), pick(_SHIRTS), pick(_TROUSERS),
                 pick(_SKINS), pick(_HAIRS))


@dataclass
class _Bag:
    """A bag that is carried by someone or stands on the floor at (x, z)."""

    colour: tuple[float, float, float]
    size: tuple[float, float]  # width, height in metres
    carriers: list[tuple[float, float, _Actor]] = field(default_factory=list)  # (from, to, who)
    x: float = 0.0
    z: float = 0.0

    def carrier(self, t: float) -> _Actor | None:
        return next((who for t0, t1, who in self.carriers if t0 <= t < t1), None)


@dataclass
class _Actor:
    track: _Track
    look: _Look
    actions: list[_Action] = field(default_factory=list)
    bags: list[_Bag] = field(default_factory=list)

    def state(self, t: float) -> tuple[float, float, _Pose]:
        x, z, vx, vz, dist, facing = self.track.at(t)
        pose = _walking_pose(dist, math.hypot(vx, vz), vx, facing)
        for action in self.actions:
            if action.t0 <= t < action.t1:
                action.apply(t, pose)
        return x, z, pose


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * 16)), int(round(y * 16))


def _shadow(img: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> None:
    """Darken a soft ellipse on the floor."""
    x0, x1 = max(0, int(cx - ax) - 2), min(img.shape[1], int(cx + ax) + 3)
    y0, y1 = max(0, int(cy - ay) - 2), min(img.shape[0], int(cy + ay) + 3)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(mask, _pt(cx - x0, cy - y0), _pt(max(ax, 1), max(ay, 1)), 0, 0, 360, 255, -1, cv2.LINE_AA, 4)
    roi = img[y0:y1, x0:x1]
    roi[:] = (roi * (1 - 0.35 / 255 * mask.astype(np.float32))[..., None]).astype(np.uint8)


def _draw_bag(img: np.ndarray, bag: _Bag, top_x: float, top_y: float, ppm: float) -> None:
    """Draw a bag hanging from (top_x, top_y); ppm is pixels per metre."""
    w, h = bag.size[0] * ppm, bag.size[1] * ppm
    y0 = top_y + 0.12 * ppm
    left, right = top_x - w / 2, top_x + w / 2
    _poly(img, [(left, y0), (right, y0), (right, y0 + h), (left, y0 + h)], bag.colour)
    handle = tuple(c * 0.6 for c in bag.colour)
    thick = max(1, round(0.03 * ppm))
    cv2.line(img, _pt(top_x - w / 3, y0), _pt(top_x, top_y), handle, thick, cv2.LINE_AA, 4)
    cv2.line(img, _pt(top_x + w / 3, y0), _pt(top_x, top_y), handle, thick, cv2.LINE_AA, 4)


def _draw_person(img: np.ndarray, cam: _Camera, actor: _Actor, t: float) -> None:
    x, z, pose = actor.state(t)
    look = actor.look
    s = cam.focal * look.height / z  # body height in pixels
    fx, fy = cam.project(x + pose.dx, z)
    if fx < -s or fx > cam.width + s:
        return
    ct, st = math.cos(pose.tilt), math.sin(pose.tilt)
    cb, sb = math.cos(pose.bend), math.sin(pose.bend)
    f = pose.facing

    def to_image(lx: float, ly: float, upper: bool = False) -> tuple[float, float]:
        # Body coordinates: units of body height, feet at 0, y up, x forwards.
        if upper:  # rotate about the hips
            ry = ly - 0.5
            lx, ly = lx * cb + ry * sb, -lx * sb + ry * cb + 0.5
        return fx + s * f * (lx * ct + ly * st), fy - s * (-lx * st + ly * ct)

    def limb(start, a1, l1, a2, l2, upper):
        x1, y1 = start[0] + l1 * math.sin(a1), start[1] - l1 * math.cos(a1)
        x2, y2 = x1 + l2 * math.sin(a2), y1 - l2 * math.cos(a2)
        return [to_image(*start, upper), to_image(x1, y1, upper), to_image(x2, y2, upper)]

    def polyline(points, colour, width):
        for p, q in zip(points[:-1], points[1:]):
            cv2.line(img, _pt(*p), _pt(*q), colour, width, cv2.LINE_AA, 4)

    leg_w = max(1, round(0.085 * s * look.build))
    arm_w = max(1, round(0.055 * s * look.build))
    dark = 0.72
    shirt_back = tuple(c * dark for c in look.shirt)
    trousers_back = tuple(c * dark for c in look.trousers)
    hip, shoulder = (0.0, 0.5), (0.0, 0.79)

    head_x, _ = to_image(0.0, 0.9, True)
    _shadow(img, (fx + head_x) / 2, fy, 0.12 * s + abs(head_x - fx) / 2, 0.04 * s + 1)

    legs = [limb(hip, pose.legs[i], 0.25, pose.legs[i] - pose.knees[i], 0.25, False) for i in (0, 1)]
    arms = [limb(shoulder, pose.arms[i], 0.19, pose.arms[i] + pose.elbows[i], 0.18, True) for i in (0, 1)]
    polyline(arms[0], shirt_back, arm_w)
    polyline(legs[0], trousers_back, leg_w)
    polyline(legs[1], look.trousers, leg_w)
    toe_x, toe_y = to_image(0.05, 0.0)  # shoes: a short stroke forwards from each foot
    shoe_w = max(1, round(0.6 * leg_w))
    for foot_x, foot_y in (leg[-1] for leg in legs):
        toe = (foot_x + toe_x - fx, foot_y + toe_y - fy)
        cv2.line(img, _pt(foot_x, foot_y), _pt(*toe), (30, 30, 30), shoe_w, cv2.LINE_AA, 4)
    b = look.build
    torso = [to_image(-0.095 * b, 0.81, True), to_image(0.095 * b, 0.81, True),
             to_image(0.08 * b, 0.47, True), to_image(-0.08 * b, 0.47, True)]
    _poly(img, torso, look.shirt)
    polyline([to_image(0.0, 0.8, True), to_image(0.0, 0.86, True)], look.skin, max(1, round(0.045 * s)))
    cv2.circle(img, _pt(*to_image(-0.012, 0.902, True)), round(0.064 * s * 16), look.hair, -1, cv2.LINE_AA, 4)
    cv2.circle(img, _pt(*to_image(0.013, 0.892, True)), round(0.056 * s * 16), look.skin, -1, cv2.LINE_AA, 4)
    for bag in actor.bags:
        if bag.carrier(t) is actor:
            hand = arms[1][-1]
            _draw_bag(img, bag, hand[0], hand[1], cam.focal / z)
    polyline(arms[1], look.shirt, arm_w)
    cv2.circle(img, _pt(*arms[1][-1]), round(0.03 * s * 16), look.skin, -1, cv2.LINE_AA, 4)


def _draw_floor_bag(img: np.ndarray, cam: _Camera, bag: _Bag) -> None:
    ppm = cam.focal / bag.z
    u, v = cam.project(bag.x, bag.z)
    _shadow(img, u, v, 0.35 * ppm, 0.08 * ppm + 1)
    _draw_bag(img, bag, u, v - (bag.size[1] + 0.12) * ppm, ppm)


# --------------------------------------------------------------------------------------
# Scripts of the clip kinds
# --------------------------------------------------------------------------------------


@dataclass
class _Cast:
    actors: list[_Actor] = field(default_factory=list)
    bags: list[_Bag] = field(default_factory=list)


def _arrive(
    scene: _Scene, rng: np.random.Generator, x: float, z: float, t: float, speed: float, side: int
) -> _Path:
    """A path that comes in from off screen on ``side`` and reaches (x, z) at time t."""
    z0 = float(np.clip(z + rng.uniform(-2, 2), scene.z_min, scene.z_max))
    x0 = scene.offscreen_x(side, z0)
    start = t - math.hypot(x - x0, z - z0) / speed
    return _Path(start, x0, z0).walk_to(x, z, speed)


def _leave(scene: _Scene, rng: np.random.Generator, path: _Path, speed: float, side: int) -> _Path:
    z1 = float(np.clip(path.z + rng.uniform(-2, 2), scene.z_min, scene.z_max))
    return path.walk_to(scene.offscreen_x(side, z1), z1, speed)


def _spot(scene: _Scene, rng: np.random.Generator, spread: float = 0.6) -> tuple[float, float]:
    """A random place on the floor, well inside the picture, more often near the camera."""
    z = scene.z_min + 0.3 + float(rng.uniform()) ** 1.5 * (scene.z_max - scene.z_min - 0.8)
    lo, hi = scene.camera.x_limits(z)
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * spread
    return _uniform(rng, mid - half, mid + half), z


def _new_bag(rng: np.random.Generator) -> _Bag:
    colour = tuple(float(c) for c in _vary(rng, _BAGS[rng.integers(len(_BAGS))], 10))
    return _Bag(colour, (_uniform(rng, 0.3, 0.5), _uniform(rng, 0.25, 0.4)))


def _add_passers_by(cast: _Cast, scene: _Scene, rng: np.random.Generator, times: Iterable[float]) -> None:
    """People who cross the picture, starting off screen at the given times."""
    for start in times:
        side = int(rng.choice([-1, 1]))
        z0, z1 = scene.random_z(rng), scene.random_z(rng)
        speed = _uniform(rng, 1.0, 1.6)
        path = _Path(start, scene.offscreen_x(side, z0), z0)
        if rng.random() < 0.4:  # stop for a moment on the way
            x, z = _spot(scene, rng, 0.8)
            path.walk_to(x, z, speed).wait_until(path.t + _uniform(rng, 1, 3))
        path.walk_to(scene.offscreen_x(-side, z1), z1, speed)
        actor = _Actor(path.track(), _random_look(rng))
        if rng.random() < 0.3:
            bag = _new_bag(rng)
            bag.carriers.append((-1e9, 1e9, actor))
            actor.bags.append(bag)
            cast.bags.append(bag)
        cast.actors.append(actor)


def _crossing_times(rng: np.random.Generator, seconds: int, n: int) -> list[float]:
    return [float(t) for t in rng.uniform(-8, seconds - 2, n)]


def _script_walk(scene: _Scene, rng: np.random.Generator, seconds: int, event: tuple[int, int]) -> _Cast:
    cast = _Cast()
    middle = (event[0] + event[1]) / 2
    _add_passers_by(cast, scene, rng, [middle - _uniform(rng, 3, 6)])
    _add_passers_by(cast, scene, rng, _crossing_times(rng, seconds, int(rng.integers(2, 4))))
    return cast


def _script_browse(scene: _Scene, rng: np.random.Generator, seconds: int, event: tuple[int, int]) -> _Cast:
    cast = _Cast()
    lo, hi = scene.camera.x_limits(scene.wall_z)
    targets = [x for x in scene.shelves if lo + 1 < x < hi - 1] or [(lo + hi) / 2]
    x, z = float(rng.choice(targets)), scene.wall_z - 0.6
    side = int(rng.choice([-1, 1]))
    path = _arrive(scene, rng, x, z, event[0] - _uniform(rng, 0, 0.5), _uniform(rng, 1.0, 1.4), side)
    arrived = path.t
    # Browse, stepping a little along the shelf now and then.
    while path.t < event[1] - 3:
        path.wait_until(path.t + _uniform(rng, 1.5, 3.5))
        path.walk_to(x + _uniform(rng, -0.6, 0.6), z, 0.5)
    path.wait_until(event[1])
    facing = int(rng.choice([-1, 1]))
    actions = [_Browse(arrived, event[1], facing, _Wiggle(rng, 0.15, 0.5), _Wiggle(rng, 0.1, 0.3))]
    cast.actors.append(_Actor(_leave(scene, rng, path, 1.2, -side).track(), _random_look(rng), actions))
    _add_passers_by(cast, scene, rng, _crossing_times(rng, seconds, int(rng.integers(1, 3))))
    return cast


def _pair_arrive(scene: _Scene, rng: np.random.Generator, t: float, gap: float) -> tuple[_Path, _Path]:
    """Two people who come from opposite sides and stop face to face at about time t."""
    x, z = _spot(scene, rng, 0.5)
    left = _arrive(scene, rng, x - gap / 2, z, t + _uniform(rng, -0.6, 0), _uniform(rng, 1.1, 1.5), -1)
    right = _arrive(scene, rng, x + gap / 2, z, t + _uniform(rng, -0.6, 0), _uniform(rng, 1.1, 1.5), +1)
    return left, right


def _script_meet(scene: _Scene, rng: np.random.Generator, seconds: int, event: tuple[int, int]) -> _Cast:
    cast = _Cast()
    left, right = _pair_arrive(scene, rng, event[0], _uniform(rng, 0.8, 1.1))
    talks = [_Talk(p.t, event[1], facing, _Wiggle(rng, 0.4, 1.2), _Wiggle(rng, 0.2, 0.6))
             for p, facing in ((left, 1), (right, -1))]
    left.wait_until(event[1])
    right.wait_until(event[1] + 0.3)
    # Walk away together, side by side.
    side = int(rng.choice([-1, 1]))
    z1 = scene.random_z(rng)
    speed = _uniform(rng, 1.0, 1.3)
    for path, dz in ((left, 0.0), (right, 0.5)):
        mid_z = float(np.clip((left.z + z1) / 2 + dz, scene.z_min, scene.z_max))
        mid_x = (left.x + right.x) / 2 + side * 1.5
        path.walk_to(mid_x, mid_z, speed)
        path.walk_to(scene.offscreen_x(side, mid_z), mid_z, speed)
    cast.actors += [_Actor(left.track(), _random_look(rng), [talks[0]]),
                    _Actor(right.track(), _random_look(rng), [talks[1]])]
    _add_passers_by(cast, scene, rng, _crossing_times(rng, seconds, int(rng.integers(0, 3))))
    return cast


def _script_fight(scene: _Scene, rng: np.random.Generator, seconds: int, event: tuple[int, int]) -> _Cast:
    cast = _Cast()
    start, end = event[0] - 0.3, event[1] - 0.2
    left, right = _pair_arrive(scene, rng, start - 0.5, _uniform(rng, 0.95, 1.15))
    actors = []
    for path, facing in ((left, 1), (right, -1)):
        path.wait_until(start)
        wiggles = [_Wiggle(rng, 1.5, 5.0) for _ in range(6)]
        actions = [_Face(path.t - 0.5, start, facing),
                   _Fight(start, end, facing, wiggles, _uniform(rng, 2.0, 3.5), _uniform(rng, 0, 6.3))]
        actors.append((path, actions))
    shift = _uniform(rng, -0.4, 0.4)
    for path, _ in actors:  # the scuffle moves both of them a little
        path.walk_to(path.x + shift, path.z + _uniform(rng, -0.15, 0.15), 0.3).wait_until(end)
    # One runs away, the other stays a moment and walks off the other way.
    runner = int(rng.integers(2))
    for i, (path, actions) in enumerate(actors):
        side = 1 if path is right else -1
        if i == runner:
            _leave(scene, rng, path, _uniform(rng, 3.0, 4.0), side)
        else:
            path.wait_until(end + _uniform(rng, 0.8, 1.5))
            actions.append(_Face(end, path.t, 1 if path is left else -1))
            _leave(scene, rng, path, _uniform(rng, 1.1, 1.4), -side)
        cast.actors.append(_Actor(path.track(), _random_look(rng), actions))
    _add_passers_by(cast, scene, rng, _crossing_times(rng, seconds, int(rng.integers(0, 2))))
    return cast


def _script_fall(scene: _Scene, rng: np.random.Generator, seconds: int, event: tuple[int, int]) -> _Cast:
    cast = _Cast()
    x, z = _spot(scene, rng, 0.5)
    side = int(rng.choice([-1, 1]))
    fall_at = event[0] - 0.6  # down by event[0]; up again by event[1]
    path = _arrive(scene, rng, x, z, fall_at, _uniform(rng, 0.9, 1.3), side).wait_until(event[1])
    action = _Fall(fall_at, event[1], int(rng.choice([-1, 1])))
    _leave(scene, rng, path, _uniform(rng, 0.8, 1.1), -side)
    cast.actors.append(_Actor(path.track(), _random_look(rng), [action]))
    _add_passers_by(cast, scene, rng, _crossing_times(rng, seconds, int(rng.integers(1, 3))))
    return cast


def _script_leftbag(scene: _Scene, rng: np.random.Generator, seconds: int, event: tuple[int, int]) -> _Cast:
    cast = _Cast()
    bag = _new_bag(rng)
    x, z = _spot(scene, rng, 0.5)
    side = int(rng.choice([-1, 1]))  # the owner comes from this side and faces the other way
    put_down = event[0] - 0.65
    owner_path = _arrive(scene, rng, x, z, event[0] - 1.2, _uniform(rng, 1.0, 1.3), side)
    owner_path.wait_until(event[0] - 0.1)
    _leave(scene, rng, owner_path, _uniform(rng, 1.1, 1.4), side)
    owner = _Actor(owner_path.track(), _random_look(rng), [_Bend(event[0] - 1.1, event[0] - 0.2, -side)])
    bag.x, bag.z = x - side * 0.45, z - 0.1
    # Later someone else comes from the other side and takes it.
    pick_up = event[1] - 0.55
    speed = _uniform(rng, 1.0, 1.3)
    picker_path = _arrive(scene, rng, bag.x - side * 0.45, z + 0.05, event[1] - 1.1, speed, -side)
    picker_path.wait_until(event[1])
    away = int(rng.choice([-1, 1]))
    _leave(scene, rng, picker_path, _uniform(rng, 1.1, 1.4), away)
    picker = _Actor(picker_path.track(), _random_look(rng), [_Bend(event[1] - 1.0, event[1] - 0.1, side)])
    bag.carriers += [(-1e9, put_down, owner), (pick_up, 1e9, picker)]
    owner.bags.append(bag)
    picker.bags.append(bag)
    cast.actors += [owner, picker]
    cast.bags.append(bag)
    _add_passers_by(cast, scene, rng, _crossing_times(rng, seconds, int(rng.integers(0, 3))))
    return cast


_SCRIPTS: dict[str, Callable[[_Scene, np.random.Generator, int, tuple[int, int]], _Cast]] = {
    "walk": _script_walk,
    "browse": _script_browse,
    "meet": _script_meet,
    "fight": _script_fight,
    "fall": _script_fall,
    "leftbag": _script_leftbag,
}


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def clip_frames(spec: ClipSpec, fps: int = 25) -> Iterator[np.ndarray]:
    """Render the frames of one demo clip: exactly ``spec.seconds * fps`` BGR images, 384x288."""
    rng = np.random.default_rng(spec.seed)
    scene = _make_scene(rng)
    cast = _SCRIPTS[spec.kind](scene, rng, spec.seconds, spec.event)
    cam = scene.camera
    # Camera sensor noise: a bank of noise images, one picked per frame.
    noise = rng.normal(0, 2.0, (8, cam.height, cam.width, 3))
    noise_up = np.clip(noise, 0, 255).astype(np.uint8)
    noise_down = np.clip(-noise, 0, 255).astype(np.uint8)
    flicker = _Wiggle(rng, 0.2, 1.5)
    for i in range(spec.seconds * fps):
        t = i / fps
        frame = scene.background.copy()
        things: list[tuple[float, _Actor | _Bag]] = [(actor.track.at(t)[1], actor) for actor in cast.actors]
        things += [(bag.z, bag) for bag in cast.bags if bag.carrier(t) is None]
        for _, thing in sorted(things, key=lambda item: -item[0]):  # far things first
            if isinstance(thing, _Actor):
                _draw_person(frame, cam, thing, t)
            else:
                _draw_floor_bag(frame, cam, thing)
        gain = 1 + 0.012 * flicker(t) + float(rng.normal(0, 0.004))
        frame = cv2.convertScaleAbs(frame, alpha=gain, beta=0)
        frame = cv2.GaussianBlur(frame, (3, 3), 0.6)
        k = int(rng.integers(len(noise_up)))
        cv2.add(frame, noise_up[k], dst=frame)
        cv2.subtract(frame, noise_down[k], dst=frame)
        yield frame


# --------------------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------------------


def _write_labels(path: Path, specs: Sequence[ClipSpec]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["ImageName", "label"])
        for spec in specs:
            writer.writerows(zip(spec.image_names(), spec.labels()))


def _positive_rate(specs: Sequence[ClipSpec]) -> float:
    labels = [label for spec in specs for label in spec.labels()]
    return sum(labels) / len(labels) if labels else 0.0


def _stamp(seed: int, seconds: int | None, fps: int) -> dict:
    return {"version": DATASET_VERSION, "seed": seed, "seconds": seconds, "fps": fps}


def _is_complete(root: Path, seed: int, seconds: int | None, fps: int) -> bool:
    """Whether ``root`` holds a finished data set made with these arguments."""
    marker = root / _MARKER
    try:
        if json.loads(marker.read_text(encoding="utf-8")) != _stamp(seed, seconds, fps):
            return False
    except (OSError, ValueError):
        return False
    names = [root / spec.split / f"{spec.name}.mpg" for spec in plan_demo_dataset(seed, seconds)]
    return all(p.exists() for p in [*names, root / "labels.csv", root / "score_labels.csv"])


def generate_demo_dataset(
    root: str | os.PathLike,
    *,
    seed: int = 7,
    seconds: int | None = None,
    fps: int = 25,
    force: bool = False,
) -> dict:
    """Write the synthetic CCTV data set under ``root`` and describe it.

    Writes ``root/train/*.mpg`` (9 clips) and ``root/score/*.mpg`` (6 clips), MPEG-1 program
    streams of 384x288 at ``fps``, each exactly ``seconds * fps`` frames long; normally 20-35 s
    per clip, or ``seconds`` each when given (the act then fills the middle third).
    ``root/labels.csv`` labels every second of the train clips (``ImageName,label``, e.g.
    ``Fight_RunAway1frame0012.jpg,1``); ``root/score_labels.csv`` does the same for the score
    clips, for evaluation only. The same arguments give the same videos. A finished data set
    is recorded in ``root/.complete`` and not written again unless ``force`` is true.

    Returns ``{"train": [paths], "score": [paths], "labels": path, "score_labels": path,
    "positive_rate_train": float, "positive_rate_score": float}``.
    """
    root = Path(root)
    specs = plan_demo_dataset(seed, seconds)
    by_split = {split: [s for s in specs if s.split == split] for split in ("train", "score")}
    paths = {split: [str(root / split / f"{s.name}.mpg") for s in by_split[split]] for split in by_split}
    result = {
        "train": paths["train"],
        "score": paths["score"],
        "labels": str(root / "labels.csv"),
        "score_labels": str(root / "score_labels.csv"),
        "positive_rate_train": _positive_rate(by_split["train"]),
        "positive_rate_score": _positive_rate(by_split["score"]),
    }
    if not force and _is_complete(root, seed, seconds, fps):
        return result
    marker = root / _MARKER
    marker.unlink(missing_ok=True)
    for spec in specs:
        path = root / spec.split / f"{spec.name}.mpg"
        written = write_video(path, clip_frames(spec, fps), fps)
        if written != spec.seconds * fps:  # pragma: no cover - a guard, not expected
            raise RuntimeError(f"wrote {written} frames to {path}, expected {spec.seconds * fps}")
    _write_labels(root / "labels.csv", by_split["train"])
    _write_labels(root / "score_labels.csv", by_split["score"])
    marker.write_text(json.dumps(_stamp(seed, seconds, fps)), encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Command line: ``python -m vidspark_demo --out data/demo [--seed 7] [--seconds N] [--force]``."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m vidspark_demo",
        description="Write the synthetic CCTV demo data set (MPEG-1 clips and labels).",
    )
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument("--seconds", type=int, help="length of every clip (default: 20-35 s each)")
    parser.add_argument("--force", action="store_true", help="write the files even if they are already there")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    reused = not args.force and _is_complete(Path(args.out), args.seed, args.seconds, 25)
    info = generate_demo_dataset(args.out, seed=args.seed, seconds=args.seconds, force=args.force)
    elapsed = time.perf_counter() - started
    specs = plan_demo_dataset(args.seed, args.seconds)
    for split in ("train", "score"):
        chosen = [s for s in specs if s.split == split]
        rate = info[f"positive_rate_{split}"]
        print(f"{split}: {len(chosen)} clips, {sum(s.seconds for s in chosen)} s, "
              f"{rate:.1%} suspicious seconds -> {Path(args.out) / split}")
    print(f"labels: {info['labels']} (train), {info['score_labels']} (score, for evaluation)")
    if reused:
        print(f"the data set in {args.out} was already complete; use --force to write it again")
    else:
        print(f"written in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
