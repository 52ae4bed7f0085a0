"""Which seconds show nothing new: pure numpy on the per-second thumbnails, no Spark.

Most seconds of a CCTV camera's day show the same still scene. The extract stage already keeps a
32x24 grayscale thumbnail of every second's frame (``vidspark.media.motion.thumbnail``, from the
small copy that motion is measured on: each thumbnail pixel averages hundreds of source pixels,
so sensor and codec noise stay far below a grey level or two). A second whose thumbnail differs
from the thumbnail of the last *embedded* second of its video by at most ``threshold`` grey
levels at every pixel shows nothing new: its embedding is that second's, reused. Comparing with
the last embedded second rather than the previous one means slow drifts (light over a day) add
up until they count, and an embedding is never reused for more than ``threshold`` of change.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def thumb_change(a: bytes, b: bytes) -> int:
    """The largest grey-level difference between two thumbnails, pixel by pixel (a thumbnail of
    another size counts as changed: 255)."""
    if len(a) != len(b):
        return 255
    return int(np.abs(np.frombuffer(a, np.uint8).astype(np.int16)
                      - np.frombuffer(b, np.uint8)).max())


def embedded_seconds(seconds: Sequence[int], thumbs: Sequence[Optional[bytes]],
                     threshold: float) -> list[int]:
    """For the seconds of one video (in any order; ``thumbs`` in the same order), the second
    whose embedding stands for each: itself when its thumbnail differs from the last embedded
    second's by more than ``threshold`` grey levels (or has none, or follows a missing second),
    else that last embedded second. The first second is always embedded."""
    order = np.argsort(np.asarray(seconds), kind="stable")
    out = [0] * len(seconds)
    key_second, key_thumb, previous = None, None, None
    for i in order:
        second, thumb = int(seconds[i]), thumbs[i]
        if (thumb is None or key_thumb is None or previous is None or second != previous + 1
                or thumb_change(key_thumb, thumb) > threshold):
            key_second, key_thumb = second, thumb
        out[i] = key_second
        previous = second
    return out
