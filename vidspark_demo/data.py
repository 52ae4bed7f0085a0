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

from vidspark_demo.scene import (_BAGS, _Actor, _Bag, _Bend, _Browse, _Face, _Fall, _Fight, _Path,
                                  _Scene, _Talk, _Wiggle, _draw_floor_bag, _draw_person,
                                  _make_scene, _random_look, _uniform, _vary)

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
