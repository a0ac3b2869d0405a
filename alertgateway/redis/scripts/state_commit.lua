-- Writes back what a decision changed, only if no other replica wrote any of
-- it since it was loaded (compare-and-set on versions), and with it, when
-- queueing, appends the decision's envelopes to their streams within the
-- bound the replicas share: all of it, or nothing.
--
-- KEYS: the entries to write (ARGV[3] of them); then the waiting list of each
-- group among them, in their order; then, when queueing, the queue's shared
-- length and the stream of each envelope.
-- ARGV[1]: the key prefix; ARGV[2]: episodes kept at most; ARGV[3]: how many
-- entries; ARGV[4]: the most envelopes queued, or '' when not queueing.  Then
-- eight values per entry: the version it was loaded at, the new document (''
-- deletes it), its time to live in ms, its kind ('e' episode, 'g' group), its
-- name (dedup key or group id), the episode's fingerprint or the group's
-- storm flag ('1' while in a storm), the episode's last sighting, and the
-- idempotency key of what the episode last forwarded; a group's are followed
-- by what happens to its waiting list: '1' to delete it first, how many
-- members to take from its head, how many to append, and those members.
-- Then the envelopes, as JSON.
-- Returns {1, queue length, the new versions...} once written; writing
-- nothing, {-1, 0} when any version moved, {0, queue length} when the
-- envelopes do not fit.
--
-- Versions come from one counter, never reused: an entry deleted (evicted,
-- expired, undone) and written again cannot match a version loaded before.
-- The indexes' key names are built here from the prefix, so this needs one
-- Redis, not a Redis Cluster.
local p = ARGV[1]
local count = tonumber(ARGV[3])
local entries = {}
local lists = count
local at = 5
for i = 1, count do
  local e = {
    key = KEYS[i], version = ARGV[at], data = ARGV[at + 1], ttl = ARGV[at + 2], kind = ARGV[at + 3],
    name = ARGV[at + 4], extra = ARGV[at + 5], score = ARGV[at + 6], forwarded = ARGV[at + 7],
  }
  at = at + 8
  if e.kind == 'g' then
    lists = lists + 1
    e.list, e.drop, e.trim, e.push, e.from = KEYS[lists], ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), at + 3
    at = e.from + e.push
  end
  entries[i] = e
end
for i = 1, count do
  if (redis.call('HGET', entries[i].key, 'v') or '0') ~= entries[i].version then
    return {-1, 0}
  end
end
local queueing = ARGV[4] ~= ''
local queued = #KEYS - lists - 1
local length = 0
if queueing then
  length = tonumber(redis.call('GET', KEYS[lists + 1]) or '0')
  if length + queued > tonumber(ARGV[4]) then
    return {0, length}
  end
end

-- Appends ARGV[from .. from + n - 1] to a list, a thousand at a time (the
-- most arguments one call takes is bounded).
local function append(key, from, n)
  local first = from
  while first < from + n do
    local last = math.min(from + n - 1, first + 999)
    redis.call('RPUSH', key, unpack(ARGV, first, last))
    first = last + 1
  end
end

local result = {1, length}
for i = 1, count do
  local e = entries[i]
  if e.data == '' then
    redis.call('DEL', e.key)
    result[#result + 1] = '0'
    if e.kind == 'e' then
      redis.call('ZREM', p .. 'episodes', e.name)
      redis.call('ZREM', p .. 'keys', e.name)
    else
      redis.call('DEL', e.list)
      redis.call('SREM', p .. 'storms', e.name)
    end
  else
    local v = redis.call('INCR', p .. 'version')
    result[#result + 1] = tostring(v)
    redis.call('HSET', e.key, 'v', v, 'd', e.data, 'f', e.forwarded)
    redis.call('PEXPIRE', e.key, e.ttl)
    if e.kind == 'e' then
      redis.call('ZADD', p .. 'episodes', e.score, e.name)
      redis.call('ZADD', p .. 'keys', 0, e.name)
      redis.call('SET', p .. 'fp:' .. e.extra, e.name, 'PX', e.ttl)
    else
      if e.extra == '1' then
        redis.call('SADD', p .. 'storms', e.name)
      else
        redis.call('SREM', p .. 'storms', e.name)
      end
      if e.drop == '1' then
        redis.call('DEL', e.list)
      elseif e.trim > 0 then
        redis.call('LTRIM', e.list, e.trim, -1)
      end
      append(e.list, e.from, e.push)
      redis.call('PEXPIRE', e.list, e.ttl)
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
if queueing then
  for j = 1, queued do
    redis.call('XADD', KEYS[lists + 1 + j], '*', 'e', ARGV[at + j - 1])
  end
  result[2] = redis.call('INCRBY', KEYS[lists + 1], queued)
end
return result
