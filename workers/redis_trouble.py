"""What a Redis error means to a process, decided in one place: wait and try again, or stop.

Transient: Redis is unreachable or slow (a dropped connection, a timeout), or it refuses for a while what it
will accept later: out of memory (OOM), unable to persist (MISCONF), a read-only replica during a failover
(READONLY), loading its data (LOADING), busy with a long script (BUSY). A process waits and tries again,
logging one line per outage (`Outage`); an operator command says what happened and exits non-zero.
Fatal: waiting does not help (credentials refused, a permission denied by an ACL, a server that does not
know a command), so the process stops with one line to fix the configuration by.

redis-py raises most of these as a plain ResponseError, and an error inside a Lua script reaches it as the
script's error ("Error running script (...): @user_script:1: -OOM command not allowed ..."): the codes are
looked for in the message as well as in the exception's class. Anything else (a wrong type, a bug) is not
Redis trouble, and `diagnose` returns None for it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

T = TypeVar("T")


@dataclass(frozen=True)
class RedisTrouble:
    code: str  # OOM, MISCONF, ..., "timeout", "unreachable"
    transient: bool
    what: str  # one line for a log or an operator


_REFUSED = "Redis refused the write: "
# code (what Redis puts first in its error reply) -> (transient, what it means)
_BY_CODE: dict[str, tuple[bool, str]] = {
    "OOM": (True, _REFUSED + "out of memory (maxmemory reached): free memory or raise maxmemory"),
    "MISCONF": (True, _REFUSED + "it cannot persist (MISCONF: an RDB or AOF write failed; see its log)"),
    "READONLY": (True, _REFUSED + "it is a read-only replica (READONLY: a failover, or a replica's URL)"),
    "LOADING": (True, "Redis is loading its data set into memory (LOADING)"),
    "BUSY": (True, "Redis is busy running a script and answers nothing else until it ends (BUSY)"),
    "MASTERDOWN": (True, "Redis lost its link to the primary (MASTERDOWN)"),
    "NOREPLICAS": (True, _REFUSED + "not enough replicas in reach (NOREPLICAS)"),
    "TRYAGAIN": (True, "Redis asked to try again (TRYAGAIN)"),
    "UNBLOCKED": (True, "Redis ended a blocking read as it turned into a replica (UNBLOCKED)"),
    "CLUSTERDOWN": (True, "the Redis cluster is down (CLUSTERDOWN)"),
    "NOPERM": (False, "Redis denied a command to this user (NOPERM): grant it in the server's ACL"),
    "NOAUTH": (False, "Redis wants a password (NOAUTH): put it in the Redis URL"),
    "WRONGPASS": (False, "Redis refused the credentials: check the password in the Redis URL"),
    "timeout": (True, "Redis did not answer in time (SCALPER_REDIS__SOCKET_TIMEOUT_S)"),
    "unknown command": (False, "Redis does not know a command scalper uses: it needs Redis 6.2 or later"),
}
# At the start of the message, after a pipeline's "... caused error: ", or a script's "-CODE".
_CODE_IN = re.compile(r"(?:^|: |-)(" + "|".join(c for c in _BY_CODE if c.isupper()) + r")\b")
# redis-py strips the code from the message of the classes it maps it to.
_CLASSES: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
)


def diagnose(err: BaseException) -> RedisTrouble | None:
    """What `err` says about Redis; None when it is not Redis's trouble (not a RedisError, a wrong type)."""
    if not isinstance(err, redis.RedisError):
        return None
    for cls, code in _CLASSES:
        if isinstance(err, cls):
            return RedisTrouble(code, *_BY_CODE[code])
    if isinstance(err, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return RedisTrouble("WRONGPASS", *_BY_CODE["WRONGPASS"])
    if isinstance(err, redis.TimeoutError):
        return RedisTrouble("timeout", *_BY_CODE["timeout"])
    if isinstance(err, redis.ConnectionError):
        return RedisTrouble("unreachable", True, f"no connection to Redis ({err})")
    if isinstance(err, redis.ResponseError):
        text = str(err)
        found = _CODE_IN.search(text)
        if found:
            # A blocking read ended by a server turning replica: the same outage as its READONLY refusals.
            code = "READONLY" if found[1] == "UNBLOCKED" else found[1]
            return RedisTrouble(code, *_BY_CODE[found[1]])
        if "unknown command" in text:
            return RedisTrouble("unknown command", *_BY_CODE["unknown command"])
    return None


def transient(err: BaseException) -> bool:
    trouble = diagnose(err)
    return trouble is not None and trouble.transient


class Outage:
    """One process's view of Redis trouble: one line (at `level`) when it begins; a change of cause and the
    end are INFO, every retry DEBUG. The waits between attempts double from `first_wait_s` up to
    `max_wait_s`, so the process is back within `max_wait_s` of Redis."""

    def __init__(
        self, name: str, log: logging.Logger, max_wait_s: float, first_wait_s: float = 0.1,
        level: int = logging.WARNING,
    ) -> None:  # fmt: skip
        self.name = name
        self.log = log
        self.level = level
        self.max_wait_s = max_wait_s
        self.first_wait_s = min(first_wait_s, max_wait_s)
        self.since: float | None = None  # monotonic time of the first failure; None when Redis is fine
        self.code = ""
        self.attempts = 0
        self._wait = self.first_wait_s

    def failed(self, trouble: RedisTrouble) -> float:
        """Note one failed attempt; returns how long to wait before the next."""
        if self.since is None:
            self.since, self.attempts, self._wait = time.monotonic(), 0, self.first_wait_s
            self.log.log(self.level, "%s: %s; waiting for Redis (trying again every %g s at most)", self.name,
                         trouble.what, self.max_wait_s)  # fmt: skip
        elif trouble.code != self.code:
            self.log.info("%s: still waiting for Redis, now: %s", self.name, trouble.what)
        else:
            self.log.debug("%s: %s (attempt %d)", self.name, trouble.what, self.attempts + 1)
        self.code = trouble.code
        self.attempts += 1
        wait, self._wait = self._wait, min(self._wait * 2, self.max_wait_s)
        return wait

    def over(self) -> None:
        """Redis answered: the outage, if there was one, is over."""
        if self.since is not None:
            self.log.info("%s: Redis is back after %.1f s (%d attempts)", self.name,
                          time.monotonic() - self.since, self.attempts)  # fmt: skip
            self.since = None

    def forget(self) -> None:
        """The outage ended some time ago, unnoticed (the caller could not tell when): the next failure
        starts a new one."""
        self.since = None

    def ride(self, call: Callable[[], T], sleep: Callable[[float], object] = time.sleep,
             before_wait: Callable[[], object] = lambda: None) -> T:  # fmt: skip
        """`call()`, again and again while it fails with transient Redis trouble; anything else is raised.
        `before_wait()` runs before each wait and may raise to end it (a worker asked to stop)."""
        while True:
            try:
                result = call()
            except redis.RedisError as err:
                trouble = diagnose(err)
                if trouble is None or not trouble.transient:
                    raise
                before_wait()
                sleep(self.failed(trouble))
                continue
            self.over()
            return result
