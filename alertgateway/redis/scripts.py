"""
The Lua scripts that make shared-state decisions atomic on Redis.

Each runs whole or not at all, with no other client's command in between;
that is what makes a decision taken by one replica see every decision taken
before it by any other.  Entries (episodes, correlation groups) are hashes
with a version C{v} and the JSON document C{d}: a decision loads what it
needs (L{LOAD}), decides in Python, and writes back only if no version moved
meanwhile (L{COMMIT}); otherwise it loads again and decides again.

Key names are built inside L{COMMIT} and L{EXPIRE} from the prefix, so these
scripts need one Redis, not a Redis Cluster.
"""

from __future__ import annotations

from alertgateway.redis.client import Script

__all__ = ["BUCKETS", "COMMIT", "DELIVERED", "EXPIRE", "LOAD", "UNDO"]

# KEYS: entries.  Returns, per key, its version (0 when absent), its document
# (false when absent) and its delivery record (false when none).
LOAD = Script(
    "state_load",
    """
local out = {}
for i = 1, #KEYS do
  local got = redis.call('HMGET', KEYS[i], 'v', 'd', 'o')
  out[#out + 1] = got[1] or '0'
  out[#out + 1] = got[2] or false
  out[#out + 1] = got[3] or false
end
return out
""",
)

# KEYS: entries to write.  ARGV[1]: the key prefix; ARGV[2]: episodes kept
# at most; then eight values per key: the version it was loaded at, the new
# document ('' deletes it), its time to live in ms, its kind ('e' episode,
# 'g' group), its name (dedup key or group id), the episode's fingerprint or
# the group's storm flag ('1' while in a storm), the episode's last sighting,
# and the idempotency key of what the episode last forwarded.  Returns 0,
# writing nothing, when any version moved; else the new versions.  Versions
# come from one counter, never reused: an entry deleted (evicted, expired,
# undone) and written again cannot match a version loaded before.
COMMIT = Script(
    "state_commit",
    """
local p = ARGV[1]
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 8
  local current = redis.call('HGET', KEYS[i], 'v') or '0'
  if current ~= ARGV[at + 1] then
    return 0
  end
end
local versions = {}
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 8
  local key, data, ttl, kind = KEYS[i], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local name, extra, score, forwarded = ARGV[at + 5], ARGV[at + 6], ARGV[at + 7], ARGV[at + 8]
  if data == '' then
    redis.call('DEL', key)
    versions[i] = '0'
    if kind == 'e' then
      redis.call('ZREM', p .. 'episodes', name)
      redis.call('ZREM', p .. 'keys', name)
    else
      redis.call('SREM', p .. 'storms', name)
    end
  else
    local v = redis.call('INCR', p .. 'version')
    versions[i] = tostring(v)
    redis.call('HSET', key, 'v', v, 'd', data, 'f', forwarded)
    redis.call('PEXPIRE', key, ttl)
    if kind == 'e' then
      redis.call('ZADD', p .. 'episodes', score, name)
      redis.call('ZADD', p .. 'keys', 0, name)
      redis.call('SET', p .. 'fp:' .. extra, name, 'PX', ttl)
    elseif extra == '1' then
      redis.call('SADD', p .. 'storms', name)
    else
      redis.call('SREM', p .. 'storms', name)
    end
  end
end
local over = redis.call('ZCARD', p .. 'episodes') - tonumber(ARGV[2])
if over > 0 then
  local evicted = redis.call('ZPOPMIN', p .. 'episodes', over)
  for j = 1, #evicted, 2 do
    redis.call('DEL', p .. 'ep:' .. evicted[j])
    redis.call('ZREM', p .. 'keys', evicted[j])
  end
  redis.call('INCRBY', p .. 'evictions', over)
end
return versions
""",
)

# Take back a decision whose forwards could not be queued, entry by entry
# (not all or nothing: another replica's later write to one entry must not
# keep the others from being restored).  KEYS: entries.  ARGV[1]: the key
# prefix; then four values per key: its kind, the version the decision
# wrote, the idempotency key it forwarded ('' if none), the document to
# restore ('' deletes).  An episode is restored while what it last
# forwarded is still the undone forward, whatever else changed: otherwise
# the sender's retry would be a duplicate of a forward that never left.  A
# group is restored only if untouched since.  Returns how many were.
UNDO = Script(
    "state_undo",
    """
local p = ARGV[1]
local restored = 0
for i = 1, #KEYS do
  local at = 1 + (i - 1) * 4
  local kind, version, forwarded, data = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local mine
  if kind == 'e' then
    mine = forwarded ~= '' and redis.call('HGET', KEYS[i], 'f') == forwarded
  else
    mine = (redis.call('HGET', KEYS[i], 'v') or '0') == version
  end
  if mine then
    restored = restored + 1
    if data == '' then
      redis.call('DEL', KEYS[i])
    else
      local ttl = redis.call('PTTL', KEYS[i])
      redis.call('HSET', KEYS[i], 'v', redis.call('INCR', p .. 'version'), 'd', data, 'f', '')
      redis.call('HDEL', KEYS[i], 'o')
      if ttl > 0 then
        redis.call('PEXPIRE', KEYS[i], ttl)
      end
    end
  end
end
return restored
""",
)

# KEYS[1]: an episode.  ARGV: the idempotency key of what was delivered, and
# how it went.  Recorded beside the document (not in it, so that no
# decision has to be retried for it), only while the episode exists.
DELIVERED = Script(
    "state_delivered",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'o', ARGV[1] .. '\\n' .. ARGV[2])
return 1
""",
)

# ARGV[1]: the key prefix; ARGV[2]: episodes last seen before this are
# forgotten.  Their hashes expire by themselves; this keeps the indexes in
# step.  Returns how many episodes are tracked and how many were evicted in
# all.
EXPIRE = Script(
    "state_expire",
    """
local p = ARGV[1]
local lapsed = redis.call('ZRANGEBYSCORE', p .. 'episodes', '-inf', '(' .. ARGV[2], 'LIMIT', 0, 10000)
for j = 1, #lapsed do
  redis.call('ZREM', p .. 'episodes', lapsed[j])
  redis.call('ZREM', p .. 'keys', lapsed[j])
end
return {redis.call('ZCARD', p .. 'episodes'), tonumber(redis.call('GET', p .. 'evictions') or '0')}
""",
)

# Token buckets.  KEYS: the buckets that apply to a request.  ARGV[1]: now
# (seconds); then per bucket its refill rate (tokens a second) and capacity.
# Allowed only if every bucket has a token, and then one is taken from each.
# Returns {allowed, index of the deciding bucket, tokens remaining,
# seconds to wait, seconds until full}; numbers that may be fractional are
# strings, as Redis truncates Lua numbers in replies.
BUCKETS = Script(
    "rate_buckets",
    """
local now = tonumber(ARGV[1])
local tokens, rates, caps = {}, {}, {}
local worst, worst_wait = 0, -1
for i = 1, #KEYS do
  local rate, cap = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 't', 'u')
  local t = tonumber(state[1]) or cap
  local updated = tonumber(state[2]) or now
  local elapsed = math.max(0, now - updated)
  t = math.min(cap, t + elapsed * rate)
  tokens[i], rates[i], caps[i] = t, rate, cap
  if t < 1 then
    local wait = (1 - t) / rate
    if wait > worst_wait then
      worst, worst_wait = i, wait
    end
  end
end
if worst > 0 then
  local reset = (caps[worst] - tokens[worst]) / rates[worst]
  return {0, worst, 0, tostring(worst_wait), tostring(reset)}
end
local tightest = 1
for i = 1, #KEYS do
  tokens[i] = tokens[i] - 1
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i]), 'u', tostring(now))
  -- Forgotten once full again: an idle bucket is the same as none.
  redis.call('PEXPIRE', KEYS[i], math.ceil((caps[i] - tokens[i]) / rates[i] * 1000) + 1000)
  if tokens[i] < tokens[tightest] then
    tightest = i
  end
end
local reset = (caps[tightest] - tokens[tightest]) / rates[tightest]
return {1, tightest, math.floor(tokens[tightest]), '0', tostring(reset)}
""",
)
