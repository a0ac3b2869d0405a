-- Announces a replica and renews the leases it holds.
--
-- KEYS[1]: the heartbeats; KEYS[2..]: the leases held.
-- ARGV: the replica, the lease time in ms, '1' to count the replica in (or
-- '0', draining, to count it out).
-- Returns {live replicas, then 1 or 0 per lease: renewed, or held by
-- another}.  Redis's clock scores the heartbeats, so the replicas' clocks
-- need not agree.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], ms, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local result = {redis.call('ZCARD', KEYS[1])}
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    result[i] = 1
  else
    result[i] = 0
  end
end
return result
