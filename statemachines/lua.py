"""Lua scripts of the position store. Each touches only one symbol's keys (one Cluster slot) and runs
atomically in Redis, so a reader never sees a hash, its index sets and its log out of step.

Redis does not roll a script back when a command fails halfway, so every script checks what can be
checked first (existence, state, version) and writes the log before the hash: a failed XADD (a key of the
wrong type) then leaves nothing written.
"""

from __future__ import annotations

# KEYS: hash, log, state set (opening), symbol's positions set, symbol's outbox
# ARGV: id, reason, price, ts, n = number of field ARGV, n field/value ARGV (state and version included),
#       then the order intent's field/value pairs (none: no intent)
# -> 1 created, 0 already exists
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local n = tonumber(ARGV[5])
redis.call('XADD', KEYS[2], '*', 'from', '', 'to', 'opening', 'trigger', 'create',
  'reason', ARGV[2], 'price', ARGV[3], 'ts', ARGV[4], 'version', '1')
redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + n))
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
if #ARGV > 5 + n then
  redis.call('XADD', KEYS[5], '*', unpack(ARGV, 6 + n))
end
return 1
"""

# The compare-and-set of a transition, with the order intent it calls for (the outbox entry).
# KEYS: hash, log, source state set, dest state set, symbol's outbox
# ARGV: id, source, dest, expected version, trigger, reason, price, ts, n = number of field ARGV,
#       n field/value ARGV, then the intent's field/value pairs (none: no intent)
# -> {1, new version} applied, {0, stored state, stored version} stale ('' when missing)
TRANSITION = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[4] then
  return {0, cur[1] or '', cur[2] or ''}
end
local v = tonumber(cur[2]) + 1
local n = tonumber(ARGV[9])
redis.call('XADD', KEYS[2], '*', 'from', ARGV[2], 'to', ARGV[3], 'trigger', ARGV[5],
  'reason', ARGV[6], 'price', ARGV[7], 'ts', ARGV[8], 'version', tostring(v))
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 10, 9 + n))
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', tostring(v))
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
if #ARGV > 9 + n then
  redis.call('XADD', KEYS[5], '*', unpack(ARGV, 10 + n))
end
return {1, v}
"""

# Mark-to-market fields, written only if nothing moved the position since it was read; no log, no version.
# KEYS: hash
# ARGV: expected state, expected version, then field/value pairs
# -> 1 written, 0 stale or missing
UPDATE_MARKS = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then
  return 0
end
if #ARGV > 2 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
end
return 1
"""

# The operator's close request: any live state, never a closed (or missing) position, which HSET would
# otherwise resurrect as a half-empty hash.
# KEYS: hash
# ARGV: reason
# -> 1 requested, 0 closed or missing
REQUEST_CLOSE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then
  return 0
end
redis.call('HSET', KEYS[1], 'close_request', ARGV[1])
return 1
"""
