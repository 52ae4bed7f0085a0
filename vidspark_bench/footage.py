"""Camera-scale footage for ``make bench``, made once under ``<out>/data/camera`` and reused:

* **generated**: ``vidspark_demo.cctv`` camera days (a still shop floor with sensor noise and a
  slow change of light; people in view in a given share of the seconds) encoded the way CCTV
  cameras send H.264: libx264 (PyAV), main profile, no B-frames, 25 frames/s, a keyframe every
  2 s, a capped bitrate (``BITRATE_KBPS``: 1.5 Mbit/s at 1080p, 1.0 at 720p);
* **real**: the 1080p and 720p clips of ``../shared/data/fights`` (per camera, those that share
  one encoder setup), joined into one long file per camera without re-encoding (H.264 packets
  copied one clip after another, looping, timestamps shifted);
* a **long** file: generated files joined the same way (an hour of 1080p from 5-minute files).

Every file has a JSON sidecar (``<file>.json``): its length, bitrate, frame rate, and for
generated footage the seconds in which someone is in view; ``describe`` reads it.
"""
from __future__ import annotations

import fractions
import glob
import json
import os
from typing import Optional

RESOLUTIONS = {"1080p": (1920, 1080), "720p": (1280, 720)}
BITRATE_KBPS = {"1080p": 1500, "720p": 1000}
FPS, GOP = 25, 50
ACTIVE_FRACTION = 0.2
FOOTAGE_VERSION = 3          # bump when the footage would change (files are remade)

# The fights cameras whose clips share one encoder setup (one H.264 parameter set), per size.
REAL_CAMERAS = {"1080p": ["cam10", "cam13"], "720p": ["cam16", "cam18"]}


def _sidecar(path: str) -> str:
    return path + ".json"


def describe(path: str) -> dict:
    """The sidecar of a footage file."""
    with open(_sidecar(path), encoding="utf-8") as fh:
        return json.load(fh)


def _ready(path: str, stamp: dict) -> bool:
    try:
        info = describe(path)
    except (OSError, ValueError):
        return False
    return os.path.isfile(path) and all(info.get(k) == v for k, v in stamp.items())


def _finish(tmp: str, path: str, info: dict) -> str:
    info = dict(info, bytes=os.path.getsize(tmp),
                bitrate_kbps=round(os.path.getsize(tmp) * 8 / info["seconds"] / 1000, 1))
    os.replace(tmp, path)
    with open(_sidecar(path), "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=1)
    return path


def generated(folder: str, resolution: str, index: int, seconds: int = 300,
              active_fraction: float = ACTIVE_FRACTION) -> str:
    """The ``index``-th generated camera file of ``resolution`` (made when missing)."""
    import av

    from vidspark_demo.cctv import camera_day

    width, height = RESOLUTIONS[resolution]
    kbps = BITRATE_KBPS[resolution]
    path = os.path.join(folder, "generated", resolution, f"cam{index}", f"day-{seconds}s.mp4")
    stamp = {"version": FOOTAGE_VERSION, "kind": "generated", "seconds": seconds,
             "active_fraction_asked": active_fraction, "kbps": kbps}
    if _ready(path, stamp):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    day = camera_day(width, height, seconds, fps=FPS, active_fraction=active_fraction,
                     seed=1000 + 10 * index + (height // 360))
    tmp = path + ".part"
    container = av.open(tmp, "w", format="mp4")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.bit_rate = kbps * 1000
    stream.codec_context.gop_size = GOP
    # what a camera's encoder sends: CABAC (main profile), no B-frames, a fixed GOP, a capped
    # rate; x264's "superfast" analysis only to make the files in reasonable time
    stream.options = {"preset": "superfast", "profile": "main", "bf": "0",
                      "keyint_min": str(GOP), "sc_threshold": "0", "maxrate": f"{kbps}k",
                      "bufsize": f"{2 * kbps}k"}
    for i, frame in enumerate(day.frames()):
        picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
        picture.pts, picture.time_base = i, fractions.Fraction(1, FPS)
        for packet in stream.encode(picture):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return _finish(tmp, path, dict(stamp, width=width, height=height, fps=FPS, gop=GOP,
                                   active=day.active, active_fraction=day.active_fraction))


def join(sources: list, path: str, seconds: float, info: Optional[dict] = None,
         cut: bool = False) -> str:
    """Copy the H.264 packets of ``sources`` (one encoder setup) one after another, looping,
    into an MP4 ``path`` of at least ``seconds``: long footage without re-encoding. ``cut``:
    stop at the first keyframe at or after ``seconds`` (the first ``seconds`` of a longer
    file)."""
    import av

    with av.open(sources[0]) as first:
        template = first.streams.video[0]
        rate = float(template.average_rate or FPS)
        tmp = path + ".part"
        out = av.open(tmp, "w", format="mp4")
        ostream = out.add_stream_from_template(template)
    frame_s = 1.0 / rate
    offset = 0.0             # seconds added to the current source's timestamps
    last_dts = None          # seconds, in the output
    used = []
    while offset < seconds - 0.5 * frame_s:
        for src in sources:
            with av.open(src) as container:
                stream = container.streams.video[0]
                tb = stream.time_base
                packets = [p for p in container.demux(stream) if p.dts is not None]
            if not packets:
                continue
            first_dts = float(packets[0].dts * tb)
            if last_dts is not None:      # strictly after the previous clip's last packet
                offset = max(offset, last_dts + frame_s - first_dts)
            shift = round(offset / tb)
            end = offset
            for packet in packets:
                if cut and packet.is_keyframe and float(packet.pts * tb) + offset >= seconds:
                    break
                packet.pts += shift
                packet.dts += shift
                packet.stream = ostream
                out.mux(packet)
                last_dts = float(packet.dts * tb)
                end = max(end, float(packet.pts * tb) + frame_s)
            offset = end
            used.append(os.path.basename(src))
            if offset >= seconds - 0.5 * frame_s:
                break
    out.close()
    return _finish(tmp, path, dict(info or {}, kind=(info or {}).get("kind", "joined"),
                                   seconds=round(offset, 3), fps=rate, clips=len(used)))


def real(folder: str, resolution: str, camera: str, fights: str, seconds: int = 300) -> str:
    """A ``seconds``-long file of ``camera``'s clips of ``resolution`` from the fights set."""
    import av

    width, height = RESOLUTIONS[resolution]
    path = os.path.join(folder, "real", resolution, camera, f"{camera}-{seconds}s.mp4")
    stamp = {"version": FOOTAGE_VERSION, "kind": "real", "camera": camera}
    if _ready(path, stamp) and describe(path)["seconds"] >= seconds:
        return path
    clips, setups = [], {}
    for clip in sorted(glob.glob(os.path.join(fights, "videos", camera, "*.mp4"))):
        with av.open(clip) as container:
            cc = container.streams.video[0].codec_context
            if (cc.width, cc.height) == (width, height):
                setups.setdefault(bytes(cc.extradata or b""), []).append(clip)
    if not setups:
        raise FileNotFoundError(f"no {resolution} clips of {camera} under {fights}")
    clips = max(setups.values(), key=len)          # the camera's usual encoder setup
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return join(clips, path, seconds, dict(stamp, width=width, height=height))


def long_file(folder: str, resolution: str, parts: list, seconds: int) -> str:
    """An hour (``seconds``) of ``resolution`` joined from the generated files ``parts``."""
    path = os.path.join(folder, "long", resolution, f"long-{seconds}s.mp4")
    stamp = {"version": FOOTAGE_VERSION, "kind": "long", "parts": len(parts)}
    if _ready(path, stamp) and describe(path)["seconds"] >= seconds:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    width, height = RESOLUTIONS[resolution]
    return join(parts, path, seconds, dict(stamp, width=width, height=height))


def first_part(path: str, seconds: int) -> str:
    """The first ``seconds`` of the footage file ``path`` (cut at a keyframe, not re-encoded),
    beside it, with its own sidecar."""
    out = path.replace(".mp4", f"-first{seconds}s.mp4")
    base = describe(path)
    stamp = {"version": FOOTAGE_VERSION, "kind": base["kind"], "first_of": os.path.basename(path)}
    if _ready(out, stamp):
        return out
    info = dict(base, **stamp)
    if "active" in base:
        info["active"] = [s for s in base["active"] if s < seconds]
        info["active_fraction"] = len(info["active"]) / seconds
    return join([path], out, seconds, info, cut=True)
