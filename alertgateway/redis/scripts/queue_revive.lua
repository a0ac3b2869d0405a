-- Puts a dead letter back at the end of its key's stream, for another try,
-- within the bound the replicas share: what `alertgateway queue retry`
-- does with the Redis queue.
--
-- KEYS: the dead letters, the shared length, the stream of its key.
-- ARGV: the most envelopes queued, the dead letter's ID.
-- Returns 1 once moved; 0 when the queue is full (nothing moved); -1 when
-- there is no such dead letter; -2 when it holds no envelope (an entry
-- that could not be read, kept as it was found).
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #found == 0 then
  return -1
end
local fields = found[1][2]
local envelope = nil
for i = 1, #fields, 2 do
  if fields[i] == 'e' then
    envelope = fields[i + 1]
  end
end
if envelope == nil then
  return -2
end
if tonumber(redis.call('GET', KEYS[2]) or '0') + 1 > tonumber(ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[3], '*', 'e', envelope)
redis.call('INCR', KEYS[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
