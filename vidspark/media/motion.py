"""Per-second motion features from the frames inside each second: pure numpy/OpenCV, no Spark.

A still frame describes the scene; a fight, a fall or someone running is change over time. While
the extract stage decodes a video sequentially it hands every decoded frame's timestamp to a
``MotionSampler``, which keeps a small grayscale copy of one frame per ``1 / fps`` seconds (the
first decoded frame at or after each point of that grid, so videos of any frame rate are
sampled alike) and measures the change between consecutive kept frames. The copy is made from
the decoder's luma plane, with no colour conversion (``small_luma``): every k-th pixel of it
(k keeps at least four samples per output pixel each way), area-averaged to the copy's width,
and studio range (16-235) stretched to 0-255 as a conversion to BGR and grey would; a frame
without a luma plane (RGB, palette) is converted and reduced as before (``small_gray``). The
measures:

* frame differences: the mean absolute grey-level difference and the share of pixels that
  changed by more than 25 grey levels;
* dense optical flow (OpenCV's DIS at full resolution of the small copy) in frame widths per
  second (so frame rates and resolutions compare): mean, 90th and 99th percentile speed, the
  share of moving pixels, a histogram of the speeds of moving pixels, the magnitude-weighted
  entropy of flow directions over the frame and in a 3x4 grid of cells (many directions at
  once: people fighting; one direction: people walking), divergence and curl, acceleration
  (change of the flow field between consecutive pairs), and a coarser scale (the flow pooled
  to 8x6 cells: its speed, its direction entropy and its coherence, the pooled speed over the
  pixel speed, which is low when nearby motions cancel out).

Only pairs of frames inside the same second count (change across seconds is the business of the
context windows and the ``change`` features of ``vidspark.stages.feature_sets``). A second's ``motion``
vector is the mean of every measure over its pairs followed by the maximum (``FEATURE_NAMES``);
a second without pairs (a video at one frame per second or less) gives zeros. A pair in which no
pixel changed by more than 8 grey levels (codec noise) is still: all its measures are zero and no
flow is computed, so frames held still for a second (1-fps footage re-encoded at 25 fps, as in
CAVIAR) give exactly zero motion, and empty scenes cost little.

The sampler also keeps a 32x24 grayscale thumbnail of each second's own frame, from which the
featurization of a camera's background (see ``vidspark.stages.feature_sets``) is computed.

The computation is deterministic (DIS gives the same field whatever OpenCV's thread count), and a
time range decoded alone gives the same vectors as the whole video decoded at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

#: Bumped whenever the measures change; stored with every motion row (with width and rate).
#: motion-2: the small copies come from the luma plane (motion-1: BGR frames, grey, a pyramid).
ALGORITHM = "motion-2"

_EPS_MS = 1e-3
_DIRECTIONS = 8                              # direction histogram bins
_MOVING = 1.0 / 16.0                         # frame widths per second: a pixel "moves" above this
_SPEED_EDGES = np.array([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0], np.float32)   # widths per second
_GRID = (3, 4)                               # rows, columns of the local-entropy cells
_LOCAL_MOVING_SHARE = 0.05                   # a cell counts when this share of it moves
_COARSE = (8, 6)                             # pooled flow (columns, rows): the coarser scale
_CHANGED_GREY = 25                           # grey levels: a "changed" pixel
_STILL_GREY = 8                              # a pair with no pixel changed by more is still (codec noise)
THUMB_SIZE = (32, 24)                        # (width, height) of the per-second thumbnail

#: The measures of one pair of frames, in order.
PAIR_MEASURES = (
    "diff_mean", "changed_share",
    "speed_mean", "speed_p90", "speed_p99", "moving_share",
    "direction_entropy", "local_entropy_max", "local_entropy_mean",
    "speed_share_1_16", "speed_share_1_8", "speed_share_1_4", "speed_share_1_2", "speed_share_1",
    "divergence", "curl", "acceleration",
    "coarse_speed", "coarse_entropy", "coherence", "cell_speed_max",
)
#: The ``motion`` vector of a second: the mean of each measure over its pairs, then the maximum.
FEATURE_NAMES = tuple(f"{m}_mean" for m in PAIR_MEASURES) + tuple(f"{m}_max" for m in PAIR_MEASURES)
N_FEATURES = len(FEATURE_NAMES)
_ACCEL = PAIR_MEASURES.index("acceleration")


def identity(width: int, fps: float) -> str:
    """What the ``motion_version`` column records: the algorithm and its settings."""
    return f"{ALGORITHM}:w{int(width)}:fps{float(fps):g}"


def configured_identity(config) -> str:
    """``identity`` of a config's ``extract.motion_width`` and ``extract.motion_fps``."""
    return identity(int(config.extract.motion_width), float(config.extract.motion_fps))


def small_gray(bgr: np.ndarray, width: int) -> np.ndarray:
    """A grayscale copy ``width`` pixels wide (aspect kept): halved with a Gaussian pyramid while
    it is at least twice as wide, then area-resized."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    while gray.shape[1] >= 2 * width:
        gray = cv2.pyrDown(gray)
    height = max(8, round(gray.shape[0] * width / gray.shape[1]))
    if gray.shape[1] != width or gray.shape[0] != height:
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
    return gray


# studio-range luma (16-235) -> full range, as swscale's BGR conversion then BGR2GRAY map it
_STUDIO_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)


def small_luma(y: np.ndarray, width: int, full_range: bool = False) -> np.ndarray:
    """A grayscale copy ``width`` pixels wide (aspect kept) of a luma plane: every k-th pixel each
    way (k leaves at least four samples per output pixel), area-averaged, and studio range
    stretched to full range unless ``full_range``. About a tenth of the cost of converting the
    frame to BGR and reducing that (``small_gray``), with sensor noise still averaged away."""
    h, w = y.shape[:2]
    height = max(8, round(h * width / w))
    k = max(1, (w // width) // 4)
    if k > 1:
        y = y[::k, ::k]
    small = cv2.resize(np.ascontiguousarray(y), (width, height), interpolation=cv2.INTER_AREA)
    return small if full_range else cv2.LUT(small, _STUDIO_TO_FULL)


def picture_gray(picture, width: int) -> np.ndarray:
    """The small grayscale copy of a decoded picture (``vidspark.media.video.Picture``: its luma
    plane when it has one) or of a BGR frame (an array)."""
    if isinstance(picture, np.ndarray):
        return small_gray(picture, width)
    y, full = picture.luma()
    if y is None:
        return small_gray(picture.bgr(), width)
    return small_luma(y, width, full)


def thumbnail(gray: np.ndarray) -> bytes:
    """The 32x24 grayscale thumbnail (768 bytes, row-major) of a grayscale frame."""
    return cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).tobytes()


def _entropy(hist: np.ndarray) -> float:
    """Normalised Shannon entropy (0..1) of a histogram; 0 for an empty one."""
    total = float(hist.sum())
    if total <= 0:
        return 0.0
    p = hist[hist > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(len(hist)))


class PairMeasurer:
    """Measures consecutive pairs of small grayscale frames (``PAIR_MEASURES``); remembers the
    previous pair's flow field for the acceleration."""

    def __init__(self, width: int):
        self.width = width
        # DIS "ultrafast", but at the finest scale: limbs are a few pixels wide at 128 px.
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.dis.setFinestScale(0)
        self._previous: Optional[np.ndarray] = None
        self._cells: dict = {}

    def forget(self) -> None:
        """The next pair has no predecessor (a gap, or a new video)."""
        self._previous = None

    def _cell_index(self, shape) -> tuple[np.ndarray, np.ndarray]:
        if shape not in self._cells:
            h, w = shape
            rows, cols = _GRID
            cell = (np.arange(h)[:, None] * rows // h) * cols + (np.arange(w)[None, :] * cols // w)
            self._cells[shape] = (cell.ravel(), np.bincount(cell.ravel(), minlength=rows * cols))
        return self._cells[shape]

    def measure(self, a: np.ndarray, b: np.ndarray, dt: float) -> np.ndarray:
        """The measures of the change from frame ``a`` to frame ``b``, ``dt`` seconds later."""
        out = np.zeros(len(PAIR_MEASURES), np.float64)
        diff = cv2.absdiff(a, b)
        if cv2.minMaxLoc(diff)[1] <= _STILL_GREY:
            # Nothing changed beyond codec noise (a frame held still, an empty scene): no motion,
            # and no optical flow to compute.
            self._previous = None
            return out
        out[0] = cv2.mean(diff)[0] / 255.0
        out[1] = cv2.countNonZero(cv2.compare(diff, _CHANGED_GREY, cv2.CMP_GT)) / diff.size
        flow = self.dis.calc(a, b, None)
        flow *= 1.0 / (self.width * dt)                     # frame widths per second
        fx, fy = np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1])
        speed, angle = cv2.cartToPolar(fx, fy)
        n = speed.size
        moving = speed > _MOVING
        n_moving = int(np.count_nonzero(moving))
        out[2] = float(speed.mean())
        k90, k99 = int(0.90 * (n - 1)), int(0.99 * (n - 1))
        part = np.partition(speed.ravel(), (k90, k99))
        out[3], out[4] = float(part[k90]), float(part[k99])
        out[5] = n_moving / n
        direction = (angle * (_DIRECTIONS / (2 * np.pi))).astype(np.int32)
        direction[direction >= _DIRECTIONS] = 0
        if n_moving:
            s = speed[moving]
            out[6] = _entropy(np.bincount(direction[moving], weights=s, minlength=_DIRECTIONS))
            bins = np.searchsorted(_SPEED_EDGES, s, side="right") - 1
            out[9:14] = np.bincount(bins, minlength=len(_SPEED_EDGES))[:len(_SPEED_EDGES)] / n_moving
            cell, cell_sizes = self._cell_index(speed.shape)
            n_cells = len(cell_sizes)
            weighted = np.where(moving, speed, 0.0).ravel()
            hist = np.bincount(cell * _DIRECTIONS + direction.ravel(), weights=weighted,
                               minlength=n_cells * _DIRECTIONS).reshape(n_cells, _DIRECTIONS)
            share = np.bincount(cell, weights=moving.ravel(), minlength=n_cells) / cell_sizes
            local = [_entropy(hist[i]) for i in range(n_cells) if share[i] > _LOCAL_MOVING_SHARE]
            if local:
                out[7], out[8] = max(local), float(np.mean(local))
        # derivatives per frame width (dx = 1 / width)
        dvx_dx, dvy_dy = np.diff(fx, axis=1)[:-1], np.diff(fy, axis=0)[:, :-1]
        dvy_dx, dvx_dy = np.diff(fy, axis=1)[:-1], np.diff(fx, axis=0)[:, :-1]
        out[14] = float(np.abs(dvx_dx + dvy_dy).mean()) * self.width
        out[15] = float(np.abs(dvy_dx - dvx_dy).mean()) * self.width
        previous = self._previous
        if previous is not None and previous.shape == flow.shape:
            change = flow - previous
            out[16] = float(cv2.magnitude(np.ascontiguousarray(change[..., 0]),
                                          np.ascontiguousarray(change[..., 1])).mean())
        else:
            out[16] = np.nan                                # no predecessor: left out of the second
        self._previous = flow
        pooled = cv2.resize(flow, _COARSE, interpolation=cv2.INTER_AREA)
        p_speed, p_angle = cv2.cartToPolar(np.ascontiguousarray(pooled[..., 0]),
                                           np.ascontiguousarray(pooled[..., 1]))
        p_dir = (p_angle * (_DIRECTIONS / (2 * np.pi))).astype(np.int32)
        p_dir[p_dir >= _DIRECTIONS] = 0
        out[17] = float(p_speed.mean())
        out[18] = _entropy(np.bincount(p_dir.ravel(), weights=p_speed.ravel(), minlength=_DIRECTIONS))
        out[19] = out[17] / (out[2] + _MOVING / 10.0)
        out[20] = float(cv2.resize(speed, _GRID[::-1], interpolation=cv2.INTER_AREA).max())
        return out


@dataclass
class MotionSampler:
    """Collects the motion of the seconds in ``[start, end)`` from sequentially decoded frames.

    The decoder calls ``wants(ts_ms)`` for every decoded frame (timestamps relative to the
    video's first frame) and ``add(ts_ms, picture)`` for those it wants (a decoded
    ``vidspark.media.video.Picture``, or a BGR array): inside every second t, the
    first frame at or after each of t, t + 1/fps, t + 2/fps, ... Pairs of consecutive kept frames
    of the same second are measured; a pair across two seconds is not, so a second's motion is
    what happens inside it (footage held still for a second gives exactly zero), and a time
    range decoded alone gives the same vectors as the whole video. ``vector(second)`` gives a
    second's ``motion`` vector, ``thumbs[second]`` its thumbnail (set by ``add_second``).
    """
    width: int = 128
    fps: float = 10.0
    start: int = 0
    end: Optional[int] = None
    pairs: dict = field(default_factory=dict)          # second -> list of measure arrays
    thumbs: dict = field(default_factory=dict)          # second -> thumbnail bytes

    def __post_init__(self):
        self.step_ms = 1000.0 / float(self.fps)
        self._next_ms = self.start * 1000.0
        self._last: Optional[tuple[float, int, np.ndarray]] = None
        self._measurer = PairMeasurer(self.width)

    def wants(self, ts_ms: float) -> bool:
        """Whether the frame at ``ts_ms`` is the first at or after the next sampling point."""
        return ts_ms >= self._next_ms - _EPS_MS and (self.end is None or ts_ms < self.end * 1000.0)

    def add(self, ts_ms: float, picture) -> None:
        second = int((ts_ms + _EPS_MS) // 1000)
        k = math.floor((ts_ms - second * 1000.0 + _EPS_MS) / self.step_ms) + 1
        self._next_ms = min(second * 1000.0 + k * self.step_ms, (second + 1) * 1000.0)
        gray = picture_gray(picture, self.width)
        last = self._last
        if last is not None and last[1] == second and last[2].shape == gray.shape:
            measures = self._measurer.measure(last[2], gray, (ts_ms - last[0]) / 1000.0)
            self.pairs.setdefault(second, []).append(measures)
        else:
            self._measurer.forget()          # a new second: acceleration starts afresh
        self._last = (ts_ms, second, gray)

    def add_second(self, second: int, ts_ms: float, picture) -> None:
        """Keep the thumbnail of the frame (at ``ts_ms``) stored for ``second``."""
        last = self._last
        gray = (last[2] if last is not None and last[0] == ts_ms
                else picture_gray(picture, self.width))
        self.thumbs[second] = thumbnail(gray)

    def release(self, second: int) -> None:
        """Drop what is kept of ``second`` (after its vector and thumbnail were taken), so a long
        range holds only the seconds not yet handed on."""
        self.pairs.pop(second, None)
        self.thumbs.pop(second, None)

    def vector(self, second: int) -> tuple[list, int]:
        """(``motion`` vector as floats, number of pairs) of ``second``; zeros without pairs."""
        rows = self.pairs.get(second)
        if not rows:
            return [0.0] * N_FEATURES, 0
        m = np.vstack(rows)
        accel = m[:, _ACCEL]
        m[:, _ACCEL] = 0.0 if np.isnan(accel).all() else np.where(np.isnan(accel), np.nanmean(accel), accel)
        values = np.concatenate([m.mean(axis=0), m.max(axis=0)])
        return [float(v) for v in values], len(rows)
