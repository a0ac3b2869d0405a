-- Acknowledges and deletes a delivered entry.
--
-- KEYS: the stream, the shared length.
-- ARGV: the group, the entry.
-- Returns the length.  Counts down only for an entry still there (another
-- replica may have delivered it too), and not below zero (an entry an
-- operator added was never counted).
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 and redis.call('DECR', KEYS[2]) < 0 then
  redis.call('SET', KEYS[2], 0)
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
