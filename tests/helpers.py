"""Shared test helpers: generated videos whose motion is known; row-wise cosine similarity;
generated result tables."""
from __future__ import annotations

import json
import os

import numpy as np

from vidspark_demo import write_video

W, H, FPS = 320, 240, 25


def textured_background(seed: int = 0, width: int = W, height: int = H) -> np.ndarray:
    """A smooth grey texture (optical flow needs texture to latch on to)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (height // 8, width // 8, 1)).astype(np.uint8)
    import cv2

    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.repeat(big[:, :, None] if big.ndim == 2 else big, 3, axis=2)


def _block(seed: int = 1, size: int = 64) -> np.ndarray:
    """A dark, coarsely textured square (like a person's clothes against a lighter scene)."""
    import cv2

    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 90, (size // 16, size // 16, 1)).astype(np.uint8)
    big = cv2.resize(cells, (size, size), interpolation=cv2.INTER_NEAREST)
    return np.repeat(big[:, :, None], 3, axis=2)


def _paste(frame: np.ndarray, block: np.ndarray, x: float, y: float) -> np.ndarray:
    """``block`` at (x, y); x bounces between the picture's edges."""
    out = frame.copy()
    h, w = block.shape[:2]
    span = frame.shape[1] - w
    x0 = int(round(x)) % (2 * span)
    x0 = x0 if x0 <= span else 2 * span - x0
    y0 = int(round(y))
    out[y0:y0 + h, x0:x0 + w] = block
    return out


def scene_frames(kind: str, seconds: int = 6, fps: int = FPS, seed: int = 0):
    """Frames of a scene whose motion is known:

    * ``still``: nothing moves;
    * ``slow`` / ``fast``: a textured block crosses the picture at 40 / 200 pixels per second;
    * ``scuffle``: two blocks shaking back and forth in different directions (many directions);
    * ``cut``: the whole picture changes half-way through second ``seconds // 2``;
    * ``appear``: a block appears at second ``seconds - 2`` and stays where it is;
    * ``held``: one still picture per second (1-fps footage re-encoded at ``fps``);
    * ``burst``: nothing moves, except during seconds [``seconds - 4``, ``seconds - 2``) when a
      block moves fast.
    """
    bg = textured_background(seed)
    other = textured_background(seed + 100)
    block, block2 = _block(seed + 1), _block(seed + 2)
    frames = []
    for i in range(seconds * fps):
        t = i / fps
        if kind == "still":
            frame = bg
        elif kind in ("slow", "fast"):
            frame = _paste(bg, block, 20 + (40 if kind == "slow" else 200) * t, 90)
        elif kind == "scuffle":
            phase = np.sin(2 * np.pi * 3 * t)
            frame = _paste(_paste(bg, block, 100 + 25 * phase, 60 + 20 * np.cos(2 * np.pi * 2 * t)),
                           block2, 160 - 25 * phase, 120 + 25 * np.sin(2 * np.pi * 5 * t))
        elif kind == "cut":
            frame = bg if t < seconds // 2 + 0.5 else other
        elif kind == "appear":
            frame = _paste(bg, block, 150, 100) if t >= seconds - 2 else bg
        elif kind == "held":
            frame = textured_background(seed + int(t))
        elif kind == "burst":
            moving = seconds - 4 <= t < seconds - 2
            frame = _paste(bg, block, 20 + 200 * (t - (seconds - 4)), 90) if moving else bg
        else:
            raise ValueError(kind)
        frames.append(frame)
    return frames


def write_scene(path, kind: str, seconds: int = 6, fps: int = FPS, seed: int = 0) -> str:
    write_video(path, scene_frames(kind, seconds, fps, seed), fps)
    return str(path)


def generated_results(root: str, folder: str, module) -> dict:
    """``<folder>/results.json`` of the checkout at ``root``, after asserting that
    ``<folder>/results.md`` and README's block between ``module.BEGIN`` and ``module.END`` are
    ``module.markdown`` of it (generated, never typed by hand)."""
    with open(os.path.join(root, folder, "results.json"), encoding="utf-8") as fh:
        results = json.load(fh)
    table = module.markdown(results)
    with open(os.path.join(root, folder, "results.md"), encoding="utf-8") as fh:
        assert fh.read() == table
    with open(os.path.join(root, "README.md"), encoding="utf-8") as fh:
        assert f"{module.BEGIN}\n{table}{module.END}" in fh.read()
    return results


def cosine(a, b) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def noise_video(path, seconds: int, size=(1920, 1080)) -> None:
    """``seconds`` of one 1080p noise picture at 1 frame/s, losslessly coded: a 8 MB file whose
    every second is a ~1.9 MB JPEG (560 MB for 300 s), decoded in no time."""
    import av

    picture = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "0"}
        for i in range(seconds):
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
