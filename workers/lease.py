"""The engine's lease on a symbol shard: one owner at a time, handed over within the TTL when it dies.

The owner holds a random token in `{prefix}:lease:{shard}` with a TTL and renews it well inside the TTL;
renewal and release check the token in Lua, so a process that lost the lease (paused past the TTL) can
neither extend nor delete the new owner's. An engine must stop stepping machines the moment `renew`
reports the lease lost. (Transitions are compare-and-set anyway, so even a zombie owner cannot corrupt a
position; the lease keeps two engines from doing the same work and racing for it.)

A lease may be listed by name in a set (`{prefix}:leases`), written by the same script as every take and
renewal, so a reader (`scalper web`'s health and readiness) finds the leases without scanning the keyspace,
and a listing a Redis failover lost comes back within a renewal. (The scripts touch two keys outside one
Cluster slot: scalper runs on one Redis, see statemachines/keys.py.)
"""

from __future__ import annotations

import secrets
import time

import redis

from statemachines.keys import Keys
from statemachines.redis_text import as_str

# KEYS: the lease, [the set it is listed in]; ARGV: token, TTL ms, [its name in the set]
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if KEYS[2] then
    redis.call('SADD', KEYS[2], ARGV[3])
  end
  return 1
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if KEYS[2] then
    redis.call('SADD', KEYS[2], ARGV[3])
  end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, key: str, ttl_s: float = 5.0, owner: str = "",
                 listed_in: tuple[str, str] | None = None) -> None:  # fmt: skip
        """`listed_in`: (set key, name) to list the lease under."""
        self.client = client
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{owner or 'engine'}-{secrets.token_hex(8)}"
        self.held = False
        self._renewed_at = 0.0
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._keys = [key] if listed_in is None else [key, listed_in[0]]
        self._args = [self.token, self.ttl_ms] + ([] if listed_in is None else [listed_in[1]])
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        self.held = bool(int(self._acquire(keys=self._keys, args=self._args)))
        if self.held:
            self._renewed_at = time.monotonic()
        return self.held

    def renew(self) -> bool:
        """Extend the lease; False means it was lost (expired and possibly taken by another engine)."""
        self.held = bool(int(self._renew(keys=self._keys, args=self._args)))
        if self.held:
            self._renewed_at = time.monotonic()
        return self.held

    def keep(self) -> bool:
        """Called from the engine loop: renew once a third of the TTL has passed; acquire if not held."""
        if not self.held:
            return self.acquire()
        if time.monotonic() - self._renewed_at >= self.ttl_ms / 3000:
            return self.renew()
        return True

    def release(self) -> None:
        if self.held:
            self._release(keys=[self.key], args=[self.token])
            self.held = False


def held_leases(client: redis.Redis, keys: Keys) -> dict[str, tuple[str, int]]:
    """The listed leases that are held now: shard -> (owner token, milliseconds left). Two round trips,
    whatever the size of the keyspace."""
    shards = sorted(as_str(x) for x in client.smembers(keys.leases()))
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.get(keys.lease(shard))
        pipe.pttl(keys.lease(shard))
    replies = pipe.execute()
    held = {}
    for i, shard in enumerate(shards):
        owner, ttl = replies[2 * i], int(replies[2 * i + 1])
        if owner is not None:
            held[shard] = (as_str(owner), ttl)
    return held
