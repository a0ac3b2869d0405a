-- Takes back a decision whose forwards could not be queued, entry by entry
-- (not all or nothing: another replica's later write to one entry must not
-- keep the others from being restored).
--
-- KEYS: entries.
-- ARGV[1]: the key prefix; then four values per key: its kind, the version
-- the decision wrote, the idempotency key it forwarded ('' if none), the
-- document to restore ('' deletes).
-- Returns how many entries were restored.
--
-- An episode is restored while what it last forwarded is still the undone
-- forward, whatever else changed: otherwise the sender's retry would be a
-- duplicate of a forward that never left.  A group is restored only if
-- untouched since.
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
