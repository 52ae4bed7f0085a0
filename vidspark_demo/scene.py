"""The demo's world: a fixed camera over a shop floor, and people who walk, browse, meet, fight,
fall and leave bags behind (paths, poses and drawing). ``vidspark_demo.data`` scripts the demo
clips with it; ``vidspark_demo.cctv`` renders long camera footage at any resolution with it.

Distances are in metres; the camera's focal length and horizon are in pixels of a 384x288
picture, multiplied by ``scale`` for other sizes, so a scene looks the same at any resolution.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

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


def _make_scene(rng: np.random.Generator, width: int = 384, height: int = 288,
                scale: float = 1.0) -> _Scene:
    """A random shop floor: tiled floor in perspective, a back wall with shelves and doors;
    ``scale`` multiplies the camera's focal length and horizon (pixels of a 384x288 picture)
    and, by its square root, the lens softening, for pictures of other sizes."""
    cam = _Camera(
        width,
        height,
        horizon=_uniform(rng, 40, 75) * scale,
        focal=_uniform(rng, 175, 215) * scale,
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
    img = cv2.GaussianBlur(img, (0, 0), 0.8 * math.sqrt(scale))
    background = np.clip(img, 0, 255).astype(np.uint8)

    z_min = cam.focal * cam.cam_height / (height - cam.horizon - 25 * scale) + 0.3
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
