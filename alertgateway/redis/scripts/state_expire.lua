-- Forgets episodes last seen before a time.  Their hashes expire by
-- themselves; this keeps the indexes in step.
--
-- ARGV[1]: the key prefix; ARGV[2]: episodes last seen before this are
-- forgotten.
-- Returns how many episodes are tracked and how many were evicted in all.
--
-- Key names are built here from the prefix, so this needs one Redis, not a
-- Redis Cluster.
local p = ARGV[1]
local lapsed = redis.call('ZRANGEBYSCORE', p .. 'episodes', '-inf', '(' .. ARGV[2], 'LIMIT', 0, 10000)
for j = 1, #lapsed do
  redis.call('ZREM', p .. 'episodes', lapsed[j])
  redis.call('ZREM', p .. 'keys', lapsed[j])
end
return {redis.call('ZCARD', p .. 'episodes'), tonumber(redis.call('GET', p .. 'evictions') or '0')}
