-- Drops entries of a stream for good, whoever reads them: what
-- `alertgateway queue purge --state pending` does with the Redis queue.
--
-- KEYS: the stream, the shared length.
-- ARGV: the group, then the entries' IDs.
-- Returns how many were dropped.  The length counts down only for entries
-- still there (a replica may have delivered one meanwhile), and not below
-- zero.
local dropped = 0
for i = 2, #ARGV do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  dropped = dropped + redis.call('XDEL', KEYS[1], ARGV[i])
end
if dropped > 0 and redis.call('DECRBY', KEYS[2], dropped) < 0 then
  redis.call('SET', KEYS[2], 0)
end
return dropped
