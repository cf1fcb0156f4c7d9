"""One `scalper run` per data directory: an exclusive flock on `<data_dir>/run.lock`, held for the whole run.
The kernel releases it when the process ends, however it ends, so a SIGKILLed run never leaves a stale lock.
The file holds the holder's pid, for the refusal. Readers (`scalper positions`, `show`, ...) never take it."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = "run.lock"


class DataDirBusy(RuntimeError):
    """Another process holds the data directory."""


class DataDirLock:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        # The file stays: removing it would let a third run lock a new inode while a second waits on the old.
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Hold `data_dir` for this process, or raise DataDirBusy naming the pid that holds it. The lock's file
    descriptor is close-on-exec: no child inherits it, so none can outlive the run holding it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirBusy(
            f"{data_dir}/ is in use by another scalper run (pid {holder}); one run per data directory"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(fd, path)


def _holder(fd: int) -> str:
    """The pid the holder wrote; it writes it just after locking, so an empty file is worth a short wait."""
    deadline = time.monotonic() + 1.0
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.02)
