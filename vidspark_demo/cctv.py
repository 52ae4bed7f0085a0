"""Long CCTV-like footage at any resolution: the demo's shop floor seen by one fixed camera for
minutes at a time, as a real camera sees most of its day. The scene stays still; the picture
carries temporal sensor noise and a slow change of light (clouds, a lamp warming up), and people
cross it (walking, some stopping for a moment, some carrying a bag) in a chosen share of the
seconds only. ``make bench`` encodes it as H.264 at a camera's bitrate
(``vidspark_bench.footage``) to measure what a site's footage costs.

Only numpy, OpenCV and the standard library; the same arguments give the same frames.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from vidspark_demo.scene import (_BAGS, _Actor, _Bag, _Path, _Scene, _draw_person, _make_scene,
                                 _random_look, _uniform, _vary)

#: The demo scene's camera is laid out for 288 picture rows; other heights scale it.
_BASE_HEIGHT = 288
_NOISE_SIGMA = 2.0          # grey levels, per pixel and frame, before encoding
_LIGHT_DEPTH = 0.06         # the light's slow swing, as a share of its level
_NOISE_BANK = 8
_BLOCK = 30                 # seconds: crossings are planned half a minute at a time


@dataclass
class CameraDay:
    """``seconds`` of one camera: its frames (``frames()``) and the seconds in which someone is
    in view (``active``, sorted)."""

    width: int
    height: int
    seconds: int
    fps: int
    seed: int
    active: list = field(default_factory=list)
    scene: _Scene | None = None
    actors: list = field(default_factory=list)
    light_period: float = 180.0
    light_phase: float = 0.0

    @property
    def active_fraction(self) -> float:
        return len(self.active) / self.seconds if self.seconds else 0.0

    def frames(self) -> Iterator[np.ndarray]:
        """``seconds * fps`` BGR frames of ``width`` x ``height``."""
        rng = np.random.default_rng(self.seed + 1)
        cam = self.scene.camera
        noise = rng.normal(0, _NOISE_SIGMA, (_NOISE_BANK, self.height, self.width, 3))
        up = np.clip(noise, 0, 255).astype(np.uint8)
        down = np.clip(-noise, 0, 255).astype(np.uint8)
        del noise
        for i in range(self.seconds * self.fps):
            t = i / self.fps
            frame = self.scene.background.copy()
            things = [(actor.track.at(t)[1], actor) for actor in self.actors
                      if actor.track.t[0] <= t <= actor.track.t[-1]]
            for _, actor in sorted(things, key=lambda item: -item[0]):   # far ones first
                _draw_person(frame, cam, actor, t)
            gain = 1 + _LIGHT_DEPTH * math.sin(2 * math.pi * t / self.light_period
                                               + self.light_phase)
            frame = cv2.convertScaleAbs(frame, alpha=gain, beta=0)
            k = int(rng.integers(_NOISE_BANK))
            cv2.add(frame, up[k], dst=frame)
            cv2.subtract(frame, down[(k + 3) % _NOISE_BANK], dst=frame)
            yield frame


def _crossing(scene: _Scene, rng: np.random.Generator, start: float) -> _Actor:
    """Someone who enters the picture on one side at about ``start`` and leaves on the other,
    stopping for a moment on the way now and then."""
    side = int(rng.choice([-1, 1]))
    z0, z1 = scene.random_z(rng), scene.random_z(rng)
    speed = _uniform(rng, 1.0, 1.6)
    path = _Path(start, scene.offscreen_x(side, z0, 0.6), z0)
    if rng.random() < 0.3:
        lo, hi = scene.camera.x_limits((z0 + z1) / 2)
        path.walk_to(_uniform(rng, lo + 0.3 * (hi - lo), hi - 0.3 * (hi - lo)), (z0 + z1) / 2,
                     speed).wait_until(path.t + _uniform(rng, 2, 6))
    path.walk_to(scene.offscreen_x(-side, z1, 0.6), z1, speed)
    actor = _Actor(path.track(), _random_look(rng))
    if rng.random() < 0.3:
        colour = tuple(float(c) for c in _vary(rng, _BAGS[rng.integers(len(_BAGS))], 10))
        bag = _Bag(colour, (_uniform(rng, 0.3, 0.5), _uniform(rng, 0.25, 0.4)))
        bag.carriers.append((-1e9, 1e9, actor))
        actor.bags.append(bag)
    return actor


def _seconds_in_view(scene: _Scene, actor: _Actor, seconds: int) -> set:
    """The whole seconds (0 <= s < seconds) in which ``actor`` is at least partly in the
    picture, checked five times a second."""
    cam = scene.camera
    out = set()
    for k in range(int(actor.track.t[0] * 5), int(actor.track.t[-1] * 5) + 1):
        t = k / 5
        if not 0 <= t < seconds:
            continue
        x, z, *_ = actor.track.at(t)
        u, _ = cam.project(x, z)
        half = 0.35 * cam.focal * actor.look.height / z
        if -half < u < cam.width + half:
            out.add(int(t))
    return out


def camera_day(width: int, height: int, seconds: int, *, fps: int = 25,
               active_fraction: float = 0.2, seed: int = 0) -> CameraDay:
    """Plan ``seconds`` of footage of one camera in which people are in view during about
    ``active_fraction`` of the seconds, in every minute alike (crossings at random times, added
    until the share is reached; ``CameraDay.active`` says which seconds)."""
    rng = np.random.default_rng(seed)
    scale = height / _BASE_HEIGHT
    scene = _make_scene(rng, width, height, scale)
    day = CameraDay(width, height, seconds, fps, seed, scene=scene,
                    light_period=_uniform(rng, 120, 300), light_phase=_uniform(rng, 0, 2 * math.pi))
    # Crossings are placed block by block, so every stretch of the day (its first half as much
    # as its second) has about the share asked for.
    active: set = set()
    for end in range(_BLOCK, seconds + _BLOCK, _BLOCK):
        end = min(end, seconds)
        for _ in range(200):
            if len({s for s in active if s < end}) >= round(active_fraction * end):
                break
            actor = _crossing(scene, rng, _uniform(rng, end - _BLOCK - 4, end - 4))
            seen = _seconds_in_view(scene, actor, seconds)
            horizon = min(seconds, end + 10)
            if not seen or len({s for s in active | seen if s < horizon}) > \
                    round(active_fraction * horizon) + 2:
                continue
            active |= seen
            day.actors.append(actor)
    day.active = sorted(active)
    return day
