"""One run at a time per ``storage.root``: a lock file created atomically (``O_CREAT|O_EXCL``).

A second run refuses with a clear message. A lock left behind by a run that died (same host, its
process gone) is taken over, and that run is reported so its ``runs`` rows can be marked
abandoned. Non-local storage (a Hadoop URI) is not locked: a warning says so.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
from typing import Optional

from vidspark.config import Config, local_path
from vidspark.errors import VidsparkError

log = logging.getLogger(__name__)

LOCK_NAME = "_vidspark.lock"


class LockHeld(VidsparkError, RuntimeError):
    """Another live run holds the storage root."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StorageLock:
    """``with StorageLock(config, run_id) as lock:`` holds ``<storage.root>/_vidspark.lock``."""

    def __init__(self, config: Config, run_id: str):
        self.root = config.storage.root
        self.run_id = run_id
        self.path: Optional[str] = None
        self.abandoned: Optional[dict] = None   # the dead run whose lock was taken over

    def acquire(self) -> "StorageLock":
        root = local_path(self.root)
        if root is None:
            log.warning("storage.root %s is not a local path: no run lock is taken; do not run "
                        "two jobs on it at once", self.root)
            return self
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, LOCK_NAME)
        me = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
              "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and (holder.get("host") != socket.gethostname()
                               or _alive(int(holder.get("pid", -1)))):
                    raise LockHeld(
                        f"another run holds storage.root {self.root}: run {holder.get('run_id')} "
                        f"(pid {holder.get('pid')} on {holder.get('host')}, since "
                        f"{holder.get('since')}); if that run is dead, delete {self.path}") from None
                self._take_over(holder)
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            return self
        raise LockHeld(f"could not take the lock {self.path}")

    def _holder(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None   # vanished, or half-written by a run that died at that very moment

    def _take_over(self, holder: Optional[dict]) -> None:
        # Rename is atomic: of two runs that find the same stale lock, one wins.
        stale = f"{self.path}.stale-{self.run_id}"
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return
        os.remove(stale)
        self.abandoned = holder
        log.warning("took over the lock of run %s (pid %s on %s), which is no longer running",
                    (holder or {}).get("run_id"), (holder or {}).get("pid"), (holder or {}).get("host"))

    def release(self) -> None:
        if self.path and (self._holder() or {}).get("run_id") == self.run_id:
            os.remove(self.path)
        self.path = None

    def __enter__(self) -> "StorageLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
