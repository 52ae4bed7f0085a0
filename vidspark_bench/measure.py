"""What the benchmarks measure with (``vidspark_bench.bench`` and ``vidspark_bench.camera``): the
peak memory of a process tree, the extract stage's task code on whole files, the seek-loop
reference and pinning to one core."""
from __future__ import annotations

import os
import threading
from typing import Optional


def _hwm_mb(pid: int) -> Optional[float]:
    """A process's peak resident memory (Linux ``VmHWM``), else its current RSS."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:
        return None


def _kind(proc) -> Optional[str]:
    try:
        cmd = " ".join(proc.cmdline())
        name = proc.name()
    except Exception:     # gone meanwhile (a short-lived helper process)
        return None
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd:
        return "python_worker"
    if "org.apache.spark" in cmd or ("java" in name and "spark" in cmd):
        return "jvm"
    if "python" in name.lower() or "python" in cmd.split(" ")[0]:
        return "python_driver"
    return None


class TreeMemory:
    """Samples the peak memory of a process tree by kind (JVM, Python driver, Python workers)
    every ``interval`` seconds, from each process's own high-water mark where the OS keeps one."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak: dict = {}
        self.workers: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        for proc in procs:
            kind = _kind(proc)
            mb = _hwm_mb(proc.pid) if kind else None
            if mb is None:
                continue
            if kind == "python_worker":
                self.workers[proc.pid] = max(self.workers.get(proc.pid, 0.0), mb)
            else:
                self.peak[kind] = max(self.peak.get(kind, 0.0), mb)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def result(self) -> dict:
        out = {k: round(v, 1) for k, v in self.peak.items()}
        # The fork-server daemon is a small process; the workers it forks run the model.
        out["python_worker"] = round(max(self.workers.values()), 1) if self.workers else None
        out["python_workers_seen"] = len(self.workers)
        return out


def _extract_ours(paths, quality: int, max_side: int, motion: Optional[tuple] = None) -> dict:
    """JPEGs per second of each file, made by the extract stage's own task code: probe, then
    ``extract._decode_range`` over the whole file (sequential decoding, the frame at or after
    each whole second, scaled and JPEG-encoded), with the motion features of every second when
    ``motion`` is (width, frames per second)."""
    import pandas as pd

    from vidspark.media import video
    from vidspark.stages import extract

    width, fps = motion or (0, 10.0)
    out = {}
    for path in paths:
        info = video.probe(path)
        rec = {"path": path, "video": os.path.basename(path), "range_start": 0,
               "range_end": None, "first_ts_ms": info.first_ts_ms, "fps": info.fps}
        rows = pd.concat(list(extract._decode_range(rec, quality, 10.0, max_side, width, fps)))
        frames = rows[rows.kind == "frame"].sort_values("second")
        out[path] = list(frames.jpeg)
    return out


def _extract_seek_loop(paths, seconds: dict, quality: int, max_side: int) -> dict:
    """The reference: one ``CAP_PROP_POS_MSEC`` seek per second, bounded to the true number of
    seconds (second 0 is the first frame read after opening: OpenCV's seek to 0 on these files
    lands on the second keyframe), scaled and JPEG-encoded as the extract stage does."""
    import cv2

    from vidspark.media import video

    out = {}
    for path in paths:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        jpegs = []
        for second in range(seconds[path]):
            if second:
                cap.set(cv2.CAP_PROP_POS_MSEC, second * 1000.0)
            ok, frame = cap.read()
            jpegs.append(video.encode_jpeg(video.fit_within(frame, max_side), quality)
                         if ok else None)
        cap.release()
        out[path] = jpegs
    return out


def _pin_one_core() -> Optional[int]:
    """Pin this process to the first core it may use (one-core figures); that core, or None
    where the platform cannot pin."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    return core
