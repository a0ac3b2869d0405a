-- Takes free leases, up to a number.
--
-- KEYS: leases to try, in order.
-- ARGV: the replica, the lease time in ms, how many to take.
-- Returns the (1-based) indexes of the leases taken; one still held in this
-- replica's name counts as taken.
local got = {}
for i = 1, #KEYS do
  if #got >= tonumber(ARGV[3]) then
    break
  end
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) or redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    got[#got + 1] = i
  end
end
return got
