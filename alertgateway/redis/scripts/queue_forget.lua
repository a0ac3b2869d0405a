-- Deletes a consumer from the group only if it has nothing pending: deleting
-- it would drop its pending entries.
--
-- KEYS: the stream.
-- ARGV: the group, a consumer.
-- Returns how many pending entries were dropped (0), or -1 when kept.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
