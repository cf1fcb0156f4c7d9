"""Lua scripts of the position store. Each runs atomically in Redis, so a reader never sees a hash, its
index sets and its log out of step, nor a decided order without its hand-off to the workers.

Redis does not roll a script back when a command fails halfway, so every script checks what can be
checked first (existence, state, version), then hands the intent over, then writes the log before the hash:
a failed command (a key of the wrong type) then leaves nothing of the position written.

The hand-off is the order intent's way to the workers: either an entry in the symbol's outbox stream (for
the engine's relay to move to RQ), or RQ's own enqueue commands (job hash, queue push), given by the caller
and run here as they are, so the transition and the job exist together or not at all. Those touch RQ's keys,
which are not among the script's KEYS: fine on a single Redis (RQ does not run on Cluster anyway).
"""

from __future__ import annotations

# The hand-off (see the module doc), spliced into the scripts below after their checks. From ARGV[i]: m, m
# field/value ARGV of an outbox entry (m = 0: none), then commands, each as k followed by its k ARGV.
_HANDOFF = """
local m = tonumber(ARGV[i])
if m > 0 then
  redis.call('XADD', KEYS[5], '*', unpack(ARGV, i + 1, i + m))
end
i = i + m + 1
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + k))
  i = i + k + 1
end
"""

# KEYS: hash, log, state set (opening), symbol's positions set, symbol's outbox, symbol's transition counts
# ARGV: id, reason, price, ts, n = number of field ARGV, n field/value ARGV (state and version included),
#       then the entry order's hand-off
# -> 1 created, 0 already exists
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local n = tonumber(ARGV[5])
local i = 6 + n
""" + _HANDOFF + """
redis.call('XADD', KEYS[2], '*', 'from', '', 'to', 'opening', 'trigger', 'create',
  'reason', ARGV[2], 'price', ARGV[3], 'ts', ARGV[4], 'version', '1')
redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + n))
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[6], '|opening|create', 1)
return 1
"""

# The compare-and-set of a transition, with the hand-off of the order intent it calls for.
# KEYS: hash, log, source state set, dest state set, symbol's outbox, symbol's transition counts (the
#       metric, counted by the write that applies the transition: statemachines/counters.py)
# ARGV: id, source, dest, expected version, trigger, reason, price, ts, n = number of field ARGV,
#       n field/value ARGV, then the intent's hand-off
# -> {1, new version} applied, {0, stored state, stored version} stale ('' when missing)
TRANSITION = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if cur[1] ~= ARGV[2] or cur[2] ~= ARGV[4] then
  return {0, cur[1] or '', cur[2] or ''}
end
local v = tonumber(cur[2]) + 1
local n = tonumber(ARGV[9])
local i = 10 + n
""" + _HANDOFF + """
redis.call('XADD', KEYS[2], '*', 'from', ARGV[2], 'to', ARGV[3], 'trigger', ARGV[5],
  'reason', ARGV[6], 'price', ARGV[7], 'ts', ARGV[8], 'version', tostring(v))
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 10, 9 + n))
end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', tostring(v))
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[6], ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[5], 1)
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

# --- retention: the trade ledger and the removal of closed positions (workers/retention.py) ---

# A closed position's row in its day's trade ledger, and its place in the symbol's retention queue. Closed
# is terminal, so the row (encoded by the caller from the hash at this version) stays true.
# KEYS: hash, symbol's archived zset, the day's ledger, ledger days set
# ARGV: id, version, row, close time (the queue's score), ledger TTL seconds (0 = none), day
# -> 1 archived, 0 not a closed position at that version
ARCHIVE_CLOSED = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if cur[1] ~= 'closed' or cur[2] ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
if tonumber(ARGV[5]) > 0 then
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('SADD', KEYS[4], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""

# Remove a closed position: its ledger row first (unless already there), then the hash, the log, its index
# entries, its queue entry and its global id -> symbol entry. A position that is not closed, or not at the
# version the caller read, is never touched. The checks come first, and the only write that may add memory
# (the row) before any delete, so a refused write (OOM) leaves everything as it was.
# KEYS: hash, log, closed state set, symbol's positions set, symbol's archived zset, pos-symbol,
#       the day's ledger, ledger days set
# ARGV: id, version, row, ledger TTL seconds (0 = none), day, symbol
# -> 1 removed; 0 no such hash, -1 not closed (either way only its queue entry is dropped); -2 another
#    version than the caller read (kept, for a later pass)
REMOVE_CLOSED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return 0
end
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if cur[1] ~= 'closed' then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return -1
end
if cur[2] ~= ARGV[2] then
  return -2
end
if redis.call('HEXISTS', KEYS[7], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[7], ARGV[1], ARGV[3])
  if tonumber(ARGV[4]) > 0 then
    redis.call('EXPIRE', KEYS[7], ARGV[4])
  end
  redis.call('SADD', KEYS[8], ARGV[5])
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if redis.call('HGET', KEYS[6], ARGV[1]) == ARGV[6] then
  redis.call('HDEL', KEYS[6], ARGV[1])
end
return 1
"""

# Forget the ledger days whose hash has expired (checked and removed together, so a day written again
# in between stays listed).
# KEYS: ledger days set, then one day's ledger per day
# ARGV: the days, in the order of their keys
# -> how many were forgotten
FORGET_EXPIRED_DAYS = """
local n = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    n = n + redis.call('SREM', KEYS[1], ARGV[i - 1])
  end
end
return n
"""
