-- Moves an entry to the dead letters, with why, and acknowledges it.
--
-- KEYS: the stream, the shared length, the dead letters.
-- ARGV: the group, the entry, the reason, the attempts, the partition.
-- Returns the length, counted down as by queue_done.
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if #found == 0 then
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
redis.call('XADD', KEYS[3], '*', 'reason', ARGV[3], 'attempts', ARGV[4], 'partition', ARGV[5],
  'entry', ARGV[2], unpack(found[1][2]))
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('DECR', KEYS[2]) < 0 then
  redis.call('SET', KEYS[2], 0)
end
return tonumber(redis.call('GET', KEYS[2]))
