-- Writes back what a decision changed, only if no other replica wrote any of
-- it since it was loaded (compare-and-set on versions).
--
-- KEYS: entries to write.
-- ARGV[1]: the key prefix; ARGV[2]: episodes kept at most; then eight values
-- per key: the version it was loaded at, the new document ('' deletes it),
-- its time to live in ms, its kind ('e' episode, 'g' group), its name (dedup
-- key or group id), the episode's fingerprint or the group's storm flag ('1'
-- while in a storm), the episode's last sighting, and the idempotency key of
-- what the episode last forwarded.
-- Returns 0, writing nothing, when any version moved; else the new versions.
--
-- Versions come from one counter, never reused: an entry deleted (evicted,
-- expired, undone) and written again cannot match a version loaded before.
-- Key names are built here from the prefix, so this needs one Redis, not a
-- Redis Cluster.
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
