"""Children that die with the process that started them, even when it is SIGKILLed (Linux's
PR_SET_PDEATHSIG), so that a killed `scalper run` leaves no redis-server and no worker running on.

The signal is sent when the *thread* that started the child ends: start children from the main thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

# Loaded here, before any fork: between fork and exec the child only calls it.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def dies_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the child gets `signum` when this process dies (the setting
    survives exec). None where the OS has no such thing; there a killed run's server is found and stopped
    by the next start instead (embedded.stop_stale_servers)."""
    if _libc is None:
        return None
    libc, parent = _libc, os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died between the fork and the prctl: nobody would signal us
            os._exit(1)

    return preexec
