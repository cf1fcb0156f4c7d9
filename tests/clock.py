"""A clock the test moves: wall time for the engine, its machine and the paper venue."""

from __future__ import annotations

import time


class Clock:
    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t
