-- Appends a batch of envelopes to their partitions' streams, all or nothing,
-- within the bound the replicas share.
--
-- KEYS[1]: the shared length; KEYS[1 + i]: the stream of envelope i.
-- ARGV[1]: the most envelopes queued; ARGV[1 + i]: envelope i as JSON.
-- Returns {1, new length}, or {0, length} adding nothing when they do not fit.
local count = #KEYS - 1
local length = tonumber(redis.call('GET', KEYS[1]) or '0')
if length + count > tonumber(ARGV[1]) then
  return {0, length}
end
for i = 1, count do
  redis.call('XADD', KEYS[i + 1], '*', 'e', ARGV[i + 1])
end
return {1, redis.call('INCRBY', KEYS[1], count)}
